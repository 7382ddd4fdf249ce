"""Annotators that answer "same individual?" for a pair of images."""

from __future__ import annotations

import numpy as np

from alreid.errors import AlreidError


class BudgetExceededError(AlreidError):
    """More pairs were asked than the budget allows."""


class RepeatedQueryError(AlreidError):
    """A pair was asked twice; the harness must never waste budget on a known answer."""


def _splitmix64(x: np.ndarray) -> np.ndarray:
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _pair_uniform(lo: np.ndarray, hi: np.ndarray, seed: int) -> np.ndarray:
    """A uniform number in [0, 1) per unordered pair, a pure function of (seed, pair)."""
    with np.errstate(over="ignore"):
        h = _splitmix64(lo.astype(np.uint64) * np.uint64(0x100000001B3) ^ hi.astype(np.uint64))
        h = _splitmix64(h ^ np.uint64(int(seed) & 0xFFFFFFFFFFFFFFFF))
    return (h >> np.uint64(11)).astype(np.float64) / float(1 << 53)


class SimulatedOracle:
    """Answers from ground-truth identities, counting every query against an optional budget.

    ``error_rate`` flips each answer with that probability, modelling a fallible annotator. Whether a
    pair is flipped depends only on (seed, pair), not on the order of questions, so a trial resumed
    from a checkpoint gets exactly the answers an uninterrupted one would have got. Asking a pair
    again is refused, never re-drawn.
    """

    def __init__(self, identities: np.ndarray, *, error_rate: float = 0.0, seed: int = 0,
                 budget: int | None = None) -> None:
        if not 0.0 <= error_rate < 0.5:
            raise AlreidError(f"oracle error_rate must be in [0, 0.5); got {error_rate}")
        self.identities = np.asarray(identities)
        self.error_rate = float(error_rate)
        self.seed = seed
        self.budget = budget
        self.asked_: set[tuple[int, int]] = set()
        self.n_queries_ = 0
        self.n_flipped_ = 0

    def mark_asked(self, pairs: np.ndarray) -> None:
        """Record pairs answered earlier (a resumed trial), so they count and are never re-asked."""
        for u, v in np.asarray(pairs, dtype=np.int64).reshape(-1, 2):
            self.asked_.add((int(min(u, v)), int(max(u, v))))
        self.n_queries_ = len(self.asked_)

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
            lo, hi = np.minimum(pairs[:, 0], pairs[:, 1]), np.maximum(pairs[:, 0], pairs[:, 1])
            flip = _pair_uniform(lo, hi, self.seed) < self.error_rate
            self.n_flipped_ += int(flip.sum())
            truth = truth ^ flip
        self.asked_.update(keys)
        self.n_queries_ += len(pairs)
        return truth.astype(bool)
