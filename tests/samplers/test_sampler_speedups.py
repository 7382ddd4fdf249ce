"""The fast candidate search of GBAS/LBAS picks exactly the pairs the straightforward one did (issue 14).

The straightforward search (kept here as the reference, as it was in ``fps.PairPicker`` before):
walk the candidates in :func:`ranked` order (descending score, ties by index) and take the first
whose pair is neither known/implied (``ConstraintStore.is_known``, asked live) nor chosen earlier
in the cycle. The fast one takes a masked argmax over a snapshot of the constraints. The cases are
built so that ties decide the answer (duplicated items, scores on a coarse grid) and so that the
constraints include must-link merges made after cannot-links (the store moves those edges).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from alreid.constraints import ConstraintStore
from alreid.samplers.fps import PairPicker, farthest_point_order, triplets_for
from alreid.samplers.gbas import GBASSampler
from alreid.samplers.lbas import LBASSampler, cluster_members, largest_remainder
from tests.samplers.candidate_order import ranked
from tests.samplers.test_gbas import context, random_jaccard


class ReferencePicker:
    """The pre-issue-14 picker: ranked chunks, ``is_known`` on each chunk, a set of taken pairs."""

    def __init__(self, constraints: ConstraintStore) -> None:
        self.constraints = constraints
        self.pairs: list[tuple[int, int]] = []
        self.taken: set[tuple[int, int]] = set()

    def __len__(self) -> int:
        return len(self.pairs)

    def first_free(self, anchor: int, candidates: Iterator[np.ndarray], exclude: int = -1) -> int | None:
        for chunk in candidates:
            chunk = chunk[(chunk != anchor) & (chunk != exclude)]
            if len(chunk) == 0:
                continue
            known = self.constraints.is_known(np.stack([np.full(len(chunk), anchor), chunk], axis=1))
            for c in chunk[~known]:
                if (min(anchor, int(c)), max(anchor, int(c))) not in self.taken:
                    return int(c)
        return None

    def triplet(self, anchor: int, positives: np.ndarray, negatives: np.ndarray) -> bool:
        p = self.first_free(anchor, ranked(positives, first=4))  # a small first chunk: the walk crosses chunks
        if p is None:
            return False
        n = self.first_free(anchor, ranked(negatives, first=4), exclude=p)
        if n is None:
            return False
        for other in (p, n):
            key = (min(anchor, other), max(anchor, other))
            self.taken.add(key)
            self.pairs.append(key)
        return True

    def result(self) -> np.ndarray:
        return np.asarray(self.pairs, dtype=np.int64).reshape(-1, 2)


def tied_pool(seed: int, n: int = 60, dim: int = 6):
    """L2-normalised features with exact duplicates and coarse coordinates (many tied cosines), and
    identities (duplicates share one)."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, 8, n)
    x = rng.integers(-2, 3, (8, dim))[ids] + rng.integers(-1, 2, (n, dim)) * (rng.random((n, 1)) < 0.5)
    x[rng.random(n) < 0.2] = x[0]  # exact duplicates of item 0
    ids[np.all(x == x[0], axis=1)] = ids[0]
    x = x.astype(np.float64) + 1e-3 * (np.abs(x).sum(axis=1, keepdims=True) == 0)  # no zero rows
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    return x, ids


def random_store(n: int, ids: np.ndarray, n_answers: int, seed: int) -> ConstraintStore:
    """Truthful answers to random pairs, cannot-links first and must-links last so that merges
    move cannot-link edges onto new roots."""
    rng = np.random.default_rng(seed)
    store = ConstraintStore(n)
    pairs = rng.integers(0, n, (n_answers, 2))
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    same = ids[pairs[:, 0]] == ids[pairs[:, 1]]
    for u, v in np.concatenate([pairs[~same], pairs[same]]):
        store.add(int(u), int(v), bool(ids[u] == ids[v]))
    return store


@pytest.mark.parametrize("seed", range(12))
def test_blocked_mask_equals_is_known_and_taken(seed):
    x, ids = tied_pool(seed)
    n = len(x)
    store = random_store(n, ids, 5 * n, seed)
    picker = PairPicker(store)
    picker._partners = {3: [5, 7], 5: [3], 7: [3]}  # pairs (3, 5), (3, 7) chosen this cycle
    for a in range(n):
        want = store.is_known(np.stack([np.full(n, a), np.arange(n)], axis=1) % n)
        want[a] = True
        if a == 3:
            want[[5, 7]] = True
        if a in (5, 7):
            want[3] = True
        assert picker.blocked(a).tolist() == want.tolist(), a


@pytest.mark.parametrize("seed", range(10))
def test_triplets_match_the_sorted_walk_on_tied_scores(seed):
    rng = np.random.default_rng(seed)
    x, ids = tied_pool(seed)
    n = len(x)
    store = random_store(n, ids, int(rng.integers(0, 4 * n)), seed)
    fast, slow = PairPicker(store), ReferencePicker(store)
    for a in rng.integers(0, n, 2 * n):  # anchors repeat: later calls must skip pairs taken earlier
        pos = rng.integers(0, 4, n).astype(np.float64)  # a coarse grid: ties everywhere
        neg = rng.integers(0, 4, n).astype(np.float64)
        pos[rng.random(n) < 0.3] = -np.inf
        neg[rng.random(n) < 0.3] = -np.inf
        neg[rng.random(n) < 0.05] = np.nan  # never a candidate, in either search
        assert fast.triplet(int(a), pos, neg) == slow.triplet(int(a), pos, neg)
        assert fast.pairs == slow.pairs
    assert len(fast) > 0


def reference_lbas(ctx, budget: int, rng: np.random.Generator, fps_start: str = "central") -> np.ndarray:
    """The pre-issue-14 LBAS loop: member lists and "other cluster" masks by scanning the pool per
    cluster, the sorted walk for candidates."""
    clustered = ~np.asarray(ctx.outliers, dtype=bool)
    ids, sizes = np.unique(ctx.labels[clustered], return_counts=True)
    total = triplets_for(budget)
    share = largest_remainder(sizes, total, sizes - 1)
    picker = ReferencePicker(ctx.constraints)
    anchors: dict[int, Iterator] = {}
    used = np.zeros(len(ids), dtype=np.int64)
    made = np.zeros(len(ids), dtype=np.int64)
    dry = np.zeros(len(ids), dtype=bool)
    while share.sum() > 0:
        for pos in np.flatnonzero(share):
            members = np.flatnonzero(clustered & (ctx.labels == ids[pos]))
            if pos not in anchors:
                anchors[pos] = farthest_point_order(ctx.features, subset=members, start=fps_start, rng=rng)
            others = clustered & (ctx.labels != ids[pos])
            goal = made[pos] + share[pos]
            while made[pos] < goal:
                step = next(anchors[pos], None)
                if step is None:
                    dry[pos] = True
                    break
                a, sims = step
                used[pos] += 1
                far = np.full(ctx.n, -np.inf)
                far[members] = -sims[members]
                near = np.where(others, sims.astype(np.float64), -np.inf)
                made[pos] += picker.triplet(a, far, near)
        left = total - int(made.sum())
        caps = np.where(dry, 0, sizes - used)
        share = largest_remainder(sizes, left, caps) if left > 0 else np.zeros(len(ids), dtype=np.int64)
    return picker.result()


def _tied_context(seed: int, answers: int):
    x, ids = tied_pool(seed, n=80)
    rng = np.random.default_rng(seed)
    labels = np.where(rng.random(len(x)) < 0.2, (ids + 1) % 8, ids)  # an imperfect clustering
    outliers = rng.random(len(x)) < 0.15
    store = random_store(len(x), ids, answers, seed)
    return context(x, labels, outliers, store=store, eps=0.5, jaccard=random_jaccard(x, seed))


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("fps_start", ["central", "random"])
def test_lbas_matches_the_reference_loop(seed, fps_start):
    ctx = _tied_context(seed, answers=40 * seed)
    budget = 30 + 10 * seed
    want = reference_lbas(ctx, budget, np.random.default_rng(seed), fps_start)
    got = LBASSampler(fps_start=fps_start)._select(ctx, budget, np.random.default_rng(seed))
    assert got.tolist() == want.tolist()


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("params", [{}, {"fps_start": "random"}, {"negative_rule": "cosine_rank"}])
def test_gbas_matches_the_reference_picker(seed, params, monkeypatch):
    ctx = _tied_context(seed, answers=40 * seed)
    budget = 40 + 30 * seed  # up to 250 pairs on 80 items: anchors are revisited in later passes
    got = GBASSampler(**params)._select(ctx, budget, np.random.default_rng(seed))
    monkeypatch.setattr("alreid.samplers.gbas.PairPicker", ReferencePicker)
    want = GBASSampler(**params)._select(ctx, budget, np.random.default_rng(seed))
    assert got.tolist() == want.tolist()
    assert len(got) > 0


def test_cluster_members_hand_case():
    labels = np.array([4, 2, 4, 9, 2, 2, 7])
    clustered = np.array([True, True, True, False, True, False, True])
    got = cluster_members(labels, clustered, np.array([2, 4, 7]))
    assert [m.tolist() for m in got] == [[1, 4], [0, 2], [6]]  # item 5 (label 2) and 3 are outliers
