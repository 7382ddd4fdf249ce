"""Exact (or approximate) inner-product k-nearest-neighbour search with faiss.

Features are L2-normalised, so inner product = cosine similarity and the ranking equals the
Euclidean ranking SpCL uses. The query point itself is returned in column 0 whenever it is among
its own nearest neighbours (always, for the exact index, up to exact ties).
"""

from __future__ import annotations

import numpy as np


def l2_normalise(x: np.ndarray) -> np.ndarray:
    """Row-normalised float32 copy; zero rows stay zero instead of becoming NaN."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return np.ascontiguousarray(x / norms, dtype=np.float32)


def knn_search(
    features: np.ndarray,
    k: int,
    *,
    index: str = "exact",
    batch_size: int = 65536,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """k nearest neighbours of every row of ``features`` among all rows (self included).

    Returns ``(sims, idx)`` of shape (n, k): cosine similarities in descending order and int64
    indices. ``index="exact"`` uses ``IndexFlatIP``; ``"hnsw"`` an HNSW graph for very large n.
    """
    import faiss

    x = np.ascontiguousarray(features, dtype=np.float32)
    n, d = x.shape
    k = int(min(k, n))
    if index == "exact":
        ix = faiss.IndexFlatIP(d)
    elif index == "hnsw":
        ix = faiss.IndexHNSWFlat(d, 32, faiss.METRIC_INNER_PRODUCT)
        ix.hnsw.efSearch = max(64, 2 * k)
        ix.hnsw.efConstruction = 80
    else:
        raise ValueError(f"unknown k-NN index {index!r}; use 'exact' or 'hnsw'")
    ix.add(x)
    sims = np.empty((n, k), dtype=np.float32)
    idx = np.empty((n, k), dtype=np.int64)
    for start in range(0, n, batch_size):
        stop = min(n, start + batch_size)
        s, i = ix.search(x[start:stop], k)
        sims[start:stop] = s
        idx[start:stop] = i
    return sims, idx
