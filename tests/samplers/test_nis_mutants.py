"""NIS sampler details pinned by the mutation review (tests/mutants/SURVIVORS.md): parameter errors,
N_n, the top-up loop and its bound, the logged statistics, exact vs k-NN rows, the draw memory."""

from __future__ import annotations

import math

import numpy as np
import pytest

from alreid.constraints import ConstraintStore
from alreid.errors import ConfigError
from alreid.evaluation.population import SoftmaxRows, vertex_proposal
from alreid.samplers.nis import NISSampler
from tests.samplers.test_gbas import blobs, context


def _all_known_context(n_ids: int = 2, per_id: int = 2):
    """A small pool whose every pair is already answered: every draw is a wasted attempt."""
    x, ids = blobs(n_ids=n_ids, per_id=per_id)
    store = ConstraintStore(len(x))
    for u in range(len(x)):
        for v in range(u + 1, len(x)):
            if store.implied(u, v) == 0:
                store.add(u, v, bool(ids[u] == ids[v]))
    return context(x, ids, store=store)


@pytest.mark.parametrize("params, message", [
    ({"tau": 0}, "nis parameter tau must be a number in (0.0, inf]; got 0"),
    ({"vertex_proposal": "degree"},
     "nis parameter vertex_proposal must be one of 'uniform', 'inverse_degree'; got 'degree'"),
    ({"similarity": "dense"}, "nis parameter similarity must be one of 'auto', 'exact', 'knn'; got 'dense'"),
    ({"knn_k": 1}, "nis parameter knn_k must be an integer in [2, inf]; got 1"),
    ({"knn_k": 2.5}, "nis parameter knn_k must be an integer in [2, inf]; got 2.5"),
    ({"exact_max_n": 1}, "nis parameter exact_max_n must be an integer in [2, inf]; got 1"),
    ({"exact_max_n": 2.5}, "nis parameter exact_max_n must be an integer in [2, inf]; got 2.5"),
    ({"max_attempts": 0}, "nis parameter max_attempts must be an integer in [1, inf]; got 0"),
    ({"max_attempts": 1.5}, "nis parameter max_attempts must be an integer in [1, inf]; got 1.5"),
    ({"estimate_from": "first"}, "nis parameter estimate_from must be one of 'all', 'last'; got 'first'"),
])
def test_each_bad_parameter_is_named_with_its_range(params, message):
    with pytest.raises(ConfigError) as err:
        NISSampler(**params).validate_params()
    assert str(err.value) == message


def test_lowest_allowed_values_and_documented_defaults():
    NISSampler(knn_k=2, exact_max_n=2, max_attempts=1, tau=1e-9).validate_params()  # the bounds are inclusive
    s = NISSampler()
    assert (s.tau, s.vertex_proposal, s.similarity, s.knn_k, s.exact_max_n, s.max_attempts, s.estimate_from) == \
        (0.5, "uniform", "auto", 100, 50000, 10, "all")


@pytest.mark.parametrize("budget, n_n", [(1, 2), (4, 2), (5, 3), (9, 3), (10, 4), (100, 10)])
def test_neighbours_per_vertex_is_ceil_sqrt_budget_but_at_least_two(budget, n_n):
    x, ids = blobs(n_ids=6, per_id=6)
    s = NISSampler()
    s.select(context(x, ids), budget, np.random.default_rng(0))
    assert s.draws_[-1].n_neighbours == s.stats_["neighbours_per_vertex"] == n_n


def test_statistics_describe_the_draws():
    x, ids = blobs(n_ids=6, per_id=6)
    s = NISSampler()
    s.select(context(x, ids), 30, np.random.default_rng(0))
    d = s.draws_[-1]
    n_n = math.ceil(math.sqrt(30))
    assert set(s.stats_) == {"vertices", "topup_vertices", "neighbours_per_vertex", "attempts", "knn_rows",
                             "population_estimate", "population_ci_low", "population_ci_high",
                             "population_vertices"}
    assert s.stats_["vertices"] == len(d) > n_n  # 6 x 5 = 30 candidates minus repeats: a top-up was needed
    assert s.stats_["topup_vertices"] == len(d) - n_n
    assert s.stats_["attempts"] == len(d) * (n_n - 1)  # every vertex brings N_n - 1 candidate pairs
    assert s.stats_["knn_rows"] is False


def test_topup_rounds_by_hand_when_every_pair_is_known():
    # budget 10 -> N_n = 4: 4 vertices = 12 candidates; each round adds ceil(10 / 3) = 4 vertices = 12
    # candidates until 3 * 10 = 30 are spent: 12, 24, 36 -> 12 vertices, 8 of them top-up
    s = NISSampler(max_attempts=3)
    assert len(s.select(_all_known_context(), 10, np.random.default_rng(0))) == 0
    assert (s.stats_["vertices"], s.stats_["topup_vertices"], s.stats_["attempts"]) == (12, 8, 36)
    # budget 2 -> N_n = 2: 2 candidates, then 2 per round; the bound 2 * 3 = 6 is met exactly at 6
    s.select(_all_known_context(), 2, np.random.default_rng(0))
    assert (s.stats_["vertices"], s.stats_["attempts"]) == (6, 6)


@pytest.mark.parametrize("seed", range(12))
def test_topup_stops_at_the_first_vertex_that_fills_the_budget(seed):
    # two identical items: one possible pair, each vertex's single neighbour draw is the other item
    # with probability 1/2; top-up rounds add ceil(1 / 1) = 1 vertex until the pair is drawn
    x = np.ones((2, 4), np.float32) / 2
    s = NISSampler(max_attempts=50)
    pairs = s.select(context(x, np.array([0, 1])), 1, np.random.default_rng(seed))
    d = s.draws_[-1]
    hits = np.flatnonzero(d.neighbours[:, 1] != d.vertices)
    assert pairs.tolist() == [[0, 1]]
    assert len(d) == max(2, int(hits[0]) + 1)


def test_topup_rounds_ask_for_the_remaining_budget_only():
    # replay the rule over the recorded draws: after the first N_n vertices, each round adds
    # ceil((budget - chosen) / (N_n - 1)) vertices, chosen = the distinct unknown pairs drawn so far
    from alreid.samplers.base import drop_known

    x, ids = blobs(n_ids=3, per_id=3)  # 36 pairs: a budget of 30 needs several partly useful rounds
    for seed in range(4):
        store = ConstraintStore(len(x))
        store.add(0, 1, True)
        s = NISSampler()
        budget = 30
        pairs = s.select(context(x, ids, store=store), budget, np.random.default_rng(seed))
        d = s.draws_[-1]
        n_n = d.n_neighbours
        used = n_n
        while True:
            chosen = drop_known(d.pairs()[: used * n_n], store)
            if len(chosen) >= budget or used * (n_n - 1) >= 10 * budget:
                break
            used += max(1, math.ceil((budget - len(chosen)) / (n_n - 1)))
        assert used == len(d), seed
        np.testing.assert_array_equal(pairs, chosen[:budget])


def test_inverse_degree_proposal_reaches_the_draws():
    x, ids = blobs(n_ids=4, per_id=5)
    x[:3] = x[0]  # a dense spot: its items get a smaller inverse-degree weight than the rest
    s = NISSampler(vertex_proposal="inverse_degree")
    s.select(context(x, ids), 16, np.random.default_rng(0))
    d = s.draws_[-1]
    q = vertex_proposal(SoftmaxRows(x, tau=0.5), "inverse_degree")
    assert not np.allclose(q, 1 / len(x))
    np.testing.assert_allclose(d.vertex_prob, q[d.vertices], rtol=1e-6)


@pytest.mark.parametrize("params, n, knn", [({"similarity": "knn", "knn_k": 3}, 20, True),
                                            ({"similarity": "exact"}, 20, False),
                                            ({"exact_max_n": 19, "knn_k": 3}, 20, True),
                                            ({"exact_max_n": 20, "knn_k": 3}, 20, False)])
def test_knn_rows_when_asked_or_when_the_pool_is_larger_than_exact_max_n(params, n, knn):
    x, ids = blobs(n_ids=4, per_id=n // 4)
    ctx = context(x, ids)
    s = NISSampler(**params)
    s.select(ctx, 25, np.random.default_rng(0))
    assert s.stats_["knn_rows"] is knn
    d = s.draws_[-1]
    lists = ctx.neighbours.knn(3)[1]
    on_lists = all(set(nb.tolist()) <= set(lists[v].tolist()) for v, nb in zip(d.vertices, d.neighbours))
    if knn:
        assert on_lists  # every neighbour draw stays on the vertex's 3-NN list
    else:
        assert not on_lists  # exact rows reach beyond the 3 nearest (25 draws per 5 vertices)


def test_neighbour_probabilities_use_the_configured_temperature():
    x, ids = blobs(n_ids=4, per_id=5)
    s = NISSampler(tau=0.1)
    s.select(context(x, ids), 16, np.random.default_rng(0))
    d = s.draws_[-1]
    rows = SoftmaxRows(x, tau=0.1)
    for v, nb, p in zip(d.vertices, d.neighbours, d.neighbour_prob):
        support, probs = rows.row(int(v))
        np.testing.assert_allclose(p, probs[np.searchsorted(support, nb)], rtol=1e-5)


def test_draws_are_remembered_per_cycle_and_forgotten_on_a_new_pool():
    x, ids = blobs(n_ids=4, per_id=5)
    ctx = context(x, ids)
    s, last = NISSampler(), NISSampler(estimate_from="last")
    firsts = []
    for cycle in range(3):
        s.select(ctx, 9, np.random.default_rng(cycle))
        last.select(ctx, 9, np.random.default_rng(cycle))
        firsts.append(s.draws_[-1])
    assert len(s.draws_) == 3 and all(a is b for a, b in zip(s.draws_, firsts))  # "all": every cycle
    assert len(last.draws_) == 1  # "last": the previous cycle only
    np.testing.assert_array_equal(last.draws_[0].vertices, firsts[-1].vertices)
    # a different pool: earlier draws say nothing about it, neither for the memory nor the estimate
    x2, ids2 = blobs(n_ids=4, per_id=6)
    store = ConstraintStore(len(x2))
    for u in range(len(x2)):  # even a store that answers every pair of the old draws gives no estimate
        for v in range(u + 1, len(x2)):
            if store.implied(u, v) == 0:
                store.add(u, v, bool(ids2[u] == ids2[v]))
    assert math.isnan(s.population_estimate(store).k_hat) and s.population_estimate(store).n_vertices == 0
    s.select(context(x2, ids2, store=store), 9, np.random.default_rng(5))
    assert len(s.draws_) == 1 and s.n_ == len(x2)


def test_a_fresh_sampler_estimates_nothing():
    s = NISSampler()
    est = s.population_estimate(ConstraintStore(6))
    assert math.isnan(est.k_hat) and math.isnan(est.half_width) and est.n_vertices == 0
    x, ids = blobs(n_ids=2, per_id=3)
    s.select(context(x, ids), 4, np.random.default_rng(0))
    assert s.stats_["population_vertices"] == 0 and math.isnan(s.stats_["population_ci_low"])
