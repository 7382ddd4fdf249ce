"""No active learning: the unsupervised base alone, so tables can show the row every method improves on."""

from __future__ import annotations

import numpy as np

from alreid.samplers.base import Sampler, SamplingContext


class NoSampler(Sampler):
    """Asks nothing; the trainer runs on its own pseudo-labels."""

    name = "none"
    description = "no annotation: the unsupervised base (SpCL/ClusterContrast/head) alone"
    queries = False

    def __init__(self) -> None:
        pass

    def _select(self, ctx: SamplingContext, budget: int, rng: np.random.Generator) -> np.ndarray:
        return np.zeros((0, 2), dtype=np.int64)
