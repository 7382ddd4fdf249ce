"""How often AAS draws each pair (Eq. 5-6), not only which pairs are in its pool.

The Figure 1 scene of test_aas.py, budget 1, one draw per seed: the frequency of every pair must match
P(Y) = eps P(Y | U_os) + (1 - eps) P(Y | U_us) computed here by hand (Fractions for the uniform factors,
cosines of the angle gaps for omega_mode="sim"). With N draws a frequency has standard deviation
sqrt(p(1-p)/N); the tolerance is 5 of those (p(1-p) floored at 0.01), and every bug below moves some pair by
far more (epsilon flipped: (5, 8) goes 0.60 -> 0.40; flat medoid-pair weights: (8, 11) 0.095 -> 0.30).
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from alreid.samplers.aas import AASSampler
from tests.samplers.test_aas import FIG_ANGLES, FIG_US, fig_context, fig_sampler

N_DRAWS = 1500

# Eq. 5 by hand on Figure 1 (see test_aas.py header): types ii, io, oo present -> pi = 1/3 each;
# rho(S1|ii) = (5/9) / (5/9 + 3/4) = 20/47, rho(S2|ii) = 27/47, rho(S2|io) = rho(S3|oo) = 1.
PI = Fraction(1, 3)
RHO = {("ii", 0): Fraction(20, 47), ("ii", 1): Fraction(27, 47), ("io", 1): Fraction(1), ("oo", 2): Fraction(1)}


def _cos_gap(u: int, v: int) -> float:
    return float(np.cos(np.deg2rad(FIG_ANGLES[u] - FIG_ANGLES[v])))


def expected_us(omega_mode: str) -> dict[tuple[int, int], float]:
    """P(y | U_us) = pi_i rho_{k|i} omega_{y|ik}; omega uniform (1/n_ik) or proportional to cos."""
    cells: dict[tuple[str, int], list[tuple[int, int]]] = {}
    for pair, cell in FIG_US.items():
        cells.setdefault(cell, []).append(pair)
    out = {}
    for cell, pairs in cells.items():
        for pair in pairs:
            if omega_mode == "uniform":
                omega = 1.0 / len(pairs)
            else:
                omega = _cos_gap(*pair) / sum(_cos_gap(*q) for q in pairs)
            out[pair] = float(PI * RHO[cell]) * omega
    return out


def expected_p(epsilon: float, os_sims: dict[tuple[int, int], float], omega_mode: str) -> dict:
    """Eq. 6: eps * sim-normalised medoid pairs + (1 - eps) * P(. | U_us)."""
    total = sum(os_sims.values())
    p = {pair: (1 - epsilon) * q for pair, q in expected_us(omega_mode).items()}
    for pair, s in os_sims.items():
        p[pair] = p.get(pair, 0.0) + epsilon * s / total
    return p


def frequencies(sampler: AASSampler, n_draws: int = N_DRAWS) -> dict[tuple[int, int], float]:
    counts: dict[tuple[int, int], int] = {}
    for seed in range(n_draws):
        pairs = sampler.select(fig_context(), 1, np.random.default_rng(seed))
        assert len(pairs) == 1
        key = tuple(int(t) for t in pairs[0])
        counts[key] = counts.get(key, 0) + 1
    return {k: c / n_draws for k, c in counts.items()}


def assert_frequencies(freq: dict, expect: dict, n_draws: int = N_DRAWS) -> None:
    assert set(freq) <= set(expect), f"drawn pairs outside the pool: {set(freq) - set(expect)}"
    assert np.isclose(sum(expect.values()), 1.0)
    for pair, p in expect.items():
        tol = 5 * np.sqrt(max(p * (1 - p), 0.01) / n_draws)  # 5 binomial standard deviations
        got = freq.get(pair, 0.0)
        assert abs(got - p) < tol, f"pair {pair}: drawn {got:.3f} of the time, Eq. 5-6 give {p:.3f}"


def test_hand_probabilities_of_the_medoid_pair() -> None:
    """The numbers the issue quotes: (5, 8) has P = eps = 0.6 (0.4 with the mixture flipped)."""
    p = expected_p(0.6, {(5, 8): _cos_gap(5, 8)}, "uniform")
    assert p[(5, 8)] == pytest.approx(0.6)
    assert p[(8, 9)] == pytest.approx(0.4 / 3)
    assert p[(3, 5)] == pytest.approx(0.4 * 10 / 141)


@pytest.mark.parametrize("epsilon", [0.6, 0.25])
def test_figure1_draw_frequencies_match_eq_5_6(monkeypatch, epsilon: float) -> None:
    s = fig_sampler(monkeypatch, epsilon=epsilon)  # k_max=1, s_min=0.8: U_os = {(5, 8)}
    freq = frequencies(s)
    assert_frequencies(freq, expected_p(epsilon, {(5, 8): _cos_gap(5, 8)}, "uniform"))


def test_medoid_pairs_are_drawn_in_proportion_to_their_similarity(monkeypatch) -> None:
    """k_max=2, s_min=0.1: U_os = {(5, 8) sim cos 34 deg, (8, 11) sim cos 81 deg}: 0.505 vs 0.095."""
    s = fig_sampler(monkeypatch, k_max=2, s_min=0.1)
    os_sims = {(5, 8): _cos_gap(5, 8), (8, 11): _cos_gap(8, 11)}
    expect = expected_p(0.6, os_sims, "uniform")
    assert expect[(8, 11)] == pytest.approx(0.6 * 0.156434 / (0.829038 + 0.156434), rel=1e-5)
    assert_frequencies(frequencies(s), expect)


def test_omega_sim_weights_by_similarity_not_distance(monkeypatch) -> None:
    """omega_mode="sim": within (type, region) pairs weigh cos(angle gap). In S3 the gaps are 3, 7
    and 4 degrees, so similarities are nearly equal (~1/3 each) while distances (1 - cos) are not
    (0.0014 : 0.0075 : 0.0024 -> 0.12 : 0.66 : 0.22). epsilon = 0.1 puts 0.3 of the mass on S3, so
    using distance moves (10, 16) from 0.100 to 0.199."""
    s = fig_sampler(monkeypatch, omega_mode="sim", epsilon=0.1)
    expect = expected_p(0.1, {(5, 8): _cos_gap(5, 8)}, "sim")
    dist_w = {p: 1 - _cos_gap(*p) for p in [(10, 11), (10, 16), (11, 16)]}
    wrong_10_16 = 0.9 * float(PI) * dist_w[(10, 16)] / sum(dist_w.values())
    assert abs(wrong_10_16 - expect[(10, 16)]) > 0.08  # the bug is visible at this N
    assert_frequencies(frequencies(s), expect)
