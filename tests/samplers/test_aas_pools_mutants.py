"""aas_pools details pinned by the mutation review (tests/mutants/aas_pools.md).

Every expected value here is computed independently of the module: by hand, by a plain-Python brute force over
small random scenes, or from the documented contract (module docstring and each function's docstring):
float64 row dot products in chunks, d_J lookups (absent = 1, explicit zero = 0), empty inputs, the order key,
the packing of small regions, the k-NN path of U_us against a brute force over the given k-NN edges, the medoid
affinities read identically on both paths, U_os over several row blocks, the sampling law's edge cases, the
mixture's normalisation and the draw.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.sparse as sp

from alreid.samplers import aas_pools as pools


# ---------------------------------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------------------------------
def test_compact_renumbers_by_sorted_label():
    got = pools.compact(np.array([7, -3, 7, 100, -3]))
    assert got.tolist() == [1, 0, 1, 2, 0] and got.dtype == np.int64


def test_rowdot_is_float64_in_chunks_with_and_without_y():
    rng = np.random.default_rng(0)
    # d = 4096 -> chunks of 1024 rows: 2500 pairs span three chunks
    x = rng.standard_normal((60, 4096)).astype(np.float32)
    y = rng.standard_normal((40, 4096)).astype(np.float32)
    u, v = rng.integers(0, 60, 2500), rng.integers(0, 40, 2500)
    want = np.sum(x[u].astype(np.float64) * y[v].astype(np.float64), axis=1)
    got = pools.rowdot(x, u, v, y)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-9)  # float32 accumulation is off by ~1e-5
    v2 = rng.integers(0, 60, 2500)
    want = np.sum(x[u].astype(np.float64) * x[v2].astype(np.float64), axis=1)
    np.testing.assert_allclose(pools.rowdot(x, u, v2), want, rtol=1e-12, atol=1e-9)
    assert len(pools.rowdot(x, u[:0], v2[:0])) == 0


def test_first_per_group():
    empty = pools.first_per_group(np.zeros(0, np.int64))
    assert len(empty) == 0 and np.arange(3)[empty].shape == (0,)  # an integer index, even when empty
    assert pools.first_per_group(np.array([5])).tolist() == [0]
    assert pools.first_per_group(np.array([3, 3, 1, 1, 2, 3])).tolist() == [2, 4, 0]


def test_as_csr_never_copies_a_csr_and_keeps_explicit_zeros():
    d = sp.csr_matrix(([0.0, 0.5], ([0, 1], [1, 0])), shape=(2, 2))
    assert pools.as_csr(d) is d
    arr = sp.csr_array(d)
    assert pools.as_csr(arr) is arr
    coo = sp.coo_matrix(([0.0, 0.5], ([0, 1], [1, 0])), shape=(2, 2))
    got = pools.as_csr(coo)
    assert isinstance(got, sp.csr_matrix) and got.nnz == 2 and got[0, 1] == 0.0 and got[1, 0] == 0.5


def random_sparse(rng, n_rows, n_cols, density=0.4, dtype=np.float32):
    """A random csr with explicit zeros, empty rows, and its dense view (absent = nan)."""
    present = rng.random((n_rows, n_cols)) < density
    present[rng.random(n_rows) < 0.2] = False  # some rows store nothing
    vals = rng.choice([0.0, 0.3, 0.5, 0.7, 0.9], size=(n_rows, n_cols))
    r, c = np.nonzero(present)
    d = sp.csr_matrix((vals[r, c].astype(dtype), (r, c)), shape=(n_rows, n_cols))
    dense = np.where(present, vals.astype(dtype).astype(np.float64), np.nan)
    return d, dense


def test_row_entries_equal_brute_force():
    rng = np.random.default_rng(1)
    for _ in range(30):
        n_rows, n_cols = int(rng.integers(1, 9)), int(rng.integers(1, 9))
        d, dense = random_sparse(rng, n_rows, n_cols)
        rows = rng.integers(0, n_rows, int(rng.integers(0, 6)))  # repeated, unsorted
        pos, col, val = pools.row_entries(d, rows)
        assert pos.dtype == np.int64 and col.dtype == np.int64
        got = sorted(zip(pos.tolist(), col.tolist(), val.tolist()))
        want = sorted((t, c, dense[r, c]) for t, r in enumerate(rows.tolist()) for c in range(n_cols)
                      if not np.isnan(dense[r, c]))
        assert got == want


def test_csr_values_equal_brute_force():
    rng = np.random.default_rng(2)
    for _ in range(60):
        n = int(rng.integers(1, 9))
        d, dense = random_sparse(rng, n, n, density=float(rng.choice([0.1, 0.4, 0.8])))
        ref = np.where(np.isnan(dense), 1.0, dense)
        k = int(rng.integers(1, 3 * n * n + 1))
        u, v = rng.integers(0, n, k), rng.integers(0, n, k)
        np.testing.assert_array_equal(pools.csr_values(d, u, v), ref[u, v])
        for i, j in itertools.product(range(n), repeat=2):  # one query at a time as well
            assert pools.csr_values(d, np.array([i]), np.array([j])).tolist() == [ref[i, j]]
    assert len(pools.csr_values(d, np.zeros(0, np.int64), np.zeros(0, np.int64))) == 0


def test_csr_values_rows_with_a_single_or_no_stored_entry():
    # row 0: only an explicit zero at column 0; row 1: nothing; row 2: only column 2
    d = sp.csr_matrix(([0.0, 0.25], ([0, 2], [0, 2])), shape=(3, 3))
    u = np.array([0, 0, 0, 1, 1, 2, 2])
    v = np.array([0, 1, 2, 0, 2, 2, 0])
    np.testing.assert_array_equal(pools.csr_values(d, u, v), [0.0, 1.0, 1.0, 1.0, 1.0, 0.25, 1.0])
    for i in range(3):
        for j in range(3):
            want = 0.0 if (i, j) == (0, 0) else 0.25 if (i, j) == (2, 2) else 1.0
            assert pools.csr_values(d, np.array([i]), np.array([j])).tolist() == [want]


# ---------------------------------------------------------------------------------------------------
# step A: regions
# ---------------------------------------------------------------------------------------------------
def test_find_regions_of_no_image_and_of_one_image():
    reg = pools.find_regions(np.zeros(0, np.int64), np.zeros(0, np.int64))
    assert reg.count == 0 and len(reg.region) == 0 and len(reg.size) == 0 and len(reg.alpha) == 0
    assert len(reg.a) == 0 and len(reg.b) == 0
    reg = pools.find_regions(np.array([4]), np.array([9]))
    assert reg.count == 0 and reg.region.tolist() == [-1] and len(reg.size) == 0 and len(reg.alpha) == 0
    assert reg.a.tolist() == [0] and reg.b.tolist() == [0]


def test_find_regions_keeps_the_compacted_views():
    a, b = np.array([10, 10, 30, 30, 20]), np.array([5, 7, 7, 7, 1])
    reg = pools.find_regions(a, b)
    assert reg.a.tolist() == [0, 0, 2, 2, 1] and reg.b.tolist() == [1, 2, 2, 2, 0]
    assert reg.count == 1 and reg.region.tolist() == [0, 0, 0, 0, -1] and reg.size.tolist() == [4]
    # A+ = {01, 23}, B+ = {12, 13, 23}: 1 - 1/4
    np.testing.assert_allclose(reg.alpha, [0.75])
    assert reg.alpha.dtype == np.float64 and reg.region.dtype == np.int64


def test_region_order_by_hand():
    members, starts = pools.region_order(np.array([-1, 2, 0, 2, -1, 1, 0]), 3)
    assert members.tolist() == [2, 6, 5, 1, 3] and starts.tolist() == [0, 2, 3, 5]
    members, starts = pools.region_order(np.array([-1, -1]), 0)
    assert members.tolist() == [] and starts.tolist() == [0]
    region = np.random.default_rng(7).integers(-1, 3, 300)  # long enough for numpy's unstable sort to show
    members, starts = pools.region_order(region, 3)
    assert members.tolist() == sorted(np.flatnonzero(region >= 0).tolist(), key=lambda i: (region[i], i))
    assert starts.tolist() == [0, *np.cumsum(np.bincount(region[region >= 0], minlength=3)).tolist()]


# ---------------------------------------------------------------------------------------------------
# step B: medoids and U_os
# ---------------------------------------------------------------------------------------------------
def test_no_region_no_medoid():
    reg = pools.find_regions(np.array([0, 0, 1]), np.array([3, 3, 4]))
    med = pools.region_medoids(np.eye(3, dtype=np.float32), reg, None)
    assert reg.count == 0 and len(med) == 0


def _empty_pairs(pairs, sims):
    assert pairs.shape == (0, 2) and pairs.dtype == np.int64 and len(sims) == 0


def test_medoid_pairs_with_fewer_than_two_medoids_or_k_max_zero():
    x = np.eye(3, dtype=np.float32)
    _empty_pairs(*pools.medoid_pairs(x, np.array([1]), None, k_max=3, s_min=-1.0))
    _empty_pairs(*pools.medoid_pairs(x, np.array([0, 1, 2]), None, k_max=0, s_min=-1.0))
    _empty_pairs(*pools.medoid_pairs(x, np.array([0, 1, 2]), None, k_max=2, s_min=0.5))  # all cos 0


def twin_vectors(n_pairs: int) -> np.ndarray:
    """2*n_pairs integer vectors, each exactly equal to its twin (2g, 2g+1); twins of distinct pairs differ.

    All have squared norm 255, so a vector's only best match is its twin (cos 255, every other <= 254)
    and every dot product is an exact small integer in float32, whatever the BLAS blocking."""
    r = np.arange(-15, 16)
    grid = np.stack(np.meshgrid(r, r, r, r, indexing="ij"), -1).reshape(-1, 4)
    base = grid[(grid ** 2).sum(1) == 255][:n_pairs]
    assert len(base) == n_pairs
    return np.repeat(base, 2, axis=0).astype(np.float32)


def test_medoid_pairs_over_several_row_blocks():
    """2100 medoids: the cosine candidates are computed in two row blocks (4M entries each)."""
    x = twin_vectors(1050)
    perm = np.random.default_rng(3).permutation(len(x))
    xp = x[perm]  # the twins of pair g now sit at images inv[2g], inv[2g + 1]
    medoids = np.random.default_rng(4).permutation(len(x))
    pairs, sims = pools.medoid_pairs(xp, medoids, None, k_max=1, s_min=255.0)  # the threshold is inclusive
    inv = np.argsort(perm)  # image i of xp is twin-vector perm[i]
    want = sorted((min(inv[2 * g], inv[2 * g + 1]), max(inv[2 * g], inv[2 * g + 1])) for g in range(1050))
    assert [tuple(p) for p in pairs.tolist()] == want  # also: rows in lexicographic order
    np.testing.assert_array_equal(sims, 255.0)
    _empty_pairs(*pools.medoid_pairs(xp, medoids, None, k_max=1, s_min=255.5))


def test_medoid_pairs_jaccard_threshold_is_inclusive_and_asymmetry_keeps_the_larger_sim():
    x = np.array([[1, 0], [0.6, 0.8], [0, 1], [-1, 0]], dtype=np.float32)
    f = lambda v: 1.0 - float(np.float32(v))  # noqa: E731 - sim = 1 - the stored float32 d_J, in float64
    # symmetric d_J: 0-1 0.5 (sim 0.5 = s_min), 0-2 0.3, 1-2 0.75 (sim 0.25 < s_min), 2-3 stored 0 in one direction
    d = sp.csr_matrix((np.array([0.5, 0.5, 0.3, 0.3, 0.75, 0.75, 0.0], np.float32),
                       ([0, 1, 0, 2, 1, 2, 2], [1, 0, 2, 0, 2, 1, 3])), shape=(4, 4))
    pairs, sims = pools.medoid_pairs(x, np.arange(4), d, k_max=3, s_min=0.5)
    assert pairs.tolist() == [[0, 1], [0, 2], [2, 3]]  # rows in lexicographic order
    np.testing.assert_array_equal(sims, [0.5, f(0.3), 1.0])
    # a single stored off-diagonal entry still makes a pair
    d1 = sp.csr_matrix((np.array([0.2], np.float32), ([1], [0])), shape=(4, 4))
    pairs, sims = pools.medoid_pairs(x, np.array([0, 1]), d1, k_max=1, s_min=0.3)
    assert pairs.tolist() == [[0, 1]]
    np.testing.assert_array_equal(sims, [f(0.2)])
    # both directions stored with different values: the larger similarity is kept
    d2 = sp.csr_matrix((np.array([0.2, 0.4], np.float32), ([0, 1], [1, 0])), shape=(4, 4))
    pairs, sims = pools.medoid_pairs(x, np.array([0, 1]), d2, k_max=1, s_min=0.3)
    assert pairs.tolist() == [[0, 1]]
    np.testing.assert_array_equal(sims, [f(0.2)])


# ---------------------------------------------------------------------------------------------------
# step C: U_us
# ---------------------------------------------------------------------------------------------------
def test_order_key_sorts_by_distance_then_cosine_distance():
    dist = np.array([0.0, 0.0, 0.0, 0.25, 0.5, 1.0, 1.99, 2.0])
    cosd = np.array([1e-9, 2e-9, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    key = pools.order_key(dist, cosd)
    assert key.dtype == np.int64 and np.all(key[1:] > key[:-1])  # (np.diff could overflow)
    # negative rounding noise and -0.0 count as 0, in either slot; float64 input = float32 rounding
    zero = pools.order_key(np.zeros(1), np.zeros(1))
    assert pools.order_key(np.array([-0.0]), np.array([-1e-7])) == zero
    assert pools.order_key(np.array([-1e-7]), np.array([-0.0])) == zero
    v = np.array([0.1, 0.7, 1.3])
    np.testing.assert_array_equal(pools.order_key(v, v[::-1]),
                                  pools.order_key(v.astype(np.float32), v[::-1].astype(np.float32)))


def test_closest_cross_pairs_and_dense_block_of_nothing():
    e = np.zeros(0, np.int64)
    got = pools.closest_cross_pairs(e, e, e, e, e)
    assert len(got) == 0
    lu, lv = pools.dense_closest_cross_pairs(np.zeros((2, 2), np.int64), np.array([0, 0]), np.array([1, 1]))
    assert len(lu) == len(lv) == 0 and np.arange(2)[lu].shape == (0,) and np.arange(2)[lv].shape == (0,)


def test_pack_runs_of_consecutive_small_regions():
    sizes = np.array([3, 5, 2, 70, 1, 1, 8, 9])
    assert pools._pack(sizes, np.array([0, 1, 2, 4, 5, 6, 7]), 10) == [(0, 3), (4, 7), (7, 8)]
    assert pools._pack(sizes, np.array([0, 1, 2]), 9) == [(0, 2), (2, 3)]
    assert pools._pack(sizes, np.array([3]), 10) == [(3, 4)]  # one region alone may exceed pack
    assert pools._pack(sizes, np.array([1, 3, 4]), 100) == [(1, 2), (3, 5)]  # a gap starts a new run
    assert pools._pack(sizes, np.zeros(0, np.int64), 10) == []


def test_scan_of_no_region():
    x = np.eye(3, dtype=np.float32)
    reg = pools.find_regions(np.array([0, 0, 1]), np.array([5, 5, 6]))
    for d in (None, sp.identity(3, format="csr")):
        scan = pools.scan_regions(x, reg, d, dense_cap=2)
        assert scan.pairs.shape == (0, 2) and scan.pairs.dtype == np.int64
        assert len(scan.region) == 0 and len(scan.dist) == 0 and scan.approx == 0
        assert (scan.affinity is None) == (d is None)
        if d is not None:
            np.testing.assert_array_equal(scan.affinity, np.zeros(3))


def test_a_region_of_exactly_dense_cap_images_is_solved_exactly():
    x = np.array([[1, 0], [0.8, 0.6], [0.6, 0.8]], dtype=np.float32)
    a, b = np.array([0, 0, 1]), np.array([0, 1, 1])  # one region of 3
    reg = pools.find_regions(a, b)
    scan = pools.scan_regions(x, reg, None, dense_cap=3)  # no k-NN lists needed
    assert scan.approx == 0 and scan.pairs.tolist() == [[0, 1], [1, 2]] and scan.region.tolist() == [0, 0]
    with pytest.raises(ValueError) as err:
        pools.scan_regions(x, reg, None, dense_cap=2)
    assert str(err.value) == "regions larger than dense_cap need k-NN lists (knn_idx)"


def brute_knn_u_us(x, a, b, region, large, knn, dense):
    """U_us of the large regions from their k-NN edges only (spec §1.7 restricted to the listed edges)."""
    cos = x.astype(np.float64) @ x.T.astype(np.float64)
    edges = {}
    for u in np.flatnonzero(np.isin(region, large)):
        for w in knn[u]:
            if w < 0 or w == u or region[w] != region[u]:
                continue
            p = (min(u, w), max(u, w))
            val = 1.0 if dense is None else dense[u, w]  # the listing row's d_J; symmetric here
            edges[p] = min(edges.get(p, np.inf), val)
    out = {}
    for lab, other in ((a, b), (b, a)):
        best = {}
        for (u, v), dj in edges.items():
            if lab[u] == lab[v]:
                continue
            dist = (1 - cos[u, v]) if dense is None else dj
            g = (min(lab[u], lab[v]), max(lab[u], lab[v]))
            cand = (dist, 1 - cos[u, v], (u, v))
            if g not in best or cand < best[g]:
                best[g] = cand
        for dist, _, p in best.values():
            if other[p[0]] == other[p[1]]:
                out[p] = dist
    return out


@pytest.mark.parametrize("jaccard,ties", [(False, False), (True, False), (False, True), (True, True)])
def test_knn_path_equals_brute_force_over_the_listed_edges(jaccard, ties):
    """Partial k-NN lists with -1 padding, row chunks of 1 and 2, d_J rows with nothing stored or only
    the diagonal, exact ties (basis vectors): the k-NN path finds, per cluster pair, the closest of the
    listed edges, exact ties going to the smaller pair."""
    rng = np.random.default_rng(5 + jaccard + 2 * ties)
    for trial in range(40):
        n = int(rng.integers(4, 22))
        if ties:
            x = np.eye(4, dtype=np.float32)[rng.integers(0, 4, n)]
        else:
            x = rng.standard_normal((n, 3)).astype(np.float32)
            x /= np.linalg.norm(x, axis=1, keepdims=True)
        g = rng.integers(0, 2, n) * 100
        a, b = g + rng.integers(0, 5, n), g + rng.integers(0, 5, n)
        dense = None
        d = None
        if jaccard:
            vals = rng.choice([0.0, 0.25, 0.5, 0.75], size=(n, n))
            vals = np.triu(vals, 1)
            vals = vals + vals.T
            present = np.triu(rng.random((n, n)) < 0.5, 1)
            present = present | present.T
            np.fill_diagonal(present, True)
            empty = rng.random(n) < 0.2  # rows (and columns) with nothing stored at all
            present[empty] = False
            present[:, empty] = False
            lonely = (rng.random(n) < 0.2) & ~empty  # rows (and columns) with only the diagonal stored
            present[lonely] = False
            present[:, lonely] = False
            present[lonely, lonely] = True
            r, c = np.nonzero(present)
            d = sp.csr_matrix((vals[r, c].astype(np.float32), (r, c)), shape=(n, n))
            dense = np.where(present, vals, 1.0)
            np.fill_diagonal(dense, 0.0)
        reg = pools.find_regions(a, b)
        if reg.count == 0:
            continue
        ranked = np.argsort(-(x @ x.T), axis=1, kind="stable")
        knn = ranked[:, :3].copy()
        knn[rng.random(knn.shape) < 0.2] = -1  # padding for missing neighbours
        large = np.flatnonzero(reg.size > 2)
        want = brute_knn_u_us(x, reg.a, reg.b, reg.region, large, knn, dense)
        small_want = {}
        if len(large) < reg.count:  # the small regions are solved exactly: take them from the exact path
            exact = pools.scan_regions(x, reg, d, dense_cap=2048)
            small = ~np.isin(exact.region, large)
            small_want = {tuple(p): dd for p, dd in zip(exact.pairs[small].tolist(), exact.dist[small])}
        for chunk in (1, 2, 4096):
            scan = pools.scan_regions(x, reg, d, dense_cap=2, knn_idx=knn, row_chunk=chunk)
            assert scan.approx == len(large)
            got = {tuple(p): dd for p, dd in zip(scan.pairs.tolist(), scan.dist)}
            assert set(got) == set(want) | set(small_want), (trial, chunk)
            for p, dd in {**want, **small_want}.items():
                assert abs(got[p] - dd) < 1e-6
            assert scan.pairs.tolist() == sorted(scan.pairs.tolist())
            assert all(reg.region[u] == r == reg.region[v] for (u, v), r in zip(scan.pairs.tolist(), scan.region))


def test_medoid_affinities_are_identical_on_the_exact_and_the_knn_path():
    """d_J stored as float32 (0.3, 0.7 are not exact): both paths sum 1 - d_J in float64, so the medoid
    criterion cannot depend on dense_cap."""
    rng = np.random.default_rng(6)
    for _ in range(20):
        n = int(rng.integers(4, 24))
        x = rng.standard_normal((n, 3)).astype(np.float32)
        g = rng.integers(0, 3, n) * 10  # several regions, packed into one block on the exact path
        a, b = g + rng.integers(0, 3, n), g + rng.integers(0, 3, n)
        vals = rng.choice([0.1, 0.3, 0.7, 0.9], size=(n, n))
        vals = np.triu(vals, 1)
        vals = vals + vals.T
        present = np.triu(rng.random((n, n)) < 0.6, 1)
        present = present | present.T
        r, c = np.nonzero(present)
        d = sp.csr_matrix((vals[r, c].astype(np.float32), (r, c)), shape=(n, n))
        reg = pools.find_regions(a, b)
        knn = np.argsort(-(x @ x.T), axis=1, kind="stable")
        exact = pools.scan_regions(x, reg, d, dense_cap=2048)
        approx = pools.scan_regions(x, reg, d, dense_cap=1, knn_idx=knn)
        np.testing.assert_array_equal(exact.affinity, approx.affinity)
        inreg = reg.region >= 0
        want = np.array([sum(1.0 - float(np.float32(vals[i, j])) for j in range(n)
                             if j != i and present[i, j] and reg.region[j] == reg.region[i]) if inreg[i] else 0.0
                         for i in range(n)])
        np.testing.assert_allclose(exact.affinity, want, rtol=0, atol=1e-12)


# ---------------------------------------------------------------------------------------------------
# step D: the sampling law, the mixture and the draw
# ---------------------------------------------------------------------------------------------------
def _regions(alpha, size):
    return pools.Regions(np.zeros(0, np.int64), len(alpha), np.asarray(size), np.asarray(alpha, dtype=float),
                         np.zeros(0, np.int64), np.zeros(0, np.int64))


def test_us_conditional_of_no_pair_and_of_one_pair():
    reg = _regions([0.5], [4])
    assert len(pools.us_conditional(np.zeros(0, np.int64), np.zeros(0, np.int64), reg, np.zeros(0))) == 0
    for mode in ("uniform", "sim"):
        p = pools.us_conditional(np.array([2]), np.array([0]), reg, np.array([0.4]), omega_mode=mode)
        assert p.tolist() == [1.0]


def test_omega_sim_falls_back_to_uniform_when_a_cell_has_no_positive_similarity():
    reg = _regions([0.6, 0.2], [5, 5])
    types, preg = np.array([0, 0, 0]), np.array([0, 0, 1])
    # cell (ii, region 0): sims -0.5 (clipped to 0) and 0 -> no mass -> uniform 1/2; rho = 0.75, 0.25
    p = pools.us_conditional(types, preg, reg, np.array([-0.5, 0.0, 0.3]), omega_mode="sim")
    np.testing.assert_allclose(p, [0.375, 0.375, 0.25])
    # negative similarities weigh 0 next to positive ones
    p = pools.us_conditional(types, preg, reg, np.array([-0.5, 0.2, 0.3]), omega_mode="sim")
    np.testing.assert_allclose(p, [0.0, 0.75, 0.25])


def test_us_conditional_unknown_modes_are_named():
    reg = _regions([0.5], [4])
    with pytest.raises(ValueError) as err:
        pools.us_conditional(np.array([0]), np.array([0]), reg, np.ones(1), rho_mode="x")
    assert str(err.value) == "unknown rho_mode 'x'"
    with pytest.raises(ValueError) as err:
        pools.us_conditional(np.array([0]), np.array([0]), reg, np.ones(1), omega_mode="y")
    assert str(err.value) == "unknown omega_mode 'y'"


def test_mixture_normalises_each_pool_and_handles_pools_without_mass():
    os_pairs, us_pairs = np.array([[0, 1], [2, 3]]), np.array([[4, 5], [6, 7]])
    # masses 0.5 and 0.4: each pool is normalised before mixing
    pairs, prob, eps = pools.mixture(os_pairs, np.array([0.1, 0.4]), us_pairs, np.array([0.3, 0.1]), 0.6, 10)
    assert eps == 0.6 and pairs.tolist() == [[0, 1], [2, 3], [4, 5], [6, 7]] and pairs.dtype == np.int64
    np.testing.assert_allclose(prob, [0.6 * 0.2, 0.6 * 0.8, 0.4 * 0.75, 0.4 * 0.25])
    # U_us empty, U_os mass below 1: all mass on U_os
    pairs, prob, eps = pools.mixture(os_pairs, np.array([0.1, 0.3]), np.zeros((0, 2), int), np.zeros(0), 0.6, 10)
    assert eps == 1.0 and pairs.tolist() == [[0, 1], [2, 3]]
    np.testing.assert_allclose(prob, [0.25, 0.75])
    # a pool whose pairs all weigh 0 carries no mass: its pairs stay with P = 0
    pairs, prob, eps = pools.mixture(os_pairs, np.zeros(2), us_pairs, np.array([0.3, 0.1]), 0.6, 10)
    assert eps == 0.0
    np.testing.assert_allclose(prob, [0.0, 0.0, 0.75, 0.25])
    pairs, prob, eps = pools.mixture(os_pairs, np.array([0.1, 0.3]), us_pairs, np.zeros(2), 0.6, 10)
    assert eps == 1.0
    np.testing.assert_allclose(prob, [0.25, 0.75, 0.0, 0.0])
    # neither pool has mass: nothing to draw
    pairs, prob, eps = pools.mixture(os_pairs, np.zeros(2), us_pairs, np.zeros(2), 0.6, 10)
    assert pairs.shape == (0, 2) and pairs.dtype == np.int64 and len(prob) == 0 and eps == 0.6
    pairs, prob, eps = pools.mixture(np.zeros((0, 2), int), np.zeros(0), np.zeros((0, 2), int), np.zeros(0), 0.3, 10)
    assert pairs.shape == (0, 2) and pairs.dtype == np.int64 and len(prob) == 0 and eps == 0.3


def test_draw_follows_numpy_choice_on_the_normalised_law():
    prob = np.array([2.0, 1.0, 1.0, 0.0])  # P need not be normalised
    for seed in range(20):
        got = pools.draw(prob, 2, np.random.default_rng(seed))
        want = np.random.default_rng(seed).choice(4, size=2, replace=False, p=prob / prob.sum())
        assert got.dtype == np.int64 and got.tolist() == want.tolist()
    skew = np.array([0.98, 0.01, 0.01])
    sizes = []
    for seed in range(20):
        got = pools.draw(skew, 3, np.random.default_rng(seed), "with_replacement_dedup")
        raw = np.random.default_rng(seed).choice(3, size=3, replace=True, p=skew)
        want = [int(t) for k, t in enumerate(raw) if t not in raw[:k]]  # distinct, in draw order
        assert got.dtype == np.int64 and got.tolist() == want
        sizes.append(len(got))
    assert np.mean(sizes) < 2  # with replacement: mostly the same pair again
    for mode in ("without_replacement", "with_replacement_dedup"):
        none = pools.draw(prob, 0, np.random.default_rng(0), mode)
        assert none.dtype == np.int64 and np.arange(4)[none].shape == (0,)
    with pytest.raises(ValueError) as err:
        pools.draw(prob, 1, np.random.default_rng(0), "greedy")
    assert str(err.value) == "unknown draw mode 'greedy'"


@pytest.mark.parametrize("jaccard", [False, True])
def test_medoid_pairs_exact_ties_go_to_the_smaller_index(jaccard):
    """Medoids with identical features (duplicate images) tie exactly: the documented ranking (sim, cosine,
    index) must decide among them, also for the k-th candidate (numpy's argpartition alone keeps an arbitrary
    subset of the values tied with the k-th; found by the mutation review)."""
    rng = np.random.default_rng(8)
    for _ in range(60):
        m = int(rng.integers(3, 60))
        t = np.deg2rad(rng.choice([0, 10, 20, 30, 40, 90], size=m))
        x = np.stack([np.cos(t), np.sin(t)], axis=1).astype(np.float32)
        k_max = int(rng.integers(1, 4))
        d = sp.csr_matrix((m, m)) if jaccard else None  # nothing stored: every sim 0, ranked by cosine
        pairs, _ = pools.medoid_pairs(x, np.arange(m), d, k_max=k_max, s_min=0.0 if jaccard else -2.0)
        s32, cos = x @ x.T, x.astype(np.float64) @ x.T.astype(np.float64)
        sim = np.zeros((m, m)) if jaccard else s32
        want = set()
        for i in range(m):
            ranked = sorted((j for j in range(m) if j != i), key=lambda j: (-sim[i, j], -cos[i, j], j))
            want |= {(min(i, j), max(i, j)) for j in ranked[:k_max]}
        assert {tuple(p) for p in pairs.tolist()} == want
