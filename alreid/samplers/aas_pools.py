"""The pools of Ambiguity-Aware Sampling as pure array functions (spec §1.5-1.9).

Kept apart from the sampler class so that every step can be checked against a brute-force version
on hand-made label vectors, without features, clusterings or a constraint store.

Conventions
- ``a``/``b``: label vectors of the two views (any ints; compacted internally).
- ``dist`` (Eq. 2 and the medoid): the sparse Jaccard distance d_J when a csr matrix is given
  (absent entries = 1, explicit zeros are real zeros), else cosine distance. Exact ties are broken
  by cosine distance, then by the smaller (u, v) - so results are deterministic. The closest-pair
  search compares (dist, cosine distance) at float32 precision (d_J is stored as float32).
- ``sim`` (U_os ranking, threshold and Eq. 4): 1 - d_J (absent = 0) or cosine.
- d_J is symmetric (SpCL's min-based overlap); where a routine reads one orientation it says so.
- Pairs are int64 rows (u, v) with u < v.
- Cost: the d_J matrix is only read row-block-wise through scipy's C indexing (rows of region
  members for U_us and the medoid criterion, medoid rows for U_os); nothing n x n is ever dense.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

#: pair types of U_us, indexed by the number of outlier endpoints (spec §1.7)
PAIR_TYPES = ("ii", "io", "oo")
_ALPHA_FLOOR = 1e-6


# small helpers -------------------------------------------------------------------------------------
def compact(labels: np.ndarray) -> np.ndarray:
    """Labels renumbered 0..K-1 (int64), so they can index arrays."""
    return np.unique(np.asarray(labels), return_inverse=True)[1].reshape(-1).astype(np.int64)


def rowdot(x: np.ndarray, u: np.ndarray, v: np.ndarray, y: np.ndarray | None = None) -> np.ndarray:
    """x[u[t]] . y[v[t]] for every t, in chunks so that d=2048 features never blow up memory."""
    y = x if y is None else y
    out = np.empty(len(u), dtype=np.float64)
    step = max(1024, (1 << 22) // max(1, x.shape[1]))
    for s in range(0, len(u), step):
        e = s + step
        out[s:e] = np.einsum("ij,ij->i", x[u[s:e]], y[v[s:e]], dtype=np.float64)
    return out


def first_per_group(keys_in_order: np.ndarray) -> np.ndarray:
    """Positions of the first occurrence of every key (keys already in the wanted order)."""
    if len(keys_in_order) == 0:
        return np.zeros(0, dtype=np.int64)
    _, first = np.unique(keys_in_order, return_index=True)  # stable: the first occurrence
    return first


def as_csr(d: sp.spmatrix | sp.sparray) -> sp.csr_matrix:
    """csr view without touching stored entries (explicit zeros stay)."""
    return d if isinstance(d, (sp.csr_matrix, sp.csr_array)) else sp.csr_matrix(d)


def row_entries(d: sp.csr_matrix, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(position in ``rows``, column, value) of every stored entry of those rows, explicit zeros kept.

    Row gathering is scipy's C loop; only the returned entries are touched.
    """
    sub = d[np.asarray(rows, dtype=np.int64)]
    pos = np.repeat(np.arange(sub.shape[0], dtype=np.int64), np.diff(sub.indptr))
    return pos, sub.indices.astype(np.int64), np.asarray(sub.data, dtype=np.float64)


def csr_values(d: sp.csr_matrix, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """d[u, v] with absent entries read as 1 and explicit zeros as 0."""
    u = np.asarray(u, dtype=np.int64)
    v = np.asarray(v, dtype=np.int64)
    if len(u) == 0:
        return np.zeros(0)
    vals = np.asarray(d[u, v], dtype=np.float64).reshape(-1)
    zero = np.flatnonzero(vals == 0)
    if len(zero):  # 0 is either an explicit zero or an absent pair: look at those rows' structure
        rows = np.unique(u[zero])
        pos, col, _ = row_entries(d, rows)
        n = np.int64(d.shape[1])
        keys = np.sort(pos * n + col)
        q = np.searchsorted(rows, u[zero]) * n + v[zero]
        at = np.minimum(np.searchsorted(keys, q), max(len(keys) - 1, 0))
        present = (keys[at] == q) if len(keys) else np.zeros(len(q), bool)
        vals[zero[~present]] = 1.0
    return vals


# step A: regions of uncertainty ----------------------------------------------------------------------
@dataclass
class Regions:
    """Regions of uncertainty: ``region[i]`` in 0..count-1, or -1 for images of consistent clusters."""

    region: np.ndarray
    count: int
    size: np.ndarray  # images per region
    alpha: np.ndarray  # 1 - |A+ ∩ B+| / |A+ ∪ B+| within the region (floored)
    a: np.ndarray  # compacted labels of view A
    b: np.ndarray  # compacted labels of view B


def find_regions(a: np.ndarray, b: np.ndarray) -> Regions:
    """Transitive closure of partially overlapping A/B clusters (spec §1.5), via the contingency table.

    A contingency cell (p, q) is "consistent" iff A-cluster p and B-cluster q are the same set. If a
    cluster is not identical to a partner, none of its cells is consistent, so joining the two ends of
    every inconsistent cell gives exactly the components of the 0 < IoU < 1 relation.
    """
    a, b = compact(a), compact(b)
    n = len(a)
    if n == 0:
        z = np.zeros(0, np.int64)
        return Regions(z, 0, z, np.zeros(0), a, b)
    ka, kb = int(a.max()) + 1, int(b.max()) + 1
    cells, cell_n = np.unique(a * np.int64(kb) + b, return_counts=True)
    cp, cq = cells // kb, cells % kb
    size_a, size_b = np.bincount(a, minlength=ka), np.bincount(b, minlength=kb)
    bad = ~((cell_n == size_a[cp]) & (cell_n == size_b[cq]))
    g = sp.coo_matrix((np.ones(int(bad.sum())), (cp[bad], ka + cq[bad])), shape=(ka + kb, ka + kb))
    _, comp = connected_components(g, directed=False)
    in_region = np.zeros(ka, dtype=bool)
    in_region[cp[bad]] = True
    comp_img = np.where(in_region[a], comp[a], -1)
    # number regions by their smallest image index (stable, readable ids)
    members = np.flatnonzero(comp_img >= 0)
    uniq, first = np.unique(comp_img[members], return_index=True)
    rank = np.empty(len(uniq), dtype=np.int64)
    rank[np.argsort(members[first], kind="stable")] = np.arange(len(uniq))
    region = np.full(n, -1, dtype=np.int64)
    region[members] = rank[np.searchsorted(uniq, comp_img[members])]
    count = len(uniq)
    size = np.bincount(region[members], minlength=count)
    # region ambiguity from the contingency table: |A+| = sum C(|A_p|,2), |A+ ∩ B+| = sum C(N_pq,2)
    c2 = lambda x: x.astype(np.float64) * (x - 1) / 2.0  # noqa: E731
    # every image of a cluster lies in the same region (or none), so any image names the region
    reg_of_a = np.full(ka, -1, dtype=np.int64)
    reg_of_a[a] = region
    reg_of_b = np.full(kb, -1, dtype=np.int64)
    reg_of_b[b] = region
    ca, cb = np.flatnonzero(reg_of_a >= 0), np.flatnonzero(reg_of_b >= 0)
    reg_a, reg_b, cell_reg = reg_of_a[ca], reg_of_b[cb], reg_of_a[cp]
    pa = np.bincount(reg_a, weights=c2(size_a[ca]), minlength=count)
    pb = np.bincount(reg_b, weights=c2(size_b[cb]), minlength=count)
    inreg = cell_reg >= 0
    pab = np.bincount(cell_reg[inreg], weights=c2(cell_n[inreg]), minlength=count)
    union = pa + pb - pab
    with np.errstate(invalid="ignore", divide="ignore"):
        alpha = np.where(union > 0, 1.0 - pab / np.where(union > 0, union, 1.0), 1.0)
    alpha = np.maximum(alpha, _ALPHA_FLOOR)
    return Regions(region, count, size, alpha, a, b)


def region_order(region: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Region members sorted by (region, index) and the start offset of every region (count + 1)."""
    members = np.flatnonzero(region >= 0)
    members = members[np.argsort(region[members], kind="stable")]
    starts = np.searchsorted(region[members], np.arange(count + 1))
    return members, starts


# step B: medoids and U_os ----------------------------------------------------------------------------
def region_medoids(x: np.ndarray, reg: Regions, affinity: np.ndarray | None) -> np.ndarray:
    """One medoid per region: argmin_i sum_{j in S} dist(i, j), ties by cosine then index.

    Cosine: sum_j (1 - x_i.x_j) = |S| - x_i . sum_j x_j, so the medoid is argmax x_i . s_k (O(|S| d)).
    d_J: sum_j d_J(i, j) = |S| - affinity_i with affinity_i = sum over stored j in S of 1 - d_J(i, j)
    (see :class:`RegionScan`), so the medoid is argmax affinity - no dense block ever.
    """
    m = reg.count
    if m == 0:
        return np.zeros(0, dtype=np.int64)
    members = np.flatnonzero(reg.region >= 0)
    r = reg.region[members]
    ind = sp.csr_matrix((np.ones(len(members), dtype=np.float32), (r, members)), shape=(m, len(x)))
    sums = np.asarray(ind @ x, dtype=np.float32)
    cos_score = rowdot(x, members, r, sums)
    jac_score = affinity[members] if affinity is not None else np.zeros(len(members))
    order = np.lexsort((members, -cos_score, -jac_score, r))
    first = first_per_group(r[order])
    return members[order[first]]


def medoid_pairs(x: np.ndarray, medoids: np.ndarray, d: sp.csr_matrix | None, *, k_max: int,
                 s_min: float) -> tuple[np.ndarray, np.ndarray]:
    """U_os: each medoid with its k_max most similar other medoids, kept when sim >= s_min.

    Candidates are the stored d_J entries between medoids (exact for s_min > 0, since an absent pair
    has sim 0) plus, where absent pairs can qualify (cosine sim, or s_min = 0), each medoid's k_max
    best-cosine medoids and any tied with the k_max-th - enough to make the ranking exact. Ranking: sim
    desc, cosine desc, index.
    """
    medoids = np.asarray(medoids, dtype=np.int64)
    m = len(medoids)
    empty = (np.zeros((0, 2), np.int64), np.zeros(0))
    if m < 2 or k_max < 1:
        return empty
    xm = np.ascontiguousarray(x[medoids])
    rows, cols, sims, stored = [], [], [], []
    if d is not None:
        sub = d[medoids][:, medoids].tocoo()  # scipy's C loops; explicit zeros are kept
        keep = sub.row != sub.col
        rr, cc = sub.row[keep].astype(np.int64), sub.col[keep].astype(np.int64)
        rows.append(rr), cols.append(cc), sims.append(1.0 - np.asarray(sub.data[keep], dtype=np.float64))
        stored.append(np.ones(len(rr), bool))
    if d is None or s_min <= 0:
        # if a row has r < k_max stored entries with sim > 0, its other picks are the k_max - r best-cosine
        # sim-0 medoids, and those are all among its k_max best-cosine medoids: k_max candidates suffice
        kc = min(m - 1, k_max)
        step = max(1, (1 << 22) // m)
        for s in range(0, m, step):
            block = xm[s:s + step] @ xm.T
            block[np.arange(len(block)), np.arange(s, s + len(block))] = -np.inf
            # the kc-th largest value of each row (kc <= m - 1: never the diagonal's -inf); every value tied
            # with it is a candidate too, as argpartition alone would keep an arbitrary subset of exact ties
            kth = np.take_along_axis(block, np.argpartition(-block, kc - 1, axis=1)[:, kc - 1:kc], axis=1)
            i, j = np.nonzero(block >= kth)
            rows.append(i + s), cols.append(j)
            sims.append(np.zeros(len(i)) if d is not None else block[i, j])
            stored.append(np.zeros(len(i), bool))
    rr, cc = np.concatenate(rows), np.concatenate(cols)
    sim, st = np.concatenate(sims).astype(np.float64), np.concatenate(stored)
    # one candidate per (row, col); a stored d_J value wins over a cosine-only candidate
    key = rr * np.int64(m) + cc
    if d is not None and s_min <= 0:
        order = np.lexsort((-sim, ~st, key))
        sel = order[first_per_group(key[order])]
        rr, cc, sim = rr[sel], cc[sel], sim[sel]
    # below s_min a candidate can never be kept, and it ranks after every candidate that can:
    # dropping it first leaves the top-k_max-then-threshold result unchanged
    keep = sim >= s_min
    rr, cc, sim = rr[keep], cc[keep], sim[keep]
    if len(rr) == 0:
        return empty
    cos = rowdot(xm, rr, cc)
    order = np.lexsort((cc, -cos, -sim, rr))
    rr, cc, sim = rr[order], cc[order], sim[order]
    rank = np.arange(len(rr)) - np.searchsorted(rr, rr, side="left")
    keep = (rank < k_max) & (sim >= s_min)
    u, v, sim = medoids[rr[keep]], medoids[cc[keep]], sim[keep]
    if len(u) == 0:
        return empty
    lo, hi = np.minimum(u, v), np.maximum(u, v)
    key = lo * np.int64(len(x)) + hi
    order = np.lexsort((-sim, key))  # d_J is symmetric; should it not be, keep the larger sim
    sel = order[first_per_group(key[order])]
    return np.stack([lo[sel], hi[sel]], axis=1), sim[sel]


# step C: U_us ---------------------------------------------------------------------------------------
def order_key(dist: np.ndarray, cosd: np.ndarray) -> np.ndarray:
    """One int64 per pair that sorts like (dist, cosine distance), both at float32 precision.

    The bit pattern of a non-negative float32 read as an integer is monotone in its value, so
    (bits(dist) << 32) | bits(cosd) orders pairs lexicographically with a single integer compare.
    """
    def bits(v: np.ndarray) -> np.ndarray:
        f = np.maximum(np.asarray(v, dtype=np.float32), np.float32(0)) + np.float32(0)  # no -0.0
        return f.view(np.int32).astype(np.int64)

    return (bits(dist) << 32) | bits(cosd)


def closest_cross_pairs(key: np.ndarray, u: np.ndarray, v: np.ndarray, a: np.ndarray,
                        b: np.ndarray) -> np.ndarray:
    """Indices of I = {closest pair of each A-cluster pair whose ends share a B-cluster} ∪ (B <-> A).

    ``key`` orders the candidate pairs (see :func:`order_key`); ``u``/``v`` must be enumerated in
    lexicographic order so that exact ties go to the smaller pair. A closest pair of two A-clusters
    is never in A+, so it lies in A+ Δ B+ iff B joins its ends (spec §1.7, equivalent form).
    """
    order = np.argsort(key, kind="stable")
    out = []
    for lab, other in ((a, b), (b, a)):
        lu, lv = lab[u[order]], lab[v[order]]
        cross = np.flatnonzero(lu != lv)
        k = np.int64(int(lab.max()) + 1) if len(lab) else np.int64(1)
        group = np.minimum(lu, lv)[cross] * k + np.maximum(lu, lv)[cross]
        sel = order[cross[first_per_group(group)]]
        out.append(sel[other[u[sel]] == other[v[sel]]])
    return np.concatenate(out)


def dense_closest_cross_pairs(keymat: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`closest_cross_pairs` on a full symmetric key block (local indices, local order = index order).

    A group-argmin by segmented minima: permute the block by cluster, ``minimum.reduceat`` along both
    axes gives every cluster pair's smallest key, then only the cells equal to their group's minimum
    (the argmin and its exact ties) are materialised; ties go to the smallest (u, v).
    """
    us, vs = [], []
    for lab, other in ((a, b), (b, a)):
        perm = np.argsort(lab, kind="stable")
        ls = lab[perm]
        starts = np.flatnonzero(np.r_[True, ls[1:] != ls[:-1]])
        if len(starts) < 2:
            continue
        gid = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, len(ls)]))
        kp = keymat[np.ix_(perm, perm)]
        gmin = np.minimum.reduceat(np.minimum.reduceat(kp, starts, axis=1), starts, axis=0)
        hit = kp == gmin[gid][:, gid]
        hit &= gid[:, None] != gid[None, :]
        i, j = np.nonzero(hit)
        u, v = perm[i], perm[j]
        keep = u < v
        u, v, gi, gj = u[keep], v[keep], gid[i[keep]], gid[j[keep]]
        group = np.minimum(gi, gj) * np.int64(len(starts)) + np.maximum(gi, gj)
        order = np.lexsort((v, u, group))
        sel = order[first_per_group(group[order])]
        sel = sel[other[u[sel]] == other[v[sel]]]
        us.append(u[sel]), vs.append(v[sel])
    if not us:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(us), np.concatenate(vs)


@dataclass
class RegionScan:
    """What one pass over the regions' distances yields.

    ``pairs`` (u < v, lexicographic) = U_us with the ``region`` and ``dist`` of each pair;
    ``affinity[i]`` = sum over stored d_J entries j != i of i's region of 1 - d_J(i, j) (None under
    cosine dist), the medoid criterion; ``approx`` = number of regions solved on k-NN edges only.
    """

    pairs: np.ndarray
    region: np.ndarray
    dist: np.ndarray
    affinity: np.ndarray | None
    approx: int


def _pack(sizes: np.ndarray, small: np.ndarray, pack: int) -> list[tuple[int, int]]:
    """Greedy runs of consecutive small regions holding at most ``pack`` images (or one region)."""
    batches, k = [], 0
    while k < len(small):
        r0, total, k2 = small[k], 0, k
        while k2 < len(small) and small[k2] == r0 + (k2 - k) and (total + sizes[small[k2]] <= pack or k2 == k):
            total += sizes[small[k2]]
            k2 += 1
        batches.append((int(r0), int(small[k2 - 1]) + 1))
        k = k2
    return batches


def scan_regions(x: np.ndarray, reg: Regions, d: sp.csr_matrix | None, *, dense_cap: int,
                 knn_idx: np.ndarray | None = None, pack: int = 64, row_chunk: int = 4096) -> RegionScan:
    """U_us = union of I_k (Eq. 1-3), plus the d_J medoid affinities read on the way.

    dist = d_J (absent = 1) when ``d`` is given, else cosine distance; ties broken by cosine, then
    by the smaller pair. Regions of at most ``dense_cap`` images are solved exactly from their full
    distance block (:func:`_scan_dense`); larger regions only consider their k-NN edges
    (:func:`_scan_knn_edges`). Only the rows of region members are read from ``d``, block by block.
    """
    n = len(x)
    members, starts = region_order(reg.region, reg.count)
    sizes = np.diff(starts)
    affinity = np.zeros(n) if d is not None else None
    found = _scan_dense(x, reg, d, members, starts, np.flatnonzero(sizes <= dense_cap), pack, affinity)
    large = np.flatnonzero(sizes > dense_cap)
    if len(large):
        if knn_idx is None:
            raise ValueError("regions larger than dense_cap need k-NN lists (knn_idx)")
        rows = np.concatenate([members[starts[r]:starts[r + 1]] for r in large])
        found.append(_scan_knn_edges(x, reg, d, rows, knn_idx, row_chunk, affinity))
    if not found:
        z = np.zeros(0, np.int64)
        return RegionScan(np.zeros((0, 2), np.int64), z, np.zeros(0), affinity, int(len(large)))
    u, v, dd = (np.concatenate(part) for part in zip(*found))
    order = np.lexsort((v, u))
    pairs = np.stack([u[order], v[order]], axis=1).astype(np.int64)
    return RegionScan(pairs, reg.region[pairs[:, 0]].astype(np.int64), dd[order], affinity, int(len(large)))


def _scan_dense(x: np.ndarray, reg: Regions, d: sp.csr_matrix | None, members: np.ndarray, starts: np.ndarray,
                small: np.ndarray, pack: int, affinity: np.ndarray | None
                ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Exact I_k of the small regions, from full distance blocks of consecutive regions packed up to
    ``pack`` images (a "closest pair" of two clusters from different regions is dropped by the
    other-view test, as no cluster spans two regions). Fills ``affinity`` of their members."""
    out = []
    for r0, r1 in _pack(np.diff(starts), small, pack):
        idx = members[starts[r0]:starts[r1]]
        if len(idx) < 2:
            continue
        xb = x[idx]
        cosd = 1.0 - xb @ xb.T
        if d is not None:
            sub = d[idx][:, idx].tocoo()  # local coordinates; explicit zeros kept
            lreg = reg.region[idx]
            keep = (sub.row != sub.col) & (lreg[sub.row] == lreg[sub.col])
            lr, lc, val = sub.row[keep], sub.col[keep], np.asarray(sub.data[keep], dtype=np.float32)
            affinity[idx] = np.bincount(lr, weights=1.0 - val.astype(np.float64), minlength=len(idx))
            block = np.ones((len(idx), len(idx)), dtype=np.float32)
            block[lr, lc] = val
            block = np.minimum(block, block.T)
        else:
            block = cosd
        key = order_key(block, cosd)
        key = np.minimum(key, key.T)  # BLAS need not give bitwise-symmetric x x^T
        lu, lv = dense_closest_cross_pairs(key, reg.a[idx], reg.b[idx])
        out.append((idx[lu], idx[lv], block[lu, lv].astype(np.float64)))
    return out


def _scan_knn_edges(x: np.ndarray, reg: Regions, d: sp.csr_matrix | None, rows: np.ndarray, knn_idx: np.ndarray,
                    row_chunk: int, affinity: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Approximate I_k of the large regions (members ``rows``): only their k-NN edges are candidate
    pairs, since a cluster pair's true closest pair may lie outside them. Fills ``affinity`` of ``rows``."""
    n = len(x)
    a, b = reg.a, reg.b
    loc = np.zeros(n, dtype=np.int64)
    eu_all, ev_all, ed_all = [], [], []
    for s0 in range(0, len(rows), row_chunk):
        chunk = rows[s0:s0 + row_chunk]
        nb = np.asarray(knn_idx[chunk], dtype=np.int64)
        eu = np.repeat(chunk, nb.shape[1])
        ev = nb.reshape(-1)
        ok = (ev >= 0) & (ev != eu)
        eu, ev = eu[ok], ev[ok]
        ok = reg.region[ev] == reg.region[eu]
        eu, ev = eu[ok], ev[ok]
        if d is not None:
            pos, col, val = row_entries(d, chunk)
            inreg = (reg.region[col] == reg.region[chunk[pos]]) & (col != chunk[pos])
            affinity[chunk] = np.bincount(pos[inreg], weights=1.0 - val[inreg], minlength=len(chunk))
            ekeys = pos * np.int64(n) + col
            order = np.argsort(ekeys, kind="stable")
            ekeys, val = ekeys[order], val[order]
            loc[chunk] = np.arange(len(chunk))
            q = loc[eu] * np.int64(n) + ev
            at = np.minimum(np.searchsorted(ekeys, q), max(len(ekeys) - 1, 0))
            hit = (ekeys[at] == q) if len(ekeys) else np.zeros(len(q), bool)
            ed = np.where(hit, val[at] if len(ekeys) else 1.0, 1.0)
        else:
            ed = np.zeros(len(eu))
        eu_all.append(eu), ev_all.append(ev), ed_all.append(ed)
    eu, ev, ed = np.concatenate(eu_all), np.concatenate(ev_all), np.concatenate(ed_all)
    gu, gv = np.minimum(eu, ev), np.maximum(eu, ev)
    ekey = gu * np.int64(n) + gv
    order = np.lexsort((ed, ekey))  # an edge seen from both ends: keep the smaller d_J
    sel = order[first_per_group(ekey[order])]  # ... and lexicographic order
    gu, gv, ed = gu[sel], gv[sel], ed[sel]
    cosd = 1.0 - rowdot(x, gu, gv)
    dist = ed if d is not None else cosd
    sel = closest_cross_pairs(order_key(dist, cosd), gu, gv, a, b)
    return gu[sel], gv[sel], np.asarray(dist, dtype=np.float64)[sel]


# step D: the sampling distribution ----------------------------------------------------------------------
def us_conditional(types: np.ndarray, preg: np.ndarray, reg: Regions, sims: np.ndarray, *,
                   pi_mode: str | list | tuple = "uniform", rho_mode: str = "disagreement",
                   omega_mode: str = "uniform") -> np.ndarray:
    """P(y | U_us) = pi_i * rho_{k|i} * omega_{y|ik} (Eq. 5, factors of spec §1.8).

    Each factor is a proper conditional over non-empty cells, so the result sums to 1 unless a fixed
    pi puts all its mass on empty types (then it is all zeros and U_us carries no mass).
    """
    m = len(types)
    if m == 0:
        return np.zeros(0)
    nreg = max(reg.count, int(preg.max()) + 1)
    cell = types * np.int64(nreg) + preg
    n_ik = np.bincount(cell, minlength=3 * nreg).reshape(3, nreg).astype(np.float64)
    n_i = n_ik.sum(axis=1)
    nonempty = n_i > 0
    if isinstance(pi_mode, str) and pi_mode == "uniform":
        pi = nonempty / nonempty.sum()
    elif isinstance(pi_mode, str) and pi_mode == "proportional":
        pi = n_i / n_i.sum()
    else:
        pi = np.asarray(pi_mode, dtype=np.float64) * nonempty
        pi = pi / pi.sum() if pi.sum() > 0 else pi
    if rho_mode == "disagreement":
        base = np.broadcast_to(np.pad(reg.alpha, (0, nreg - reg.count), constant_values=1.0), (3, nreg))
    elif rho_mode == "count":
        base = n_ik
    elif rho_mode == "size":
        base = np.broadcast_to(np.pad(reg.size.astype(np.float64), (0, nreg - reg.count), constant_values=1.0),
                               (3, nreg))
    else:
        raise ValueError(f"unknown rho_mode {rho_mode!r}")
    w = base * (n_ik > 0)
    tot = w.sum(axis=1, keepdims=True)
    rho = np.divide(w, tot, out=np.zeros_like(w), where=tot > 0)
    if omega_mode == "uniform":
        omega = 1.0 / n_ik.reshape(-1)[cell]
    elif omega_mode == "sim":
        s = np.clip(np.asarray(sims, dtype=np.float64), 0.0, None)
        ssum = np.bincount(cell, weights=s, minlength=3 * nreg)[cell]
        omega = np.where(ssum > 0, s / np.where(ssum > 0, ssum, 1.0), 1.0 / n_ik.reshape(-1)[cell])
    else:
        raise ValueError(f"unknown omega_mode {omega_mode!r}")
    return pi[types] * rho.reshape(-1)[cell] * omega


def mixture(os_pairs: np.ndarray, p_os: np.ndarray, us_pairs: np.ndarray, p_us: np.ndarray, epsilon: float,
            n: int) -> tuple[np.ndarray, np.ndarray, float]:
    """U = U_os ∪ U_us with P = eps_eff P(.|U_os) + (1 - eps_eff) P(.|U_us) (Eq. 6).

    eps_eff = 0 when U_os carries no mass, 1 when U_us carries none; a pair in both pools gets both
    terms. Returns (pairs, P, eps_eff); P sums to 1 unless both pools are empty.
    """
    p_os = np.asarray(p_os, dtype=np.float64)
    p_us = np.asarray(p_us, dtype=np.float64)
    mass_os, mass_us = p_os.sum() if len(p_os) else 0.0, p_us.sum() if len(p_us) else 0.0
    if mass_os <= 0 and mass_us <= 0:
        return np.zeros((0, 2), np.int64), np.zeros(0), float(epsilon)
    eps = 0.0 if mass_os <= 0 else 1.0 if mass_us <= 0 else float(epsilon)
    pairs = np.concatenate([os_pairs.reshape(-1, 2), us_pairs.reshape(-1, 2)]).astype(np.int64)
    w = np.concatenate([eps * (p_os / mass_os if mass_os > 0 else p_os),
                        (1.0 - eps) * (p_us / mass_us if mass_us > 0 else p_us)])
    key = pairs[:, 0] * np.int64(n) + pairs[:, 1]
    uniq, first, inv = np.unique(key, return_index=True, return_inverse=True)
    prob = np.bincount(inv.reshape(-1), weights=w, minlength=len(uniq))
    order = np.argsort(first, kind="stable")  # keep U_os first, then U_us, as built
    return pairs[first[order]], prob[order] / prob.sum(), eps


def draw(prob: np.ndarray, budget: int, rng: np.random.Generator, mode: str = "without_replacement") -> np.ndarray:
    """Indices of m = min(budget, #pairs with P > 0) pairs drawn proportionally to P.

    ``with_replacement_dedup`` draws m times with replacement and keeps the distinct pairs (cheaper
    conceptually, may return fewer than m).
    """
    positive = int(np.count_nonzero(prob > 0))
    m = min(int(budget), positive)
    if m == 0:
        return np.zeros(0, dtype=np.int64)
    p = prob / prob.sum()
    if mode == "without_replacement":
        return rng.choice(len(p), size=m, replace=False, p=p).astype(np.int64)
    if mode == "with_replacement_dedup":
        idx = rng.choice(len(p), size=m, replace=True, p=p)
        _, first = np.unique(idx, return_index=True)
        return idx[np.sort(first)].astype(np.int64)
    raise ValueError(f"unknown draw mode {mode!r}")
