"""Jaccard distance details pinned by the mutation review (tests/mutants/jaccard.md): small k1/k2 and the
round(k1/2) half sets, tiny pools, missing (-1) and repeated neighbours, every block size, the reuse of the
k-NN similarities, the input normalisation and the error messages.

Every value is checked against ``reference``, a set-by-set dense transcription of spec 4.3 written
independently of the sparse code (float64, Python sets)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import alreid.clustering.jaccard as jac
from alreid.clustering.jaccard import jaccard_distance, unit_rows
from alreid.clustering.knn import knn_search
from tests.clustering.test_jaccard import as_dense, clustered, exact_rank


def _top(rank: np.ndarray, i: int, k: int) -> list[int]:
    """The first k neighbours of i, missing ones (-1) left out (repeats kept)."""
    return [int(j) for j in rank[i, :k] if j >= 0]


def reference_sets(rank: np.ndarray, k1: int, half: int | None = None) -> list[set[int]]:
    """R*(i) of spec 4.3 step 3, as Python sets (``half``: size of the top lists of the half sets)."""
    n = len(rank)
    if half is None:
        half = min(int(np.around(k1 / 2)) + 1, k1)  # SpCL: round half to even, then a [:k+1] slice

    def reciprocal(i: int, k: int) -> set[int]:
        return {j for j in _top(rank, i, k) if i in _top(rank, j, k)}

    full = [reciprocal(i, k1) for i in range(n)]
    halves = [reciprocal(i, half) for i in range(n)]
    return [full[i].union(*[halves[c] for c in full[i] if len(halves[c] & full[i]) > 2 / 3 * len(halves[c])])
            for i in range(n)]


def reference(x: np.ndarray, rank: np.ndarray, k1: int, k2: int) -> np.ndarray:
    """Dense d_J (n x n, float64) for L2-normalised x and a k-NN ranking (self first, -1 = missing)."""
    x = x.astype(np.float64)
    n = len(x)
    v = np.zeros((n, n))
    for i, s in enumerate(reference_sets(rank, k1)):
        cols = sorted(s)
        w = np.exp(-(2 - 2 * x[cols] @ x[i]))
        v[i, cols] = w / w.sum()
    if k2 != 1:
        v = np.stack([v[_top(rank, i, k2)].mean(axis=0) for i in range(n)])
    s = np.stack([np.minimum(v[i], v).sum(axis=1) for i in range(n)])  # sum_t min(V(i,t), V(j,t))
    return np.maximum(1 - s / (2 - s), 0.0)


def check(got: sp.csr_matrix, want: np.ndarray, atol: float = 2e-6) -> None:
    """Same values, absent = 1, and every pair with overlapping neighbourhoods stored."""
    assert isinstance(got, sp.csr_matrix) and got.dtype == np.float32 and got.shape == want.shape
    np.testing.assert_allclose(as_dense(got), want, atol=atol, rtol=0)
    stored = np.zeros(got.shape, dtype=bool)
    coo = got.tocoo()
    stored[coo.row, coo.col] = True
    assert not np.any(~stored & (want < 1 - 1e-6))
    assert np.all(stored.diagonal())


def _count_computed(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record how many dot products the encoding computes from the features."""
    counts: list[int] = []
    inner = jac._rowwise_dot

    def counting(x, rows, cols, *a, **kw):  # noqa: ANN001, ANN002, ANN003
        counts.append(len(rows))
        return inner(x, rows, cols, *a, **kw)

    monkeypatch.setattr(jac, "_rowwise_dot", counting)
    return counts


# --- the algorithm over parameters the main tests miss -----------------------------------------


@pytest.mark.parametrize("k1", [1, 2, 3, 4, 5, 6, 7, 9, 11])
def test_small_k1_and_every_k2_match_the_reference(k1: int) -> None:
    x = clustered(70, dim=8, n_ids=12, noise=0.6, seed=100 + k1)
    rank = exact_rank(x, k1)
    for k2 in sorted({1, 2, 3, k1}):
        check(jaccard_distance(x, k1, k2, knn=(None, rank)), reference(x, rank, min(k1, 70), min(k2, k1)))


def test_half_sets_use_round_half_to_even() -> None:
    # k1 = 5 -> round(2.5) = 2 -> top 3; k1 = 7 -> round(3.5) = 4 -> top 5 (Python/numpy rounding)
    x = clustered(90, dim=8, n_ids=10, noise=0.8, seed=7)
    for k1 in (5, 7, 9):
        rank = exact_rank(x, k1)
        want = reference(x, rank, k1, 1)
        check(jaccard_distance(x, k1, 1, knn=(None, rank)), want)
    # the rounding matters on this data: rounding 2.5 up (top 4) changes R*
    rank = exact_rank(x, 5)
    assert reference_sets(rank, 5) != reference_sets(rank, 5, half=4)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8])
def test_tiny_pools_clip_k1_and_k2_to_the_pool(n: int) -> None:
    x = clustered(n, dim=6, n_ids=3, seed=n)
    got = jaccard_distance(x)  # k1 = 30, k2 = 6 > n: the search runs here with k1 = n
    check(got, reference(x, exact_rank(x, n), n, min(6, n)))
    if n == 1:
        assert got.nnz == 1 and got[0, 0] == 0


def test_k2_larger_than_k1_is_clipped_to_k1() -> None:
    x = clustered(60, dim=8, seed=11)
    rank = exact_rank(x, 4)
    want = reference(x, rank, 4, 4)
    check(jaccard_distance(x, 4, 9, knn=(None, rank)), want)
    check(jaccard_distance(x, 1, 5, knn=(None, exact_rank(x, 1))), reference(x, exact_rank(x, 1), 1, 1))


def test_empty_pool_gives_an_empty_matrix() -> None:
    got = jaccard_distance(np.zeros((0, 5), dtype=np.float32))
    assert isinstance(got, sp.csr_matrix) and got.shape == (0, 0) and got.dtype == np.float32


def test_missing_neighbours_are_left_out(monkeypatch: pytest.MonkeyPatch) -> None:
    # an approximate index may return -1 for neighbours it could not find
    x = clustered(80, dim=8, n_ids=10, seed=12)
    rank = exact_rank(x, 10)
    rng = np.random.default_rng(0)
    for i in rng.choice(80, 30, replace=False):
        rank[i, rng.integers(1, 10):] = -1  # a missing tail, self (column 0) kept
    for k2 in (1, 3, 6):
        check(jaccard_distance(x, 10, k2, knn=(None, rank)), reference(x, rank, 10, k2))
    # faiss reports a missing neighbour's similarity as -3.4e38: those entries are not spot-checked
    sims = np.where(rank >= 0, np.einsum("ij,ikj->ik", x, x[np.where(rank >= 0, rank, 0)]), -3.4e38)
    counts = _count_computed(monkeypatch)
    check(jaccard_distance(x, 10, 6, knn=(sims.astype(np.float32), rank)), reference(x, rank, 10, 6))
    sets = reference_sets(rank, 10)
    assert sum(counts) == sum(len(s - set(rank[i].tolist())) for i, s in enumerate(sets)) > 0


def test_a_repeated_neighbour_counts_once_in_the_sets() -> None:
    x = clustered(60, dim=8, n_ids=8, seed=13)
    rank = exact_rank(x, 8)
    rank[::3, 5] = rank[::3, 1]  # broken ANN output: the first neighbour listed twice
    # query expansion averages over the listed rows (a repeated row counts twice), as SpCL's mean would
    for k2 in (1, 6, 8):
        check(jaccard_distance(x, 8, k2, knn=(None, rank)), reference(x, rank, 8, k2))


def test_exact_ties_between_identical_points() -> None:
    x = clustered(50, dim=6, n_ids=6, seed=14)
    x[10:14] = x[9]  # five identical points: ties in the ranking and zero distances
    x[30] = x[31]
    rank = exact_rank(x, 12)
    got = jaccard_distance(x, 12, 4, knn=(None, rank))
    check(got, reference(x, rank, 12, 4))
    assert got.data.min() >= 0  # clipped, never a tiny negative


@pytest.mark.parametrize("max_pairs", [1, 2, 5, 37, 400, 1 << 30])
def test_every_block_size_gives_the_reference(max_pairs: int) -> None:
    x = clustered(60, dim=8, n_ids=6, seed=15)
    rank = exact_rank(x, 10)
    got = jaccard_distance(x, 10, 3, knn=(None, rank), max_pairs=max_pairs)
    check(got, reference(x, rank, 10, 3))
    assert got.has_sorted_indices
    t = got.T.tocsr()
    t.sort_indices()
    assert np.array_equal(t.indices, got.indices) and np.array_equal(t.data, got.data)


def test_upper_blocks_hold_at_most_max_pairs_candidates_and_are_as_large_as_that_allows() -> None:
    # "max_pairs bounds the number of candidate pairs materialised at once": a candidate is a triple
    # (i, j, t) with i < j both non-zero in column t; blocks are consecutive rows, filled greedily
    x = clustered(60, dim=8, n_ids=6, seed=25)
    rank = exact_rank(x, 10)
    want = reference(x, rank, 10, 3)
    v = jac._query_expand(jac._encode(x, jac._expanded_sets(jac._reciprocal(rank, 10, 60), jac._reciprocal(
        rank, 6, 60)), rank, None), rank, 3)
    nz = v.toarray() > 0
    per_row = np.array([sum(int(nz[i + 1:, t].sum()) for t in np.flatnonzero(nz[i])) for i in range(60)])
    assert per_row[-1] == 0 and per_row[:2].sum() > 0
    for max_pairs in (1, int(per_row[:2].sum()), int(per_row[:3].sum()) - 1, int(per_row[:3].sum()) + 1, 500, 1 << 30):
        expected, a = [], 0
        while a < 60:
            b = a + 1
            while b < 60 and per_row[a:b + 1].sum() <= max_pairs:
                b += 1
            if per_row[a:b].sum():  # a block without candidates is skipped
                expected.append((a, b - a))
            a = b
        blocks = list(jac._upper_blocks(v, max_pairs))
        assert [(a, blk.shape[0]) for a, blk in blocks] == expected
        for a, blk in blocks:  # the strict upper triangle of d_J for rows a.., absent = 1
            dense = np.ones(blk.shape)
            coo = blk.tocoo()
            dense[coo.row, coo.col] = coo.data
            rows = np.arange(a, a + blk.shape[0])
            assert np.all(coo.col > rows[coo.row])
            upper = np.triu(want, 1)[rows] + np.tril(np.ones((60, 60)))[rows]
            np.testing.assert_allclose(dense, upper, atol=2e-6, rtol=0)


def test_defaults_are_spcl_k1_30_and_k2_6() -> None:
    x = clustered(80, dim=8, n_ids=4, noise=0.9, seed=26)
    rank = exact_rank(x, 30)
    check(jaccard_distance(x), reference(x, rank, 30, 6))


def test_blocked_helpers_give_the_unblocked_answer() -> None:
    # the row-block sizes only bound memory; small blocks must not change the sets or the counts
    x = clustered(70, dim=8, n_ids=8, seed=16)
    rank = np.ascontiguousarray(exact_rank(x, 9), dtype=np.int64)
    rec = jac._reciprocal(rank, 9, 70)
    rec_half = jac._reciprocal(rank, 5, 70)  # round(4.5) = 4, plus one
    want = reference_sets(rank, 9)
    for block in (1, 4, 69, 70):
        e = jac._expanded_sets(rec, rec_half, block=block)
        assert [set(e[i].indices.tolist()) for i in range(70)] == want
        assert np.all(e.data == 1)
    v = jac._encode(x, jac._expanded_sets(rec, rec_half), rank, None)
    v = jac._query_expand(v, rank, 3)
    pattern = (v.toarray() > 0).astype(int)
    share = (pattern @ pattern.T) > 0
    low = np.array([share[i, :i].sum() for i in range(70)])
    up = np.array([share[i, i + 1:].sum() for i in range(70)])
    for block in (1, 3, 69, 70, 100):
        n_low, n_up = jac._pattern_counts(v, block_rows=block)
        assert np.array_equal(n_low, low) and np.array_equal(n_up, up)


def test_overlap_counts_above_127_do_not_overflow() -> None:
    # k1 = 300: |R(i) & R'(c)| reaches 151, beyond an int8 count; dense float64 check of step 3
    n, k1 = 1000, 300
    x = clustered(n, dim=8, n_ids=4, noise=0.7, seed=1)
    rank = np.ascontiguousarray(exact_rank(x, k1), dtype=np.int64)
    rec, rec_half = jac._reciprocal(rank, k1, n), jac._reciprocal(rank, 151, n)
    r, h = rec.toarray().astype(np.float64), rec_half.toarray().astype(np.float64)
    assert np.array_equal(r, r.T) and r.sum(axis=1).max() > 255
    overlap = r @ h.T  # overlap[i, c] = |R(i) & R'(c)|
    accepted = (r > 0) & (3 * overlap > 2 * h.sum(axis=1)[None, :])
    assert overlap[accepted].max() > 127
    want = (r + accepted.astype(np.float64) @ h) > 0
    assert np.array_equal(jac._expanded_sets(rec, rec_half).toarray() > 0, want)


def test_row_dot_products_in_small_chunks() -> None:
    rng = np.random.default_rng(17)
    x = rng.standard_normal((50, 300)).astype(np.float32)
    rows, cols = rng.integers(0, 50, 3000), rng.integers(0, 50, 3000)
    want = (x.astype(np.float64)[rows] * x[cols]).sum(axis=1)
    for chunk in (1, 2000, 1 << 18):  # steps of 1024, 1024 and all at once
        got = jac._rowwise_dot(x, rows, cols, chunk=chunk)
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)


# --- reuse of the k-NN similarities ------------------------------------------------------------


def test_matching_similarities_leave_only_pairs_outside_the_knn_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    x = clustered(300, dim=8, n_ids=20, seed=18)  # more than the 256 spot-checked rows
    sims, idx = knn_search(x, 12)
    k1 = 12
    sets = reference_sets(idx, k1)
    total = sum(len(s) for s in sets)
    outside = sum(len(s - set(idx[i, :k1].tolist())) for i, s in enumerate(sets))
    assert 0 < outside < total
    want = reference(x, idx, k1, 4)
    counts = _count_computed(monkeypatch)
    bad = sims.copy()
    bad[1, 3] += 0.01  # row 1 is among the 256 rows spread over the 300 that are spot-checked
    # sims within the spot check's 1e-4 are used as they are (so the result moves a little), others ignored
    for given, computed, atol in ((sims, outside, 2e-6), (sims + 5e-5, outside, 1e-4), (None, total, 2e-6),
                                  (0.5 * sims, total, 2e-6), (sims + 2e-4, total, 2e-6),
                                  (sims[:, :k1 - 1], total, 2e-6), (sims[:-1], total, 2e-6), (bad, total, 2e-6)):
        counts.clear()
        got = jaccard_distance(x, k1, 4, knn=(given, idx))
        assert sum(counts) == computed
        check(got, want, atol)
    # wider lists than k1: only the first k1 similarities are compared and used
    sims20, idx20 = knn_search(x, 20)
    counts.clear()
    check(jaccard_distance(x, k1, 4, knn=(sims20, idx20)), want)
    assert sum(counts) == outside


def test_similarities_are_spot_checked_on_rows_spread_over_the_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    x = clustered(40, dim=8, seed=19)
    sims, idx = knn_search(x, 8)
    counts = _count_computed(monkeypatch)
    # the first, a middle and the last row are checked (n < 256), and so is every column, self included
    for row, col in ((0, 3), (20, 3), (39, 3), (0, 0), (5, 0)):
        bad = sims.copy()
        bad[row, col] += 0.01
        counts.clear()
        check(jaccard_distance(x, 8, 2, knn=(bad, idx)), reference(x, idx, 8, 2))
        assert sum(counts) == sum(len(s) for s in reference_sets(idx, 8))  # rejected: all computed


# --- input handling ----------------------------------------------------------------------------


def test_unit_rows_copies_only_when_needed() -> None:
    x = clustered(30, dim=8, seed=20)
    assert unit_rows(x) is x  # float32, C order, unit rows: no copy
    near = x * np.float32(1 + 2e-5)  # squared norms within 1e-4 of 1
    assert unit_rows(near) is near
    for other in (x * np.float32(1.01), x.astype(np.float64), np.asfortranarray(x), 2.0 * x.astype(np.float64)):
        got = unit_rows(other)
        assert got is not other and got.dtype == np.float32 and got.flags.c_contiguous
        np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-6)
        np.testing.assert_allclose(got, x, atol=1e-6)


def test_slightly_unnormalised_features_are_normalised_first() -> None:
    x = clustered(80, dim=8, seed=21)
    rank = exact_rank(x, 10)
    want = reference(x, rank, 10, 3)
    for scale in (1.01, 0.9, 1.2):
        check(jaccard_distance(x * np.float32(scale), 10, 3, knn=(None, rank)), want)


def test_given_knn_may_be_lists_and_exactly_k1_wide() -> None:
    x = clustered(40, dim=8, seed=22)
    rank = exact_rank(x, 7)
    want = reference(x, rank, 7, 3)
    check(jaccard_distance(x, 7, 3, knn=(None, rank.tolist())), want)
    check(jaccard_distance(x, 7, 3, knn=(None, rank)), want)


@pytest.mark.parametrize("k1, k2", [(0, 6), (30, 0), (-1, -2)])
def test_k1_and_k2_below_one_are_refused(k1: int, k2: int) -> None:
    with pytest.raises(ValueError) as err:
        jaccard_distance(clustered(10, dim=4), k1, k2)
    assert str(err.value) == f"k1 and k2 must be >= 1; got k1={k1}, k2={k2}"


def test_knn_of_the_wrong_shape_is_refused_with_the_shape_needed() -> None:
    x = clustered(12, dim=4, seed=23)
    rank = exact_rank(x, 12)
    for bad, k1, need in ((rank[:, :5], 6, 6), (rank[:11], 6, 6), (rank[:, :9], 30, 12)):
        with pytest.raises(ValueError) as err:
            jaccard_distance(x, k1, 2, knn=(None, bad))
        assert str(err.value) == f"knn indices have shape {bad.shape}; need (12, >= {need}) for k1={need}"


def test_the_index_choice_reaches_the_search() -> None:
    x = clustered(120, dim=8, seed=24)
    with pytest.raises(ValueError, match="unknown k-NN index 'bogus'"):
        jaccard_distance(x, 10, 3, index="bogus")
    rank = exact_rank(x, 10)
    check(jaccard_distance(x, 10, 3, index="hnsw"), reference(x, rank, 10, 3))
