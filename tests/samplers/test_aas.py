"""AAS sampler: the paper's Figure 1 worked by hand, brute-force equivalence of every pool, the
sampling distribution, hyperparameter validation, the shared contract and an end-to-end run."""

from __future__ import annotations

import itertools
import shutil
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from alreid.constraints import ConstraintStore
from alreid.errors import ConfigError
from alreid.samplers import aas_pools as pools
from alreid.samplers.aas import AASSampler
from alreid.samplers.base import NeighbourCache, SamplingContext


def circle(deg: list[float]) -> np.ndarray:
    t = np.deg2rad(np.asarray(deg, dtype=np.float64))
    return np.stack([np.cos(t), np.sin(t)], axis=1).astype(np.float32)


# ---------------------------------------------------------------------------------------------------
# Figure 1, built by hand. Points on the unit circle (cosine distance = monotone in the angle gap).
#
# S1 (the caption's example, paper names x1..x6 -> indices 0..5):
#   angles x1=0, x2=2, x3=14, x4=4, x5=11, x6=8 (degrees)
#   A: {x1,x2,x4,x6} {x3,x5}      B: {x1,x2,x4} {x3,x5,x6}
#   A+ Δ B+ = {(x1,x6),(x2,x6),(x4,x6)} ∪ {(x3,x6),(x5,x6)}  (x6 joins {x1,x2,x4} in A only)
#   closest A cross pair of {x1,x2,x4,x6}|{x3,x5} = (x6,x5) (3°); B joins them -> kept
#   closest B cross pair of {x1,x2,x4}|{x3,x5,x6} = (x4,x6) (4°); A joins them -> kept
#   => I_1 = {(3,5), (4,5)}; the redundant (0,5), (1,5) and the non-closest (2,5) are filtered.
# S2 (one DBSCAN outlier, index 9): angles 6=36, 7=38, 8=42, 9=45
#   A: {6,7,8} {9}(outlier)       B: {6,7} {8,9}
#   A cross {6,7,8}|{9}: closest (8,9), B joins -> kept (inlier-outlier)
#   B cross {6,7}|{8,9}: closest (7,8), A joins -> kept (inlier-inlier)   => I_2 = {(7,8), (8,9)}
# S3 (three DBSCAN outliers FINCH groups): angles 10=120, 11=123, 16=127
#   A: {10} {11} {16}             B: {10,11,16}
#   singletons are their own closest pairs => I_3 = {(10,11), (10,16), (11,16)} (outlier-outlier)
# Consistent (not regions): {12,13,14} at 200..204 in both views; 15 (outlier) alone in both views.
# Medoids (cosine): S1 circular mean ~6.5° -> x6 = 5; S2 mean ~40.25° -> 8 (42°); S3 mean ~123.3° -> 11.
# Medoid sims: 5-8 = cos 34° = 0.829, 8-11 = cos 81° = 0.156, 5-11 = cos 115° < 0.
#   k_max=1, s_min=0.8 -> U_os = {(5,8)};  k_max=2, s_min=0.1 -> U_os = {(5,8), (8,11)}.
# Region ambiguity 1 - |A+ ∩ B+| / |A+ ∪ B+|: S1 A+=7, B+=6, ∩=4 -> 5/9; S2 A+=3, B+=2, ∩=1 -> 3/4; S3 -> 1.
# ---------------------------------------------------------------------------------------------------
FIG_ANGLES = [0, 2, 14, 4, 11, 8, 36, 38, 42, 45, 120, 123, 200, 202, 204, 300, 127]
FIG_A = np.array([0, 0, 1, 0, 1, 0, 2, 2, 2, 100, 101, 102, 3, 3, 3, 103, 104])
FIG_B = np.array([10, 10, 11, 10, 11, 11, 12, 12, 13, 13, 14, 14, 15, 15, 15, 16, 14])
FIG_OUT = np.zeros(17, dtype=bool)
FIG_OUT[[9, 10, 11, 15, 16]] = True
FIG_REGIONS = [{0, 1, 2, 3, 4, 5}, {6, 7, 8, 9}, {10, 11, 16}]
FIG_US = {(3, 5): ("ii", 0), (4, 5): ("ii", 0), (7, 8): ("ii", 1), (8, 9): ("io", 1),
          (10, 11): ("oo", 2), (10, 16): ("oo", 2), (11, 16): ("oo", 2)}


def fig_regions() -> pools.Regions:
    return pools.find_regions(FIG_A, FIG_B)


def test_figure1_regions_and_ambiguity():
    reg = fig_regions()
    assert reg.count == 3
    got = [set(np.flatnonzero(reg.region == k).tolist()) for k in range(reg.count)]
    assert got == FIG_REGIONS  # numbered by smallest member
    assert np.all(reg.region[[12, 13, 14, 15]] == -1)
    np.testing.assert_allclose(reg.alpha, [5 / 9, 3 / 4, 1.0])
    assert reg.size.tolist() == [6, 4, 3]


def test_figure1_medoids_and_u_os():
    x = circle(FIG_ANGLES)
    reg = fig_regions()
    med = pools.region_medoids(x, reg, None)
    assert med.tolist() == [5, 8, 11]
    pairs, sim = pools.medoid_pairs(x, med, None, k_max=1, s_min=0.8)
    assert pairs.tolist() == [[5, 8]]
    np.testing.assert_allclose(sim, [np.cos(np.deg2rad(34))], rtol=1e-5)
    pairs, _ = pools.medoid_pairs(x, med, None, k_max=2, s_min=0.1)
    assert pairs.tolist() == [[5, 8], [8, 11]]


def test_figure1_u_us_keeps_one_pair_per_ambiguity():
    x = circle(FIG_ANGLES)
    reg = fig_regions()
    scan = pools.scan_regions(x, reg, None, dense_cap=2048)
    assert scan.approx == 0 and scan.affinity is None
    got = {tuple(p): int(r) for p, r in zip(scan.pairs.tolist(), scan.region)}
    assert got == {k: v[1] for k, v in FIG_US.items()}
    # the caption's redundant pairs (x1,x6), (x2,x6) resolve the same ambiguity as (x4,x6): absent
    assert (0, 5) not in got and (1, 5) not in got and (2, 5) not in got


def test_figure1_probabilities_by_hand():
    reg = fig_regions()
    pairs = np.array(sorted(FIG_US))
    types = np.array([pools.PAIR_TYPES.index(FIG_US[tuple(p)][0]) for p in pairs.tolist()])
    preg = np.array([FIG_US[tuple(p)][1] for p in pairs.tolist()])
    p = pools.us_conditional(types, preg, reg, np.ones(len(pairs)))
    # pi = 1/3 per type; rho(S1|ii) = (5/9)/(5/9+3/4) = 20/47, rho(S2|ii) = 27/47; omega = 1/n_ik
    expect = {(3, 5): Fraction(10, 141), (4, 5): Fraction(10, 141), (7, 8): Fraction(9, 47),
              (8, 9): Fraction(1, 3), (10, 11): Fraction(1, 9), (10, 16): Fraction(1, 9), (11, 16): Fraction(1, 9)}
    np.testing.assert_allclose(p, [float(expect[tuple(q)]) for q in pairs.tolist()], rtol=1e-12)
    assert np.isclose(p.sum(), 1.0)
    # Eq. 6 with U_os = {(5,8)}: P(5,8) = eps, the rest (1 - eps) * P(.|U_us)
    u, prob, eps = pools.mixture(np.array([[5, 8]]), np.array([0.83]), pairs, p, 0.6, 17)
    assert eps == 0.6 and u[0].tolist() == [5, 8]
    np.testing.assert_allclose(prob, np.concatenate([[0.6], 0.4 * p]))


def fig_context(store: ConstraintStore | None = None) -> SamplingContext:
    x = circle(FIG_ANGLES)
    return SamplingContext(features=x, labels=FIG_A.copy(), outliers=FIG_OUT.copy(),
                           constraints=store or ConstraintStore(len(x)), neighbours=NeighbourCache(x))


def fig_sampler(monkeypatch, **kw) -> AASSampler:
    monkeypatch.setattr(AASSampler, "_view_b", lambda self, ctx, d: FIG_B.copy())
    params = dict(sim="cosine", dist="cosine", k_max=1, s_min=0.8, apply_constraints="none")
    params.update(kw)
    return AASSampler.from_params(params)


def test_figure1_sampler_pool_and_known_pairs_filtered(monkeypatch):
    s = fig_sampler(monkeypatch)
    pairs = s.select(fig_context(), 100, np.random.default_rng(0))
    assert {tuple(p) for p in pairs.tolist()} == set(FIG_US) | {(5, 8)}
    st = s.stats_
    assert (st["regions"], st["region_images"], st["u_os"], st["u_us"], st["pool"], st["drawn"]) == (3, 13, 1, 7, 8, 8)
    assert (st["pairs_ii"], st["pairs_io"], st["pairs_oo"], st["views_agree"]) == (3, 1, 3, False)
    assert all(type(v) in (int, float, bool) for v in st.values())
    # known: CL(4,5) asked directly; implied: ML(8,12) + CL(12,9) => CL(8,9); ML(5,13)+ML(8,13) => ML(5,8)
    store = ConstraintStore(17)
    store.add(4, 5, False)
    store.add(8, 12, True)
    store.add(9, 12, False)
    store.add(5, 13, True)
    store.add(8, 13, True)
    pairs = s.select(fig_context(store), 100, np.random.default_rng(0))
    assert {tuple(p) for p in pairs.tolist()} == set(FIG_US) - {(4, 5), (8, 9)}
    assert s.stats_["u_os"] == 0 and s.stats_["u_us"] == 5 and s.stats_["epsilon_eff"] == 0.0


def test_views_agree_gives_nothing(monkeypatch):
    monkeypatch.setattr(AASSampler, "_view_b", lambda self, ctx, d: FIG_A * 7 + 1)  # same partition
    s = AASSampler(sim="cosine", dist="cosine", apply_constraints="none")
    pairs = s.select(fig_context(), 50, np.random.default_rng(0))
    assert len(pairs) == 0
    assert s.stats_["views_agree"] is True and s.stats_["regions"] == 0 and s.stats_["pool"] == 0


def test_budget_caps_the_draw(monkeypatch):
    s = fig_sampler(monkeypatch)
    for budget in (1, 3, 8, 9):
        pairs = s.select(fig_context(), budget, np.random.default_rng(budget))
        assert len(pairs) == min(budget, 8) == s.stats_["drawn"]


# ---------------------------------------------------------------------------------------------------
# brute-force references
# ---------------------------------------------------------------------------------------------------
def brute_regions(a, b) -> list[set[int]]:
    clusters = [("A", c, frozenset(np.flatnonzero(a == c).tolist())) for c in np.unique(a)]
    clusters += [("B", c, frozenset(np.flatnonzero(b == c).tolist())) for c in np.unique(b)]
    parent = list(range(len(clusters)))

    def find(i):
        while parent[i] != i:
            i = parent[i]
        return i

    touched = set()
    for i, j in itertools.combinations(range(len(clusters)), 2):
        if clusters[i][0] == clusters[j][0]:
            continue
        si, sj = clusters[i][2], clusters[j][2]
        iou = len(si & sj) / len(si | sj)
        if 0 < iou < 1:
            parent[find(i)] = find(j)
            touched |= {i, j}
    comps: dict[int, set[int]] = {}
    for i in touched:
        comps.setdefault(find(i), set()).update(clusters[i][2])
    return sorted(comps.values(), key=min)


def random_labels(rng, n, ka, kb, groups=1):
    g = rng.integers(0, groups, n) * 100  # independent groups -> several regions
    a = g + rng.integers(0, ka, n)
    b = g + rng.integers(0, kb, n)
    # plant a few identical clusters so that consistent components exist
    same = rng.random(n) < 0.3
    b[same] = 1000 + a[same]
    a[same] = 1000 + a[same]
    return a, b


def test_regions_equal_brute_force_closure():
    rng = np.random.default_rng(1)
    for _ in range(200):
        n = int(rng.integers(1, 30))
        a, b = random_labels(rng, n, int(rng.integers(1, 8)), int(rng.integers(1, 8)), int(rng.integers(1, 4)))
        reg = pools.find_regions(a, b)
        got = [set(np.flatnonzero(reg.region == k).tolist()) for k in range(reg.count)]
        assert got == brute_regions(a, b)
        for k, s in enumerate(got):  # ambiguity against explicit pair sets
            ap = {p for p in itertools.combinations(sorted(s), 2) if a[p[0]] == a[p[1]]}
            bp = {p for p in itertools.combinations(sorted(s), 2) if b[p[0]] == b[p[1]]}
            union = ap | bp
            want = 1 - len(ap & bp) / len(union) if union else 1.0
            assert np.isclose(reg.alpha[k], max(want, 1e-6))


def random_problem(rng, n, *, jaccard, ties=False):
    if ties:  # standard basis vectors: every cosine is exactly 0 or 1, so exact ties abound
        x = np.eye(4, dtype=np.float32)[rng.integers(0, 4, n)]
    else:
        x = rng.standard_normal((n, 3)).astype(np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
    a, b = random_labels(rng, n, int(rng.integers(2, 6)), int(rng.integers(2, 6)), int(rng.integers(1, 4)))
    d = None
    if jaccard:  # quantised, so that ties in d_J are common; absent entries (=1) and explicit zeros
        full = rng.choice([0.0, 0.25, 0.5, 0.75, 1.0], size=(n, n))
        full = np.triu(full, 1)
        full = full + full.T
        present = np.triu(rng.random((n, n)) < 0.5, 1)
        present = present | present.T
        np.fill_diagonal(present, True)
        r, c = np.nonzero(present)
        d = sp.csr_matrix((full[r, c], (r, c)), shape=(n, n))
        assert (d.data == 0).any()
        dense = np.where(present, full, 1.0)
        np.fill_diagonal(dense, 0.0)
    else:
        dense = None
    return x, a, b, d, dense


def brute_u_us(x, a, b, dense):
    cos = x.astype(np.float64) @ x.T.astype(np.float64)
    dist = 1 - cos if dense is None else dense
    out = {}
    for k, s in enumerate(brute_regions(a, b)):
        s = sorted(s)
        ap = {p for p in itertools.combinations(s, 2) if a[p[0]] == a[p[1]]}
        bp = {p for p in itertools.combinations(s, 2) if b[p[0]] == b[p[1]]}
        incons = ap ^ bp  # Eq. 1
        cand = set()
        for lab in (a, b):  # Eq. 2
            for ci, cj in itertools.combinations(sorted(set(lab[s].tolist())), 2):
                cross = [(min(u, v), max(u, v)) for u in s for v in s if lab[u] == ci and lab[v] == cj]
                cand.add(min(cross, key=lambda p: (dist[p], 1 - cos[p], p)))
        for p in incons & cand:  # Eq. 3
            out[p] = k
    return out


@pytest.mark.parametrize("jaccard,ties", [(False, False), (True, False), (False, True), (True, True)])
def test_u_us_equals_brute_force(jaccard, ties):
    rng = np.random.default_rng(2 + jaccard + 2 * ties)
    for trial in range(60):
        n = int(rng.integers(2, 40 if ties else 26))
        x, a, b, d, dense = random_problem(rng, n, jaccard=jaccard, ties=ties)
        reg = pools.find_regions(a, b)
        want = brute_u_us(x, a, b, dense)
        dist = (1 - x.astype(np.float64) @ x.T.astype(np.float64)) if dense is None else dense
        # exact path, packed and unpacked
        for pack in (512, 1):
            scan = pools.scan_regions(x, reg, d, dense_cap=2048, pack=pack)
            assert scan.approx == 0
            assert {tuple(p): int(r) for p, r in zip(scan.pairs.tolist(), scan.region)} == want
            np.testing.assert_allclose(scan.dist, [dist[p] for p in map(tuple, scan.pairs.tolist())], atol=1e-6)
        # approximate path with complete neighbour lists is exact as well (small row chunks on purpose)
        knn = np.argsort(-(x @ x.T), axis=1, kind="stable")
        scan = pools.scan_regions(x, reg, d, dense_cap=2, knn_idx=knn, row_chunk=3)
        assert scan.approx == int((reg.size > 2).sum())
        assert {tuple(p): int(r) for p, r in zip(scan.pairs.tolist(), scan.region)} == want
        np.testing.assert_allclose(scan.dist, [dist[p] for p in map(tuple, scan.pairs.tolist())], atol=1e-6)


def test_approximate_path_only_uses_knn_edges():
    rng = np.random.default_rng(7)
    x, a, b, _, _ = random_problem(rng, 40, jaccard=False)
    reg = pools.find_regions(a, b)
    knn = np.argsort(-(x @ x.T), axis=1, kind="stable")[:, :4]
    scan = pools.scan_regions(x, reg, None, dense_cap=2, knn_idx=knn)
    assert scan.approx > 0
    edges = {(min(i, j), max(i, j)) for i in range(40) for j in knn[i]}
    assert all(tuple(p) in edges for p in scan.pairs.tolist())
    with pytest.raises(ValueError, match="knn"):
        pools.scan_regions(x, reg, None, dense_cap=2)


def test_medoids_equal_brute_force():
    rng = np.random.default_rng(4)
    for jaccard in (False, True):
        for _ in range(40):
            x, a, b, d, dense = random_problem(rng, int(rng.integers(2, 26)), jaccard=jaccard)
            reg = pools.find_regions(a, b)
            knn = np.argsort(-(x @ x.T), axis=1, kind="stable")
            cap = int(rng.choice([2, 2048]))  # affinities read on the exact and on the k-NN path alike
            scan = pools.scan_regions(x, reg, d, dense_cap=cap, knn_idx=knn)
            med = pools.region_medoids(x, reg, scan.affinity)
            cos = x.astype(np.float64) @ x.T.astype(np.float64)
            for k, s in enumerate(brute_regions(a, b)):
                s = sorted(s)
                key = lambda i: ((dense[i, s].sum() if jaccard else 0.0), -cos[i, s].sum(), i)  # noqa: E731
                best = min(s, key=key)
                if jaccard:  # float sums: accept an equal-score medoid
                    assert np.isclose(key(med[k])[0], key(best)[0]) and med[k] in s
                    if not np.isclose(key(med[k])[1], key(best)[1]):
                        assert med[k] == best
                else:
                    assert med[k] == best or np.isclose(cos[med[k], s].sum(), cos[best, s].sum())


@pytest.mark.parametrize("mode,s_min", [("cosine", 0.3), ("cosine", 0.0), ("jaccard", 0.3), ("jaccard", 0.0)])
def test_medoid_pairs_equal_brute_force(mode, s_min):
    rng = np.random.default_rng(5)
    for _ in range(30):
        n = int(rng.integers(2, 30))
        x, _, _, d, dense = random_problem(rng, n, jaccard=mode == "jaccard")
        med = np.sort(rng.choice(n, size=int(rng.integers(1, n + 1)), replace=False))
        k_max = int(rng.integers(1, 4))
        cos = x.astype(np.float64) @ x.T.astype(np.float64)
        sim = cos if mode == "cosine" else 1 - dense
        want = set()
        for m in med:
            ranked = sorted((o for o in med if o != m), key=lambda o: (-sim[m, o], -cos[m, o], o))
            want |= {(min(m, o), max(m, o)) for o in ranked[:k_max] if sim[m, o] >= s_min - 1e-12}
        pairs, psim = pools.medoid_pairs(x, med, d, k_max=k_max, s_min=s_min)
        assert {tuple(p) for p in pairs.tolist()} == want
        np.testing.assert_allclose(psim, [sim[p] for p in map(tuple, pairs.tolist())], atol=1e-6)


# ---------------------------------------------------------------------------------------------------
# the distribution and the draw
# ---------------------------------------------------------------------------------------------------
def random_us(rng, m, count):
    reg = pools.Regions(np.zeros(0, np.int64), count, rng.integers(2, 50, count), rng.random(count) + 0.01,
                        np.zeros(0, np.int64), np.zeros(0, np.int64))
    return reg, rng.integers(0, 3, m), rng.integers(0, count, m), rng.random(m)


@pytest.mark.parametrize("pi_mode", ["uniform", "proportional", [0.2, 0.3, 0.5], [1.0, 0.0, 0.0]])
@pytest.mark.parametrize("rho_mode", ["disagreement", "count", "size"])
@pytest.mark.parametrize("omega_mode", ["uniform", "sim"])
def test_us_conditional_is_a_distribution(pi_mode, rho_mode, omega_mode):
    rng = np.random.default_rng(0)
    for _ in range(20):
        reg, types, preg, sims = random_us(rng, int(rng.integers(1, 40)), int(rng.integers(1, 6)))
        p = pools.us_conditional(types, preg, reg, sims, pi_mode=pi_mode, rho_mode=rho_mode, omega_mode=omega_mode)
        assert np.all(p >= 0)
        mass = np.array([p[types == i].sum() for i in range(3)])
        present = np.bincount(types, minlength=3) > 0
        if isinstance(pi_mode, list) and not np.any(np.asarray(pi_mode)[present] > 0):
            assert p.sum() == 0
            continue
        assert np.isclose(p.sum(), 1.0)
        if pi_mode == "uniform":  # equal type masses over the non-empty types
            np.testing.assert_allclose(mass[present], 1.0 / present.sum())
        elif pi_mode == "proportional":
            np.testing.assert_allclose(mass, np.bincount(types, minlength=3) / len(types))
        else:
            w = np.asarray(pi_mode) * present
            np.testing.assert_allclose(mass, w / w.sum())


def test_rho_count_mode_and_omega_sim_by_hand():
    reg = pools.Regions(np.zeros(0, np.int64), 2, np.array([10, 4]), np.array([0.5, 0.25]),
                        np.zeros(0, np.int64), np.zeros(0, np.int64))
    types = np.array([0, 0, 0])
    preg = np.array([0, 0, 1])
    sims = np.array([0.3, 0.1, 0.9])
    # count: rho(0)=2/3, rho(1)=1/3; omega sim within region 0: 0.75, 0.25
    p = pools.us_conditional(types, preg, reg, sims, rho_mode="count", omega_mode="sim")
    np.testing.assert_allclose(p, [2 / 3 * 0.75, 2 / 3 * 0.25, 1 / 3])
    # size: rho ∝ 10, 4 ; disagreement: rho ∝ 0.5, 0.25
    p = pools.us_conditional(types, preg, reg, sims, rho_mode="size")
    np.testing.assert_allclose(p, [10 / 14 / 2, 10 / 14 / 2, 4 / 14])
    p = pools.us_conditional(types, preg, reg, sims)
    np.testing.assert_allclose(p, [1 / 3, 1 / 3, 1 / 3])


def test_mixture_eps_eff_rules_and_shared_pairs():
    os_pairs, p_os = np.array([[0, 1], [2, 3]]), np.array([0.5, 1.5])
    us_pairs, p_us = np.array([[2, 3], [4, 5]]), np.array([0.25, 0.75])
    pairs, prob, eps = pools.mixture(os_pairs, p_os, us_pairs, p_us, 0.6, 10)
    assert eps == 0.6 and pairs.tolist() == [[0, 1], [2, 3], [4, 5]]
    np.testing.assert_allclose(prob, [0.6 * 0.25, 0.6 * 0.75 + 0.4 * 0.25, 0.4 * 0.75])  # both terms for (2,3)
    pairs, prob, eps = pools.mixture(np.zeros((0, 2), int), np.zeros(0), us_pairs, p_us, 0.6, 10)
    assert eps == 0.0 and np.allclose(prob, [0.25, 0.75])
    pairs, prob, eps = pools.mixture(os_pairs, p_os, np.zeros((0, 2), int), np.zeros(0), 0.6, 10)
    assert eps == 1.0 and np.allclose(prob, [0.25, 0.75])
    pairs, prob, _ = pools.mixture(np.zeros((0, 2), int), np.zeros(0), np.zeros((0, 2), int), np.zeros(0), 0.6, 10)
    assert len(pairs) == 0
    # epsilon = 1 leaves U_us-only pairs with no mass; they are never drawn
    pairs, prob, _ = pools.mixture(os_pairs, p_os, us_pairs, p_us, 1.0, 10)
    idx = pools.draw(prob, 10, np.random.default_rng(0))
    assert sorted(map(tuple, pairs[idx].tolist())) == [(0, 1), (2, 3)]


def test_draw_without_replacement_and_dedup():
    prob = np.array([0.5, 0.3, 0.2, 0.0])
    for budget in (0, 1, 2, 3, 4, 50):
        idx = pools.draw(prob, budget, np.random.default_rng(budget))
        assert len(idx) == min(budget, 3) and len(set(idx.tolist())) == len(idx) and 3 not in idx
        idx = pools.draw(prob, budget, np.random.default_rng(budget), "with_replacement_dedup")
        assert len(idx) <= min(budget, 3) and len(set(idx.tolist())) == len(idx) and 3 not in idx
    # proportional: the first draw follows P
    first = [pools.draw(prob, 1, np.random.default_rng(s))[0] for s in range(4000)]
    np.testing.assert_allclose(np.bincount(first, minlength=4) / 4000, prob, atol=0.03)


# ---------------------------------------------------------------------------------------------------
# configuration
# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("params,match", [
    ({"epsilon": 1.5}, "epsilon"), ({"epsilon": -0.1}, "epsilon"), ({"k_max": 0}, "k_max"),
    ({"k_max": 2.5}, "k_max"), ({"s_min": 2}, "s_min"), ({"sim": "euclid"}, "sim"), ({"dist": "l2"}, "dist"),
    ({"pi_mode": "flat"}, "pi_mode"), ({"pi_mode": [1, 2]}, "pi_mode"), ({"pi_mode": [0, 0, 0]}, "pi_mode"),
    ({"pi_mode": [1, -1, 1]}, "pi_mode"), ({"rho_mode": "x"}, "rho_mode"), ({"omega_mode": "x"}, "omega_mode"),
    ({"apply_constraints": "yes"}, "apply_constraints"), ({"finch_level": -1}, "finch_level"),
    ({"finch_level": "top"}, "finch_level"), ({"finch_input": "l2"}, "finch_input"), ({"dense_cap": 1}, "dense_cap"),
    ({"draw": "greedy"}, "draw"), ({"k_max": True}, "k_max"),
])
def test_validation_errors(params, match):
    with pytest.raises(ConfigError, match=match):
        AASSampler.from_params(params)


def test_defaults_follow_the_spec():
    p = AASSampler().get_params()
    assert p["epsilon"] == 0.6 and p["k_max"] == 5 and p["s_min"] == 0.3 and p["sim"] == "jaccard"
    assert p["finch_level"] == 0 and p["pi_mode"] == "uniform" and p["rho_mode"] == "disagreement"
    AASSampler.from_params({"finch_level": "match_dbscan", "pi_mode": [1, 1, 0], "draw": "with_replacement_dedup"})
    with pytest.raises(ConfigError, match="unknown parameter"):
        AASSampler.from_params({"eps": 0.5})


# ---------------------------------------------------------------------------------------------------
# with the real clustering views
# ---------------------------------------------------------------------------------------------------
def _need_clustering():
    """alreid's own modules are imported plainly: a broken import must fail the test, never skip it."""
    import alreid.clustering.np3  # noqa: F401
    import alreid.clustering.views  # noqa: F401


def test_check_sampler_contract():
    _need_clustering()
    from alreid.testing import check_sampler

    check_sampler("aas")
    check_sampler("aas", {"sim": "cosine", "dist": "cosine", "finch_input": "jaccard_rank", "omega_mode": "sim",
                          "pi_mode": "proportional", "dense_cap": 8, "draw": "with_replacement_dedup"})
    check_sampler("aas", {"finch_level": "match_dbscan", "apply_constraints": "none", "rho_mode": "size"})


def test_real_views_pool_statistics():
    _need_clustering()
    from alreid.testing.sampler_checks import make_context

    ctx, _ = make_context(n_ids=20, per_id=10, seed=3)
    s = AASSampler()
    pairs = s.select(ctx, 1000, np.random.default_rng(0))
    st = s.stats_
    assert st["drawn"] == len(pairs) == min(1000, st["pool"]) and st["pool"] > 0  # every pool pair has P > 0
    assert st["u_us"] == st["pairs_ii"] + st["pairs_io"] + st["pairs_oo"]
    assert st["pool"] <= st["u_os"] + st["u_us"]
    assert not ctx.constraints.is_known(pairs).any()
    s = AASSampler(finch_level=40)  # more levels than FINCH makes: the coarsest one, flagged
    s.select(ctx, 10, np.random.default_rng(0))
    assert s.stats_["finch_clamped"] is True


def test_figure1_with_np3_merges_views_and_promotes_ml_linked_outliers(monkeypatch):
    """ML(0,2) joins S1's two A-clusters and its two B-clusters -> identical views, S1 disappears.
    ML(10,12) links outlier 10 to the consistent cluster {12,13,14} in both views, so in S3 the A-clusters
    are {10,12,13,14}, {11}, {16} under one B-cluster: closest pairs (10,11), (10,16), (11,16) stay, but
    10 now counts as an inlier -> types io, io, oo. S2 is untouched."""
    _need_clustering()
    s = fig_sampler(monkeypatch, apply_constraints="np3", s_min=0.99)
    store = ConstraintStore(17)
    store.add(0, 2, True)
    store.add(10, 12, True)
    pairs = s.select(fig_context(store), 100, np.random.default_rng(0))
    assert {tuple(p) for p in pairs.tolist()} == {(7, 8), (8, 9), (10, 11), (10, 16), (11, 16)}
    st = s.stats_
    assert (st["regions"], st["pairs_ii"], st["pairs_io"], st["pairs_oo"]) == (2, 1, 3, 1)
    # the same answers without NP3: S1 stays a region (its pairs (3,5), (4,5) are not implied by ML(0,2))
    s = fig_sampler(monkeypatch, apply_constraints="none", s_min=0.99)
    pairs = s.select(fig_context(store), 100, np.random.default_rng(0))
    assert {(3, 5), (4, 5)} <= {tuple(p) for p in pairs.tolist()} and s.stats_["pairs_oo"] == 3


def brute_first_neighbour(x: np.ndarray, d: sp.spmatrix) -> list[int]:
    """Each item's first Jaccard neighbour by brute force: the smallest stored off-diagonal d_J (explicit zeros
    count), ties by the larger cosine, then the smaller index; with nothing stored, the cosine 1-NN (ties: smaller
    index)."""
    n = len(x)
    cos = x.astype(np.float64) @ x.T.astype(np.float64)
    coo = d.tocoo()
    stored: dict[int, list[tuple[float, float, int]]] = {}
    for i, j, v in zip(coo.row.tolist(), coo.col.tolist(), coo.data.tolist()):
        if i != j:
            stored.setdefault(i, []).append((v, -cos[i, j], j))
    return [min(stored[i])[2] if i in stored else max((j for j in range(n) if j != i), key=lambda j: (cos[i, j], -j))
            for i in range(n)]


def test_jaccard_rank_first_neighbour_equals_brute_force():
    rng = np.random.default_rng(11)
    for _ in range(20):
        n = int(rng.integers(3, 30))
        x, _, _, d, dense = random_problem(rng, n, jaccard=True)
        if rng.random() < 0.5:  # some rows with nothing stored but the diagonal -> cosine fallback
            lonely = rng.choice(n, 2, replace=False)
            coo = d.tocoo()
            keep = (coo.row == coo.col) | ~(np.isin(coo.row, lonely) | np.isin(coo.col, lonely))
            d = sp.csr_matrix((coo.data[keep], (coo.row[keep], coo.col[keep])), shape=(n, n))
        ctx = SamplingContext(features=x, labels=np.arange(n), outliers=np.zeros(n, bool),
                              constraints=ConstraintStore(n), neighbours=NeighbourCache(x))
        got = AASSampler()._jaccard_first_neighbour(ctx, pools.as_csr(d))
        assert got.tolist() == brute_first_neighbour(x, d)


def test_cli_end_to_end(tmp_path):
    _need_clustering()
    exe = Path(sys.executable).with_name("alreid")
    if not exe.exists():
        exe = shutil.which("alreid")
    assert exe is not None, "the alreid entry point is not installed: pip install -e . (make test does)"
    # a smaller cousin of `alreid run --dataset synthetic --method aas --seed 0 --cycles 2` (training is the slow part)
    cmd = [str(exe), "run", "--dataset", "synthetic:n_images=400", "--method", "aas", "--seed", "0", "--cycles", "2",
           "--trainer-param", "iters=5"]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout + proc.stderr
    assert "regions=" in out and "u_us=" in out and "drawn=" in out


def test_csr_values_absent_is_one_explicit_zero_is_zero():
    d = sp.csr_matrix(([0.0, 0.4, 0.7, 0.2, 0.0], ([0, 0, 1, 2, 2], [0, 1, 0, 0, 2])), shape=(4, 4))
    e = sp.csr_matrix(([0.0], ([1], [3])), shape=(4, 4))
    assert e.nnz == 1  # an explicit zero is a real zero (identical neighbourhoods), not "absent"
    np.testing.assert_allclose(pools.csr_values(d, np.array([0, 1, 2, 3, 0]), np.array([1, 0, 0, 1, 0])),
                               [0.4, 0.7, 0.2, 1.0, 0.0])
    np.testing.assert_allclose(pools.csr_values(e, np.array([1, 3, 0]), np.array([3, 1, 0])), [0.0, 1.0, 1.0])
