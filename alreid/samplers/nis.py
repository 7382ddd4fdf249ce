"""NIS as an active-learning pair sampler (Perez et al., ECCV 2024, adapted as in the AAS benchmark; spec 3.2).

Each cycle draws N_v = ceil(sqrt(B)) vertices and, per vertex, itself plus N_n - 1 = ceil(sqrt(B)) - 1
neighbours from the row-softmax similarity of the current features, and asks about every (v, j),
j != v: a fixed number of annotations per sampled vertex, aimed at the vertex's likely matches.
The draws are exactly those of the NIS population estimator, so once they are answered they give
an estimate of the number of individuals in the pool with a 95 % interval, logged every cycle.

When the estimate is computed (a design choice): the trial logs ``stats_`` right after
``select``, before the oracle answers, so the draws of the current cycle cannot be used yet. The
sampler keeps its draws, and each cycle estimates K from the draws of *earlier* cycles, read back
through ``ctx.constraints`` (every queried pair is answered by then; pairs skipped as known were
known anyway). Vertex terms of different cycles are each unbiased for K under their own proposal,
so they are pooled (``estimate_from="all"``) or only the previous cycle's are used (``"last"``).
Only the statistics depend on this memory, never the pairs; a trial resumed from a checkpoint
rebuilds the sampler without it, so its first cycle logs NaN and later ones pool fewer cycles.
"""

from __future__ import annotations

import math

import numpy as np

from alreid.constraints import ML, UNKNOWN, ConstraintStore
from alreid.evaluation.population import (TAU, NestedDraws, PopulationEstimate, SoftmaxRows, draw_nested,
                                          summarise_terms, vertex_proposal, vertex_terms)
from alreid.samplers.base import Sampler, SamplingContext, drop_known
from alreid.samplers.fps import check_choice
from alreid.plugin import check_range


class NISSampler(Sampler):
    """Nested importance sampling of (vertex, neighbour) pairs, with a population-size estimate.

    Parameters
    ----------
    tau : float, default=0.5
        Softmax temperature on cosine similarity (the released code's value).
    vertex_proposal : {"uniform", "inverse_degree"}, default="uniform"
        Q over vertices: uniform (what the released code amounts to) or the paper's Q ∝ 1/n̂ with
        n̂ the unnormalised similarity degree (one extra pass over all rows, or the k-NN lists).
    similarity : {"auto", "exact", "knn"}, default="auto"
        Exact similarity rows (O(n d) per sampled vertex, no n x n matrix) or rows truncated to the
        ``knn_k`` nearest neighbours; ``"auto"`` is exact up to ``exact_max_n`` items.
    knn_k : int, default=100
        Row support under k-NN truncation (self included).
    exact_max_n : int, default=50000
        Largest pool for which ``"auto"`` uses exact rows.
    max_attempts : int, default=10
        Top-up stops after ``max_attempts * budget`` drawn (vertex, neighbour) candidates.
    estimate_from : {"all", "last"}, default="all"
        Draws the logged estimate uses: every earlier cycle of this sampler, or only the last one.

    Attributes
    ----------
    stats_ : dict
        Per cycle: ``population_estimate``, ``population_ci_low``, ``population_ci_high``,
        ``population_vertices`` and the draw counts.
    """

    name = "nis"
    description = "NIS: nested importance sampling of (vertex, similar neighbour) pairs; estimates #individuals"

    def __init__(self, *, tau: float = TAU, vertex_proposal: str = "uniform", similarity: str = "auto",
                 knn_k: int = 100, exact_max_n: int = 50000, max_attempts: int = 10,
                 estimate_from: str = "all") -> None:
        self.tau = tau
        self.vertex_proposal = vertex_proposal
        self.similarity = similarity
        self.knn_k = knn_k
        self.exact_max_n = exact_max_n
        self.max_attempts = max_attempts
        self.estimate_from = estimate_from

    def validate_params(self) -> None:
        check_range("nis", "tau", self.tau, 0.0, None, lo_open=True)
        check_choice("nis", "vertex_proposal", self.vertex_proposal, ("uniform", "inverse_degree"))
        check_choice("nis", "similarity", self.similarity, ("auto", "exact", "knn"))
        check_range("nis", "knn_k", self.knn_k, 2, None, integer=True)
        check_range("nis", "exact_max_n", self.exact_max_n, 2, None, integer=True)
        check_range("nis", "max_attempts", self.max_attempts, 1, None, integer=True)
        check_choice("nis", "estimate_from", self.estimate_from, ("all", "last"))

    # selection -----------------------------------------------------------------------------------
    def _select(self, ctx: SamplingContext, budget: int, rng: np.random.Generator) -> np.ndarray:
        self.validate_params()
        estimate = self.population_estimate(ctx.constraints)
        rows = self._rows(ctx)
        q = vertex_proposal(rows, self.vertex_proposal)
        # N_n >= 2: with budget 1, ceil(sqrt(1)) = 1 neighbour would be v itself and ask nothing
        n_draw = max(2, math.ceil(math.sqrt(budget)))
        parts = [draw_nested(rows, q, n_draw, n_draw, rng)]
        chosen = drop_known(parts[0].pairs(), ctx.constraints)
        attempts = parts[0].pairs().shape[0] - len(parts[0])
        while len(chosen) < budget and attempts < self.max_attempts * budget:
            extra = max(1, math.ceil((budget - len(chosen)) / (n_draw - 1)))
            part = draw_nested(rows, q, extra, n_draw, rng)
            parts.append(part)
            attempts += extra * (n_draw - 1)
            chosen = drop_known(np.concatenate([chosen, part.pairs()]), ctx.constraints)
        draws = NestedDraws.concat(parts)
        self._remember(draws, ctx.n)
        self.stats_ = {"vertices": len(draws), "topup_vertices": len(draws) - n_draw,
                       "neighbours_per_vertex": n_draw, "attempts": int(attempts),
                       "knn_rows": rows.knn is not None,
                       "population_estimate": estimate.k_hat, "population_ci_low": estimate.ci_low,
                       "population_ci_high": estimate.ci_high, "population_vertices": estimate.n_vertices}
        return chosen[:budget]

    def _rows(self, ctx: SamplingContext) -> SoftmaxRows:
        use_knn = self.similarity == "knn" or (self.similarity == "auto" and ctx.n > self.exact_max_n)
        knn = ctx.neighbours.knn(int(self.knn_k)) if use_knn else None
        return SoftmaxRows(ctx.features, tau=self.tau, knn=knn)

    # the population estimate -----------------------------------------------------------------------
    def _remember(self, draws: NestedDraws, n: int) -> None:
        history = getattr(self, "draws_", [])
        if getattr(self, "n_", n) != n:
            history = []  # a different pool: earlier draws say nothing about it
        self.n_ = n
        self.draws_ = [*history, draws] if self.estimate_from == "all" else [draws]

    def population_estimate(self, constraints: ConstraintStore) -> PopulationEstimate:
        """K̂ and its 95 % interval from the remembered draws whose answers ``constraints`` holds.

        Call it after the last cycle's answers are in to estimate from every draw of the trial.
        """
        history: list[NestedDraws] = getattr(self, "draws_", [])
        if getattr(self, "n_", constraints.n) != constraints.n:
            history = []
        parts = [vertex_terms(d, answers_from_constraints(d, constraints)) for d in history]
        if not parts:
            return PopulationEstimate(math.nan, math.nan, 0)
        terms, complete = (np.concatenate(a) for a in zip(*parts))
        return summarise_terms(terms, complete)


def answers_from_constraints(draws: NestedDraws, constraints: ConstraintStore) -> np.ndarray:
    """g(v, j) as the constraint store knows it: 1 (must-link or j == v), 0 (cannot-link), NaN (unknown)."""
    pairs = draws.pairs()
    out = np.full(len(pairs), np.nan)
    same = pairs[:, 0] == pairs[:, 1]
    out[same] = 1.0
    codes = constraints.implied_many(pairs[~same])
    out[~same] = np.where(codes == ML, 1.0, np.where(codes == UNKNOWN, np.nan, 0.0))
    return out.reshape(draws.neighbours.shape)

