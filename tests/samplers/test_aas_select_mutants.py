"""AASSampler.select end to end, pinned by the mutation review of its draw (tests/mutants/aas.md, `_select`):
the pool it draws from against the brute-force regions and U_us of test_aas.py for each distance and for the
k-NN path, the answers applied through NP3 (one answer, a cannot-link inside a cluster, the cycle's own refined
labels as view A), one region, and the exact result and statistics when the views agree. Every expected pool
below is worked out by hand on the Figure 1 scene of test_aas.py (its comment block gives the angles)."""

from __future__ import annotations

import numpy as np
import pytest

from alreid.constraints import ConstraintStore
from alreid.samplers import aas_pools as pools
from alreid.samplers.aas import AASSampler
from alreid.samplers.base import NeighbourCache, SamplingContext
from tests.samplers.test_aas import (FIG_A, FIG_B, FIG_OUT, FIG_US, brute_regions, brute_u_us, fig_context, fig_sampler,
                                     random_problem)
from tests.samplers.test_aas_distribution import _cos_gap, expected_p

S2_S3 = {(7, 8), (8, 9), (10, 11), (10, 16), (11, 16)}  # U_us of Figure 1's regions S2 and S3


def pairs_of(pairs: np.ndarray) -> set[tuple[int, int]]:
    return {tuple(p) for p in pairs.tolist()}


def scene_context(monkeypatch, x: np.ndarray, a: np.ndarray, b: np.ndarray, d, outliers: np.ndarray
                  ) -> SamplingContext:
    """A context of a random_problem scene: view A = ``a``, AAS's view B fixed to ``b`` and its d_J to ``d``."""
    monkeypatch.setattr(AASSampler, "_view_b", lambda self, ctx, dd: b.copy())
    monkeypatch.setattr(AASSampler, "_jaccard", lambda self, ctx: pools.as_csr(d))
    return SamplingContext(features=x, labels=a.copy(), outliers=outliers.copy(), constraints=ConstraintStore(len(x)),
                           neighbours=NeighbourCache(x))


def test_views_that_agree_give_an_empty_int_pair_array_and_zero_statistics(monkeypatch):
    s = fig_sampler(monkeypatch, epsilon=0.3)
    monkeypatch.setattr(AASSampler, "_view_b", lambda self, ctx, d: FIG_A * 7 + 1)  # the same partition
    pairs = s.select(fig_context(), 50, np.random.default_rng(0))
    assert pairs.shape == (0, 2) and pairs.dtype == np.int64
    assert s.stats_ == {"regions": 0, "region_images": 0, "views_agree": True, "u_os": 0, "u_us": 0, "pool": 0,
                        "drawn": 0, "pairs_ii": 0, "pairs_io": 0, "pairs_oo": 0, "approx_regions": 0,
                        "epsilon_eff": 0.3, "finch_clamped": False}
    assert s.explain_ == {}


def test_a_single_region(monkeypatch):
    # view B = view A except S2's {8, 9} (B joins 8 to the outlier 9): the one region is {6, 7, 8, 9}; its U_us
    # is (7, 8) inlier-inlier and (8, 9) inlier-outlier; a single region has no medoid pair, so eps_eff = 0
    b = FIG_A.copy()
    b[[8, 9]] = 555
    s = fig_sampler(monkeypatch, epsilon=0.3)
    monkeypatch.setattr(AASSampler, "_view_b", lambda self, ctx, d: b.copy())
    pairs = s.select(fig_context(), 50, np.random.default_rng(0))
    assert pairs_of(pairs) == {(7, 8), (8, 9)}
    st = s.stats_
    assert (st["regions"], st["region_images"], st["u_os"], st["u_us"], st["pool"], st["drawn"]) == (1, 4, 0, 2, 2, 2)
    assert (st["pairs_ii"], st["pairs_io"], st["pairs_oo"], st["epsilon_eff"]) == (1, 1, 0, 0.0)


def test_one_must_link_answer_goes_through_np3(monkeypatch):
    # ML(0, 2) alone joins S1's two A-clusters and its two B-clusters: S1 is no longer a region (as in
    # test_aas.py's two-answer case); S2's and S3's medoids 8, 11 are cos 81 deg apart, below s_min
    store = ConstraintStore(17)
    store.add(0, 2, True)
    s = fig_sampler(monkeypatch, apply_constraints="np3")
    pairs = s.select(fig_context(store), 100, np.random.default_rng(0))
    assert pairs_of(pairs) == S2_S3
    assert (s.stats_["regions"], s.stats_["region_images"], s.stats_["u_os"]) == (2, 7, 0)


def test_a_cannot_link_inside_a_cluster_splits_it_by_the_features(monkeypatch):
    # CL(1, 5) alone: A's cluster {0, 1, 3, 5} (0, 2, 4, 8 deg) splits into {1} and {5}, and 0 (2 deg from 1,
    # 8 from 5) and 3 (2 from 1, 4 from 5) join 1: A = {0, 1, 3} {5} {2, 4}. B ({0, 1, 3} {2, 4, 5}) already
    # separates 1 and 5. S1 shrinks to {2, 4, 5}: U_us (4, 5) (3 deg, B joins them); its medoid is 4 (11 deg, in
    # the middle), 31 deg from S2's medoid 8: cos 31 = 0.857 >= s_min 0.8, each other's best -> U_os (4, 8).
    store = ConstraintStore(17)
    store.add(1, 5, False)
    s = fig_sampler(monkeypatch, apply_constraints="np3")
    pairs = s.select(fig_context(store), 100, np.random.default_rng(0))
    assert pairs_of(pairs) == S2_S3 | {(4, 5), (4, 8)}
    st = s.stats_
    assert (st["regions"], st["region_images"], st["u_os"], st["u_us"]) == (3, 10, 1, 6)


def test_view_a_is_the_cycles_np3_labels_when_the_cycle_refined_with_np3(monkeypatch):
    # The trial refines the base clustering with NP3 (its own options) and hands every sampler those labels;
    # AAS must take them as view A, not refine the base labels again. Here the cycle's labels are view B with
    # ML(0, 2) applied (B's clusters 10 and 11 joined), which is exactly AAS's own view B after NP3: no region.
    # Refining the base labels instead would leave S2 and S3 as regions.
    store = ConstraintStore(17)
    store.add(0, 2, True)
    refined = np.where(FIG_B == 11, 10, FIG_B)
    ctx = fig_context(store)
    ctx = SamplingContext(features=ctx.features, labels=refined, outliers=FIG_OUT.copy(), constraints=store,
                          neighbours=ctx.neighbours, base_labels=FIG_A.copy(), refined_with="np3")
    s = fig_sampler(monkeypatch, apply_constraints="np3")
    pairs = s.select(ctx, 100, np.random.default_rng(0))
    assert len(pairs) == 0 and s.stats_["views_agree"] is True
    ctx.refined_with = "none"  # the same context, labels not from NP3: AAS refines the base labels itself
    assert pairs_of(s.select(ctx, 100, np.random.default_rng(0))) == S2_S3


@pytest.mark.parametrize("dense_cap", [2048, 2])
def test_u_us_pool_equals_the_brute_force_for_each_distance(monkeypatch, dense_cap):
    # epsilon = 0: only U_us carries mass, so a budget above the pool returns exactly U_us. dense_cap = 2 sends
    # every region of 3+ images down the k-NN path, whose lists (k = min(n, 32)) are complete here: still exact.
    rng = np.random.default_rng(3)
    differ = 0
    for _ in range(25):
        n = int(rng.integers(4, 26))
        x, a, b, d, dense = random_problem(rng, n, jaccard=True)
        want = {"jaccard": brute_u_us(x, a, b, dense), "cosine": brute_u_us(x, a, b, None)}
        if not want["jaccard"] or not want["cosine"]:
            continue
        differ += set(want["jaccard"]) != set(want["cosine"])
        reg = pools.find_regions(a, b)
        outliers = rng.random(n) < 0.3
        for dist in ("jaccard", "cosine"):
            ctx = scene_context(monkeypatch, x, a, b, d, outliers)
            s = AASSampler(sim="cosine", dist=dist, epsilon=0.0, dense_cap=dense_cap, apply_constraints="none")
            pairs = s.select(ctx, 10**6, np.random.default_rng(0))
            assert pairs_of(pairs) == set(want[dist])
            assert s.stats_["approx_regions"] == int((reg.size > dense_cap).sum())
            assert s.stats_["u_us"] == len(want[dist]) == s.stats_["drawn"]
    assert differ >= 3  # the scenes tell the two distances apart


# ---- the probability of every pair in the pool (explain_["probability"] of a draw that takes the whole pool) ----
def probabilities(s: AASSampler, ctx: SamplingContext) -> dict[tuple[int, int], float]:
    pairs = s.select(ctx, 10**6, np.random.default_rng(0))
    return dict(zip(map(tuple, pairs.tolist()), s.explain_["probability"].tolist()))


@pytest.mark.parametrize("omega_mode", ["uniform", "sim"])
def test_figure1_probability_of_every_pair_by_hand(monkeypatch, omega_mode):
    # Eq. 5-6 by hand (test_aas_distribution.expected_p): deterministic, so omega_mode="sim" is told apart from
    # uniform weights even where the cosines are close (S3: cos 3, 7, 4 deg -> 0.3339, 0.3318, 0.3343 of the cell)
    s = fig_sampler(monkeypatch, omega_mode=omega_mode, epsilon=0.1)
    got = probabilities(s, fig_context())
    want = expected_p(0.1, {(5, 8): _cos_gap(5, 8)}, omega_mode)
    assert set(got) == set(want)
    for pair, p in want.items():
        assert got[pair] == pytest.approx(p, rel=1e-5, abs=0)


@pytest.mark.parametrize("sim, dist", [("jaccard", "jaccard"), ("jaccard", "cosine"), ("cosine", "jaccard")])
def test_omega_sim_weighs_u_us_pairs_by_the_sim_option(monkeypatch, sim, dist):
    # omega_mode="sim": within its (type, region) cell a U_us pair weighs its similarity under `sim` (1 - d_J, an
    # absent d_J entry being 1, or the cosine), whichever distance found the pool. Reference: P(. | U_us) of
    # pools.us_conditional (checked by hand in test_aas.py) on similarities computed here from the dense d_J.
    rng = np.random.default_rng(8)
    seen = 0
    for _ in range(20):
        n = int(rng.integers(5, 26))
        x, a, b, d, dense = random_problem(rng, n, jaccard=True)
        us = brute_u_us(x, a, b, dense if dist == "jaccard" else None)
        if not us:
            continue
        outliers = rng.random(n) < 0.3
        pairs = np.array(sorted(us), dtype=np.int64)
        cos = x.astype(np.float64) @ x.T.astype(np.float64)
        sims = np.array([(1.0 - dense[p]) if sim == "jaccard" else cos[p] for p in map(tuple, pairs.tolist())])
        types = outliers[pairs[:, 0]].astype(int) + outliers[pairs[:, 1]].astype(int)
        p_us = pools.us_conditional(types, np.array([us[p] for p in map(tuple, pairs.tolist())]),
                                    pools.find_regions(a, b), sims, pi_mode="uniform", rho_mode="disagreement",
                                    omega_mode="sim")
        want = {p: q / p_us.sum() for p, q in zip(map(tuple, pairs.tolist()), p_us.tolist()) if q > 0}
        ctx = scene_context(monkeypatch, x, a, b, d, outliers)
        s = AASSampler(sim=sim, dist=dist, omega_mode="sim", epsilon=0.0, apply_constraints="none")
        got = probabilities(s, ctx)
        assert set(got) == set(want)
        for pair, p in want.items():
            assert got[pair] == pytest.approx(p, rel=1e-6, abs=1e-12)
        seen += len(set(np.round(sims, 6))) > 1  # scenes whose similarities differ, so omega is not flat
    assert seen >= 5


def test_regions_without_a_u_us_pair_leave_only_the_medoid_pair(monkeypatch):
    # Two copies of a three-image region: A = {0, 1} {2}, B = {0} {1, 2}, with 0 and 2 one degree apart and 1 at
    # 90 deg. The closest cross pair both ways is (0, 2), which both views keep apart: consistent, so U_us is
    # empty. Medoids: 2 (1 deg) and 5 (21 deg), cos 20 deg = 0.94 >= s_min 0.8: U_os = {(2, 5)} with all the mass.
    x = np.array([[np.cos(t), np.sin(t)] for t in np.deg2rad([0, 90, 1, 20, 110, 21])], dtype=np.float32)
    a = np.array([0, 0, 1, 2, 2, 3])
    b = np.array([0, 1, 1, 2, 3, 3])
    ctx = SamplingContext(features=x, labels=a, outliers=np.zeros(6, bool), constraints=ConstraintStore(6),
                          neighbours=NeighbourCache(x))
    s = fig_sampler(monkeypatch, epsilon=0.3)
    monkeypatch.setattr(AASSampler, "_view_b", lambda self, ctx, d: b.copy())
    got = probabilities(s, ctx)
    assert got == {(2, 5): 1.0}
    st = s.stats_
    assert (st["regions"], st["u_os"], st["u_us"], st["pool"], st["epsilon_eff"]) == (2, 1, 0, 1, 1.0)


def brute_u_os(a, b, cos, dmat, smat, k_max: int, s_min: float) -> set[tuple[int, int]] | None:
    """U_os by brute force: each region's medoid (smallest summed distance under dmat, ties by the larger cosine
    sum, then index), each medoid's k_max most similar medoids under smat (ties: cosine, index) kept from s_min.
    None when a medoid is a near-tie (scenes left out)."""
    medoids = []
    for region in brute_regions(a, b):
        s_ = sorted(region)
        keys = sorted((dmat[i, s_].sum(), -cos[i, s_].sum(), i) for i in s_)
        if len(keys) > 1 and keys[1][0] - keys[0][0] < 1e-5 and keys[1][1] - keys[0][1] < 1e-5:
            return None  # the medoid's scores are float32 sums: closer than 1e-5 is a tie decided by rounding
        medoids.append(keys[0][2])
    want = set()
    for m in medoids:
        ranked = sorted((o for o in medoids if o != m), key=lambda o: (-smat[m, o], -cos[m, o], o))
        want |= {(min(m, o), max(m, o)) for o in ranked[:k_max] if smat[m, o] >= s_min}
    return want


@pytest.mark.parametrize("sim, dist", [("jaccard", "jaccard"), ("cosine", "jaccard"), ("jaccard", "cosine")])
def test_u_os_pool_equals_the_brute_force_for_each_option(monkeypatch, sim, dist):
    # epsilon = 1: only U_os carries mass, each pair in proportion to its similarity under `sim`. Scenes where the
    # other `sim` or the other `dist` would give another pool are counted: the options must matter somewhere.
    rng = np.random.default_rng(12)
    tested = informative = 0
    for _ in range(150):
        n = int(rng.integers(6, 26))
        x, a, b, d, dense = random_problem(rng, n, jaccard=True)
        cos = x.astype(np.float64) @ x.T.astype(np.float64)
        dist_of = {"jaccard": dense, "cosine": 1.0 - cos}
        sim_of = {"jaccard": 1.0 - dense, "cosine": cos}
        want = brute_u_os(a, b, cos, dist_of[dist], sim_of[sim], 2, 0.3)
        swap = {"jaccard": "cosine", "cosine": "jaccard"}
        other_sim = brute_u_os(a, b, cos, dist_of[dist], sim_of[swap[sim]], 2, 0.3)
        other_dist = brute_u_os(a, b, cos, dist_of[swap[dist]], sim_of[sim], 2, 0.3)
        if not want:
            continue
        ctx = scene_context(monkeypatch, x, a, b, d, np.zeros(n, bool))
        s = AASSampler(sim=sim, dist=dist, k_max=2, s_min=0.3, epsilon=1.0, apply_constraints="none")
        got = probabilities(s, ctx)
        assert set(got) == want
        total = sum(sim_of[sim][p] for p in want)
        for p in want:
            assert got[p] == pytest.approx(sim_of[sim][p] / total, rel=1e-6)
        tested += 1
        informative += (other_sim is not None and other_sim != want) or (other_dist is not None and other_dist != want)
    assert tested >= 8 and informative >= 3


def test_figure1_probabilities_with_pi_weights_and_rho_by_size(monkeypatch):
    # pi_mode [1, 2, 1]: pi(ii) = 1/4, pi(io) = 1/2, pi(oo) = 1/4 (all three types present); rho_mode "size":
    # rho(S1 | ii) = 6 / (6 + 4), rho(S2 | ii) = 4 / 10, rho(S2 | io) = rho(S3 | oo) = 1; omega uniform in the cell.
    # epsilon 0.1 on the one medoid pair (5, 8).
    from fractions import Fraction


    pi = {"ii": Fraction(1, 4), "io": Fraction(1, 2), "oo": Fraction(1, 4)}
    rho = {("ii", 0): Fraction(6, 10), ("ii", 1): Fraction(4, 10), ("io", 1): Fraction(1), ("oo", 2): Fraction(1)}
    size = {cell: sum(1 for c in FIG_US.values() if c == cell) for cell in rho}
    want = {pair: 0.9 * float(pi[cell[0]] * rho[cell] / size[cell]) for pair, cell in FIG_US.items()}
    want[(5, 8)] = 0.1
    s = fig_sampler(monkeypatch, pi_mode=[1, 2, 1], rho_mode="size", epsilon=0.1)
    got = probabilities(s, fig_context())
    assert set(got) == set(want)
    for pair, p in want.items():
        assert got[pair] == pytest.approx(p, rel=1e-9)


def test_a_pool_whose_pairs_are_all_answered_draws_nothing(monkeypatch):
    # every pair of Figure 1's pool answered "different": the regions stay, the pool is empty
    store = ConstraintStore(17)
    for u, v in [(5, 8), *sorted(FIG_US)]:
        store.add(u, v, False)
    s = fig_sampler(monkeypatch)
    pairs = s.select(fig_context(store), 100, np.random.default_rng(0))
    assert pairs.shape == (0, 2) and pairs.dtype == np.int64
    st = s.stats_
    assert (st["regions"], st["u_os"], st["u_us"], st["pool"], st["drawn"]) == (3, 0, 0, 0, 0)


def test_draw_with_replacement_dedup_may_return_fewer_distinct_pairs(monkeypatch):
    # budget = the pool (8 pairs): without replacement every draw is the whole pool; with replacement and
    # de-duplication the 8 draws repeat some pair almost always (P is far from uniform: 0.6 on (5, 8))
    for mode, check in (("without_replacement", lambda k: k == 8), ("with_replacement_dedup", lambda k: k < 8)):
        s = fig_sampler(monkeypatch, draw=mode)
        sizes = []
        for seed in range(10):
            pairs = s.select(fig_context(), 8, np.random.default_rng(seed))
            assert len(pairs_of(pairs)) == len(pairs) == s.stats_["drawn"]  # distinct pairs, all counted
            sizes.append(len(pairs))
        assert sum(map(check, sizes)) >= 9, (mode, sizes)
