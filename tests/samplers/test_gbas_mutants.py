"""GBAS details pinned by the mutation review (tests/mutants/gbas.md): the parameter errors, the eps-ball
boundary of both negative rules, the random first anchor, revisiting anchors until a pass adds nothing,
and the logged statistics."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.sparse as sp

from alreid.errors import ConfigError
from alreid.samplers.gbas import GBASSampler
from tests.samplers.test_gbas import blobs, context, triplets


@pytest.mark.parametrize("params, message", [
    ({"fps_start": "middle"}, "gbas parameter fps_start must be one of 'central', 'random'; got 'middle'"),
    ({"negative_rule": "euclid"},
     "gbas parameter negative_rule must be one of 'jaccard', 'cosine_rank'; got 'euclid'"),
    ({"eps": 0.0}, "gbas parameter eps must be a number in (0.0, 1.0]; got 0.0"),
    ({"eps": 1.5}, "gbas parameter eps must be a number in (0.0, 1.0]; got 1.5"),
])
def test_each_bad_parameter_is_named_with_its_range(params, message):
    with pytest.raises(ConfigError) as err:
        GBASSampler(**params).validate_params()
    assert str(err.value) == message


def _boundary_pool() -> np.ndarray:
    """Seven unit vectors in the plane, symmetric about item 0 = (1, 0) (so item 0 is the central
    anchor). Cosines to item 0: items 3 and 6: 0.96 (the positive: the tie goes to 3); items 1 and 4:
    exactly 0.5 (1*0.5 + 0*y), i.e. cosine distance exactly 0.5; items 2 and 5: 0 (distance 1)."""
    s = np.sqrt(0.75)
    return np.array([[1, 0], [0.5, s], [0, 1], [0.96, 0.28], [0.5, -s], [0, -1], [0.96, -0.28]], np.float32)


def test_an_item_at_distance_exactly_eps_is_outside_the_cosine_ball():
    # "the first item whose distance to the anchor is at least eps": items 1 and 4 sit exactly on the
    # boundary (0.5 = eps), so the negative is the lower index of the two, 1 (not 2, the next one out)
    x = _boundary_pool()
    assert 1.0 - x[1] @ x[0] == 0.5 and 1.0 - x[4] @ x[0] == 0.5
    ctx = context(x, np.arange(7), eps=0.9)
    pairs = GBASSampler(negative_rule="cosine_rank", eps=0.5).select(ctx, 2, np.random.default_rng(0))
    assert triplets(pairs) == [(0, 3, 1)]


def test_an_item_at_jaccard_distance_exactly_eps_is_outside_the_ball():
    # d_J(0, 3) = d_J(0, 6) = 0.1 (inside), d_J(0, 1) = 0.5 = eps (on the boundary: outside), the rest
    # absent (= 1, outside): candidates by cosine are 1 and 4 (tied at 0.5), and the lower index wins
    x = _boundary_pool()
    rows, cols, d = [0, 0, 0, 0], [0, 3, 6, 1], [0.0, 0.1, 0.1, 0.5]
    dj = sp.csr_matrix((d, (rows, cols)), shape=(7, 7))
    ctx = context(x, np.arange(7), eps=0.5, jaccard=dj)
    pairs = GBASSampler().select(ctx, 2, np.random.default_rng(0))
    assert triplets(pairs) == [(0, 3, 1)]


def test_random_start_draws_the_first_anchor():
    x, ids = blobs(n_ids=6, per_id=5)
    ctx = context(x, ids, eps=0.3)
    central = int(np.argmax(x @ x.mean(axis=0)))
    first = {triplets(GBASSampler(fps_start="random", negative_rule="cosine_rank")
                      .select(ctx, 2, np.random.default_rng(seed)))[0][0] for seed in range(12)}
    # 12 uniform draws out of 30 items: all equal to one item with probability 30 * 30**-12
    assert len(first) > 1 and first != {central}


def test_anchors_are_revisited_until_a_whole_pass_adds_nothing():
    # three items, every pair askable: pass 1 gives the first anchor both partners (1 triplet), then
    # each of the other two has a single open partner left, so no triplet; pass 2 adds nothing -> stop
    # after 3 + 3 anchors tried
    x = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1]], np.float32)
    s = GBASSampler(negative_rule="cosine_rank", eps=0.1)
    pairs = s.select(context(x, np.arange(3)), 6, np.random.default_rng(0))
    assert len(pairs) == 2
    assert s.stats_ == {"triplets": 1, "anchors_tried": 6, "eps": 0.1}


@pytest.mark.parametrize("seed", range(3))
def test_when_the_budget_is_not_met_no_anchor_has_a_triplet_left(seed):
    # 10 items = 45 pairs, one pass of 10 anchors asks at most 20: the budget of 90 needs revisits, and
    # GBAS stops only when no item has two open partners outside its ball (eps tiny: every other item)
    x, ids = blobs(n_ids=5, per_id=2, seed=seed)
    s = GBASSampler(negative_rule="cosine_rank", eps=1e-4)
    pairs = s.select(context(x, ids), 90, np.random.default_rng(seed))
    assert 20 < len(pairs) < 90
    asked = {frozenset(map(int, p)) for p in pairs}
    for a in range(len(x)):
        open_partners = [j for j in range(len(x)) if j != a and frozenset((a, j)) not in asked]
        assert len(open_partners) <= 1, (a, open_partners)
    assert s.stats_["triplets"] == len(pairs) // 2


def test_statistics_are_integers_counting_triplets_and_anchors():
    # a pool with an open triplet for every anchor: budget 10 -> 5 triplets from the first 5 anchors;
    # eps None -> the cycle's DBSCAN eps; integer counts (record columns, not 5.0)
    x, ids = blobs(n_ids=6, per_id=5)
    s = GBASSampler(negative_rule="cosine_rank")
    pairs = s.select(context(x, ids, eps=0.3), 10, np.random.default_rng(0))
    assert len(pairs) == 10
    assert s.stats_ == {"triplets": 5, "anchors_tried": 5, "eps": 0.3}
    assert type(s.stats_["triplets"]) is int and type(s.stats_["anchors_tried"]) is int
    anchors = [a for a, _, _ in triplets(pairs)]
    assert len(set(anchors)) == 5
    assert not any(frozenset(p) == frozenset(q) for p, q in itertools.combinations(pairs.tolist(), 2))
