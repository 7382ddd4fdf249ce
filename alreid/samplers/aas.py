"""AAS: Ambiguity-Aware Sampling (Sani, Khurana, Anand, AAAI 2026; spec §1.3-1.9).

Two complementary clusterings of the same embeddings - A = DBSCAN on the k-reciprocal Jaccard
distance (the trial's base clustering) and B = FINCH - disagree where the embedding is ambiguous.
AAS asks about (i) pairs of region medoids that might be one identity split across regions
(over-segmentation, U_os) and (ii) the closest pair across two clusters of one view that the other
view joins (under-segmentation, U_us), and draws from U = U_os ∪ U_us with Eq. 6.
The pure pool computations live in :mod:`alreid.samplers.aas_pools`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from alreid.clustering.np3 import np3
from alreid.clustering.views import finch_labels
from alreid.errors import ConfigError
from alreid.plugin import check_range
from alreid.samplers import aas_pools as pools
from alreid.samplers.base import Sampler, SamplingContext

_PI_MODES = ("uniform", "proportional")
_RHO_MODES = ("disagreement", "count", "size")
_OMEGA_MODES = ("uniform", "sim")
_METRICS = ("jaccard", "cosine")
_FINCH_INPUTS = ("cosine", "jaccard_rank")
_CONSTRAINT_MODES = ("np3", "none")
_DRAWS = ("without_replacement", "with_replacement_dedup")
# Entries of d_J read per row block when looking for each item's first Jaccard neighbour (about 16M: bounded memory)
FIRST_NEIGHBOUR_BLOCK = 1 << 24


class AASSampler(Sampler):
    """Pairs from the regions where DBSCAN and FINCH disagree (spec §1; defaults = paper / spec).

    Hyperparameters: ``epsilon`` (Eq. 6 prior of U_os), ``k_max`` / ``s_min`` (U_os neighbours and
    threshold), ``sim`` ("jaccard" = 1 - d_J | "cosine"), ``dist`` (Eq. 2 and medoid: "jaccard" = d_J with
    cosine tie-break | "cosine"), ``finch_level`` (int | "match_dbscan"), ``finch_input`` ("cosine" |
    "jaccard_rank": FINCH's first neighbour taken under d_J), ``pi_mode`` / ``rho_mode`` / ``omega_mode``
    (Eq. 5 factors, spec §1.8), ``apply_constraints`` ("np3" | "none"), ``dense_cap`` (regions above
    it get the k-NN approximation of U_us), ``draw`` ("without_replacement" | "with_replacement_dedup").
    k1/k2 of d_J come from the cycle's clustering settings (``ctx.clustering``).

    Choices where the spec leaves room, recorded here so they can be found:
    - the ML-linked-outlier-becomes-inlier rule goes with NP3 (``apply_constraints="none"`` keeps the
      raw DBSCAN outlier mask);
    - pairs with P(Y) = 0 (sim 0, a zero fixed pi weight, epsilon 0 or 1) are never drawn, so
      m = min(budget, #pairs with P > 0);
    - fixed pi weights are renormalised over the non-empty pair types;
    - a ``finch_level`` above FINCH's coarsest level uses the coarsest (``stats_["finch_clamped"]``).
    """

    name = "aas"
    description = "Ambiguity-Aware Sampling: medoid and closest cross-cluster pairs where DBSCAN and FINCH disagree"

    def __init__(self, *, epsilon: float = 0.6, k_max: int = 5, s_min: float = 0.3, sim: str = "jaccard",
                 dist: str = "jaccard", finch_level: int | str = 0, finch_input: str = "cosine",
                 pi_mode: str | list[float] = "uniform", rho_mode: str = "disagreement",
                 omega_mode: str = "uniform", apply_constraints: str = "np3", dense_cap: int = 2048,
                 draw: str = "without_replacement") -> None:
        self.epsilon = epsilon
        self.k_max = k_max
        self.s_min = s_min
        self.sim = sim
        self.dist = dist
        self.finch_level = finch_level
        self.finch_input = finch_input
        self.pi_mode = pi_mode
        self.rho_mode = rho_mode
        self.omega_mode = omega_mode
        self.apply_constraints = apply_constraints
        self.dense_cap = dense_cap
        self.draw = draw

    # configuration ---------------------------------------------------------------------------------
    def validate_params(self) -> None:
        owner = f"method {self.name!r}"
        check_range(owner, "epsilon", self.epsilon, 0.0, 1.0)
        check_range(owner, "k_max", self.k_max, 1, integer=True)
        check_range(owner, "s_min", self.s_min, 0.0, 1.0)
        check_range(owner, "dense_cap", self.dense_cap, 2, integer=True)
        for key, allowed in (("sim", _METRICS), ("dist", _METRICS), ("finch_input", _FINCH_INPUTS),
                             ("rho_mode", _RHO_MODES), ("omega_mode", _OMEGA_MODES),
                             ("apply_constraints", _CONSTRAINT_MODES), ("draw", _DRAWS)):
            value = getattr(self, key)
            if not isinstance(value, str) or value not in allowed:
                raise ConfigError(f"{owner} parameter {key} must be one of {', '.join(allowed)}; got {value!r}")
        level = self.finch_level
        if not (level == "match_dbscan" or (isinstance(level, (int, np.integer)) and not isinstance(level, bool)
                                             and level >= 0)):
            raise ConfigError(f"{owner} parameter finch_level must be a non-negative int or 'match_dbscan'; "
                              f"got {level!r}")
        pi = self.pi_mode
        if isinstance(pi, str):
            if pi not in _PI_MODES:
                raise ConfigError(f"{owner} parameter pi_mode must be one of {', '.join(_PI_MODES)} or a list "
                                  "of 3 non-negative weights (inlier-inlier, inlier-outlier, outlier-outlier); "
                                  f"got {pi!r}")
        else:
            ok = isinstance(pi, (list, tuple)) and len(pi) == 3 and all(
                isinstance(w, (int, float)) and not isinstance(w, bool) and np.isfinite(w) and w >= 0 for w in pi)
            if not ok or sum(pi) <= 0:
                raise ConfigError(f"{owner} parameter pi_mode as weights must be 3 non-negative numbers with a "
                                  f"positive sum (inlier-inlier, inlier-outlier, outlier-outlier); got {pi!r}")

    # the views ---------------------------------------------------------------------------------------
    @staticmethod
    def _k1k2(ctx: SamplingContext) -> tuple[int, int]:
        return int(ctx.clustering.k1), int(ctx.clustering.k2)

    def _jaccard(self, ctx: SamplingContext) -> sp.csr_matrix:
        """The cycle's sparse d_J (the neighbour cache's, shared with the base clustering)."""
        return pools.as_csr(ctx.neighbours.jaccard(*self._k1k2(ctx)))

    def _jaccard_first_neighbour(self, ctx: SamplingContext, d: sp.csr_matrix) -> np.ndarray:
        """FINCH's initial_rank under d_J: nearest other item, ties by cosine; cosine 1-NN where d_J has none."""
        x, n = ctx.features, ctx.n
        first = np.full(n, -1, dtype=np.int64)
        step = max(1, FIRST_NEIGHBOUR_BLOCK // max(1, d.nnz // max(n, 1)))
        for s in range(0, n, step):
            sub = d[s:min(n, s + step)]
            pos = np.repeat(np.arange(sub.shape[0], dtype=np.int64), np.diff(sub.indptr))
            col = sub.indices.astype(np.int64)
            val = np.asarray(sub.data, dtype=np.float64)
            off = col != pos + s
            pos, col, val = pos[off], col[off], val[off]
            if len(pos) == 0:
                continue
            rowmin = np.full(sub.shape[0], np.inf)
            np.minimum.at(rowmin, pos, val)
            tie = val == rowmin[pos]
            pos, col = pos[tie], col[tie]
            cos = pools.rowdot(x, pos + s, col)
            order = np.lexsort((col, -cos, pos))
            pick = order[pools.first_per_group(pos[order])]
            first[pos[pick] + s] = col[pick]
        missing = np.flatnonzero(first < 0)
        if len(missing):
            _, idx = ctx.neighbours.knn(min(n, 3))
            cand = idx[missing]
            not_self = cand != missing[:, None]
            first[missing] = cand[np.arange(len(missing)), np.argmax(not_self, axis=1)]
        return first

    def _view_b(self, ctx: SamplingContext, d: sp.csr_matrix | None) -> np.ndarray:
        """FINCH labels of the cycle (memoised in the cycle's cache), level clamped to what exists."""
        k1, k2 = self._k1k2(ctx)
        level = self.finch_level
        n_target = None
        if level == "match_dbscan":
            inl = ctx.base_labels[~ctx.outliers]
            n_target = max(1, int(len(np.unique(inl))))
        key = ("aas_finch", str(level), n_target, self.finch_input, k1, k2)

        def compute() -> np.ndarray:
            if self.finch_input == "jaccard_rank":
                init = self._jaccard_first_neighbour(ctx, d)
            elif level == 0 and ctx.n > 2:
                # level 0 = components of the cosine first-neighbour graph: reuse the cycle's k-NN lists
                init = ctx.neighbours.knn(min(ctx.n, max(k1, 32)))[1]
            else:
                init = None  # FINCH's own exact 1-NN, the same first neighbours as the k-NN lists
            lev = level if level == "match_dbscan" else int(level)
            try:
                return np.asarray(finch_labels(ctx.features, level=lev, n_target=n_target, initial_rank=init,
                                               distance="cosine")), False
            except ValueError as err:  # fewer FINCH levels than asked: the coarsest one, flagged in stats_
                if "does not exist" not in str(err):
                    raise
                return np.asarray(finch_labels(ctx.features, level=-1, initial_rank=init, distance="cosine")), True

        labels, clamped = ctx.neighbours.get(key, compute)
        self._finch_clamped = bool(clamped)
        return labels

    # the draw ----------------------------------------------------------------------------------------
    def _select(self, ctx: SamplingContext, budget: int, rng: np.random.Generator) -> np.ndarray:
        x = np.ascontiguousarray(ctx.features, dtype=np.float32)
        n = ctx.n
        need_d = "jaccard" in (self.sim, self.dist) or self.finch_input == "jaccard_rank"
        d = self._jaccard(ctx) if need_d else None
        a = np.asarray(ctx.base_labels).copy()
        outliers = np.asarray(ctx.outliers, dtype=bool).copy()
        self._finch_clamped = False
        b = np.asarray(self._view_b(ctx, d)).copy()

        # §1.4: known answers applied to both views; ML-linked outliers count as inliers
        store = ctx.constraints
        if self.apply_constraints == "np3" and len(store) > 0:
            ml, cl = store.ml_pairs(), store.cl_pairs()
            # view A: the cycle's NP3-refined labels every sampler gets (issue 10); view B is AAS's own
            a = np.asarray(ctx.labels).copy() if ctx.refined_with == "np3" else np.asarray(np3(a, ml, cl, x))
            b = np.asarray(np3(b, ml, cl, x))
            outliers &= ~store.in_must_link()

        # §1.5 regions
        reg = pools.find_regions(a, b)
        stats: dict[str, Any] = {"regions": int(reg.count), "region_images": int(reg.size.sum()),
                                 "views_agree": bool(reg.count == 0), "u_os": 0, "u_us": 0, "pool": 0,
                                 "drawn": 0, "pairs_ii": 0, "pairs_io": 0, "pairs_oo": 0,
                                 "approx_regions": 0, "epsilon_eff": float(self.epsilon),
                                 "finch_clamped": bool(getattr(self, "_finch_clamped", False))}
        self.stats_ = stats
        self.explain_: dict[str, np.ndarray] = {}  # per drawn pair, why it was asked (see _explain)
        if reg.count == 0:
            return np.zeros((0, 2), dtype=np.int64)

        d_dist = d if self.dist == "jaccard" else None

        # §1.7 U_us (the same pass reads the d_J medoid affinities)
        knn_idx = None
        if (reg.size > self.dense_cap).any():
            k1, _ = self._k1k2(ctx)
            knn_idx = ctx.neighbours.knn(min(n, max(k1, 32)))[1]
        scan = pools.scan_regions(x, reg, d_dist, dense_cap=int(self.dense_cap), knn_idx=knn_idx)
        us_pairs, us_reg, us_dist = scan.pairs, scan.region, scan.dist
        stats["approx_regions"] = int(scan.approx)
        # §1.6 U_os
        medoids = pools.region_medoids(x, reg, scan.affinity)
        os_pairs, os_sim = pools.medoid_pairs(x, medoids, d if self.sim == "jaccard" else None,
                                              k_max=int(self.k_max), s_min=float(self.s_min))

        # drop pairs whose answer is known or implied (spec §1.4 (i)-(iii)); pools are already unique
        keep = ~store.is_known(os_pairs) if len(os_pairs) else np.zeros(0, bool)
        os_pairs, os_sim = os_pairs[keep], os_sim[keep]
        keep = ~store.is_known(us_pairs) if len(us_pairs) else np.zeros(0, bool)
        us_pairs, us_reg, us_dist = us_pairs[keep], us_reg[keep], us_dist[keep]
        types = outliers[us_pairs[:, 0]].astype(np.int64) + outliers[us_pairs[:, 1]].astype(np.int64)
        counts = np.bincount(types, minlength=3)
        stats.update(u_os=int(len(os_pairs)), u_us=int(len(us_pairs)), pairs_ii=int(counts[0]),
                     pairs_io=int(counts[1]), pairs_oo=int(counts[2]))

        # §1.8 P(Y)
        if self.omega_mode == "sim" and len(us_pairs):
            if self.sim == "cosine":
                us_sim = pools.rowdot(x, us_pairs[:, 0], us_pairs[:, 1])
            elif d_dist is not None:
                us_sim = 1.0 - us_dist
            else:
                us_sim = 1.0 - pools.csr_values(d, us_pairs[:, 0], us_pairs[:, 1])
        else:
            us_sim = np.ones(len(us_pairs))
        pi = self.pi_mode if isinstance(self.pi_mode, str) else [float(w) for w in self.pi_mode]
        p_us = pools.us_conditional(types, us_reg, reg, us_sim, pi_mode=pi, rho_mode=self.rho_mode,
                                    omega_mode=self.omega_mode)
        p_os = np.clip(os_sim, 0.0, None)
        pairs, prob, eps_eff = pools.mixture(os_pairs, p_os, us_pairs, p_us, float(self.epsilon), n)
        stats["pool"] = int(len(pairs))
        stats["epsilon_eff"] = float(eps_eff)
        if len(pairs) == 0:
            return np.zeros((0, 2), dtype=np.int64)

        # §1.9 draw
        idx = pools.draw(prob, budget, rng, self.draw)
        stats["drawn"] = int(len(idx))
        self.explain_ = self._explain(pairs[idx], prob[idx], os_pairs, us_pairs, reg, a, b, outliers)
        return pairs[idx]

    @staticmethod
    def _explain(chosen: np.ndarray, prob: np.ndarray, os_pairs: np.ndarray, us_pairs: np.ndarray,
                 reg: pools.Regions, a: np.ndarray, b: np.ndarray, outliers: np.ndarray) -> dict[str, np.ndarray]:
        """Why each drawn pair was asked, row-aligned with the result of select (shown to annotators).

        ``pool``: "over" (U_os: medoids of two regions that may be one individual split apart), "under"
        (U_us: closest pair across two clusters that the other view joins) or "both" (kept for a pool built
        otherwise: a U_os pair joins two regions and a U_us pair lies inside one, so here no pair is in both);
        ``region_u``/``region_v``: region ids (-1 outside every region); ``same_a``/``same_b``: whether view A
        (DBSCAN) and view B (FINCH), after the known answers, put the two images in one cluster;
        ``outlier_u``/``outlier_v``: DBSCAN noise.
        """
        n = len(a)
        key = chosen[:, 0] * np.int64(n) + chosen[:, 1]
        in_os = np.isin(key, os_pairs[:, 0] * np.int64(n) + os_pairs[:, 1]) if len(os_pairs) else np.zeros(len(key), bool)
        in_us = np.isin(key, us_pairs[:, 0] * np.int64(n) + us_pairs[:, 1]) if len(us_pairs) else np.zeros(len(key), bool)
        pool = np.where(in_os & in_us, "both", np.where(in_os, "over", "under"))
        u, v = chosen[:, 0], chosen[:, 1]
        return {"pool": pool, "region_u": reg.region[u].astype(np.int64), "region_v": reg.region[v].astype(np.int64),
                "same_a": a[u] == a[v], "same_b": b[u] == b[v], "outlier_u": outliers[u], "outlier_v": outliers[v],
                "probability": np.asarray(prob, dtype=np.float64)}
