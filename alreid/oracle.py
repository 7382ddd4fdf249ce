"""Annotators that answer "same individual?" for a pair of images."""

from __future__ import annotations

import numpy as np

from alreid.errors import AlreidError


class BudgetExceededError(AlreidError):
    """More pairs were asked than the budget allows."""


class RepeatedQueryError(AlreidError):
    """A pair was asked twice; the harness must never waste budget on a known answer."""


class SimulatedOracle:
    """Answers from ground-truth identities, counting every query against an optional budget.

    ``error_rate`` flips each answer with that probability (seeded), modelling a fallible
    annotator. A flipped answer is remembered: asking again is refused, not re-drawn.
    """

    def __init__(self, identities: np.ndarray, *, error_rate: float = 0.0, seed: int = 0,
                 budget: int | None = None) -> None:
        if not 0.0 <= error_rate < 0.5:
            raise AlreidError(f"oracle error_rate must be in [0, 0.5); got {error_rate}")
        self.identities = np.asarray(identities)
        self.error_rate = float(error_rate)
        self.seed = seed
        self.budget = budget
        self._rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x0AC1E]))
        self.asked_: set[tuple[int, int]] = set()
        self.n_queries_ = 0
        self.n_flipped_ = 0

    def query(self, pairs: np.ndarray) -> np.ndarray:
        """Answers (True = same individual) for an (m, 2) array of index pairs."""
        pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
        if self.budget is not None and self.n_queries_ + len(pairs) > self.budget:
            raise BudgetExceededError(
                f"{len(pairs)} more queries would exceed the oracle budget of {self.budget} "
                f"({self.n_queries_} already used)")
        keys = [(int(min(u, v)), int(max(u, v))) for u, v in pairs]
        seen = set()
        for key in keys:
            if key in self.asked_ or key in seen:
                raise RepeatedQueryError(f"pair {key} was already asked; known answers are never re-queried")
            if key[0] == key[1]:
                raise AlreidError(f"pair {key} joins an image with itself")
            seen.add(key)
        truth = self.identities[pairs[:, 0]] == self.identities[pairs[:, 1]]
        if self.error_rate > 0:
            flip = self._rng.random(len(pairs)) < self.error_rate
            self.n_flipped_ += int(flip.sum())
            truth = truth ^ flip
        self.asked_.update(keys)
        self.n_queries_ += len(pairs)
        return truth.astype(bool)
