"""The sparse Jaccard distance against a direct dense transcription of SpCL's algorithm (spec 4.3)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from alreid.clustering.jaccard import jaccard_distance
from alreid.clustering.knn import knn_search


def dense_jaccard(x: np.ndarray, rank: np.ndarray, k1: int, k2: int) -> np.ndarray:
    """Straightforward dense n x n version, float64, one point at a time (test oracle)."""
    n = len(x)

    def reciprocal(i: int, k: int) -> np.ndarray:
        return np.array([j for j in rank[i, :k] if i in rank[j, :k]], dtype=np.int64)

    half = int(np.around(k1 / 2))
    r_full = [reciprocal(i, k1) for i in range(n)]
    r_half = [reciprocal(i, min(half + 1, k1)) for i in range(n)]
    v = np.zeros((n, n))
    for i in range(n):
        expanded = list(r_full[i])
        for c in r_full[i]:
            if len(np.intersect1d(r_half[c], r_full[i])) > 2 / 3 * len(r_half[c]):
                expanded.extend(r_half[c])
        expanded = np.unique(expanded)
        w = np.exp(-(2 - 2 * x[expanded] @ x[i]))
        v[i, expanded] = w / w.sum()
    if k2 != 1:
        v = np.stack([v[rank[i, :k2]].mean(axis=0) for i in range(n)])
    s = np.minimum(v[:, None, :], v[None, :, :]).sum(axis=-1)
    return np.maximum(1 - s / (2 - s), 0.0)


def clustered(n: int, dim: int = 16, n_ids: int = 20, noise: float = 0.7, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_ids, dim))
    x = centres[rng.integers(0, n_ids, n)] + noise * rng.standard_normal((n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def as_dense(d: sp.csr_matrix) -> np.ndarray:
    """Absent entries mean distance 1."""
    out = np.ones(d.shape)
    coo = d.tocoo()
    out[coo.row, coo.col] = coo.data
    return out


def exact_rank(x: np.ndarray, k: int) -> np.ndarray:
    sims = x.astype(np.float64) @ x.astype(np.float64).T
    return np.argsort(-sims, axis=1, kind="stable")[:, :k]


@pytest.mark.parametrize("k1,k2", [(30, 6), (20, 1), (10, 3), (7, 7), (13, 4)])
def test_matches_dense_reference(k1: int, k2: int) -> None:
    x = clustered(240, seed=k1)
    rank = exact_rank(x, 32)
    assert np.all(rank[:, 0] == np.arange(len(x)))
    expected = dense_jaccard(x.astype(np.float64), rank[:, :k1], k1, k2)
    got = jaccard_distance(x, k1, k2, knn=(None, rank))  # extra knn columns are ignored
    assert isinstance(got, sp.csr_matrix) and got.dtype == np.float32
    np.testing.assert_allclose(as_dense(got), expected, atol=1e-5, rtol=0)
    # every pair with overlapping supports is stored; nothing else is
    coo = got.tocoo()
    stored = np.zeros(got.shape, dtype=bool)
    stored[coo.row, coo.col] = True
    assert not np.any(~stored & (expected < 1 - 1e-5))
    assert got.nnz <= np.sum(expected < 1)


def test_symmetric_with_stored_zero_diagonal() -> None:
    x = clustered(300, seed=3)
    d = jaccard_distance(x, 20, 6)
    t = d.T.tocsr()
    t.sort_indices()
    assert np.array_equal(d.indptr, t.indptr) and np.array_equal(d.indices, t.indices)
    assert np.array_equal(d.data, t.data)  # exactly symmetric, same stored pattern
    diag = d.diagonal()
    assert np.all(diag == 0)
    rows = np.repeat(np.arange(d.shape[0]), np.diff(d.indptr))
    assert np.sum(rows == d.indices) == d.shape[0]  # every diagonal entry is stored (explicit 0)
    assert d.data.min() >= 0 and d.data.max() <= 1
    assert d.has_sorted_indices


def test_identical_points_keep_an_explicit_zero() -> None:
    x = clustered(200, seed=4)
    x[101] = x[100]
    d = jaccard_distance(x, 10, 3)
    row = d.getrow(100)
    assert 101 in row.indices
    assert row.data[list(row.indices).index(101)] == pytest.approx(0.0, abs=1e-6)


def test_own_knn_equals_given_knn() -> None:
    x = clustered(250, seed=5)
    a = jaccard_distance(x, 15, 4)
    b = jaccard_distance(x, 15, 4, knn=knn_search(x, 40))
    assert (abs(a - b)).max() < 1e-6
    with pytest.raises(ValueError):
        jaccard_distance(x, 15, 4, knn=knn_search(x, 10))


def test_knn_similarities_are_reused_only_when_they_match() -> None:
    x = clustered(250, seed=8)
    sims, idx = knn_search(x, 32)
    want = jaccard_distance(x, 20, 6, knn=(None, idx))  # every dot product computed from x
    for given in (sims, 0.5 * sims):  # the second fails the spot check and is ignored
        got = jaccard_distance(x, 20, 6, knn=(given, idx))
        assert got.nnz == want.nnz and (abs(got - want)).max() < 1e-6


def test_sparse_for_separated_clusters_and_unnormalised_input() -> None:
    x = clustered(600, dim=32, n_ids=40, noise=0.2, seed=6)
    d = jaccard_distance(3.0 * x, 10, 3)  # scale does not matter: features are L2-normalised
    assert d.nnz < 0.2 * 600 * 600
    np.testing.assert_allclose(as_dense(d), as_dense(jaccard_distance(x, 10, 3)), atol=1e-6)


def test_small_blocks_give_the_same_answer() -> None:
    x = clustered(200, seed=7)
    a = jaccard_distance(x, 12, 4)
    b = jaccard_distance(x, 12, 4, max_pairs=1000)
    assert (abs(a - b)).max() < 1e-6 and a.nnz == b.nnz
