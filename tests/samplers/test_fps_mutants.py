"""Farthest-point order and pair picking details pinned by the mutation review (tests/mutants/fps.md): the
documented default start, the errors, the whole order against a brute force (duplicates included),
one-item subsets, ``best_open`` called on its own and with item 0 excluded, ``triplets_for``."""

from __future__ import annotations

import numpy as np
import pytest

from alreid.constraints import ConstraintStore
from alreid.samplers.fps import PairPicker, farthest_point_order, triplets_for
from tests.samplers.test_gbas import blobs


def brute_fps(x: np.ndarray, members: list[int], first: int) -> list[int]:
    """Farthest-point order by definition: next = the unvisited member with the largest distance to its
    nearest visited one (ties: first in ``members`` order), cosine distance 1 - x.y."""
    d = 1.0 - x.astype(np.float64) @ x.T.astype(np.float64)
    order = [first]
    while len(order) < len(members):
        rest = [m for m in members if m not in order]
        order.append(max(rest, key=lambda m: (min(d[m, o] for o in order), -members.index(m))))
    return order


@pytest.mark.parametrize("seed", range(3))
def test_the_whole_order_is_farthest_point_order(seed):
    x, _ = blobs(n_ids=4, per_id=5, dim=6, noise=1.0, seed=seed)
    first = int(np.argmax(x @ x.mean(axis=0)))
    got = [(a, s) for a, s in farthest_point_order(x)]  # default start: central
    assert [a for a, _ in got] == brute_fps(x, list(range(len(x))), first)
    for a, s in got:  # each item comes with its similarity row over all items
        np.testing.assert_allclose(s, x @ x[a], rtol=1e-6)
    subset = [17, 2, 9, 11, 4, 5]
    sub_first = subset[int(np.argmax(x[subset] @ x[subset].mean(axis=0)))]
    got = [a for a, _ in farthest_point_order(x, subset=np.array(subset))]
    assert got == brute_fps(x, subset, sub_first)


def test_exact_duplicates_are_each_yielded_once():
    x = np.repeat(np.eye(3, dtype=np.float32), [3, 1, 2], axis=0)  # items 0-2, 3, 4-5: duplicates
    order = [a for a, _ in farthest_point_order(x, start="random", rng=np.random.default_rng(0))]
    assert sorted(order) == list(range(6))
    # after the first of each group, the farthest items are the other groups (distance 1), then the
    # remaining duplicates (distance 0)
    assert len({int(np.argmax(x[a])) for a in order[:3]}) == 3


def test_one_item_subset_and_empty_subset():
    x, _ = blobs(n_ids=2, per_id=3)
    got = list(farthest_point_order(x, subset=np.array([4])))
    assert [a for a, _ in got] == [4]
    np.testing.assert_allclose(got[0][1], x @ x[4], rtol=1e-6)
    assert list(farthest_point_order(x, subset=np.array([], dtype=np.int64))) == []


def test_start_errors_name_the_problem():
    x, _ = blobs(n_ids=2, per_id=3)
    with pytest.raises(ValueError) as err:
        next(farthest_point_order(x, start="random"))
    assert str(err.value) == "fps start 'random' needs a random generator"
    with pytest.raises(ValueError) as err:
        next(farthest_point_order(x, start="middle"))  # type: ignore[arg-type]
    assert str(err.value) == "unknown fps start 'middle'; use one of ('central', 'random')"


@pytest.mark.parametrize("budget, t", [(0, 0), (1, 0), (2, 1), (7, 3), (100, 50)])
def test_triplets_for_is_floor_half(budget, t):
    got = triplets_for(budget)
    assert got == t and type(got) is int


def test_best_open_on_its_own_computes_the_blocked_mask():
    # pool of 6, (0, 1) must-link and (0, 2) cannot-link known; anchor 0 is also paired with 3 this cycle
    store = ConstraintStore(6)
    store.add(0, 1, True)
    store.add(0, 2, False)
    picker = PairPicker(store)
    picker._partners = {0: [3], 3: [0]}
    scores = np.array([9.0, 8.0, 7.0, 6.0, 5.0, 4.0])
    assert picker.best_open(0, scores) == 4  # 0 itself, 1, 2, 3 blocked
    assert picker.best_open(0, scores, blocked=picker.blocked(0)) == 4
    assert picker.best_open(0, scores, exclude=4) == 5
    assert picker.best_open(0, scores, exclude=4, blocked=picker.blocked(0)) == 5
    scores[5] = -np.inf
    assert picker.best_open(0, scores, exclude=4) is None


def test_item_zero_can_be_excluded():
    # the negative search excludes the positive; when the positive is item 0 it must still be skipped
    picker = PairPicker(ConstraintStore(4))
    assert picker.best_open(3, np.array([5.0, 1.0, 2.0, 0.0]), exclude=0) == 2
    assert picker.triplet(3, np.array([5.0, 1.0, 2.0, -np.inf]), np.array([5.0, 1.0, 2.0, -np.inf]))
    assert picker.pairs == [(0, 3), (2, 3)]
