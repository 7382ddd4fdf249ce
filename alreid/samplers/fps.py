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

class PairPicker:
    """Collects this cycle's pairs, never one whose answer is known/implied or already chosen.

    Why it snapshots the constraints: asking ``ConstraintStore.is_known`` once per candidate search
    rebuilt the store's whole cannot-link key set every time (O(answers) per anchor), which made a
    GBAS/LBAS cycle on a 6,620-image pool take minutes once a few thousand answers existed. The
    store cannot change while a sampler selects (answers arrive after), so the must-link roots and
    the cannot-link neighbours of every root are read once here, and each anchor gets one boolean
    mask of blocked candidates in O(n).
    """

    def __init__(self, constraints: ConstraintStore) -> None:
        self.constraints = constraints
        self.pairs: list[tuple[int, int]] = []
        self._partners: dict[int, list[int]] = {}  # item -> items it was paired with this cycle
        self._roots = constraints.roots()
        # cannot-link edges between must-link components: every answered "different" pair, mapped to
        # its components' roots (the store keeps exactly these edges; merges move them to the new root)
        cl = constraints.cl_pairs()
        self._cl_of: dict[int, np.ndarray] = {}
        if len(cl):
            ru, rv = self._roots[cl[:, 0]], self._roots[cl[:, 1]]
            src, dst = np.r_[ru, rv], np.r_[rv, ru]
            order = np.argsort(src, kind="stable")
            src, dst = src[order], dst[order]
            heads, starts = np.unique(src, return_index=True)
            for root, part in zip(heads.tolist(), np.split(dst, starts[1:])):
                self._cl_of[root] = part

    def __len__(self) -> int:
        return len(self.pairs)

    def blocked(self, anchor: int) -> np.ndarray:
        """Boolean mask over items: True where (anchor, c) may not be asked now (c is the anchor, its
        answer is known or implied by the constraints, or the pair was already chosen this cycle)."""
        roots = self._roots
        ra = int(roots[anchor])
        out = roots == ra  # same must-link component, the anchor included
        cl = self._cl_of.get(ra)
        if cl is not None:
            flag = np.zeros(len(roots), dtype=bool)
            flag[cl] = True
            out |= flag[roots]
        partners = self._partners.get(anchor)
        if partners:
            out[partners] = True
        return out

    def best_open(self, anchor: int, scores: np.ndarray, exclude: int = -1,
                  blocked: np.ndarray | None = None) -> int | None:
        """The open candidate with the highest score (ties: lowest index), or None.

        Scores of ``-inf`` (and NaN) mark excluded items; ``exclude`` is one more item to skip. This is
        the first open entry of the candidate order (descending score, ties by index; spelled out as
        ``ranked`` in tests/samplers/candidate_order.py), found by one masked argmax instead of sorting
        the pool: ``np.argmax`` returns the first of equal maxima,
        i.e. the lowest index among ties, so the pair chosen is exactly the one the sorted walk finds.
        """
        ok = scores > -np.inf
        ok &= ~(self.blocked(anchor) if blocked is None else blocked)
        if exclude >= 0:
            ok[exclude] = False
        candidates = np.flatnonzero(ok)
        if len(candidates) == 0:
            return None
        return int(candidates[np.argmax(scores[candidates])])

    def triplet(self, anchor: int, positives: np.ndarray, negatives: np.ndarray) -> bool:
        """Choose (anchor, p) and (anchor, n), p and n the best open candidates by the two score
        arrays (-inf: not a candidate), n != p, if both exist; all or nothing."""
        blocked = self.blocked(anchor)
        p = self.best_open(anchor, positives, blocked=blocked)
        if p is None:
            return False
        n = self.best_open(anchor, negatives, exclude=p, blocked=blocked)
        if n is None:
            return False
        for other in (p, n):
            self.pairs.append(_key(anchor, other))
            self._partners.setdefault(anchor, []).append(other)
            self._partners.setdefault(other, []).append(anchor)
        return True

    def result(self) -> np.ndarray:
        return np.asarray(self.pairs, dtype=np.int64).reshape(-1, 2)


def _key(u: int, v: int) -> tuple[int, int]:
    return (u, v) if u < v else (v, u)
