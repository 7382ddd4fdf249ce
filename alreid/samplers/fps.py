"""Pieces shared by the triplet samplers (GBAS, LBAS): farthest-point sampling and pair picking.

A triplet (anchor, positive, negative) costs two pair queries, (a, p) and (a, n) (spec 2). Both
samplers walk anchors in farthest-point order on cosine distance and, for each anchor, take the
best-ranked positive and negative candidates whose pair is neither known nor already chosen this
cycle ("skip a candidate and take the next one").
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

import numpy as np

from alreid.constraints import ConstraintStore
from alreid.plugin import check_choice  # noqa: F401  (re-exported: LBAS/NIS import it from here)

FpsStart = Literal["central", "random"]
FPS_STARTS = ("central", "random")


def triplets_for(budget: int) -> int:
    """Triplets a cycle can afford: T = floor(budget / 2) (spec 2); an odd last pair stays unused."""
    return int(budget) // 2


def farthest_point_order(features: np.ndarray, *, subset: np.ndarray | None = None, start: FpsStart = "central",
                         rng: np.random.Generator | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(index, cosine similarities of that item to every row)`` in farthest-point order.

    Farthest-point sampling over ``subset`` (default: all rows) on cosine distance 1 - x·y of the
    L2-normalised features: each next item maximises its distance to the nearest item already
    yielded. ``start="central"`` begins with the item closest to the subset's centroid (largest
    cosine to the mean; deterministic), ``"random"`` with a uniformly drawn one. The similarity row
    is computed once per item over *all* rows, because the callers need it to rank candidates too.
    Lazy: a caller that stops early pays only for the items it consumed (O(n d) each).
    """
    x = features
    members = np.arange(x.shape[0]) if subset is None else np.asarray(subset, dtype=np.int64)
    if len(members) == 0:
        return
    if start == "central":
        pos = int(np.argmax(x[members] @ x[members].mean(axis=0)))
    elif start == "random":
        if rng is None:
            raise ValueError("fps start 'random' needs a random generator")
        pos = int(rng.integers(len(members)))
    else:
        raise ValueError(f"unknown fps start {start!r}; use one of {FPS_STARTS}")
    min_dist = np.full(len(members), np.inf)
    for _ in range(len(members)):
        current = int(members[pos])
        sims = x @ x[current]
        yield current, sims
        np.minimum(min_dist, 1.0 - sims[members], out=min_dist)
        min_dist[pos] = -np.inf  # never again, even for exact duplicates
        pos = int(np.argmax(min_dist))
        if min_dist[pos] == -np.inf:
            return

def ranked(scores: np.ndarray, *, first: int = 64) -> Iterator[np.ndarray]:
    """Indices by descending score, in chunks, skipping -inf (excluded) entries.

    The first chunk comes from a partial sort, so an anchor whose best candidate is free costs
    O(n) instead of a full O(n log n) sort; the rest is sorted only if it is needed.
    """
    valid = np.flatnonzero(scores > -np.inf)
    if len(valid) == 0:
        return
    s = scores[valid]
    if len(valid) > first:
        # argpartition picks an arbitrary subset of the scores tied at the boundary: take every score above
        # the first-th largest, then the tied ones by index (valid is ascending), so ties stay by index
        kth = -np.partition(-s, first - 1)[first - 1]
        above = np.flatnonzero(s > kth)
        top = np.concatenate([above, np.flatnonzero(s == kth)[:first - len(above)]])
        top = top[np.lexsort((valid[top], -s[top]))]  # ties by index: deterministic
        yield valid[top]
        rest = np.ones(len(valid), dtype=bool)
        rest[top] = False
        valid, s = valid[rest], s[rest]
    order = np.lexsort((valid, -s))
    yield valid[order]


class PairPicker:
    """Collects this cycle's pairs, never one whose answer is known/implied or already chosen."""

    def __init__(self, constraints: ConstraintStore) -> None:
        self.constraints = constraints
        self.pairs: list[tuple[int, int]] = []
        self._taken: set[tuple[int, int]] = set()

    def __len__(self) -> int:
        return len(self.pairs)

    def first_free(self, anchor: int, candidates: Iterator[np.ndarray], exclude: int = -1) -> int | None:
        """The first candidate c (in the given order) with (anchor, c) still open, or None."""
        for chunk in candidates:
            chunk = chunk[(chunk != anchor) & (chunk != exclude)]
            if len(chunk) == 0:
                continue
            known = self.constraints.is_known(np.stack([np.full(len(chunk), anchor), chunk], axis=1))
            for c in chunk[~known]:
                if _key(anchor, int(c)) not in self._taken:
                    return int(c)
        return None

    def triplet(self, anchor: int, positives: Iterator[np.ndarray], negatives: Iterator[np.ndarray]) -> bool:
        """Choose (anchor, p) and (anchor, n) if both have an open candidate; all or nothing."""
        p = self.first_free(anchor, positives)
        if p is None:
            return False
        n = self.first_free(anchor, negatives, exclude=p)
        if n is None:
            return False
        for other in (p, n):
            self._taken.add(_key(anchor, other))
            self.pairs.append(_key(anchor, other))
        return True

    def result(self) -> np.ndarray:
        return np.asarray(self.pairs, dtype=np.int64).reshape(-1, 2)


def _key(u: int, v: int) -> tuple[int, int]:
    return (u, v) if u < v else (v, u)
