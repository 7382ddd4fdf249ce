"""NP3 details pinned by the mutation review (tests/mutants/np3.md): a plain-Python reference NP3 written from
spec 1.10 (union-find merge, brute-force minimum colouring, brute-force matching over all injective maps,
nearest / margin rule by hand) compared with `np3` on seeded random problems, plus the documented defaults,
the exact error messages and the id rules.

The reference only decides the partition where it is well defined: problems are kept only when every CL group
(component of the conflict graph) has a unique minimum colouring up to renaming the colours (trees, cliques,
single ML groups, ...), and when no distance comparison is within 1e-6 of a tie.
"""

from __future__ import annotations

import functools
import itertools
import warnings

import networkx as nx
import numpy as np
import pytest

from alreid.clustering.np3 import colour_graph, exact_colouring, greedy_colouring, np3
from alreid.errors import ConstraintConflictError


# reference NP3 -------------------------------------------------------------------------------------------------
class _Near(Exception):
    """A comparison of the reference is within the tolerance of a tie: the problem is skipped."""


def _root(parent: dict, x):
    while parent[x] != x:
        x = parent[x]
    return x


@functools.lru_cache(maxsize=None)
def _min_colourings(nodes: tuple[int, ...], edges: tuple[tuple[int, int], ...]) -> tuple[int, set[frozenset]]:
    """Chromatic number and the minimum colourings as sets of colour classes (colour names forgotten), by trying
    every colouring with the first node on colour 0; stops at two different ones (then it is not unique)."""
    for k in range(1, len(nodes) + 1):
        found: set[frozenset] = set()
        for rest in itertools.product(range(k), repeat=len(nodes) - 1):
            c = dict(zip(nodes, (0, *rest)))
            if len(set(c.values())) == k and all(c[a] != c[b] for a, b in edges):
                found.add(frozenset(frozenset(v for v in nodes if c[v] == j) for j in range(k)))
                if len(found) > 1:
                    return k, found
        if found:
            return k, found
    raise AssertionError("unreachable")


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.sqrt(float(np.dot(x, x)))


def _dist(cost: str, z: np.ndarray, group: list[int], part: list[int]) -> float:
    """Distance between a group of items and a part: 1 - cos of the summed unit vectors, or the mean gap."""
    if cost == "cosine":
        g = _unit(sum(_unit(z[i]) for i in group))
        p = _unit(sum(_unit(z[i]) for i in part))
        return 1.0 - float(np.dot(g, p))
    g = sum(z[i] for i in group) / len(group)
    p = sum(z[i] for i in part) / len(part)
    return float(np.sqrt(np.sum((g - p) ** 2)))


def _argmin(values: list[float], tol: float = 1e-6) -> int:
    best = min(range(len(values)), key=lambda s: values[s])
    if sum(v <= values[best] + tol for v in values) > 1:
        raise _Near
    return best


def reference_np3(labels, ml, cl, z, cost: str = "cosine", unconstrained: str = "nearest"):
    """Parts of each impure cluster (after the ML merge) and the merged labels, by spec 1.10 step by step."""
    labels = [int(x) for x in labels]
    ml = [(int(u), int(v)) for u, v in ml if u != v]
    cl = [(int(u), int(v)) for u, v in cl]
    parent = {c: c for c in labels}
    for u, v in ml:  # 1. merge along ML; the smaller id stays the root
        a, b = _root(parent, labels[u]), _root(parent, labels[v])
        parent[max(a, b)] = min(a, b)
    merged = [_root(parent, c) for c in labels]
    impure = sorted({merged[u] for u, v in cl if merged[u] == merged[v]})
    parts = {}
    for c in impure:
        mlc = [(u, v) for u, v in ml if merged[u] == c]
        clc = [(u, v) for u, v in cl if merged[u] == c and merged[v] == c]
        points = sorted({i for pair in mlc + clc for i in pair})
        gp = {i: i for i in points}
        for u, v in mlc:  # ML groups
            a, b = _root(gp, u), _root(gp, v)
            gp[max(a, b)] = min(a, b)
        groups = sorted({_root(gp, i) for i in points})  # a group is named by its smallest item
        members_of = {g: [i for i in points if _root(gp, i) == g] for g in groups}
        conflict = sorted({tuple(sorted((_root(gp, u), _root(gp, v)))) for u, v in clc})
        cp = {g: g for g in groups}
        for a, b in conflict:  # CL groups
            ra, rb = _root(cp, a), _root(cp, b)
            cp[max(ra, rb)] = min(ra, rb)
        comps = []
        for r in sorted({_root(cp, g) for g in groups}):
            nodes = [g for g in groups if _root(cp, g) == r]
            chi, colourings = _min_colourings(tuple(nodes), tuple(e for e in conflict if e[0] in nodes))
            if len(colourings) != 1:
                raise _Near  # the partition would depend on which minimum colouring is found
            classes = [sorted(i for g in cls for i in members_of[g]) for cls in next(iter(colourings))]
            comps.append((-chi, -sum(map(len, classes)), r, classes))
        comps.sort(key=lambda t: t[:3])  # highest chi, then most points, then the smallest item
        subs = [list(cls) for cls in comps[0][3]]
        for _, _, _, classes in comps[1:]:  # brute-force matching over every injective map class -> part
            d = [[_dist(cost, z, cls, sub) for sub in subs] for cls in classes]
            totals = {p: sum(d[i][s] for i, s in enumerate(p)) for p in itertools.permutations(range(len(subs)),
                                                                                             len(classes))}
            maps = list(totals)
            best = maps[_argmin([totals[p] for p in maps])]
            for i, s in enumerate(best):
                subs[s] = subs[s] + classes[i]
        free = [i for i in range(len(labels)) if merged[i] == c and i not in points]
        if unconstrained == "nearest":
            chosen = [_argmin([_dist(cost, z, [i], sub) for sub in subs]) for i in free]
            for i, s in zip(free, chosen):
                subs[s] = subs[s] + [i]
        else:  # margin: second-smallest minus smallest distance, largest first, parts updated after each point
            margin = {}
            for i in free:
                d = sorted(_dist(cost, z, [i], sub) for sub in subs)
                margin[i] = d[1] - d[0]
            ms = sorted(margin.values())
            if any(b - a < 1e-6 for a, b in zip(ms, ms[1:])):
                raise _Near
            for i in sorted(free, key=lambda i: -margin[i]):
                s = _argmin([_dist(cost, z, [i], sub) for sub in subs])
                subs[s] = subs[s] + [i]
        parts[c] = {frozenset(s) for s in subs}
    return merged, parts


def random_problem(rng: np.random.Generator):
    n = int(rng.integers(6, 16))
    gt = rng.integers(0, int(rng.integers(2, 6)), n)
    labels = 2 * rng.integers(0, int(rng.integers(1, 4)), n) + 3  # ids 3, 5, 7: not 0..k-1 on purpose
    pairs = rng.integers(0, n, (int(rng.integers(2, 16)), 2))
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    same = gt[pairs[:, 0]] == gt[pairs[:, 1]]
    ml, cl = pairs[same], pairs[~same]
    centres = rng.standard_normal((5, 3)) * 2
    z = (centres[gt] + rng.standard_normal((n, 3))) * rng.uniform(0.3, 3.0, (n, 1))  # norms vary: cosine != raw
    z *= 10 ** rng.uniform(-1.5, 1.0)  # euclidean distances well below and above 1
    return labels, ml, cl, z


def check_against_reference(labels, ml, cl, z, out, merged, parts) -> None:
    out = np.asarray(out)
    max_id = max(merged)
    fresh = []
    for c in sorted(set(merged)):
        items = [i for i in range(len(labels)) if merged[i] == c]
        got = {frozenset(int(i) for i in items if out[i] == k) for k in np.unique(out[items])}
        if c not in parts:  # not impure: the (merged) cluster comes back whole, with the smallest id
            assert got == {frozenset(items)} and np.all(out[items] == c)
            continue
        assert got == parts[c]
        sizes = sorted(len(p) for p in parts[c])
        if sizes[-1] > sizes[-2]:  # a unique largest part keeps the cluster's id
            biggest = max(parts[c], key=len)
            assert np.all(out[sorted(biggest)] == c)
        assert c in out[items]
        fresh += [int(k) for k in np.unique(out[items]) if k != c]
    # new parts get distinct ids just above every id in use
    assert sorted(fresh) == list(range(max_id + 1, max_id + 1 + len(fresh)))


def _problems(count: int, seed: int):
    rng = np.random.default_rng(seed)
    for _ in range(count):
        yield random_problem(rng)


@pytest.mark.parametrize("cost", ["cosine", "euclidean"])
@pytest.mark.parametrize("unconstrained", ["nearest", "margin"])
def test_np3_matches_the_plain_reference(cost: str, unconstrained: str) -> None:
    checked = split = 0
    for labels, ml, cl, z in _problems(400, seed=11):
        try:
            merged, parts = reference_np3(labels, ml, cl, z, cost, unconstrained)
        except _Near:
            continue
        # cosine and nearest are the documented defaults: called without options
        options = {"cost": cost, "unconstrained": unconstrained}
        if (cost, unconstrained) == ("cosine", "nearest"):
            options = {}
        out = np3(labels, ml, cl, z, **options)
        check_against_reference(labels, ml, cl, z, out, merged, parts)
        checked += 1
        split += bool(parts)
    assert checked > 250 and split > 150  # the seeded problems really exercise the split


# documented defaults ---------------------------------------------------------------------------------------------
# 13 nodes, chi = 3 (the triangle 0-2-5 needs 3; THREE_COLOURS below is a proper 3-colouring); networkx DSATUR
# colours it with 4. The first 9 nodes are DSATUR_TRAP of test_np3_options.py, 4 nodes added by a seeded search.
TRAP13 = [(0, 2), (0, 4), (0, 5), (1, 4), (1, 7), (1, 8), (2, 3), (2, 5), (2, 7), (3, 5), (4, 8), (6, 8), (7, 8),
          (4, 9), (5, 9), (0, 10), (0, 11), (9, 12)]
THREE_COLOURS = [0, 1, 1, 0, 2, 2, 1, 2, 0, 0, 1, 1, 1]


def test_the_13_node_trap_is_what_it_claims() -> None:
    assert all(THREE_COLOURS[a] != THREE_COLOURS[b] for a, b in TRAP13)
    assert {(0, 2), (0, 5), (2, 5)} <= set(TRAP13)  # a triangle: no 2-colouring
    g = nx.Graph(TRAP13)
    assert nx.is_connected(g) and g.number_of_nodes() == 13
    assert max(nx.coloring.greedy_color(g, "saturation_largest_first").values()) + 1 == 4


def test_exact_colouring_max_defaults_to_12() -> None:
    """13 nodes are one above the default: greedy DSATUR (4 colours) in colour_graph and in np3."""
    e = np.asarray(TRAP13)
    col = colour_graph(13, e)
    assert col.dtype == np.int64 and sorted(np.unique(col).tolist()) == [0, 1, 2, 3]
    assert len(np.unique(colour_graph(13, e, exact_max=13))) == 3
    z = np.random.default_rng(0).standard_normal((13, 4))
    labels = np.zeros(13, dtype=np.int64)
    assert len(np.unique(np3(labels, np.zeros((0, 2)), e, z))) == 4
    assert len(np.unique(np3(labels, np.zeros((0, 2)), e, z, exact_colouring_max=13))) == 3
    # 12 nodes (node 12 dropped) are exact by default: chi is still 3 (the triangle), DSATUR alone would use 4
    e12 = np.asarray([p for p in TRAP13 if 12 not in p])
    assert max(nx.coloring.greedy_color(nx.Graph(e12.tolist()), "saturation_largest_first").values()) + 1 == 4
    assert len(np.unique(colour_graph(12, e12))) == 3
    assert len(np.unique(np3(labels[:12], np.zeros((0, 2)), e12, z[:12]))) == 3


def test_greedy_colouring_defaults_to_dsatur() -> None:
    e = np.asarray(TRAP13)
    g = nx.Graph(TRAP13)
    dsatur = nx.coloring.greedy_color(g, "saturation_largest_first")
    col = greedy_colouring(13, e)
    assert col.tolist() == [dsatur[v] for v in range(13)]
    assert len(np.unique(col)) == 4
    assert np3(np.zeros(13, dtype=np.int64), np.zeros((0, 2)), e, np.eye(13), exact_colouring_max=0).tolist() == \
        np3(np.zeros(13, dtype=np.int64), np.zeros((0, 2)), e, np.eye(13), exact_colouring_max=0,
            colouring="dsatur").tolist()


# exact error messages --------------------------------------------------------------------------------------------
_Z3 = np.eye(3)
_NONE = np.zeros((0, 2), dtype=np.int64)


@pytest.mark.parametrize("call, error, message", [
    (lambda: np3(np.array([0, -1, 1]), _NONE, _NONE, _Z3), ValueError,
     "np3 needs labels without -1; give each noise point its own id first (views.singletonize)"),
    (lambda: np3(np.array([0, 0, 1]), np.array([[0, 1], [0, 3]]), _NONE, _Z3), IndexError,
     "must-link pair index outside [0, 3)"),
    (lambda: np3(np.array([0, 0, 1]), _NONE, np.array([[0, 1], [-1, 2]]), _Z3), IndexError,
     "cannot-link pair index outside [0, 3)"),
    (lambda: np3(np.array([0, 0, 1]), _NONE, np.array([[0, 1], [2, 2], [1, 1]]), _Z3), ConstraintConflictError,
     "cannot-link pair (2, 2) separates an item from itself"),
    (lambda: np3(np.array([0, 0, 0, 0]), np.array([[0, 1], [2, 3]]), np.array([[0, 2], [2, 3], [1, 0]]),
                 np.eye(4)), ConstraintConflictError,
     "cannot-link pair (2, 3) joins two items that must-link answers put in one group; "
     "one of those annotations is wrong, remove it"),
    (lambda: np3(np.array([0, 0, 1]), _NONE, np.array([[0, 1]]), np.ones((2, 5))), ValueError,
     "features have 2 rows for 3 labels"),
    (lambda: np3(np.array([0, 0, 1]), _NONE, np.array([[0, 1]]), _Z3, cost="manhattan"), ValueError,
     "unknown NP3 cost 'manhattan'; use 'cosine' or 'euclidean'"),
    (lambda: np3(np.array([0, 0, 0]), _NONE, np.array([[0, 1]]), _Z3, unconstrained="farthest"), ValueError,
     "unknown unconstrained-point rule 'farthest'; use 'nearest' or 'margin'"),
    (lambda: greedy_colouring(3, _NONE, "random_sequential"), ValueError,
     "unknown colouring 'random_sequential'; use one of ['dsatur', 'largest_first']"),
])
def test_errors_name_the_problem(call, error, message: str) -> None:
    with pytest.raises(error) as err:
        call()
    assert str(err.value) == message


def test_pairs_at_the_last_valid_index_are_accepted() -> None:
    out = np3(np.array([0, 1, 1]), np.array([[0, 2]]), np.array([[1, 2]]), _Z3)
    assert out[0] == out[2] != out[1]


def test_zero_feature_rows_and_zero_centroids_give_no_nan() -> None:
    """Cosine cost: a part whose unit vectors cancel (ML group {0, 1} at (1, 0) and (-1, 0)) has no direction, so
    it is at distance 1 from everything; a zero feature row likewise. Neither may turn into NaN (0 / 0)."""
    z = np.array([[1.0, 0], [-1, 0], [0, 1], [0.2, 1], [0, 0]])
    labels = np.zeros(5, dtype=np.int64)
    ml, cl = np.array([[0, 1]]), np.array([[0, 2]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for unconstrained in ("nearest", "margin"):
            out = np3(labels, ml, cl, z, unconstrained=unconstrained)
            # 3 is at cosine distance 1 - 1/sqrt(1.04) = 0.019 from {2} and 1 from {0, 1}
            assert out[0] == out[1] != out[2] == out[3]


def test_no_items_give_no_labels() -> None:
    out = np3(np.zeros(0, dtype=np.int64), _NONE, _NONE, np.zeros((0, 3)))
    assert out.shape == (0,) and out.dtype == np.int64


def test_colourings_are_int64_even_for_the_empty_graph() -> None:
    """Colours index sub-clusters: integer arrays, also when there is nothing to colour."""
    for col in (exact_colouring(0, _NONE), greedy_colouring(0, _NONE), greedy_colouring(0, _NONE, "largest_first"),
                colour_graph(0, _NONE), colour_graph(2, np.array([[0, 1]]), exact_max=0)):
        assert col.dtype == np.int64
    assert exact_colouring(0, _NONE).shape == greedy_colouring(0, _NONE).shape == (0,)


def test_pairs_given_as_whole_floats_work_like_integers() -> None:
    """Pairs read from a float table (or an empty np.zeros((0, 2))) are converted, not used as float indices."""
    labels = np.array([0, 1, 1, 2])
    z = np.eye(4)
    as_int = np3(labels, np.array([[0, 2]]), np.array([[1, 2], [3, 0]]), z)
    as_float = np3(labels, np.array([[0.0, 2.0]]), np.array([[1.0, 2.0], [3.0, 0.0]]), z)
    assert as_float.tolist() == as_int.tolist()
    assert as_int[0] == as_int[2] != as_int[1]


def test_the_greedy_colouring_option_reaches_the_split() -> None:
    """A path of 6 CL pairs' items (bipartite: 2 parts) that largest-first greedy colours with 3 (found by search,
    see LARGEST_FIRST_TRAP in test_np3_options.py); DSATUR is exact on bipartite graphs."""
    edges = np.array([(0, 2), (1, 3), (1, 4), (2, 5), (4, 5)])
    assert nx.is_bipartite(nx.Graph(edges.tolist())) and nx.is_connected(nx.Graph(edges.tolist()))
    labels = np.zeros(6, dtype=np.int64)
    z = np.random.default_rng(1).standard_normal((6, 3))
    lf = np3(labels, _NONE, edges, z, exact_colouring_max=0, colouring="largest_first")
    ds = np3(labels, _NONE, edges, z, exact_colouring_max=0, colouring="dsatur")
    assert len(np.unique(lf)) == 3 and len(np.unique(ds)) == 2


@pytest.mark.parametrize("dtype", [np.int32, np.uint8, np.float64])
def test_labels_of_any_numeric_dtype_come_back_as_int64(dtype) -> None:
    """Labels read from a table may be int32 or whole floats; the refined labels are always int64 ids."""
    labels = np.array([4, 4, 4, 9], dtype=dtype)
    z = np.array([[1.0, 0], [0, 1], [0.9, 0.2], [1, 1]])
    out = np3(labels, _NONE, np.array([[0, 1]]), z)
    assert out.dtype == np.int64
    assert out.tolist() == [4, 10, 4, 9]  # {0, 2} is the larger part and keeps 4; {1} gets 9 + 1
