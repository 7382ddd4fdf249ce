"""The candidate order of the triplet samplers, spelled out: the reference the fast search is tested against.

``PairPicker.best_open`` (alreid/samplers/fps.py) takes the first open entry of this order by one masked
argmax; before issue 14 the samplers walked this order chunk by chunk. The tests compare the two.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


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
