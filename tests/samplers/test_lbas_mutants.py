"""LBAS details pinned by the mutation review (tests/mutants/lbas.md): the parameter error, integer shares,
member lists in ascending order on large clusters, a budget of one triplet, a leftover of one triplet, and
the logged statistics."""

from __future__ import annotations

import numpy as np
import pytest

from alreid.constraints import ConstraintStore
from alreid.errors import ConfigError
from alreid.samplers.lbas import LBASSampler, cluster_members, largest_remainder
from tests.samplers.test_gbas import blobs, context, triplets


def test_bad_fps_start_message_and_default():
    with pytest.raises(ConfigError) as err:
        LBASSampler(fps_start="middle").validate_params()
    assert str(err.value) == "lbas parameter fps_start must be one of 'central', 'random'; got 'middle'"
    assert LBASSampler().fps_start == "central"


@pytest.mark.parametrize("sizes, total, caps, expected", [
    ([10, 6, 3, 1], 5, [9, 5, 2, 0], [3, 1, 1, 0]),
    ([2, 5, 5], 8, [1, 4, 4], [1, 4, 3]),
    # a closed cluster (cap 0) next to one that reaches its cap: quota 6 * 3 / 5 = 3.6 >= 1, the other 5
    # go to the last cluster; the closed one gets nothing
    ([5, 3, 2], 6, [0, 1, 9], [0, 1, 5]),
])
def test_shares_are_integers(sizes, total, caps, expected):
    got = largest_remainder(np.asarray(sizes), total, np.asarray(caps))
    assert got.dtype == np.int64  # counts of triplets: "integer shares"
    assert got.tolist() == expected


def _random_labels_and_mask(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 5, n)
    clustered = rng.random(n) < 0.8
    return labels, clustered


@pytest.mark.parametrize("seed", range(3))
def test_member_lists_are_ascending_on_large_pools(seed):
    # thousands of items: a non-stable sort would scramble the members of each label (the brute force
    # is one boolean scan per cluster; members in ascending order as the docstring says)
    labels, clustered = _random_labels_and_mask(5000, seed)
    ids = np.array([0, 2, 3, 4])
    got = cluster_members(labels, clustered, ids)
    want = [np.flatnonzero(clustered & (labels == i)) for i in ids]
    assert [g.tolist() for g in got] == [w.tolist() for w in want]


def _two_clusters(sizes: tuple[int, int], seed: int, n_outliers: int = 0):
    """Two tight clusters of the given sizes and ``n_outliers`` outliers, cluster 0 closed: all its
    members joined in one must-link component, so no pair inside it is open."""
    x = np.concatenate([blobs(n_ids=1, per_id=s, noise=0.3, seed=seed + i)[0] for i, s in enumerate(sizes)])
    ids = np.repeat([0, 1], sizes)
    if n_outliers:
        far, _ = blobs(n_ids=n_outliers, per_id=1, seed=seed + 7)
        x = np.concatenate([x, far])
        ids = np.concatenate([ids, 2 + np.arange(n_outliers)])
    outliers = ids >= 2
    store = ConstraintStore(len(x))
    for m in range(1, sizes[0]):
        store.add(0, m, True)
    return x, ids, outliers, store


def test_statistics_by_hand():
    # T = 8, sizes 10 and 10 -> first shares 4 and 4; cluster 0 has no open pair: it tries its 10 anchors
    # and runs dry; the 4 left go to cluster 1 (6 untried anchors) in a second round
    x, ids, outliers, store = _two_clusters((10, 10), seed=4, n_outliers=3)
    s = LBASSampler()
    pairs = s.select(context(x, ids, outliers, store=store), 16, np.random.default_rng(0))
    assert len(pairs) == 16 and all(ids[a] == 1 for a, _, _ in triplets(pairs))
    assert s.stats_ == {"triplets": 8, "triplets_allocated": 8, "triplets_redistributed": 4, "clusters": 2,
                        "clusters_used": 1, "allocation_rounds": 2, "outliers_skipped": 3}
    assert all(type(v) is int for v in s.stats_.values())


def test_a_leftover_of_one_triplet_is_redistributed():
    # T = 4, sizes 3 and 10: quotas 0.92 and 3.08 -> floors 0, 3, the spare one to cluster 0 (remainder
    # 0.92); cluster 0 is closed, so its single triplet goes to cluster 1 in a second round
    x, ids, outliers, store = _two_clusters((3, 10), seed=11)
    assert largest_remainder(np.array([3, 10]), 4, np.array([2, 9])).tolist() == [1, 3]
    s = LBASSampler()
    pairs = s.select(context(x, ids, outliers, store=store), 8, np.random.default_rng(0))
    assert len(pairs) == 8
    assert s.stats_ == {"triplets": 4, "triplets_allocated": 4, "triplets_redistributed": 1, "clusters": 2,
                        "clusters_used": 1, "allocation_rounds": 2, "outliers_skipped": 0}


@pytest.mark.parametrize("budget", [2, 3])
def test_a_budget_of_one_triplet_asks_one_triplet(budget):
    x, ids = blobs(n_ids=3, per_id=4)
    s = LBASSampler()
    pairs = s.select(context(x, ids), budget, np.random.default_rng(0))
    assert len(triplets(pairs)) == 1
    assert (s.stats_["triplets"], s.stats_["allocation_rounds"], s.stats_["clusters_used"]) == (1, 1, 1)


def test_no_clusters_or_no_triplets_logs_zeros():
    # every item an outlier, or a budget of one pair (T = 0): no allocation round at all
    x, ids = blobs(n_ids=2, per_id=3)
    s = LBASSampler()
    assert len(s.select(context(x, ids, np.ones(len(x), bool)), 10, np.random.default_rng(0))) == 0
    assert s.stats_ == {"triplets": 0, "triplets_allocated": 0, "triplets_redistributed": 0, "clusters": 0,
                        "clusters_used": 0, "allocation_rounds": 0, "outliers_skipped": 6}
    assert len(s.select(context(x, ids), 1, np.random.default_rng(0))) == 0
    assert s.stats_ == {"triplets": 0, "triplets_allocated": 0, "triplets_redistributed": 0, "clusters": 2,
                        "clusters_used": 0, "allocation_rounds": 0, "outliers_skipped": 0}


def test_first_allocation_gives_a_cluster_at_most_its_size_minus_one():
    # two clusters of 4, T = 8: quotas 4 and 4 are capped at |c| - 1 = 3 (spec 2), so the first round
    # allocates 6; each cluster still has 1 untried anchor, which the second round uses
    x, ids = blobs(n_ids=2, per_id=4, noise=0.3, seed=2)
    s = LBASSampler()
    pairs = s.select(context(x, ids), 16, np.random.default_rng(0))
    assert np.bincount([ids[a] for a, _, _ in triplets(pairs)]).tolist() == [4, 4]
    assert (s.stats_["triplets_allocated"], s.stats_["triplets_redistributed"], s.stats_["allocation_rounds"]) \
        == (6, 2, 2)


def test_leftovers_never_exceed_the_untried_anchors():
    # sizes 10, 4, 4, cluster 0 closed, T = 9: first shares 5, 2, 2 (quotas 5, 2, 2); round 1 makes 0, 2, 2.
    # The 5 left are capped by the untried anchors, 2 and 2, so round 2 gives 2 and 2 and uses every anchor:
    # 8 triplets in 2 rounds (a cap above the untried anchors would need a third round to find that out)
    sizes = (10, 4, 4)
    x = np.concatenate([blobs(n_ids=1, per_id=s, noise=0.3, seed=30 + i)[0] for i, s in enumerate(sizes)])
    ids = np.repeat([0, 1, 2], sizes)
    store = ConstraintStore(len(x))
    for m in range(1, sizes[0]):
        store.add(0, m, True)
    s = LBASSampler()
    pairs = s.select(context(x, ids, store=store), 18, np.random.default_rng(0))
    assert np.bincount([ids[a] for a, _, _ in triplets(pairs)], minlength=3).tolist() == [0, 4, 4]
    assert s.stats_ == {"triplets": 8, "triplets_allocated": 9, "triplets_redistributed": 4, "clusters": 3,
                        "clusters_used": 2, "allocation_rounds": 2, "outliers_skipped": 0}


def test_a_zero_one_outlier_mask_means_the_same_as_a_boolean_one():
    # a context built by hand (a notebook, a plugin's test) may mark outliers with 0/1 integers; `~` on
    # integers would give -1/-2, so the mask is read as booleans first
    x, ids = blobs(n_ids=4, per_id=5)
    outliers = np.zeros(len(x), bool)
    outliers[[0, 6, 13]] = True
    ctx = context(x, ids, outliers)
    want = LBASSampler().select(ctx, 12, np.random.default_rng(0))
    ctx.outliers = outliers.astype(np.int64)
    got = LBASSampler().select(ctx, 12, np.random.default_rng(0))
    assert got.tolist() == want.tolist() and not outliers[got].any()
