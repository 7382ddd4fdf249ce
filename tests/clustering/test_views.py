"""DBSCAN on the sparse Jaccard matrix, the cosine fallback, singletons and FINCH partitions."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components
from sklearn.cluster import DBSCAN

from alreid.clustering.jaccard import jaccard_distance
from alreid.clustering.knn import knn_search
from alreid.clustering.views import (base_clustering, dbscan_cosine, dbscan_labels, finch_labels,
                                     first_partition, singletonize)


def clustered(n: int = 400, dim: int = 16, n_ids: int = 25, noise: float = 0.6, seed: int = 0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, n_ids, n)
    x = rng.standard_normal((n_ids, dim))[ids] + noise * rng.standard_normal((n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), ids


def dense_with_absent_one(d: sp.csr_matrix) -> np.ndarray:
    out = np.ones(d.shape)
    coo = d.tocoo()
    out[coo.row, coo.col] = coo.data
    return out


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    pairs = np.unique(np.stack([a, b], axis=1), axis=0)
    return len(pairs) == len(np.unique(a)) == len(np.unique(b))


# DBSCAN --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("eps,min_samples", [(0.6, 4), (0.5, 4), (0.7, 2), (0.3, 6)])
def test_sparse_dbscan_equals_dense_sklearn(eps: float, min_samples: int) -> None:
    x, _ = clustered()
    d = jaccard_distance(x, 20, 6)
    got = dbscan_labels(d, eps=eps, min_samples=min_samples)
    want = DBSCAN(eps=eps, min_samples=min_samples, metric="precomputed").fit(dense_with_absent_one(d)).labels_
    assert np.array_equal(got, want)
    assert (got >= 0).any() and got.dtype == np.int64


def test_explicit_zero_is_a_real_neighbour() -> None:
    # points 0 and 1 are identical (stored 0), point 2 is far from both (absent = 1)
    rows, cols = np.array([0, 0, 1, 1, 2]), np.array([0, 1, 0, 1, 2])
    d = sp.csr_matrix((np.zeros(5, dtype=np.float32), (rows, cols)), shape=(3, 3))
    assert d.nnz == 5
    got = dbscan_labels(d, eps=0.1, min_samples=2)
    assert got.tolist() == [0, 0, -1]
    want = DBSCAN(eps=0.1, min_samples=2, metric="precomputed").fit(dense_with_absent_one(d)).labels_
    assert np.array_equal(got, want)
    # an absent pair never links, even with a huge eps, unless a stored entry does
    assert dbscan_labels(d, eps=0.99, min_samples=2).tolist() == [0, 0, -1]


def test_duplicates_in_jaccard_cluster_together() -> None:
    x, _ = clustered(200, seed=2)
    x[50] = x[49]
    d = jaccard_distance(x, 10, 3)
    lab = dbscan_labels(d, eps=0.05, min_samples=2)
    assert lab[49] == lab[50] != -1


def test_dbscan_cosine_equals_sklearn() -> None:
    x, _ = clustered(300, seed=3)
    for eps in (0.2, 0.35):
        want = DBSCAN(eps=eps, min_samples=4, metric="cosine").fit(x).labels_
        assert same_partition(dbscan_cosine(x, eps=eps), want)
        assert np.array_equal(dbscan_cosine(x, eps=eps) == -1, want == -1)


def test_singletonize() -> None:
    lab, out = singletonize(np.array([5, -1, 5, 2, -1, 2, 7]))
    assert out.tolist() == [False, True, False, False, True, False, False]
    assert lab.tolist() == [0, 1, 0, 2, 3, 2, 4]
    lab, out = singletonize(np.array([-1, -1]))
    assert lab.tolist() == [0, 1] and out.all()


def test_base_clustering() -> None:
    x, ids = clustered(300, noise=0.4, seed=4)
    lab, out, d = base_clustering(x, k1=20, k2=6, knn=knn_search(x, 32))
    assert d is not None and d.shape == (300, 300)
    raw = dbscan_labels(d)
    assert np.array_equal(out, raw == -1)
    assert same_partition(lab[~out], raw[~out]) and len(np.unique(lab[out])) == out.sum()
    assert set(lab.tolist()) == set(range(lab.max() + 1))
    lab2, out2, d2 = base_clustering(x, method="cosine", eps=0.3)
    assert d2 is None and len(lab2) == 300
    with pytest.raises(ValueError):
        base_clustering(x, method="kmeans")


# FINCH ---------------------------------------------------------------------------------------------
def one_nn_components(x: np.ndarray) -> np.ndarray:
    dist = 1 - x.astype(np.float64) @ x.astype(np.float64).T
    np.fill_diagonal(dist, np.inf)
    nn = np.argmin(dist, axis=1)
    n = len(x)
    g = sp.coo_matrix((np.ones(n), (np.arange(n), nn)), shape=(n, n))
    return connected_components(g, directed=True, connection="weak")[1]


def test_finch_level0_is_first_neighbour_components() -> None:
    x, _ = clustered(500, seed=5)
    want = one_nn_components(x)
    assert same_partition(finch_labels(x), want)  # the package's own exact 1-NN path
    _, idx = knn_search(x, 5)
    assert same_partition(finch_labels(x, initial_rank=idx), want)  # k-NN indices, self first
    assert same_partition(finch_labels(x, initial_rank=idx[:, 1]), want)  # a (n,) first-neighbour array
    assert same_partition(finch_labels(x, exact_max=10), want)  # our faiss 1-NN path
    assert same_partition(first_partition(idx[:, 1]), want)


def test_finch_levels_come_from_the_package() -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from finch import FINCH

    x, _ = clustered(600, seed=6)
    c, num_clust, _ = FINCH(x, distance="cosine", ensure_early_exit=True, verbose=False)
    assert c.shape[1] >= 2
    for level in range(c.shape[1]):
        assert np.array_equal(finch_labels(x, level=level), c[:, level])
    assert np.array_equal(finch_labels(x, level=-1), c[:, -1])
    target = num_clust[1] + 1
    assert np.array_equal(finch_labels(x, level="match_dbscan", n_target=target), c[:, 1])
    with pytest.raises(ValueError):
        finch_labels(x, level=c.shape[1])
    with pytest.raises(ValueError):
        finch_labels(x, level="match_dbscan")


def test_finch_is_quiet(capsys: pytest.CaptureFixture[str]) -> None:
    x, _ = clustered(200, seed=7)
    finch_labels(x, level=1)
    finch_labels(x, level=0, initial_rank=knn_search(x, 2)[1])
    assert capsys.readouterr().out == ""


def finch_next_level(x: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Brute-force FINCH step (spec 6.1 step 3): each cluster becomes the mean of its members' original
    vectors; the 1-NN components of the means (exact cosine) merge clusters; mapped back to points."""
    _, inv = np.unique(labels, return_inverse=True)
    means = np.zeros((inv.max() + 1, x.shape[1]))
    np.add.at(means, inv, x.astype(np.float64))
    means /= np.bincount(inv)[:, None]
    return one_nn_components(means / np.linalg.norm(means, axis=1, keepdims=True))[inv]


def test_finch_higher_levels_with_initial_rank_run_without_pynndescent() -> None:
    x, _ = clustered(3000, dim=8, n_ids=100, seed=8)
    _, idx = knn_search(x, 2)
    level0 = first_partition(idx[:, 1])
    assert same_partition(level0, one_nn_components(x))
    want = level0
    for level in (1, 2):  # level 1 has ~720 means: above exact_max, so not the exact-distance path
        lab = finch_labels(x, level=level, initial_rank=idx, exact_max=200)
        want = finch_next_level(x, want)
        assert same_partition(lab, want), level
        assert len(np.unique(lab)) < len(np.unique(level0))
