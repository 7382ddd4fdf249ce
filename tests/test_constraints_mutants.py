"""ConstraintStore behaviour the closure tests leave open: bounds and their messages, empty inputs, dtypes,
defaults, and the bookkeeping that moves with a must-link merge (cannot-link edges and conflict witnesses).

Written to kill the mutants the fork runner left alive in alreid/constraints.py (tests/mutants/constraints.md).
Every expected value here is worked out by hand or by the small independent closure below, not read off the code.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from alreid.constraints import CL, ML, UNKNOWN, ConstraintStore
from alreid.errors import ConstraintConflictError


def closure(n: int, answers: list[tuple[int, int, bool]]) -> dict[tuple[int, int], int]:
    """Implied code of every pair u < v, from connected components of the must-link answers (independent of
    the union-find): ML inside a component, CL between two components joined by a cannot-link answer."""
    neighbours: dict[int, set[int]] = {i: set() for i in range(n)}
    for u, v, same in answers:
        if same:
            neighbours[u].add(v)
            neighbours[v].add(u)
    comp = [-1] * n
    for start in range(n):  # breadth-first search: comp[i] = the first item of i's component
        if comp[start] < 0:
            comp[start], frontier = start, [start]
            while frontier:
                nxt = [w for x in frontier for w in neighbours[x] if comp[w] < 0]
                for w in nxt:
                    comp[w] = start
                frontier = nxt
    cl = {frozenset((comp[u], comp[v])) for u, v, same in answers if not same}
    out = {}
    for u in range(n):
        for v in range(u + 1, n):
            out[(u, v)] = ML if comp[u] == comp[v] else CL if frozenset((comp[u], comp[v])) in cl else UNKNOWN
    return out


def assert_matches_closure(s: ConstraintStore, answers: list[tuple[int, int, bool]]) -> None:
    expected = closure(s.n, answers)
    pairs = np.array(sorted(expected))
    assert s.implied_many(pairs).tolist() == [expected[tuple(p)] for p in pairs.tolist()]
    assert s.implied_many(pairs[:, ::-1]).tolist() == [expected[tuple(p)] for p in pairs.tolist()]  # symmetric
    for (u, v), code in expected.items():
        assert s.implied(u, v) == code and s.implied(v, u) == code, (u, v)


def test_size_zero_store_is_allowed_and_negative_is_refused_with_its_message():
    s = ConstraintStore(0)
    assert s.n == 0 and len(s) == 0
    assert s.roots().shape == (0,) and s.in_must_link().shape == (0,)
    assert s.ml_pairs().shape == (0, 2) and s.cl_pairs().shape == (0, 2)
    with pytest.raises(ValueError, match=r"^n must be non-negative$"):
        ConstraintStore(-1)


@pytest.mark.parametrize(("u", "v"), [(-1, 2), (2, -1), (5, 0), (0, 5), (7, 9)])
def test_out_of_range_pairs_are_refused_with_the_pair_in_the_message(u, v):
    s = ConstraintStore(5)
    msg = f"^pair \\({u}, {v}\\) out of range for 5 items$"
    with pytest.raises(IndexError, match=msg):
        s.implied(u, v)
    with pytest.raises(IndexError, match=msg):
        s.add(u, v, True)
    with pytest.raises(IndexError, match=msg):
        s.was_asked(u, v)
    assert len(s) == 0


def test_first_and_last_items_are_in_range_and_self_pairs_are_refused():
    s = ConstraintStore(5)
    s.add(4, 0, True)  # both ends of the range
    assert s.implied(0, 4) == ML and s.was_asked(0, 4)
    with pytest.raises(ValueError, match=r"^pair \(3, 3\) joins an item with itself$"):
        s.implied(3, 3)
    with pytest.raises(ValueError, match=r"^pair \(0, 0\) joins an item with itself$"):
        s.add(0, 0, False)


def test_implied_many_empty_single_and_flat_inputs_return_int8_codes():
    s = ConstraintStore(4)
    s.add(0, 1, True)
    s.add(1, 2, False)
    for empty in (np.zeros((0, 2), np.int64), np.array([]), []):
        got = s.implied_many(empty)
        assert got.shape == (0,) and got.dtype == np.int8  # "returns int8 codes"
        assert s.is_known(empty).shape == (0,)
    one = s.implied_many(np.array([[1, 0]]))
    assert one.tolist() == [ML] and one.dtype == np.int8
    assert s.implied_many(np.array([0, 2])).tolist() == [CL]  # one flat pair
    flat = s.implied_many(np.array([0, 1, 0, 2, 2, 3]))  # three pairs given flat
    assert flat.tolist() == [ML, CL, UNKNOWN] and flat.dtype == np.int8
    assert s.is_known(np.array([[0, 1], [0, 2], [2, 3], [3, 0]])).tolist() == [True, True, False, False]
    # like implied(), which takes anything int() takes, the vectorised form takes integral floats
    assert s.implied(1.0, 2.0) == CL
    assert s.implied_many(np.array([[0.0, 1.0], [1.0, 2.0]])).tolist() == [ML, CL]


def test_cycle_defaults_to_zero():
    s = ConstraintStore(4)
    s.add(0, 1, True)
    s.add_many(np.array([[2, 3]]), np.array([False]))
    assert s.answers.cycle.tolist() == [0, 0]


@pytest.mark.parametrize("same", [[True, False], [[True], [False]], [[True, False]]])
def test_add_many_flattens_pairs_and_answers(same):
    s = ConstraintStore(4)
    s.add_many(np.array([3, 1, 1, 2]), np.array(same), cycle=2)  # pairs given flat, answers in any shape
    assert s.answers.values.tolist() == [[1, 3, True, 2], [1, 2, False, 2]]
    assert s.implied(2, 3) == CL


def test_cannot_link_conflict_message_in_full():
    s = ConstraintStore(4)
    s.add(0, 1, False)
    with pytest.raises(ConstraintConflictError) as err:
        s.add(1, 0, True)
    assert str(err.value) == ("answer must-link for pair (0, 1) contradicts cannot-link implied by cannot-link "
                              "answer (0, 1) together with the must-links around it; re-check both annotations "
                              "and remove the wrong one")


def test_cannot_link_witness_follows_its_component_into_a_merge():
    s = ConstraintStore(5)
    s.add(2, 3, True)   # {2, 3}
    s.add(0, 1, False)  # the witness: 0 !~ 1
    s.add(1, 2, True)   # {1} joins the larger {2, 3}: the CL edge and its witness move to the new root
    assert_matches_closure(s, [(2, 3, True), (0, 1, False), (1, 2, True)])
    with pytest.raises(ConstraintConflictError) as err:
        s.add(0, 3, True)
    assert str(err.value) == ("answer must-link for pair (0, 3) contradicts cannot-link implied by cannot-link "
                              "answer (0, 1) together with the must-links around it; re-check both annotations "
                              "and remove the wrong one")
    with pytest.raises(ConstraintConflictError, match=r"cannot-link answer \(0, 1\) together"):
        s.add(0, 2, True)


def test_must_link_witnesses_of_the_smaller_component_are_kept():
    s = ConstraintStore(6)
    ml = [(0, 1), (1, 2), (3, 4), (2, 3)]  # {0,1,2} absorbs {3,4}, whose answer (3, 4) must stay listed
    for u, v in ml:
        s.add(u, v, True)
    with pytest.raises(ConstraintConflictError) as err:
        s.add(0, 4, False)
    listed = re.search(r"implied by must-link answers (.*); re-check", str(err.value)).group(1)
    shown = {tuple(map(int, p)) for p in re.findall(r"\((\d+), (\d+)\)", listed)}
    assert shown == set(ml) and " more" not in listed


def test_cannot_links_survive_merges_on_both_sides():
    """A CL edge whose two components each grow by merges, the smaller side moving each time: every pair of the
    final components must read CL (through implied and implied_many, both orders) and a contradiction is refused."""
    s = ConstraintStore(10)
    answers = [(0, 5, False), (5, 6, True), (6, 7, True), (0, 1, True), (1, 2, True), (3, 4, True), (2, 3, True),
               (8, 9, True), (9, 7, True), (0, 9, False)]
    for k, (u, v, same) in enumerate(answers):
        s.add(u, v, same)
        assert_matches_closure(s, answers[: k + 1])
    for u in range(5):
        for v in range(5, 10):
            assert s.implied(u, v) == CL
    with pytest.raises(ConstraintConflictError, match=r"cannot-link answer \(0, 5\) together"):
        s.add(4, 8, True)


def test_cannot_link_partner_is_merged_away_then_its_component_merges_again():
    """0 !~ 1, then 1's component is absorbed by {2, 3}, then 0's component is absorbed by {4, 5, 6}: the edge is
    re-keyed twice and must still be found from every member, also from the side that was 'other' in a merge."""
    s = ConstraintStore(8)
    answers = [(2, 3, True), (4, 5, True), (5, 6, True), (0, 1, False), (1, 2, True), (0, 4, True), (7, 3, True)]
    for k, (u, v, same) in enumerate(answers):
        s.add(u, v, same)
        assert_matches_closure(s, answers[: k + 1])
    with pytest.raises(ConstraintConflictError, match=r"cannot-link answer \(0, 1\) together"):
        s.add(6, 7, True)
