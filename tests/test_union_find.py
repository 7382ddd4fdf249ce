"""Union-find depth: roots() and implied_many() must follow parents to the root, not one step.

The depth-2 state (item -> old root -> new root) only arises when two multi-member components
merge, about 1 % of random answer sequences, so it is built here on purpose.
"""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from alreid.constraints import CL, ML, UNKNOWN, ConstraintStore


def _roots_then_find(store: ConstraintStore) -> tuple[np.ndarray, np.ndarray]:
    """roots() taken first: find() compresses paths and would hide a depth-2 chain."""
    r = store.roots().copy()
    f = np.asarray([store.find(i) for i in range(store.n)])
    return r, f


def test_depth_two_chain_is_followed_to_the_root():
    s = ConstraintStore(5)
    s.add(0, 1, True)
    s.add(2, 3, True)
    s.add(0, 2, True)  # equal sizes: 2's root hangs under 0's, 3 is now two steps below the root
    assert int(s._parent[3]) != int(s._parent[int(s._parent[3])]), "the test needs a depth-2 chain"
    # the vectorised paths first (they read the chain before find() compresses it)
    assert s.implied_many(np.array([[1, 3], [3, 4], [0, 3]])).tolist() == [ML, UNKNOWN, ML]
    assert s.in_must_link().tolist() == [True, True, True, True, False]
    s2 = ConstraintStore(5)
    for u, v in [(0, 1), (2, 3), (0, 2)]:
        s2.add(u, v, True)
    r = s2.roots()
    assert r[0] == r[1] == r[2] == r[3] != r[4]
    assert s2.implied(1, 3) == ML


def test_cannot_link_reaches_a_depth_two_member():
    s = ConstraintStore(6)
    s.add(0, 1, True)
    s.add(2, 3, True)
    s.add(0, 2, True)
    s.add(4, 5, False)
    s.add(1, 4, False)
    # 3 is two parent steps from its root: implied_many must still see the CL through it
    assert s.implied_many(np.array([[3, 4], [3, 5], [2, 5]])).tolist() == [CL, UNKNOWN, UNKNOWN]
    assert s.implied(3, 4) == CL


def test_roots_equal_find_after_every_add_fixed_sequence():
    s = ConstraintStore(8)
    seq = [(0, 1), (2, 3), (0, 2), (4, 5), (6, 7), (4, 6), (0, 4)]  # depth up to 3
    for u, v in seq:
        s.add(u, v, True)
        r, f = _roots_then_find(s)
        assert r.tolist() == f.tolist()
    assert len(set(s.roots().tolist())) == 1


@settings(max_examples=80, deadline=None)
@given(st.integers(2, 12).flatmap(lambda n: st.tuples(
    st.just(n), st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1), st.booleans()),
                         max_size=30))))
def test_roots_equal_find_after_every_add(case):
    n, answers = case
    s = ConstraintStore(n)
    for u, v, same in answers:
        if u == v or s.implied(u, v) == (CL if same else ML):
            continue  # contradictions are refused (tested in test_constraints.py)
        s.add(u, v, same)
        r, f = _roots_then_find(s)
        assert r.tolist() == f.tolist()
