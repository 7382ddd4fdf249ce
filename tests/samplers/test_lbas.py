"""LBAS: never an outlier, largest-remainder allocation, farthest-member positives, nearest-other negatives."""

from __future__ import annotations

import numpy as np
import pytest

from alreid.constraints import ConstraintStore
from alreid.errors import ConfigError
from alreid.samplers.lbas import LBASSampler, largest_remainder
from tests.samplers.test_gbas import blobs, check_first_open, context, triplets


def _with_outliers(seed: int = 0):
    """Blobs whose DBSCAN view marks some items outliers, including ones placed right next to a
    cluster, so a sampler ignoring the outlier mask would pick them as nearest non-members."""
    x, ids = blobs(n_ids=6, per_id=8, seed=seed)
    rng = np.random.default_rng(seed)
    outliers = rng.random(len(x)) < 0.2
    near = x[::8] + 0.05 * rng.standard_normal((6, x.shape[1])).astype(np.float32)  # beside each cluster
    x = np.concatenate([x, near / np.linalg.norm(near, axis=1, keepdims=True)])
    ids = np.concatenate([ids, np.arange(6)])
    outliers = np.concatenate([outliers, np.ones(6, bool)])
    return x, ids, outliers


@pytest.mark.parametrize("seed", range(5))
def test_never_queries_a_dbscan_outlier(seed):
    x, ids, outliers = _with_outliers(seed)
    store = ConstraintStore(len(x))
    ctx = context(x, ids, outliers, store=store)
    rng = np.random.default_rng(seed)
    asked = 0
    for cycle in range(4):  # answers accumulate, so later cycles go down the candidate lists
        pairs = LBASSampler(fps_start="random").select(ctx, 40, rng)
        assert not outliers[pairs].any(), f"cycle {cycle} asked about an outlier"
        store.add_many(pairs, ids[pairs[:, 0]] == ids[pairs[:, 1]], cycle=cycle)
        asked += len(pairs)
    assert asked > 40


def test_largest_remainder_hand_cases():
    # quotas 5*[10,6,3]/19 = 2.63, 1.58, 0.79 (the size-1 cluster has cap 0): floors 2,1,0; the two
    # spare triplets go to the largest remainders, .79 then .63
    assert largest_remainder([10, 6, 3, 1], 5, [9, 5, 2, 0]).tolist() == [3, 1, 1, 0]
    # quota 8*2/12 = 1.33 reaches the cap 1, the other 7 split 3.5/3.5: the tie goes to the lower index
    assert largest_remainder([2, 5, 5], 8, [1, 4, 4]).tolist() == [1, 4, 3]
    # equal remainders: the larger cluster first
    assert largest_remainder([3, 6], 1, [2, 5]).tolist() == [0, 1]
    # more triplets than the caps allow: every cluster at its cap
    assert largest_remainder([2, 3], 10, [1, 2]).tolist() == [1, 2]
    assert largest_remainder([4, 4], 0, [3, 3]).tolist() == [0, 0]


def test_triplets_per_cluster_follow_the_allocation():
    sizes = [12, 7, 4, 2]
    ids = np.concatenate([np.full(s, i) for i, s in enumerate(sizes)])
    x = np.concatenate([blobs(n_ids=1, per_id=s, noise=0.3, seed=10 + i)[0] for i, s in enumerate(sizes)])
    ctx = context(x, ids)
    pairs = LBASSampler().select(ctx, 21, np.random.default_rng(0))  # T = 10
    per_cluster = np.bincount([ids[a] for a, _, _ in triplets(pairs)], minlength=4)
    assert per_cluster.tolist() == largest_remainder(sizes, 10, np.subtract(sizes, 1)).tolist() == [5, 3, 1, 1]


def test_positive_is_farthest_member_and_negative_nearest_clustered_non_member():
    x, ids, outliers = _with_outliers(1)
    ctx = context(x, ids, outliers)
    labels = ctx.labels
    d = 1.0 - x.astype(np.float64) @ x.T.astype(np.float64)
    pairs = LBASSampler().select(ctx, 30, np.random.default_rng(0))
    found = triplets(pairs)
    assert len(found) == 15
    assert all(labels[a] == labels[p] and labels[a] != labels[n] for a, p, n in found)
    check_first_open(found, len(x), pos_ok=lambda a, j: labels[j] == labels[a], pos_key=lambda a, j: -d[a, j],
                     neg_ok=lambda a, j: labels[j] != labels[a] and not outliers[j], neg_key=lambda a, j: d[a, j])


def test_anchors_within_a_cluster_follow_farthest_point_order():
    x, _ = blobs(n_ids=1, per_id=10, noise=1.0)
    y, _ = blobs(n_ids=1, per_id=10, noise=1.0, seed=3)
    feats = np.concatenate([x, y])
    ids = np.repeat([0, 1], 10)
    ctx = context(feats, ids)
    anchors = [a for a, _, _ in triplets(LBASSampler().select(ctx, 12, np.random.default_rng(0)))]
    first = [a for a in anchors if a < 10]
    d = 1.0 - feats @ feats.T
    assert first[0] == int(np.argmax(feats[:10] @ feats[:10].mean(axis=0)))
    assert first[1] == int(np.argmax(d[first[0], :10]))
    assert first[2] == int(np.argmax(np.minimum(d[first[0], :10], d[first[1], :10])))


def test_skips_known_pairs_and_stops_at_the_budget():
    x, ids = blobs(n_ids=3, per_id=5)
    store = ConstraintStore(len(x))
    ctx = context(x, ids, store=store)
    for budget in (1, 3, 6, 1000):
        pairs = LBASSampler().select(ctx, budget, np.random.default_rng(0))
        assert len(pairs) <= 2 * (budget // 2)
    # every within-cluster pair known: no positive is left, so nothing is asked
    for c in range(3):
        members = np.flatnonzero(ids == c)
        for m in members[1:]:
            store.add(int(members[0]), int(m), True)
    assert len(LBASSampler().select(ctx, 20, np.random.default_rng(0))) == 0


def test_no_clusters_asks_nothing():
    x, ids = blobs(n_ids=2, per_id=3)
    ctx = context(x, ids, np.ones(len(x), bool))
    assert len(LBASSampler().select(ctx, 10, np.random.default_rng(0))) == 0


def test_bad_fps_start_is_a_config_error():
    with pytest.raises(ConfigError, match="lbas parameter fps_start must be one of 'central', 'random'"):
        LBASSampler.from_params({"fps_start": 1})


def test_contract_holds_with_random_start():
    from alreid.testing import check_sampler

    check_sampler("lbas", {"fps_start": "random"})


def test_leftover_of_a_cluster_without_open_positives_goes_to_the_other_cluster():
    """Cluster 0's within-cluster pairs are all known, so it cannot make a triplet: its share (4 of
    T = 8) must be redistributed to cluster 1 (10 members, so 10 anchors), and 16 pairs asked.
    Without redistribution only cluster 1's own 4 triplets (8 pairs) were asked."""
    x, ids = blobs(n_ids=2, per_id=10, noise=0.3, seed=4)
    store = ConstraintStore(len(x))
    members = np.flatnonzero(ids == 0)
    for m in members[1:]:
        store.add(int(members[0]), int(m), True)  # one ML component: every pair inside it is implied
    ctx = context(x, ids, store=store)
    sampler = LBASSampler()
    pairs = sampler.select(ctx, 16, np.random.default_rng(0))
    assert len(pairs) == 16
    found = triplets(pairs)
    assert all(ids[a] == 1 for a, _, _ in found)
    assert sampler.stats_["triplets_allocated"] == 8 and sampler.stats_["triplets_redistributed"] == 4


def test_leftover_goes_by_size_and_respects_untried_anchors():
    """Three clusters of 6, 3 and 3; cluster 0 is blocked. T = 6 -> first shares 3, 1, 1 (plus 1 by
    remainder to cluster 0); the 3-4 left go to clusters 1 and 2, at most 3 anchors each."""
    sizes = [6, 3, 3]
    ids = np.concatenate([np.full(s, i) for i, s in enumerate(sizes)])
    x = np.concatenate([blobs(n_ids=1, per_id=s, noise=0.3, seed=20 + i)[0] for i, s in enumerate(sizes)])
    store = ConstraintStore(len(x))
    members = np.flatnonzero(ids == 0)
    for m in members[1:]:
        store.add(int(members[0]), int(m), True)
    ctx = context(x, ids, store=store)
    pairs = LBASSampler().select(ctx, 12, np.random.default_rng(0))
    per_cluster = np.bincount([ids[a] for a, _, _ in triplets(pairs)], minlength=3)
    assert per_cluster.tolist() == [0, 3, 3]  # every untried anchor of the two open clusters used


@pytest.mark.parametrize("method", ["random", "gbas", "lbas", "nis"])
@pytest.mark.parametrize("budget", [10, 41, 80])
def test_every_budgeted_method_spends_its_budget_where_pairs_exist(method, budget):
    """Offered the same budget on a pool with far more open pairs, every budget-spending method asks
    it all (triplet methods: 2 * floor(budget / 2), the spec's rule for the odd last pair); also in
    a later cycle, once earlier answers have closed the easiest candidates."""
    from alreid.registry import SAMPLERS

    x, ids = blobs(n_ids=16, per_id=10, seed=7)
    store = ConstraintStore(len(x))
    ctx = context(x, ids, store=store)
    want = 2 * (budget // 2) if method in ("gbas", "lbas") else budget
    rng = np.random.default_rng(1)
    for cycle in range(3):
        pairs = SAMPLERS.get(method).from_params({}).select(ctx, budget, rng)
        assert len(pairs) == want, f"{method} asked {len(pairs)} of {budget} in cycle {cycle}"
        store.add_many(pairs, ids[pairs[:, 0]] == ids[pairs[:, 1]], cycle=cycle)
