"""GBAS: global balanced active sampling (reconstruction of He et al., ICME 2024; spec 2).

Anchors are spread over the whole pool by farthest-point sampling; each anchor asks about one
likely match (its nearest neighbour) and one hard likely non-match (its nearest item outside
DBSCAN's eps-ball), so positive and negative answers come in equal numbers, unlike random pairs,
which are almost all negatives.
"""

from __future__ import annotations


import numpy as np

from alreid.plugin import check_choice, check_range
from alreid.samplers.base import Sampler, SamplingContext
from alreid.samplers.fps import FPS_STARTS, PairPicker, farthest_point_order, triplets_for

NEGATIVE_RULES = ("jaccard", "cosine_rank")


class GBASSampler(Sampler):
    """Farthest-point anchors over the whole pool; (anchor, nearest neighbour) and
    (anchor, nearest item outside the eps-ball) per anchor.

    Parameters
    ----------
    fps_start : {"central", "random"}, default="central"
        First anchor: the item closest to the pool centroid (deterministic) or a random one.
    negative_rule : {"jaccard", "cosine_rank"}, default="jaccard"
        The negative is the first item in the anchor's cosine ranking whose distance to the anchor
        is at least ``eps``: k-reciprocal Jaccard distance (SpCL's DBSCAN metric, so "outside the
        anchor's DBSCAN eps-ball") or plain cosine distance.
    eps : float or None, default=None
        The ball radius; None takes the cycle's DBSCAN eps (``ctx.clustering.eps``).
    """

    name = "gbas"
    description = "GBAS: farthest-point anchors, nearest-neighbour positive + nearest outside-eps negative"

    def __init__(self, *, fps_start: str = "central", negative_rule: str = "jaccard",
                 eps: float | None = None) -> None:
        self.fps_start = fps_start
        self.negative_rule = negative_rule
        self.eps = eps

    def validate_params(self) -> None:
        check_choice("gbas", "fps_start", self.fps_start, FPS_STARTS)
        check_choice("gbas", "negative_rule", self.negative_rule, NEGATIVE_RULES)
        if self.eps is not None:
            check_range("gbas", "eps", self.eps, 0.0, 1.0, lo_open=True)

    def _select(self, ctx: SamplingContext, budget: int, rng: np.random.Generator) -> np.ndarray:
        self.validate_params()
        eps = float(self.eps if self.eps is not None else ctx.clustering.eps)
        jaccard = jaccard_matrix(ctx) if self.negative_rule == "jaccard" else None
        picker = PairPicker(ctx.constraints)
        want = triplets_for(budget)
        anchors = 0
        # T can exceed n on very large pools: then anchors are revisited in the same order and
        # take their next-ranked open candidates, until a whole pass adds nothing.
        while len(picker) < 2 * want:
            before = len(picker)
            for a, sims in farthest_point_order(ctx.features, start=self.fps_start, rng=rng):
                if len(picker) >= 2 * want:
                    break
                anchors += 1
                pos = sims.astype(np.float64)
                pos[a] = -np.inf
                neg = pos.copy()
                if jaccard is None:
                    neg[1.0 - sims < eps] = -np.inf
                else:
                    row = slice(jaccard.indptr[a], jaccard.indptr[a + 1])
                    inside = jaccard.indices[row][jaccard.data[row] < eps]
                    neg[inside] = -np.inf
                picker.triplet(a, pos, neg)
            if len(picker) == before:
                break
        self.stats_ = {"triplets": len(picker) // 2, "anchors_tried": anchors, "eps": eps}
        return picker.result()


def jaccard_matrix(ctx: SamplingContext):  # -> scipy.sparse.csr_matrix
    """The cycle's sparse k-reciprocal Jaccard distance (absent entries = 1), from the neighbour cache
    (already there after a Jaccard base clustering; built with the clustering's k1/k2 otherwise)."""
    return ctx.neighbours.jaccard(ctx.clustering.k1, ctx.clustering.k2)
