"""NIS: the spec 3.1 estimator (hand case, coverage with a perfect oracle) and the pair sampler."""

from __future__ import annotations

import math

import numpy as np
import pytest

from alreid.constraints import ConstraintStore
from alreid.errors import ConfigError
from alreid.evaluation.population import (NestedDraws, SoftmaxRows, answers_from_labels, draw_nested,
                                          estimate_population, vertex_proposal)
from alreid.samplers.nis import NISSampler, answers_from_constraints
from tests.samplers.test_gbas import blobs, context


def _identities(seed: int, n_ids: int = 30, dim: int = 32, noise: float = 0.4):
    """Clustered features with known truth: 3 to 12 images per identity."""
    rng = np.random.default_rng(seed)
    ids = np.repeat(np.arange(n_ids), rng.integers(3, 13, n_ids))
    c = rng.standard_normal((n_ids, dim))
    centres = c[ids] / np.linalg.norm(c[ids], axis=1, keepdims=True)
    x = centres + noise * rng.standard_normal((len(ids), dim)) / math.sqrt(dim)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), ids


def test_spec_formulas_on_a_hand_case():
    # 4 items, Q uniform; vertex 0 draws itself (q=.5) and 1 (q=.25), both same: n̄ = (2 + 4)/2 = 3,
    # term = (1/3)/(1/4) = 4/3; vertex 2 draws itself (q=.4) and 3 (q=.2, different): n̄ = (2.5 + 0)/2
    # = 1.25, term = 4/1.25 = 3.2. K̂ = 34/15; var̂ = mean of squared deviations = (14/15)^2;
    # half-width = 1.96 sqrt(var̂/2).
    draws = NestedDraws(np.array([0, 2]), np.array([0.25, 0.25]), np.array([[0, 1], [2, 3]]),
                        np.array([[0.5, 0.25], [0.4, 0.2]]))
    est = estimate_population(draws, np.array([[1.0, 1.0], [1.0, 0.0]]))
    assert est.k_hat == pytest.approx(34 / 15)
    assert est.half_width == pytest.approx(1.96 * math.sqrt((14 / 15) ** 2 / 2))
    assert (est.ci_low, est.ci_high) == pytest.approx((34 / 15 - est.half_width, 34 / 15 + est.half_width))
    assert est.n_vertices == 2
    # an unanswered draw drops its vertex: only the first term is left, with no spread to measure
    one = estimate_population(draws, np.array([[1.0, 1.0], [1.0, np.nan]]))
    assert (one.k_hat, one.n_vertices, one.n_dropped) == (pytest.approx(4 / 3), 1, 1)
    assert math.isnan(one.half_width)


def test_similarity_rows_match_the_released_dense_softmax():
    x, _ = blobs(n_ids=4, per_id=5)
    cos = x.astype(np.float64) @ x.T
    np.fill_diagonal(cos, 1.0)
    dense = np.exp(cos / 0.5)
    dense /= dense.sum(axis=1, keepdims=True)
    rows = SoftmaxRows(x, tau=0.5)
    for v in range(len(x)):
        support, p = rows.row(v)
        np.testing.assert_allclose(p[np.argsort(support)], dense[v], rtol=1e-5)
    # uniform Q is what Q ∝ 1/rowsum amounts to; the paper's variant favours sparse regions
    np.testing.assert_allclose(vertex_proposal(rows), 1 / len(x))
    z = np.exp(cos / 0.5).sum(axis=1)
    np.testing.assert_allclose(vertex_proposal(rows, "inverse_degree"), (1 / z) / (1 / z).sum(), rtol=1e-5)


def test_knn_truncated_rows_stay_on_the_neighbour_lists():
    x, _ = blobs(n_ids=6, per_id=5)
    knn = (np.sort(x @ x.T, axis=1)[:, ::-1][:, :7], np.argsort(-(x @ x.T), axis=1)[:, :7])
    rows = SoftmaxRows(x, knn=knn)
    for v in range(len(x)):
        support, p = rows.row(v)
        assert set(support) == set(knn[1][v]) and p.sum() == pytest.approx(1.0)
    draws = draw_nested(rows, vertex_proposal(rows), 20, 6, np.random.default_rng(0))
    assert all(set(nb) <= set(knn[1][v]) for v, nb in zip(draws.vertices, draws.neighbours))


def test_interval_covers_the_true_number_of_identities():
    """50 seeded repetitions with a perfect oracle: K̂ close to K on average, the 95 % interval
    covers K at least 90 % of the time (measured: 47/50; 93.2 % over 1,000 seeds)."""
    covered, ratios = 0, []
    for seed in range(50):
        x, ids = _identities(seed)
        rows = SoftmaxRows(x)
        draws = draw_nested(rows, vertex_proposal(rows), 50, 50, np.random.default_rng(1000 + seed))
        est = estimate_population(draws, answers_from_labels(draws, ids))
        k = len(np.unique(ids))
        covered += est.ci_low <= k <= est.ci_high
        ratios.append(est.k_hat / k)
    assert covered >= 45, covered
    assert abs(np.mean(ratios) - 1.0) < 0.1, np.mean(ratios)


def test_sampler_asks_about_vertices_and_their_draws():
    x, ids = _identities(0)
    ctx = context(x, ids)
    s = NISSampler()
    pairs = s.select(ctx, 100, np.random.default_rng(0))
    assert len(pairs) == 100
    draws = s.draws_[-1]
    assert draws.n_neighbours == 10  # N_n = ceil(sqrt(100))
    assert len(draws) >= 10 and s.stats_["vertices"] == len(draws)
    drawn = {tuple(sorted(p)) for p in draws.pairs().tolist() if p[0] != p[1]}
    assert {tuple(p) for p in pairs.tolist()} <= drawn
    # draws favour likely matches: several times more same-identity pairs than random pairs
    random_rate = np.mean(ids[:, None] == ids[None, :])
    assert np.mean(ids[pairs[:, 0]] == ids[pairs[:, 1]]) > 3 * random_rate


def test_estimate_is_logged_from_the_answers_of_earlier_cycles():
    x, ids = _identities(1)
    store = ConstraintStore(len(x))
    ctx = context(x, ids, store=store)
    s = NISSampler()
    first = s.select(ctx, 400, np.random.default_rng(0))
    assert math.isnan(s.stats_["population_estimate"])  # nothing answered yet
    store.add_many(first, ids[first[:, 0]] == ids[first[:, 1]], cycle=1)
    drawn = s.draws_[0]
    s.select(ctx, 400, np.random.default_rng(1))
    known = answers_from_constraints(drawn, store)
    assert np.isnan(known).any()  # the last vertices' pairs were cut by the budget
    truth = estimate_population(drawn, np.where(np.isnan(known), np.nan, answers_from_labels(drawn, ids)))
    assert s.stats_["population_estimate"] == pytest.approx(truth.k_hat)
    assert s.stats_["population_ci_low"] == pytest.approx(truth.ci_low)
    assert s.stats_["population_vertices"] == truth.n_vertices > 0
    assert s.stats_["population_ci_low"] <= len(np.unique(ids)) <= s.stats_["population_ci_high"]


def test_answers_from_constraints_use_implied_answers():
    store = ConstraintStore(5)
    store.add(0, 1, True)
    store.add(1, 2, True)
    store.add(0, 3, False)
    draws = NestedDraws(np.array([0]), np.array([0.2]), np.array([[0, 2, 3, 4, 0]]), np.full((1, 5), 0.2))
    np.testing.assert_array_equal(answers_from_constraints(draws, store), [[1, 1, 0, np.nan, 1]])


def test_large_pool_never_builds_a_pairwise_matrix():
    n = 300_000  # an n x n float matrix would need 360 GB
    x = np.random.default_rng(0).standard_normal((n, 4)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    from alreid.samplers.base import NeighbourCache, SamplingContext

    ctx = SamplingContext(features=x, labels=np.arange(n), outliers=np.zeros(n, bool),
                          constraints=ConstraintStore(n), neighbours=NeighbourCache(x))
    pairs = NISSampler(similarity="exact").select(ctx, 50, np.random.default_rng(0))
    assert len(pairs) == 50


def test_budget_one_still_asks_one_pair_and_topup_is_bounded():
    x, ids = blobs(n_ids=2, per_id=2)
    store = ConstraintStore(len(x))
    ctx = context(x, ids, store=store)
    assert len(NISSampler().select(ctx, 1, np.random.default_rng(0))) == 1
    for u in range(4):  # every pair known: the top-up loop gives up after max_attempts * budget draws
        for v in range(u + 1, 4):
            if store.implied(u, v) == 0:
                store.add(u, v, ids[u] == ids[v])
    s = NISSampler(max_attempts=3)
    assert len(s.select(ctx, 5, np.random.default_rng(0))) == 0
    assert s.stats_["attempts"] >= 15


@pytest.mark.parametrize("params", [{"tau": 0}, {"tau": "0.5"}, {"vertex_proposal": "degree"},
                                    {"similarity": "dense"}, {"knn_k": 1}, {"knn_k": 2.5},
                                    {"max_attempts": 0}, {"estimate_from": "first"}])
def test_bad_parameters_are_config_errors(params):
    with pytest.raises(ConfigError, match="nis parameter"):
        NISSampler.from_params(params)


@pytest.mark.parametrize("params", [{"vertex_proposal": "inverse_degree"}, {"similarity": "knn", "knn_k": 12},
                                    {"estimate_from": "last", "tau": 0.1}])
def test_contract_holds_for_every_option(params):
    from alreid.testing import check_sampler

    check_sampler("nis", params)
