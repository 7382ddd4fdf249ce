"""The two clustering views AAS compares (spec 1.3): DBSCAN on the Jaccard distance (A) and FINCH (B).

DBSCAN runs on the *sparse* Jaccard matrix: a stored entry is a real distance (an explicit zero is a
real zero), an absent entry is distance 1 and therefore never an eps-neighbour. FINCH comes from the
authors' ``finch-clust`` package for the hierarchy; its first partition is, by FINCH's definition,
the weakly connected components of the first-neighbour graph, so that level is computed directly
from a first-neighbour array (ours or FINCH's own), which keeps large n at O(n) memory.
"""

from __future__ import annotations

import contextlib
import io
import warnings

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from alreid.clustering.knn import knn_search


# DBSCAN (view A) ----------------------------------------------------------------------------------
def dbscan_labels(dist: sp.csr_matrix, eps: float = 0.6, min_samples: int = 4) -> np.ndarray:
    """DBSCAN on a sparse precomputed distance matrix (SpCL: eps 0.6, min_samples 4); -1 = noise.

    Only entries <= eps can be neighbours, so the matrix is first cut down to those (explicit zeros
    kept) before sklearn sees it; absent entries are treated as "farther than eps".
    """
    from sklearn.cluster import DBSCAN
    from sklearn.neighbors import sort_graph_by_row_values

    if not sp.issparse(dist):
        raise TypeError("dbscan_labels expects a scipy.sparse distance matrix; use dbscan_cosine for features")
    d = sp.csr_matrix(dist)
    n = d.shape[0]
    if d.shape != (n, n):
        raise ValueError(f"distance matrix must be square; got {d.shape}")
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    near = _entries_at_most(d, eps)
    near = sort_graph_by_row_values(near, copy=False, warn_when_not_sorted=False)
    labels = DBSCAN(eps=eps, min_samples=min_samples, metric="precomputed").fit(near).labels_
    return labels.astype(np.int64)


def _entries_at_most(d: sp.csr_matrix, eps: float, block: int = 1 << 23) -> sp.csr_matrix:
    """The entries <= eps of a csr matrix (explicit zeros kept), float64, scanned in row blocks."""
    n = d.shape[0]
    counts = np.zeros(n, dtype=np.int64)
    cols, vals = [], []
    a = 0
    while a < n:
        b = int(np.searchsorted(d.indptr, d.indptr[a] + block, side="right")) - 1
        b = min(n, max(b, a + 1))
        e0, e1 = d.indptr[a], d.indptr[b]
        data = d.data[e0:e1]
        keep = data <= eps
        rows = np.repeat(np.arange(b - a), np.diff(d.indptr[a:b + 1]))[keep]
        counts[a:b] = np.bincount(rows, minlength=b - a)
        cols.append(d.indices[e0:e1][keep])
        vals.append(data[keep].astype(np.float64))
        a = b
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    return sp.csr_matrix((np.concatenate(vals), np.concatenate(cols), indptr), shape=(n, n))


def dbscan_cosine(features: np.ndarray, eps: float, min_samples: int = 4) -> np.ndarray:
    """DBSCAN on cosine distance 1 - z_i.z_j of the features (fallback when Jaccard is not wanted).

    Neighbourhoods come from an exact inner-product range search (faiss) so memory is the number of
    eps-neighbours, not n^2.
    """
    import faiss

    from alreid.clustering.jaccard import unit_rows

    x = unit_rows(features)
    n, dim = x.shape
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    ix = faiss.IndexFlatIP(dim)
    ix.add(x)
    lims, sims, idx = ix.range_search(x, float(1.0 - eps) - 1e-7)  # sim >= 1 - eps  <=>  dist <= eps
    dist = np.clip(1.0 - sims.astype(np.float64), 0.0, None)
    rows = np.repeat(np.arange(n), np.diff(lims.astype(np.int64)))
    g = sp.csr_matrix((dist, (rows, idx.astype(np.int64))), shape=(n, n))
    return dbscan_labels(g, eps=eps, min_samples=min_samples)


def singletonize(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(labels with every -1 given its own fresh id, renumbered 0..K-1 in order of first appearance; outlier mask).

    SpCL's ``generate_pseudo_labels`` convention: each noise point becomes a one-image cluster.
    """
    labels = np.asarray(labels, dtype=np.int64)
    outliers = labels == -1
    if labels.size == 0:
        return labels.copy(), outliers
    work = labels.copy()
    top = int(labels.max()) + 1 if (~outliers).any() else 0
    work[outliers] = top + np.arange(int(outliers.sum()))
    _, first, inverse = np.unique(work, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")  # id by first appearance, so output is deterministic
    remap = np.empty_like(order)
    remap[order] = np.arange(len(order))
    return remap[inverse].astype(np.int64), outliers


# FINCH (view B) -----------------------------------------------------------------------------------
def first_neighbours(idx: np.ndarray) -> np.ndarray:
    """First neighbour other than the point itself, from k-NN indices (self usually in column 0)."""
    idx = np.asarray(idx)
    n = idx.shape[0]
    if idx.shape[1] < 2:
        raise ValueError("need at least 2 neighbour columns to find a first neighbour")
    me = np.arange(n)
    first = np.where(idx[:, 0] == me, idx[:, 1], idx[:, 0]).astype(np.int64)
    missing = first < 0  # an approximate index may return -1: such a point links only to itself
    first[missing] = me[missing]
    return first


def first_partition(first: np.ndarray) -> np.ndarray:
    """FINCH's first partition: weakly connected components of the graph i -> first[i]."""
    first = np.asarray(first, dtype=np.int64)
    n = len(first)
    g = sp.csr_matrix((np.ones(n, dtype=np.int8), (np.arange(n), first)), shape=(n, n))
    _, labels = connected_components(g, directed=True, connection="weak")
    return labels.astype(np.int64)


def finch_labels(
    features: np.ndarray,
    *,
    level: int | str = 0,
    n_target: int | None = None,
    initial_rank: np.ndarray | None = None,
    distance: str = "cosine",
    ensure_early_exit: bool = True,
    exact_max: int = 5000,
) -> np.ndarray:
    """One FINCH partition (spec 6): ``level`` int = column of FINCH's hierarchy (0 = finest,
    negative counts from the coarsest), ``"match_dbscan"`` = the column whose cluster count is
    closest to ``n_target`` (ties -> finer).

    ``initial_rank`` is the (n,) first-neighbour index of every point (or (n, k) k-NN indices, self
    first, from :func:`knn_search`). Without it, n <= ``exact_max`` lets FINCH compute exact 1-NN
    itself (O(n^2) memory); larger n gets its first neighbours from our faiss k-NN instead. When
    FINCH is handed ``initial_rank`` its ``ensure_early_exit`` pruning is off; in finch-clust 0.2.3, as in
    the original FINCH code, that pruning changes nothing anyway (it zeroes stored entries of a sparse
    adjacency, and scipy's connected components still count a stored zero as an edge), so the hierarchy
    depends only on the first neighbours. Levels above 0 always run the package; level 0 is the
    first-neighbour components.
    """
    x = np.ascontiguousarray(features, dtype=np.float32)
    n = x.shape[0]
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if n == 1:
        return np.zeros(1, dtype=np.int64)
    if level == "match_dbscan":
        if n_target is None:
            raise ValueError("level='match_dbscan' needs n_target (DBSCAN's number of clusters)")
    elif isinstance(level, str) or not isinstance(level, (int, np.integer)):
        raise ValueError(f"level must be an int or 'match_dbscan'; got {level!r}")
    first = _first_from_rank(initial_rank, n)
    if first is None and n > exact_max:
        first = _first_by_knn(x, distance)
    if level == 0 and first is not None:
        return first_partition(first)
    return _finch_package(x, level=level, n_target=n_target, first=first, distance=distance,
                          ensure_early_exit=ensure_early_exit, exact_max=exact_max)


def _first_from_rank(initial_rank: np.ndarray | None, n: int) -> np.ndarray | None:
    if initial_rank is None:
        return None
    r = np.asarray(initial_rank)
    if r.shape[0] != n:
        raise ValueError(f"initial_rank has {r.shape[0]} rows for {n} points")
    if r.ndim == 2:
        return first_neighbours(r) if r.shape[1] > 1 else r[:, 0].astype(np.int64)
    return r.astype(np.int64)


def _first_by_knn(x: np.ndarray, distance: str) -> np.ndarray:
    if distance == "cosine":
        from alreid.clustering.jaccard import unit_rows

        _, idx = knn_search(unit_rows(x), 2)
        return first_neighbours(idx)
    if distance in ("euclidean", "l2"):
        import faiss

        ix = faiss.IndexFlatL2(x.shape[1])
        ix.add(x)
        _, idx = ix.search(x, 2)
        return first_neighbours(idx)
    raise ValueError(f"FINCH distance {distance!r} needs initial_rank above n={x.shape[0]}; use cosine or euclidean")


def _finch_package(x: np.ndarray, *, level: int | str, n_target: int | None, first: np.ndarray | None,
                   distance: str, ensure_early_exit: bool, exact_max: int) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "pynndescent is not installed" on import
        from finch import FINCH

    kwargs = dict(initial_rank=first, distance=distance, ensure_early_exit=ensure_early_exit, verbose=False,
                  ann_threshold=max(int(exact_max), 2), faiss_threshold=max(int(exact_max), 2) + 1)
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        c, num_clust, _ = FINCH(x, **kwargs)
    c = np.asarray(c).reshape(len(x), -1)
    if level == "match_dbscan":
        counts = np.asarray(num_clust[: c.shape[1]])
        col = int(np.argmin(np.abs(counts - int(n_target))))
    else:
        col = int(level)
        if not -c.shape[1] <= col < c.shape[1]:
            raise ValueError(f"FINCH produced {c.shape[1]} partition(s); level {col} does not exist")
    return c[:, col].astype(np.int64)


# convenience for the trial loop -------------------------------------------------------------------
def base_clustering(
    features: np.ndarray,
    *,
    method: str = "jaccard",
    k1: int = 30,
    k2: int = 6,
    eps: float = 0.6,
    min_samples: int = 4,
    knn: tuple[np.ndarray, np.ndarray] | None = None,
    index: str = "exact",
) -> tuple[np.ndarray, np.ndarray, sp.csr_matrix | None]:
    """SpCL's base clustering: (singletonized labels, outlier mask, Jaccard distance or None).

    ``method="jaccard"`` is DBSCAN on the k-reciprocal Jaccard distance; ``"cosine"`` is DBSCAN on
    cosine distance with the same eps (no Jaccard matrix is returned then).
    """
    if method == "jaccard":
        dist = None
        from alreid.clustering.jaccard import jaccard_distance

        dist = jaccard_distance(features, k1, k2, knn=knn, index=index)
        raw = dbscan_labels(dist, eps=eps, min_samples=min_samples)
    elif method == "cosine":
        dist = None
        raw = dbscan_cosine(features, eps=eps, min_samples=min_samples)
    else:
        raise ValueError(f"unknown base clustering {method!r}; use 'jaccard' or 'cosine'")
    labels, outliers = singletonize(raw)
    return labels, outliers, dist
