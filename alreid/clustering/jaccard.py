"""Sparse k-reciprocal Jaccard distance (SpCL's ``compute_jaccard_distance``, spec 4.3).

SpCL builds an n x n dense encoding matrix V and an n x n dense distance matrix; both are only
non-zero on a few dozen entries per row, so here every step is a sparse-matrix operation and
memory stays O(n * k). The result holds d_J only for pairs whose (query-expanded) neighbourhoods
overlap; every absent pair has distance exactly 1, which SpCL would store explicitly.

Steps (i = query, all sets include i itself because i is its own first neighbour):
1. rank = k1 nearest neighbours (faiss inner product on unit vectors = Euclidean ranking).
2. R(i)  = {j in top-k1(i) : i in top-k1(j)};  R'(i) likewise with the top round(k1/2)+1.
3. R*(i) = R(i) plus R'(c) for every c in R(i) with |R'(c) & R(i)| > 2/3 |R'(c)|.
4. V(i, j) = softmax over j in R*(i) of -(2 - 2 z_i.z_j)   (rows sum to 1).
5. V(i, .) <- mean of V(j, .) over j in top-k2(i)           (local query expansion, k2 > 1).
6. d_J(i, j) = 1 - S / (2 - S),  S = sum_t min(V(i,t), V(j,t)),  clipped at 0.

Step 6 is the expensive one; S only needs the pairs (i, j) that share a column t, so each column's
non-zeros are enumerated pairwise (upper triangle only), block by block. A cheap pattern pass (a 0/1
sparse product) sizes every output row first, so each block is written straight into the final
arrays and mirrored there: peak memory is about the output plus one block.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from alreid.clustering.knn import knn_search, l2_normalise


def unit_rows(features: np.ndarray, *, atol: float = 1e-4) -> np.ndarray:
    """``features`` as C-contiguous float32 unit rows, without a copy when they already are."""
    x = np.asarray(features)
    if x.dtype == np.float32 and x.flags.c_contiguous and x.ndim == 2:
        norms = np.einsum("ij,ij->i", x, x)
        if np.all(np.abs(norms - 1.0) <= atol):
            return x
    return l2_normalise(x)


def _neighbour_matrix(rank: np.ndarray, k: int, n: int) -> sp.csr_matrix:
    """Boolean (n x n) csr: row i marks the first ``k`` columns of ``rank[i]`` (missing = -1)."""
    cols = rank[:, :k]
    rows = np.repeat(np.arange(n, dtype=np.int64), cols.shape[1])
    cols = cols.reshape(-1)
    ok = cols >= 0
    m = sp.csr_matrix((np.ones(int(ok.sum()), dtype=np.int8), (rows[ok], cols[ok])), shape=(n, n))
    m.data[:] = 1  # duplicate neighbours (broken ANN output) count once
    return m


def _reciprocal(rank: np.ndarray, k: int, n: int) -> sp.csr_matrix:
    """k-reciprocal sets as a boolean csr: (i, j) stored iff j in top-k(i) and i in top-k(j)."""
    fwd = _neighbour_matrix(rank, k, n)
    return fwd.multiply(fwd.T).tocsr()


def _expanded_sets(rec: sp.csr_matrix, rec_half: sp.csr_matrix, block: int = 65536) -> sp.csr_matrix:
    """R*(i) as a boolean csr: R(i) plus the half-size sets R'(c), c in R(i), that overlap R(i) by > 2/3."""
    n = rec.shape[0]
    half_size = np.diff(rec_half.indptr).astype(np.int64)
    rec_half_t = rec_half.T.tocsr()
    rec_half_i = rec_half.astype(np.int32)
    out = []
    for a in range(0, n, block):
        r = rec[a:a + block].astype(np.int32)
        # overlap[i, c] = |R(i) & R'(c)| for c in R(i); absent means 0, which never passes the test
        overlap = (r @ rec_half_t).multiply(r).tocoo()
        keep = 3 * overlap.data.astype(np.int64) > 2 * half_size[overlap.col]
        acc = sp.csr_matrix((np.ones(int(keep.sum()), dtype=np.int32), (overlap.row[keep], overlap.col[keep])),
                            shape=r.shape)
        e = (acc @ rec_half_i + r).tocsr()
        e.data[:] = 1
        out.append(e)
    return sp.vstack(out, format="csr")


def _rowwise_dot(x: np.ndarray, rows: np.ndarray, cols: np.ndarray, chunk: int = 1 << 18) -> np.ndarray:
    """x[rows[p]] . x[cols[p]] for every p, in chunks so the gathered blocks stay small."""
    out = np.empty(len(rows), dtype=np.float32)
    step = max(1024, chunk * 128 // max(1, x.shape[1]))
    for a in range(0, len(rows), step):
        b = min(len(rows), a + step)
        out[a:b] = np.einsum("ij,ij->i", x[rows[a:b]], x[cols[a:b]])
    return out


def _usable_sims(x: np.ndarray, rank: np.ndarray, sims: np.ndarray | None, rows: int = 256) -> bool:
    """True when the k-NN similarities are the inner products of these features (spot check)."""
    if sims is None:
        return False
    sims = np.asarray(sims)
    if sims.shape[0] != rank.shape[0] or sims.shape[1] < rank.shape[1]:
        return False
    pick = np.linspace(0, len(x) - 1, min(rows, len(x))).astype(np.int64)
    cols = rank[pick]
    ok = cols >= 0
    got = np.einsum("ij,ikj->ik", x[pick], x[np.where(ok, cols, 0)])
    return bool(np.all(np.abs(got - sims[pick, :rank.shape[1]])[ok] <= 1e-4))


def _pair_dots(x: np.ndarray, rows: np.ndarray, cols: np.ndarray, rank: np.ndarray,
               sims: np.ndarray | None) -> np.ndarray:
    """z_i.z_j for the pairs (rows, cols), taken from the k-NN lists where possible (wide features
    make gathering both rows the costliest part of the encoding) and computed for the rest."""
    n, k = rank.shape
    if not _usable_sims(x, rank, sims):
        return _rowwise_dot(x, rows, cols)
    valid = rank >= 0
    known_keys = (np.arange(n, dtype=np.int64)[:, None] * n + rank)[valid]
    known_vals = np.asarray(sims, dtype=np.float32)[:, :k][valid]
    order = np.argsort(known_keys)
    known_keys, known_vals = known_keys[order], known_vals[order]
    del order
    keys = rows * n + cols
    at = np.minimum(np.searchsorted(known_keys, keys), len(known_keys) - 1)
    hit = known_keys[at] == keys
    out = np.where(hit, known_vals[at], np.float32(0))
    miss = np.flatnonzero(~hit)
    if len(miss):
        out[miss] = _rowwise_dot(x, rows[miss], cols[miss])
    return out


def _encode(x: np.ndarray, expanded: sp.csr_matrix, rank: np.ndarray, sims: np.ndarray | None) -> sp.csr_matrix:
    """V: softmax of -(squared Euclidean distance) over each expanded set (float32, rows sum to 1)."""
    n = expanded.shape[0]
    counts = np.diff(expanded.indptr)
    rows = np.repeat(np.arange(n, dtype=np.int64), counts)
    cols = expanded.indices.astype(np.int64, copy=False)
    dots = _pair_dots(x, rows, cols, rank, sims)
    w = np.exp(2.0 * dots.astype(np.float64) - 2.0)  # exp(-(2 - 2 z_i.z_j)); bounded in [e^-4, 1]
    sums = np.bincount(rows, weights=w, minlength=n)
    del rows
    w /= np.repeat(sums, counts)
    return sp.csr_matrix((w.astype(np.float32), expanded.indices.copy(), expanded.indptr.copy()), shape=(n, n))


def _query_expand(v: sp.csr_matrix, rank: np.ndarray, k2: int) -> sp.csr_matrix:
    """Row i becomes the mean of the rows of its top-k2 neighbours (SpCL's local query expansion)."""
    n = v.shape[0]
    cols = rank[:, :k2]
    rows = np.repeat(np.arange(n, dtype=np.int64), cols.shape[1])
    cols = cols.reshape(-1)
    ok = cols >= 0
    per_row = np.bincount(rows[ok], minlength=n).astype(np.float32)
    q = sp.csr_matrix(((1.0 / per_row[rows[ok]]).astype(np.float32), (rows[ok], cols[ok])), shape=(n, n))
    return (q @ v).tocsr()  # column order inside a row is irrelevant downstream


def _pattern_counts(v: sp.csr_matrix, block_rows: int = 16384) -> tuple[np.ndarray, np.ndarray]:
    """Per row i: number of rows j < i and j > i sharing a column with i (pattern of V V^T).

    A sparse product of the 0/1 pattern (scipy's C++ SpGEMM, one row block at a time) counts the
    partners without computing any min; it lets the output be allocated once, before the values.
    """
    n = v.shape[0]
    ones = sp.csr_matrix((np.ones(v.nnz, dtype=np.float32), v.indices, v.indptr), shape=v.shape)
    ones_t = ones.T.tocsr()
    n_low = np.zeros(n, dtype=np.int64)
    n_up = np.zeros(n, dtype=np.int64)
    for a in range(0, n, block_rows):
        b = min(n, a + block_rows)
        p = ones[a:b] @ ones_t
        rows = np.repeat(np.arange(a, b, dtype=np.int64), np.diff(p.indptr))
        n_low[a:b] = np.bincount(rows[p.indices < rows] - a, minlength=b - a)
        n_up[a:b] = np.bincount(rows[p.indices > rows] - a, minlength=b - a)
    return n_low, n_up


def _upper_blocks(v: sp.csr_matrix, max_pairs: int):
    """Yield (first row, csr block) of the strict upper triangle of d_J, rows in ascending blocks.

    S_ij = sum_t min(v_it, v_jt) is accumulated by enumerating, for every entry (i, t), the entries
    (j, t) of the same column with j > i; a block holds at most ``max_pairs`` candidate triples and
    duplicates (i, j) are summed by scipy's csr conversion.
    """
    n = v.shape[0]
    nnz = v.nnz
    row_of = np.repeat(np.arange(n, dtype=np.int32), np.diff(v.indptr))
    col_of = v.indices
    # CSC view built by hand so each CSR entry knows its position inside its column
    perm = np.argsort(col_of, kind="stable")  # rows stay ascending inside each column
    pos = np.empty(nnz, dtype=np.int64)
    pos[perm] = np.arange(nnz, dtype=np.int64)
    csc_rows = row_of[perm]
    csc_data = v.data[perm]
    del perm
    col_end = np.cumsum(np.bincount(col_of, minlength=n)).astype(np.int64)
    tail = col_end[col_of] - pos - 1  # later entries of the same column = partners j > i
    per_row = np.bincount(row_of, weights=tail, minlength=n).astype(np.int64)
    cum = np.cumsum(per_row)
    a = 0
    while a < n:
        b = int(np.searchsorted(cum, (cum[a - 1] if a else 0) + max_pairs, side="right"))
        b = min(n, max(b, a + 1))
        e0, e1 = v.indptr[a], v.indptr[b]
        lens = tail[e0:e1]
        total = int(lens.sum())
        if total:
            offs = np.cumsum(lens) - lens
            p = np.repeat(pos[e0:e1] + 1 - offs, lens) + np.arange(total, dtype=np.int64)
            j = csc_rows[p]
            s = np.minimum(np.repeat(v.data[e0:e1], lens), csc_data[p])
            del p
            i = np.repeat(row_of[e0:e1] - a, lens)
            blk = sp.coo_matrix((s, (i, j)), shape=(b - a, n)).tocsr()  # sums duplicate (i, j)
            del i, j, s
            s = blk.data
            d = 1.0 - s / (2.0 - s)
            np.maximum(d, 0.0, out=d)
            blk.data = d.astype(np.float32, copy=False)
            yield a, blk
        a = b


def _assemble_symmetric(v: sp.csr_matrix, max_pairs: int) -> sp.csr_matrix:
    """upper + upper.T + explicit zero diagonal, written straight into the final csr arrays.

    Row sizes come from :func:`_pattern_counts`; each upper block is then written twice (in place
    and mirrored into the rows j > i, whose lower parts fill up in ascending i). Assembled by hand
    because scipy's ``+`` drops explicit zeros; the peak is the output plus one block.
    """
    n = v.shape[0]
    n_low, n_up = _pattern_counts(v)
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(n_low + n_up + 1, out=indptr[1:])
    indices = np.empty(int(indptr[-1]), dtype=np.int32)
    data = np.empty(int(indptr[-1]), dtype=np.float32)
    diag_pos = indptr[:-1] + n_low
    indices[diag_pos] = np.arange(n, dtype=np.int32)
    data[diag_pos] = 0.0
    low_next = indptr[:-1].copy()  # next free lower-part slot of every row
    for a, blk in _upper_blocks(v, max_pairs):
        rows = blk.shape[0]
        up_counts = np.diff(blk.indptr)
        if not np.array_equal(up_counts, n_up[a:a + rows]):
            raise RuntimeError("Jaccard assembly: value pass and pattern pass disagree (bug)")
        dest = np.repeat(diag_pos[a:a + rows] + 1 - blk.indptr[:-1], up_counts) + np.arange(blk.nnz, dtype=np.int64)
        indices[dest] = blk.indices
        data[dest] = blk.data
        t = blk.T.tocsr()  # n x rows; row j lists the block rows i holding an entry (i, j)
        del blk
        low_counts = np.diff(t.indptr)
        dest = np.repeat(low_next - t.indptr[:-1], low_counts) + np.arange(t.nnz, dtype=np.int64)
        indices[dest] = t.indices + np.int32(a)
        data[dest] = t.data
        low_next += low_counts
        del t, dest
    if not np.array_equal(low_next, diag_pos):
        raise RuntimeError("Jaccard assembly: mirrored entries do not fill the lower parts (bug)")
    out = sp.csr_matrix((data, indices, indptr), shape=(n, n))
    out.has_sorted_indices = True
    return out


def jaccard_distance(
    features: np.ndarray,
    k1: int = 30,
    k2: int = 6,
    *,
    knn: tuple[np.ndarray, np.ndarray] | None = None,
    index: str = "exact",
    max_pairs: int = 1 << 22,
) -> sp.csr_matrix:
    """SpCL's k-reciprocal Jaccard distance as a symmetric sparse (n x n) float32 csr matrix.

    Stored entries are the pairs whose expanded neighbourhoods overlap; an absent entry means
    distance 1. Values may be exactly 0 and are kept as explicit zeros (the diagonal is always stored
    as 0), so never call ``eliminate_zeros`` on the result. ``knn=(sims, idx)`` from
    :func:`~alreid.clustering.knn.knn_search` (self first, at least ``k1`` columns; extra columns are
    ignored) skips the k-NN search; its ``sims`` (may be None) are reused for the encoding when a spot
    check shows they are these features' inner products. ``index`` picks the faiss index when the
    search runs here (``"exact"`` or ``"hnsw"``). ``max_pairs`` bounds
    the number of candidate pairs materialised at once (memory ~ 24 bytes per pair).
    """
    x = unit_rows(features)
    n = x.shape[0]
    if n == 0:
        return sp.csr_matrix((0, 0), dtype=np.float32)
    if k1 < 1 or k2 < 1:
        raise ValueError(f"k1 and k2 must be >= 1; got k1={k1}, k2={k2}")
    k1 = min(int(k1), n)
    k2 = min(int(k2), k1)
    if knn is None:
        sims, rank = knn_search(x, k1, index=index)
    else:
        sims, rank = knn[0], np.asarray(knn[1])
        if rank.shape[0] != n or rank.shape[1] < k1:
            raise ValueError(f"knn indices have shape {rank.shape}; need ({n}, >= {k1}) for k1={k1}")
    rank = np.ascontiguousarray(rank[:, :k1], dtype=np.int64)
    k_half = int(np.around(k1 / 2))  # SpCL: round half to even, then a top-(k_half + 1) slice
    rec = _reciprocal(rank, k1, n)
    rec_half = _reciprocal(rank, min(k_half + 1, k1), n)
    expanded = _expanded_sets(rec, rec_half)
    del rec, rec_half
    v = _encode(x, expanded, rank, sims)
    del sims
    del expanded
    if k2 != 1:
        v = _query_expand(v, rank, k2)
    del rank
    return _assemble_symmetric(v, max_pairs)
