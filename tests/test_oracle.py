import numpy as np
import pytest

from alreid.oracle import BudgetExceededError, RepeatedQueryError, SimulatedOracle


def test_answers_from_identities_and_counts():
    o = SimulatedOracle(np.array(["a", "a", "b", "c", "b"]))
    ans = o.query(np.array([[0, 1], [0, 2], [4, 2]]))
    assert ans.tolist() == [True, False, True]
    assert o.n_queries_ == 3


def test_repeated_pair_refused_in_either_order():
    o = SimulatedOracle(np.arange(5))
    o.query(np.array([[1, 3]]))
    with pytest.raises(RepeatedQueryError):
        o.query(np.array([[3, 1]]))
    with pytest.raises(RepeatedQueryError):
        o.query(np.array([[0, 2], [2, 0]]))


def test_budget_enforced():
    o = SimulatedOracle(np.arange(10), budget=2)
    o.query(np.array([[0, 1], [2, 3]]))
    with pytest.raises(BudgetExceededError):
        o.query(np.array([[4, 5]]))


def test_error_rate_flips_about_p_and_is_order_independent():
    ids = np.arange(2000) % 13
    pairs = np.array([(i, j) for i in range(0, 200) for j in range(i + 1, 200)])
    truth = ids[pairs[:, 0]] == ids[pairs[:, 1]]
    a = SimulatedOracle(ids, error_rate=0.2, seed=7).query(pairs)
    rate = (a != truth).mean()
    assert abs(rate - 0.2) < 0.02  # 19,900 pairs: 3 standard errors is about 0.009
    perm = np.random.default_rng(0).permutation(len(pairs))
    b = SimulatedOracle(ids, error_rate=0.2, seed=7).query(pairs[perm][:, ::-1])
    assert np.array_equal(b, a[perm])
    c = SimulatedOracle(ids, error_rate=0.2, seed=8).query(pairs)
    assert not np.array_equal(a, c)
    assert np.array_equal(SimulatedOracle(ids).query(pairs), truth)
