"""NP3 (spec 1.10): constraints always hold afterwards, untouched clusters stay, exact colouring is minimal."""

from __future__ import annotations

import time

import networkx as nx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alreid.clustering.np3 import colour_graph, exact_colouring, greedy_colouring, np3
from alreid.errors import ConstraintConflictError


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    pairs = np.unique(np.stack([a, b], axis=1), axis=0)
    return len(pairs) == len(np.unique(a)) == len(np.unique(b))


def members(labels: np.ndarray) -> set[frozenset[int]]:
    return {frozenset(np.flatnonzero(labels == c).tolist()) for c in np.unique(labels)}


def ml_merged(labels: np.ndarray, ml: np.ndarray) -> np.ndarray:
    """Reference ML merge with networkx (cluster nodes joined by each ML pair)."""
    g = nx.Graph()
    g.add_nodes_from(np.unique(labels).tolist())
    g.add_edges_from((int(labels[u]), int(labels[v])) for u, v in ml)
    comp = {c: k for k, cc in enumerate(nx.connected_components(g)) for c in cc}
    return np.asarray([comp[int(c)] for c in labels])


@st.composite
def problems(draw):
    n = draw(st.integers(2, 45))
    n_ids = draw(st.integers(1, 8))
    gt = np.asarray(draw(st.lists(st.integers(0, n_ids - 1), min_size=n, max_size=n)))
    k = draw(st.integers(1, 10))
    labels = np.asarray(draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n)))
    labels = labels * 3 + 1  # non-consecutive ids on purpose
    n_pairs = draw(st.integers(0, 60))
    pairs = np.asarray(draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)),
                                     min_size=n_pairs, max_size=n_pairs)), dtype=np.int64).reshape(-1, 2)
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    same = gt[pairs[:, 0]] == gt[pairs[:, 1]]
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_ids, 5))
    z = centres[gt] + 0.8 * rng.standard_normal((n, 5))
    exact_max = draw(st.sampled_from([12, 0, 3]))
    return labels, pairs[same], pairs[~same], z, exact_max


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems())
def test_np3_properties(problem) -> None:
    labels, ml, cl, z, exact_max = problem
    out = np3(labels, ml, cl, z, exact_colouring_max=exact_max)
    assert out.shape == labels.shape and out.dtype == np.int64 and out.min() >= 0
    # every constraint holds
    assert np.all(out[ml[:, 0]] == out[ml[:, 1]])
    assert np.all(out[cl[:, 0]] != out[cl[:, 1]])
    # NP3 only merges along ML: the result refines the ML-merged partition
    merged = ml_merged(labels, ml)
    assert len(np.unique(np.stack([out, merged], 1), axis=0)) == len(np.unique(out))
    # clusters with no CL pair inside and no ML pair leaving them come back unchanged, id included
    out_sets = members(out)
    for c in np.unique(labels):
        inside = labels == c
        violated = np.any(inside[cl[:, 0]] & inside[cl[:, 1]]) if len(cl) else False
        crossed = np.any(inside[ml[:, 0]] != inside[ml[:, 1]]) if len(ml) else False
        if not violated and not crossed:
            assert frozenset(np.flatnonzero(inside).tolist()) in out_sets
            assert np.all(out[inside] == c)
    # idempotent
    again = np3(out, ml, cl, z, exact_colouring_max=exact_max)
    assert same_partition(again, out)


@settings(max_examples=60, deadline=None)
@given(problems(), st.sampled_from(["largest_first", "dsatur"]), st.sampled_from(["cosine", "euclidean"]),
       st.sampled_from(["nearest", "margin"]))
def test_np3_options_keep_constraints(problem, colouring, cost, unconstrained) -> None:
    labels, ml, cl, z, exact_max = problem
    out = np3(labels, ml, cl, z, exact_colouring_max=exact_max, colouring=colouring, cost=cost,
              unconstrained=unconstrained)
    assert np.all(out[ml[:, 0]] == out[ml[:, 1]])
    assert np.all(out[cl[:, 0]] != out[cl[:, 1]])


def test_figure2_worked_example() -> None:
    """Built from the paper's Figure 2 caption: an ML pair merges two clusters, which makes the merged
    cluster impure; the ML pair becomes one node, CL pairs are edges, colouring separates them, a
    second CL group is matched onto the colour classes, free points join the closest part."""
    ang = np.deg2rad([0, 6, 12, 30, 80, 86, 92, 200, 205])
    z = np.stack([np.cos(ang), np.sin(ang)], axis=1)
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2])  # cluster 0 around 0-30 deg, 1 around 80-92 deg
    ml = np.array([[3, 4]])  # 3 (30 deg) and 4 (80 deg) are the same animal: merge clusters 0 and 1
    cl = np.array([[0, 4],  # CL group 1: {0} vs ML group {3, 4}  (chi = 2, 3 points)
                   [1, 5]])  # CL group 2: {1} vs {5}            (chi = 2, 2 points)
    out = np3(labels, ml, cl, z)
    # colour classes of CL group 1 seed the parts: {0} (0 deg) and {3, 4} (centroid 55 deg);
    # Hungarian puts 1 (6 deg) with {0} and 5 (86 deg) with {3, 4}; free 2 and 6 follow their nearest part
    assert members(out) == {frozenset({0, 1, 2}), frozenset({3, 4, 5, 6}), frozenset({7, 8})}
    assert out[3] == 0  # the larger part keeps the merged cluster's (smallest) id
    assert out[0] == 3  # the other part gets a fresh id above every id in use
    assert np.all(out[[7, 8]] == 2)  # untouched cluster keeps its id


def test_three_colour_split() -> None:
    # a triangle of CL pairs inside one cluster needs three parts
    z = np.array([[1, 0], [0, 1], [-1, 0], [0.9, 0.1], [-0.1, 0.95], [-0.95, -0.05]], dtype=float)
    out = np3(np.zeros(6, dtype=int), np.zeros((0, 2)), np.array([[0, 1], [1, 2], [0, 2]]), z)
    assert members(out) == {frozenset({0, 3}), frozenset({1, 4}), frozenset({2, 5})}


def test_conflicting_constraints_raise_with_the_pair() -> None:
    z = np.eye(4)
    with pytest.raises(ConstraintConflictError, match=r"\(0, 2\)"):
        np3(np.array([0, 0, 1, 1]), np.array([[0, 1], [1, 2]]), np.array([[0, 2]]), z)
    with pytest.raises(ConstraintConflictError):
        np3(np.array([0, 1, 2, 3]), np.zeros((0, 2)), np.array([[1, 1]]), z)


def test_input_checks() -> None:
    z = np.eye(3)
    with pytest.raises(ValueError, match="singletonize"):
        np3(np.array([0, -1, 1]), np.zeros((0, 2)), np.zeros((0, 2)), z)
    with pytest.raises(IndexError):
        np3(np.array([0, 0, 1]), np.array([[0, 3]]), np.zeros((0, 2)), z)
    with pytest.raises(ValueError):
        np3(np.array([0, 0, 1]), np.zeros((0, 2)), np.array([[0, 1]]), z, cost="manhattan")
    assert np3(np.array([4, 4, 9]), np.zeros((0, 2)), np.zeros((0, 2)), z).tolist() == [4, 4, 9]


# colouring -----------------------------------------------------------------------------------------
def chi(graph: nx.Graph) -> int:
    g = nx.convert_node_labels_to_integers(graph)
    return int(exact_colouring(g.number_of_nodes(), np.asarray(list(g.edges()), dtype=np.int64)).max()) + 1


@pytest.mark.parametrize("graph,expected", [
    (nx.cycle_graph(5), 3), (nx.cycle_graph(7), 3), (nx.cycle_graph(6), 2), (nx.complete_bipartite_graph(3, 4), 2),
    (nx.balanced_tree(2, 3), 2), (nx.complete_graph(4), 4), (nx.complete_graph(1), 1), (nx.empty_graph(3), 1),
    (nx.petersen_graph(), 3), (nx.wheel_graph(6), 4), (nx.wheel_graph(7), 3),
])
def test_exact_colouring_gives_the_chromatic_number(graph: nx.Graph, expected: int) -> None:
    assert chi(graph) == expected


def test_colourings_are_proper() -> None:
    g = nx.gnp_random_graph(30, 0.2, seed=1)
    edges = np.asarray(list(g.edges()), dtype=np.int64)
    for col in (greedy_colouring(30, edges, "dsatur"), greedy_colouring(30, edges, "largest_first"),
                colour_graph(30, edges, exact_max=12), exact_colouring(10, edges[np.all(edges < 10, axis=1)])):
        used = edges[np.all(edges < len(col), axis=1)]
        assert np.all(col[used[:, 0]] != col[used[:, 1]])
    with pytest.raises(ValueError):
        greedy_colouring(3, np.zeros((0, 2)), "random_sequential_typo")


def test_large_partition_with_few_impure_clusters_is_fast() -> None:
    rng = np.random.default_rng(0)
    n, n_ids = 200_000, 20_000
    gt = np.arange(n) % n_ids  # identity i owns items i, i + n_ids, i + 2 n_ids, ...
    labels = gt // 2  # every cluster holds two identities
    z = rng.standard_normal((n, 16)).astype(np.float32)
    u = rng.integers(0, n, 400)
    ml = np.stack([u[:200], (u[:200] + n_ids * rng.integers(1, 10, 200)) % n], axis=1)
    cl = np.stack([u[200:], (gt[u[200:]] ^ 1) + n_ids * rng.integers(0, 10, 200)], axis=1)
    t = time.perf_counter()
    out = np3(labels, ml, cl, z)
    assert time.perf_counter() - t < 5.0
    assert np.all(out[ml[:, 0]] == out[ml[:, 1]]) and np.all(out[cl[:, 0]] != out[cl[:, 1]])
    assert len(np.unique(out)) > len(np.unique(labels))  # the impure clusters were split
