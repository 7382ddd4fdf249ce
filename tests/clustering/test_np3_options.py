"""NP3 options against independent computations (spec 1.10 d, f, g).

* exact colouring vs a brute-force chromatic number on random small graphs, plus graphs on which
  DSATUR / largest-first greedy need one colour more (so "exact" replaced by greedy fails here);
* the ``exact_colouring_max`` boundary (``<=``: a component of exactly that many ML groups is exact);
* ``unconstrained="margin"`` and ``cost="euclidean"`` on scenes worked out by hand.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from alreid.clustering.np3 import colour_graph, exact_colouring, greedy_colouring, np3

# chi = 3; networkx DSATUR ("saturation_largest_first") colours it with 4 (found by a random search)
DSATUR_TRAP = (9, [(0, 2), (0, 4), (0, 5), (1, 4), (1, 7), (1, 8), (2, 3), (2, 5), (2, 7), (3, 5),
                   (4, 8), (6, 8), (7, 8)])
# chi = 2 (bipartite); largest-first greedy colours it with 3
LARGEST_FIRST_TRAP = (6, [(0, 2), (1, 3), (1, 4), (2, 5), (4, 5)])


def brute_chromatic(n: int, edges: list[tuple[int, int]]) -> int:
    """Smallest k with a proper k-colouring, by trying every colouring (node 0 fixed to colour 0)."""
    for k in range(1, n + 1):
        for rest in itertools.product(range(k), repeat=n - 1):
            c = (0, *rest)
            if all(c[a] != c[b] for a, b in edges):
                return k
    return n


def random_graphs(count: int, seed: int = 7):
    rng = np.random.default_rng(seed)
    for _ in range(count):
        n = int(rng.integers(3, 9))
        p = float(rng.uniform(0.2, 0.7))
        yield n, [(a, b) for a in range(n) for b in range(a + 1, n) if rng.random() < p]


def n_colours(col: np.ndarray) -> int:
    return len(np.unique(col))


def assert_proper(col: np.ndarray, edges) -> None:
    assert all(col[a] != col[b] for a, b in edges)


def test_exact_colouring_matches_brute_force_chromatic_number() -> None:
    graphs = list(random_graphs(120)) + [DSATUR_TRAP, LARGEST_FIRST_TRAP]
    for n, edges in graphs:
        chi = brute_chromatic(n, edges)
        col = exact_colouring(n, np.asarray(edges, dtype=np.int64).reshape(-1, 2))
        assert_proper(col, edges)
        assert n_colours(col) == chi, (n, edges)
        assert sorted(np.unique(col).tolist()) == list(range(chi))  # colours are 0..chi-1


def test_the_traps_really_defeat_greedy() -> None:
    """Guards the test above: if networkx changed, these graphs might stop catching a greedy 'exact'."""
    n, edges = DSATUR_TRAP
    assert brute_chromatic(n, edges) == 3
    assert n_colours(greedy_colouring(n, np.asarray(edges), "dsatur")) == 4
    n, edges = LARGEST_FIRST_TRAP
    assert brute_chromatic(n, edges) == 2
    assert n_colours(greedy_colouring(n, np.asarray(edges), "largest_first")) == 3


@pytest.mark.parametrize("colouring", ["dsatur", "largest_first"])
def test_exact_colouring_max_boundary_in_colour_graph(colouring: str) -> None:
    n, edges = DSATUR_TRAP if colouring == "dsatur" else LARGEST_FIRST_TRAP
    chi = brute_chromatic(n, edges)
    e = np.asarray(edges)
    assert n_colours(colour_graph(n, e, exact_max=n, colouring=colouring)) == chi  # n <= exact_max: exact
    above = colour_graph(n, e, exact_max=n - 1, colouring=colouring)  # one node too many: greedy
    assert n_colours(above) == chi + 1
    assert sorted(np.unique(above).tolist()) == list(range(chi + 1))  # greedy colours renumbered
    assert_proper(above, edges)


def test_exact_colouring_max_boundary_in_np3() -> None:
    """One impure cluster whose conflict graph is the DSATUR trap: 3 parts when coloured exactly,
    4 when the component (9 ML groups) is one above ``exact_colouring_max``."""
    n, edges = DSATUR_TRAP
    rng = np.random.default_rng(0)
    z = rng.standard_normal((n, 4))
    labels = np.zeros(n, dtype=np.int64)
    cl = np.asarray(edges)
    exact = np.asarray(np3(labels, np.zeros((0, 2)), cl, z, exact_colouring_max=9))
    greedy = np.asarray(np3(labels, np.zeros((0, 2)), cl, z, exact_colouring_max=8))
    assert len(np.unique(exact)) == 3
    assert len(np.unique(greedy)) == 4
    for out in (exact, greedy):
        assert all(out[a] != out[b] for a, b in edges)
    # ML groups count as one node each: merging two non-adjacent nodes into one ML group (6 and 3 are not
    # adjacent) leaves 8 groups, so exact_colouring_max=8 is exact again
    ml = np.array([[6, 3]])  # 6 and 3 share no CL edge
    merged = np.asarray(np3(labels, ml, cl, z, exact_colouring_max=8))
    assert merged[6] == merged[3]
    assert all(merged[a] != merged[b] for a, b in edges)


def _margin_scene() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """1-D scene (second coordinate 0), euclidean cost so centroids are plain means.

    items: 0 = a at x=0, 1 = b at x=10, CL(a, b); 2 = p at x=4, 3 = q at x=5.5 (free); 4 = other cluster.
    Sub-clusters seeded by the colouring: S0 = {a} (mean 0), S1 = {b} (mean 10).
    nearest: p: |4-0|=4 < |4-10|=6 -> S0;  q: |5.5-0|=5.5 > |5.5-10|=4.5 -> S1.
    margin:  margins |d1-d0|: p 2, q 1 -> p first -> S0, mean (0+4)/2 = 2;
             then q: |5.5-2|=3.5 < 4.5 -> S0.
    """
    z = np.array([[0.0, 0], [10, 0], [4, 0], [5.5, 0], [50, 0]])
    labels = np.array([0, 0, 0, 0, 1])
    cl = np.array([[0, 1]])
    return labels, cl, z


def test_margin_rule_hand_computed() -> None:
    labels, cl, z = _margin_scene()
    nearest = np3(labels, np.zeros((0, 2)), cl, z, cost="euclidean", unconstrained="nearest")
    margin = np3(labels, np.zeros((0, 2)), cl, z, cost="euclidean", unconstrained="margin")
    # nearest: {a, p} and {b, q}, equal sizes -> the lower sub-cluster (S0, a's) keeps id 0, the other id 2
    assert nearest.tolist() == [0, 2, 0, 2, 1]
    # margin: {a, p, q} (largest, keeps id 0) and {b} (fresh id 2)
    assert margin.tolist() == [0, 2, 0, 0, 1]


def test_margin_rule_processes_clearest_first() -> None:
    """Three free points; ascending margin order or a frozen centroid gives a different answer.

    a = 0, b = 10 (CL); free r = 1 (margin 8), p = 4.6 (margin 0.8), q = 5.2 (margin 0.4).
    r -> S0 (mean 0.5); p: |4.6-0.5|=4.1 < 5.4 -> S0 (mean 5.6/3 = 1.867); q: 3.333 < 4.8 -> S0.
    nearest (frozen means 0 / 10): p -> S0 (4.6 < 5.4), q -> S1 (5.2 > 4.8).
    """
    z = np.array([[0.0, 0], [10, 0], [1, 0], [4.6, 0], [5.2, 0]])
    labels = np.zeros(5, dtype=np.int64)
    cl = np.array([[0, 1]])
    margin = np3(labels, np.zeros((0, 2)), cl, z, cost="euclidean", unconstrained="margin")
    nearest = np3(labels, np.zeros((0, 2)), cl, z, cost="euclidean", unconstrained="nearest")
    assert margin.tolist() == [0, 1, 0, 0, 0]
    assert nearest.tolist() == [0, 1, 0, 0, 1]


def test_unknown_unconstrained_rule_is_refused() -> None:
    labels, cl, z = _margin_scene()
    with pytest.raises(ValueError, match="unconstrained"):
        np3(labels, np.zeros((0, 2)), cl, z, unconstrained="farthest")
    with pytest.raises(ValueError, match="cost"):
        np3(labels, np.zeros((0, 2)), cl, z, cost="manhattan")


def _cost_scene() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """S0 = ML group {0, 1, 2} all at (1, 0); S1 = {3} at (0, 5); CL(0, 3); free p = 4 at (1, 2.4).

    euclidean (means): |p - (1,0)| = 2.4 ; |p - (0,5)| = sqrt(1 + 6.76) = 2.786 -> S0.
    euclidean on sums (a bug): |p - (3,0)| = sqrt(4 + 5.76) = 3.124 -> S1.
    cosine: |p| = 2.6; 1 - cos(p, x) = 1 - 1/2.6 = 0.615 ; 1 - cos(p, y) = 1 - 2.4/2.6 = 0.077 -> S1.
    """
    z = np.array([[1.0, 0], [1, 0], [1, 0], [0, 5], [1, 2.4]])
    labels = np.zeros(5, dtype=np.int64)
    ml = np.array([[0, 1], [1, 2]])
    cl = np.array([[0, 3]])
    return labels, ml, cl, z


def test_euclidean_cost_hand_computed() -> None:
    labels, ml, cl, z = _cost_scene()
    euc = np3(labels, ml, cl, z, cost="euclidean")
    cos = np3(labels, ml, cl, z, cost="cosine")
    assert euc.tolist() == [0, 0, 0, 1, 0]
    assert cos.tolist() == [0, 0, 0, 1, 1]


def test_euclidean_cost_in_the_hungarian_step() -> None:
    """A second CL group {4} vs {5} is matched onto the parts of the first by the chosen cost.

    First group (4 points): ML {0,1,2} at (1,0) vs {3} at (4,4). Second group: 4 = (0.5,1.5), 5 = (4,3).
    euclidean (means (1,0), (4,4)): 4->S0 sqrt(.25+2.25)=1.581, 4->S1 sqrt(12.25+6.25)=4.301,
      5->S0 sqrt(9+9)=4.243, 5->S1 1.000: {4:S0, 5:S1} = 2.58 < {4:S1, 5:S0} = 8.54.
    cosine (angles 0 and 45 deg; 4 at 71.57 deg, 5 at 36.87 deg): 4->S0 0.684, 4->S1 0.106,
      5->S0 0.200, 5->S1 0.010: {4:S1, 5:S0} = 0.306 < {4:S0, 5:S1} = 0.694.
    """
    z = np.array([[1.0, 0], [1, 0], [1, 0], [4, 4], [0.5, 1.5], [4, 3]])
    labels = np.zeros(6, dtype=np.int64)
    ml = np.array([[0, 1], [1, 2]])
    cl = np.array([[0, 3], [4, 5]])
    assert np3(labels, ml, cl, z, cost="euclidean").tolist() == [0, 0, 0, 1, 0, 1]
    assert np3(labels, ml, cl, z, cost="cosine").tolist() == [0, 0, 0, 1, 1, 0]


def test_self_loop_is_refused_with_the_node() -> None:
    with pytest.raises(ValueError, match="self-loop on node 1 cannot be coloured"):
        exact_colouring(3, np.array([[0, 1], [1, 1]]))
