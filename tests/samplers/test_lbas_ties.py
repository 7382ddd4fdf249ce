"""Tie rules of the triplet samplers, on cases built so that the tie actually decides the answer.

* ``largest_remainder``: equal remainders go to the larger cluster first, then to the lower index.
  (The older hand case for this had remainders 0.33 and 0.67, so it never reached the tie.)
* ``ranked`` (the reference candidate order of GBAS/LBAS, tests/samplers/candidate_order.py, which
  ``PairPicker.best_open`` must match): descending score, ties by index, also across the boundary of the
  partially sorted first chunk.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.samplers.candidate_order import ranked
from alreid.samplers.lbas import largest_remainder


@pytest.mark.parametrize(("sizes", "total", "caps", "expected", "why"), [
    # quotas 0.5, 1.5: floors 0, 1, one left, remainders 0.5 = 0.5 -> the larger cluster (index 1)
    ([1, 3], 2, [5, 5], [0, 2], "equal remainders: larger size first"),
    ([3, 1], 2, [5, 5], [2, 0], "equal remainders: larger size first (index 0 this time)"),
    # quotas 0.5, 2.5 -> floors 0, 2, one left, remainders equal -> size 5 wins
    ([1, 5], 3, [9, 9], [0, 3], "equal remainders: larger size first"),
    # quotas 1.2, 0.4, 0.4: floors 1, 0, 0, one left; remainders 0.2, 0.4, 0.4, equal sizes -> lower index
    ([3, 1, 1], 2, [5, 5, 5], [1, 1, 0], "equal remainders and sizes: lower index first"),
    # quotas 0.5, 1.5, 0.5, 1.5: floors 0, 1, 0, 1, two left, all remainders 0.5 -> the two size-3 clusters
    ([1, 3, 1, 3], 4, [9, 9, 9, 9], [0, 2, 0, 2], "four-way tie: sizes decide"),
    # quotas 0.375, 1.125, 0.375, 1.125: one left -> remainder 0.375 (sizes 1, 1 tie) -> lower index 0
    ([1, 3, 1, 3], 3, [9, 9, 9, 9], [1, 1, 0, 1], "largest remainder beats larger size"),
    # the cap takes precedence: cluster 1 (size 3) is capped at 1; quota 2*3/4 = 1.5 >= 1 -> gets 1,
    # the other 1 pair goes to cluster 0
    ([1, 3], 2, [5, 1], [1, 1], "capped cluster re-split"),
])
def test_largest_remainder_ties(sizes, total, caps, expected, why):
    got = largest_remainder(np.asarray(sizes), total, np.asarray(caps))
    assert got.tolist() == expected, why
    assert got.sum() == min(total, sum(caps)) and (got <= np.asarray(caps)).all()


def brute_rank(scores: np.ndarray) -> np.ndarray:
    """Reference order: by descending score, ties by ascending index, -inf left out."""
    idx = [i for i in range(len(scores)) if scores[i] > -np.inf]
    return np.asarray(sorted(idx, key=lambda i: (-scores[i], i)), dtype=np.int64)


@pytest.mark.parametrize("first", [1, 4, 8, 64])
def test_ranked_ties_by_index_across_the_first_chunk(first):
    cases = [
        np.full(100, 0.5),
        np.r_[np.full(50, 0.5), np.full(50, 0.9)],  # all of the first chunk are ties among 50 items
        np.r_[np.full(30, 0.9), np.full(40, 0.2), np.full(30, 0.9)],  # tied block split by the index range
        np.where(np.arange(120) % 7 == 0, -np.inf, np.arange(120) % 3).astype(float),  # excluded entries
    ]
    for scores in cases:
        chunks = list(ranked(scores, first=first))
        got = np.concatenate(chunks) if chunks else np.zeros(0, np.int64)
        want = brute_rank(scores)
        assert got.tolist() == want.tolist()
        if len(want) > first:
            assert chunks[0].tolist() == want[:first].tolist()  # the first chunk is exactly the top `first`


def test_ranked_first_chunk_hand_case():
    # 0.9 at indices 50..99: the first chunk of 8 is 50..57 (lowest indices among the tied best)
    scores = np.r_[np.full(50, 0.5), np.full(50, 0.9)]
    assert next(iter(ranked(scores, first=8))).tolist() == list(range(50, 58))
