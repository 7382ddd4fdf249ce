"""GBAS: spread anchors, nearest-neighbour positives, negatives outside the eps-ball, the budget.

The small problem builders below are shared with the LBAS and NIS tests.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from alreid.constraints import ConstraintStore
from alreid.errors import ConfigError
from alreid.clustering.settings import ClusteringSettings
from alreid.samplers.base import NeighbourCache, SamplingContext
from alreid.samplers.gbas import GBASSampler


def blobs(n_ids: int = 8, per_id: int = 6, dim: int = 16, noise: float = 0.5, seed: int = 0):
    """L2-normalised features of ``n_ids`` identities and their identity labels."""
    rng = np.random.default_rng(seed)
    ids = np.repeat(np.arange(n_ids), per_id)
    x = rng.standard_normal((n_ids, dim))[ids] + noise * rng.standard_normal((len(ids), dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), ids


def context(x: np.ndarray, labels: np.ndarray, outliers: np.ndarray | None = None, *,
            store: ConstraintStore | None = None, eps: float = 0.6, jaccard=None) -> SamplingContext:
    """A context with a given clustering; outliers get singleton labels, as in the trial."""
    n = len(x)
    outliers = np.zeros(n, bool) if outliers is None else np.asarray(outliers, bool)
    labels = np.asarray(labels).copy()
    labels[outliers] = labels.max() + 1 + np.arange(outliers.sum())
    cache = NeighbourCache(x)
    if jaccard is not None:
        cache.get(("jaccard", 30, 6), lambda: jaccard)
    store = ConstraintStore(n) if store is None else store
    return SamplingContext(features=x, labels=labels, outliers=outliers, constraints=store, neighbours=cache, cycle=1,
                           clustering=ClusteringSettings(eps=eps))


def triplets(pairs: np.ndarray) -> list[tuple[int, int, int]]:
    """(anchor, positive, negative) from consecutive pair rows that share the anchor."""
    assert len(pairs) % 2 == 0
    out = []
    for (a1, b1), (a2, b2) in zip(pairs[0::2], pairs[1::2]):
        common = {int(a1), int(b1)} & {int(a2), int(b2)}
        assert len(common) == 1, f"rows ({a1},{b1}) and ({a2},{b2}) do not share one anchor"
        a = common.pop()
        out.append((a, int(b1 if a1 == a else a1), int(b2 if a2 == a else a2)))
    return out


def check_first_open(found, n_items, *, pos_key, neg_key, neg_ok, pos_ok=lambda a, j: True) -> None:
    """Brute force: each positive/negative is the best-ranked candidate (lowest key, then index)
    whose pair with the anchor was not emitted earlier in the cycle; the negative is not the positive."""
    taken: set[frozenset[int]] = set()
    for a, p, n in found:
        free = [j for j in range(n_items) if j != a and frozenset((a, j)) not in taken]
        assert p == min((j for j in free if pos_ok(a, j)), key=lambda j: (pos_key(a, j), j)), (a, p)
        assert n == min((j for j in free if j != p and neg_ok(a, j)), key=lambda j: (neg_key(a, j), j)), (a, n)
        taken |= {frozenset((a, p)), frozenset((a, n))}


def random_jaccard(x: np.ndarray, seed: int = 0) -> sp.csr_matrix:
    """A sparse stand-in for d_J: the 10 cosine neighbours of each item get random distances."""
    rng = np.random.default_rng(seed)
    nn = np.argsort(-(x @ x.T), axis=1)[:, :10]
    rows = np.repeat(np.arange(len(x)), 10)
    d = rng.uniform(0, 1, rows.size)
    d[nn.reshape(-1) == rows] = 0.0
    return sp.csr_matrix((d, (rows, nn.reshape(-1))), shape=(len(x), len(x)))


def _cos_dist(x: np.ndarray) -> np.ndarray:
    return 1.0 - x.astype(np.float64) @ x.T.astype(np.float64)


def test_positive_is_nearest_neighbour_and_negative_first_outside_ball():
    x, ids = blobs(n_ids=10, per_id=8)
    dj = random_jaccard(x)
    ctx = context(x, ids, jaccard=dj, eps=0.5)
    pairs = GBASSampler().select(ctx, 40, np.random.default_rng(0))
    d = _cos_dist(x)
    coo = dj.tocoo()
    dense = np.ones_like(d)
    dense[coo.row, coo.col] = coo.data
    found = triplets(pairs)
    assert len(found) == 20
    check_first_open(found, len(x), pos_key=lambda a, j: d[a, j], neg_ok=lambda a, j: dense[a, j] >= 0.5,
                     neg_key=lambda a, j: d[a, j])


def test_cosine_rank_negative_rule():
    x, ids = blobs(n_ids=10, per_id=8)
    ctx = context(x, ids, eps=0.6)
    pairs = GBASSampler(negative_rule="cosine_rank", eps=0.4).select(ctx, 30, np.random.default_rng(0))
    d = _cos_dist(x)
    check_first_open(triplets(pairs), len(x), pos_key=lambda a, j: d[a, j], neg_ok=lambda a, j: d[a, j] >= 0.4,
                     neg_key=lambda a, j: d[a, j])


def test_anchors_are_spread_beyond_random():
    x, ids = blobs(n_ids=20, per_id=10, dim=8, noise=1.0)
    ctx = context(x, ids, eps=0.3)
    d = _cos_dist(x)
    k = 12

    def min_dist(a):
        sub = d[np.ix_(a, a)]
        return sub[np.triu_indices(len(a), 1)].min()

    fps, rnd = [], []
    for seed in range(20):
        rng = np.random.default_rng(seed)
        pairs = GBASSampler(fps_start="random", negative_rule="cosine_rank").select(ctx, 2 * k, rng)
        anchors = [a for a, _, _ in triplets(pairs)]
        assert len(set(anchors)) == k
        fps.append(min_dist(anchors))
        rnd.append(min_dist(rng.choice(len(x), k, replace=False)))
    assert np.mean(fps) > 1.5 * np.mean(rnd)
    central = [a for a, _, _ in triplets(GBASSampler(negative_rule="cosine_rank").select(ctx, 2 * k, rng))]
    assert central[0] == int(np.argmax(x @ x.mean(axis=0)))  # start: the point closest to the centroid
    assert min_dist(central) > np.mean(rnd)


def test_known_pairs_are_skipped_for_the_next_candidate():
    x, ids = blobs(n_ids=6, per_id=5)
    store = ConstraintStore(len(x))
    ctx = context(x, ids, store=store, eps=0.3)
    first = triplets(GBASSampler(negative_rule="cosine_rank").select(ctx, 2, np.random.default_rng(0)))[0]
    a, p, _ = first
    store.add(a, p, True)
    a2, p2, _ = triplets(GBASSampler(negative_rule="cosine_rank").select(ctx, 2, np.random.default_rng(0)))[0]
    d = _cos_dist(x)[a]
    d[[a, p]] = np.inf
    assert (a2, p2) == (a, int(np.argmin(d)))


@pytest.mark.parametrize("budget", [1, 2, 7, 500, 2000])
def test_budget_is_never_exceeded_and_even(budget):
    x, ids = blobs(n_ids=5, per_id=6)
    ctx = context(x, ids, jaccard=random_jaccard(x), eps=0.5)
    pairs = GBASSampler().select(ctx, budget, np.random.default_rng(0))
    assert len(pairs) <= 2 * (budget // 2)
    if budget <= 2 * len(x):  # 30 anchors, each with open candidates
        assert len(pairs) == 2 * (budget // 2)


def test_computes_jaccard_when_the_cache_lacks_it():
    from alreid.clustering.jaccard import jaccard_distance

    x, ids = blobs(n_ids=6, per_id=8)
    ctx = context(x, ids, eps=0.6)  # as with cosine DBSCAN: no Jaccard matrix in the cache
    pairs = GBASSampler().select(ctx, 10, np.random.default_rng(0))
    expected = jaccard_distance(x, k1=30, k2=6).toarray()
    cached = ctx.neighbours.get(("jaccard", 30, 6), lambda: None)
    np.testing.assert_allclose(cached.toarray(), expected)
    coo = cached.tocoo()  # explicit zeros are stored entries (distance 0), absent ones distance 1
    d_j = np.ones_like(expected)
    d_j[coo.row, coo.col] = coo.data
    d = _cos_dist(x)
    check_first_open(triplets(pairs), len(x), pos_key=lambda a, j: d[a, j], neg_ok=lambda a, j: d_j[a, j] >= 0.6,
                     neg_key=lambda a, j: d[a, j])


@pytest.mark.parametrize("params", [{"fps_start": "middle"}, {"negative_rule": "euclid"}, {"eps": 0.0},
                                    {"eps": 1.5}, {"eps": "0.6"}])
def test_bad_parameters_are_config_errors(params):
    with pytest.raises(ConfigError, match="gbas parameter"):
        GBASSampler.from_params(params)


@pytest.mark.parametrize("params", [{"fps_start": "random"}, {"negative_rule": "cosine_rank", "eps": 0.3}])
def test_contract_holds_for_every_option(params):
    from alreid.testing import check_sampler

    check_sampler("gbas", params)
