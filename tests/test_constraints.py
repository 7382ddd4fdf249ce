"""ConstraintStore against a brute-force closure of the answers."""

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alreid.constraints import CL, ML, UNKNOWN, ConstraintStore
from alreid.errors import ConstraintConflictError


def brute_force_implied(n, answers):
    """Closure by fixed point: ML is transitive; CL propagates across ML components."""
    ml = {(i, i) for i in range(n)}
    cl = set()
    for u, v, same in answers:
        (ml if same else cl).update({(u, v), (v, u)})
    changed = True
    while changed:
        changed = False
        for (a, b), (c, d) in itertools.product(list(ml), list(ml)):
            if b == c and (a, d) not in ml:
                ml.add((a, d)); changed = True
        for (a, b) in list(cl):
            for (c, d) in list(ml):
                if c == b and (a, d) not in cl:
                    cl.update({(a, d), (d, a)}); changed = True
    return ml, cl


def test_transitive_must_link_and_cannot_link_propagation():
    s = ConstraintStore(6)
    s.add(0, 1, True)
    s.add(1, 2, True)
    s.add(2, 3, False)
    s.add(3, 4, True)
    assert s.implied(0, 2) == ML
    assert s.implied(0, 4) == CL  # 0~2, 2!~3, 3~4
    assert s.implied(1, 3) == CL
    assert s.implied(0, 5) == UNKNOWN
    pairs = np.array([[0, 2], [0, 4], [0, 5], [4, 1]])
    assert s.implied_many(pairs).tolist() == [ML, CL, UNKNOWN, CL]


def test_contradiction_names_both_pairs():
    s = ConstraintStore(4)
    s.add(0, 1, True)
    s.add(1, 2, True)
    with pytest.raises(ConstraintConflictError) as err:
        s.add(0, 2, False)
    msg = str(err.value)
    assert "(0, 2)" in msg and "(0, 1)" in msg and "(1, 2)" in msg
    s.add(2, 3, False)
    with pytest.raises(ConstraintConflictError, match=r"\(2, 3\)"):
        s.add(0, 3, True)
    assert len(s) == 3  # the refused answers were not recorded


def test_merging_components_keeps_cannot_links():
    s = ConstraintStore(5)
    s.add(0, 1, False)
    s.add(2, 3, False)
    s.add(1, 2, True)  # merges the components of 1 and 2: 0!~{1,2}, {1,2}!~3
    assert s.implied(0, 2) == CL
    assert s.implied(1, 3) == CL
    assert s.implied(0, 3) == UNKNOWN


@settings(max_examples=60, deadline=None)
@given(st.integers(3, 9).flatmap(lambda n: st.tuples(
    st.just(n), st.lists(st.integers(0, 3), min_size=n, max_size=n),
    st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)), max_size=25))))
def test_matches_brute_force_closure(case):
    n, ids, raw_pairs = case
    s = ConstraintStore(n)
    answers = []
    for u, v in raw_pairs:
        if u == v:
            continue
        s.add(u, v, ids[u] == ids[v])  # consistent answers from hidden identities never conflict
        answers.append((u, v, ids[u] == ids[v]))
    ml, cl = brute_force_implied(n, answers)
    all_pairs = np.array([(u, v) for u in range(n) for v in range(u + 1, n)])
    got = s.implied_many(all_pairs)
    for (u, v), code in zip(all_pairs, got):
        expected = ML if (u, v) in ml else CL if (u, v) in cl else UNKNOWN
        assert code == expected == s.implied(u, v)


def test_parquet_round_trip(tmp_path):
    s = ConstraintStore(10)
    s.add(0, 1, True, cycle=1)
    s.add(5, 2, False, cycle=2)
    s.to_parquet(tmp_path / "c.parquet")
    t = ConstraintStore.from_parquet(tmp_path / "c.parquet")
    assert t.n == 10
    assert t.answers.equals(s.answers)
    assert t.implied(1, 0) == ML and t.implied(2, 5) == CL
    assert not (tmp_path / "c.parquet.tmp").exists()


def test_in_must_link_and_pair_lists():
    s = ConstraintStore(5)
    s.add(3, 1, True)
    s.add(0, 4, False)
    assert s.in_must_link().tolist() == [False, True, False, True, False]
    assert s.ml_pairs().tolist() == [[1, 3]]
    assert s.cl_pairs().tolist() == [[0, 4]]
