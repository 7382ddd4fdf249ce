"""Uniformly random pairs: the floor every active-learning method must beat."""

from __future__ import annotations

import numpy as np

from alreid.samplers.base import Sampler, SamplingContext


class RandomSampler(Sampler):
    """Uniform over all pairs whose answer is still unknown."""

    name = "random"
    description = "uniformly random unknown pairs (the floor any active sampler must beat)"

    def __init__(self, *, max_rounds: int = 50) -> None:
        self.max_rounds = max_rounds

    def _select(self, ctx: SamplingContext, budget: int, rng: np.random.Generator) -> np.ndarray:
        # Rejection sampling on pair indices: never materialises the n(n-1)/2 pairs. Known pairs are
        # a vanishing fraction of all pairs, so a few rounds suffice; the loop is bounded anyway.
        n = ctx.n
        total = n * (n - 1) // 2
        budget = min(budget, total)
        chosen = np.zeros((0, 2), dtype=np.int64)
        keys_seen = np.zeros(0, dtype=np.int64)
        for _ in range(self.max_rounds):
            need = budget - len(chosen)
            if need <= 0:
                break
            draw = max(2 * need, 16)
            u = rng.integers(0, n, size=draw)
            v = rng.integers(0, n - 1, size=draw)
            v = v + (v >= u)  # uniform over v != u
            cand = np.sort(np.stack([u, v], axis=1), axis=1)
            keys = cand[:, 0] * np.int64(n) + cand[:, 1]
            _, first = np.unique(keys, return_index=True)
            first = np.sort(first)
            cand, keys = cand[first], keys[first]
            fresh = ~np.isin(keys, keys_seen) & ~ctx.constraints.is_known(cand)
            cand, keys = cand[fresh][:need], keys[fresh][:need]
            chosen = np.concatenate([chosen, cand])
            keys_seen = np.concatenate([keys_seen, keys])
        return chosen
