"""ReplayOracle and the oracle setting on hand-made answer files."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from alreid.errors import AlreidError
from alreid.oracle import MissingAnswerError, ReplayOracle, SimulatedOracle, parse_oracle_spec


def write(tmp_path, rows, name="a.csv"):
    f = tmp_path / name
    df = pd.DataFrame(rows)
    df.to_csv(f, index=False) if name.endswith(".csv") else df.to_parquet(f)
    return f


def test_answers_by_image_id_in_either_order_and_unsure(tmp_path):
    f = write(tmp_path, {"image_id_u": ["b", "a", "c"], "image_id_v": ["a", "c", "d"],
                         "answer": ["same", "different", "unsure"]})
    o = ReplayOracle(f, keys=np.array(["a", "b", "c", "d"]))
    # pool items 0..3 are images a..d; ask (a, b) as (0, 1), (c, a) reversed, (c, d) unsure
    assert o.query(np.array([[0, 1], [2, 0], [2, 3]])).tolist() == [True, False, False]
    assert o.answered_.tolist() == [True, True, False]
    with pytest.raises(AlreidError, match="already asked"):
        o.query(np.array([[1, 0]]))


def test_missing_pair_refused_or_simulated_and_counted(tmp_path):
    f = write(tmp_path, {"image_id_u": ["a"], "image_id_v": ["b"], "answer": ["same"]}, "a.parquet")
    keys = np.array(["a", "b", "c", "d"])
    with pytest.raises(MissingAnswerError, match="no answer for 1 of the 2 pairs.*images c and d"):
        ReplayOracle(f, keys).query(np.array([[0, 1], [2, 3]]))
    o = ReplayOracle(f, keys, fallback=SimulatedOracle(np.array(["x", "x", "y", "y"])))
    assert o.query(np.array([[0, 1], [2, 3], [1, 2]])).tolist() == [True, True, False]
    assert o.n_simulated_ == 2


def test_constraint_store_format_by_pool_position(tmp_path):
    from alreid.constraints import ConstraintStore

    store = ConstraintStore(4)
    store.add(0, 1, True)
    store.add(2, 3, False)
    store.to_parquet(tmp_path / "c.parquet")
    o = ReplayOracle(tmp_path / "c.parquet", keys=np.arange(4))
    assert o.query(np.array([[1, 0], [3, 2]])).tolist() == [True, False]


@pytest.mark.parametrize("rows, message", [
    ({"image_id_u": ["a", "b"], "image_id_v": ["b", "a"], "answer": ["same", "different"]}, "both"),
    ({"image_id_u": ["a"], "image_id_v": ["b"], "answer": ["yes"]}, "same, different or unsure"),
    ({"x": [1]}, "needs columns image_id_u"),
])
def test_bad_answer_files_name_the_problem(tmp_path, rows, message):
    with pytest.raises(AlreidError, match=message):
        ReplayOracle(write(tmp_path, rows), keys=np.array(["a", "b"]))


def test_oracle_spec_parsing_and_setting(tmp_path, monkeypatch):
    from alreid.harness.settings import make_trial_config

    assert parse_oracle_spec("simulated") == ("simulated", None, "error")
    assert parse_oracle_spec("replay:x.csv?missing=simulate") == ("replay", "x.csv", "simulate")
    for bad in ("human", "replay:", "replay:x?missing=maybe"):
        with pytest.raises(AlreidError):
            parse_oracle_spec(bad)
    f = write(tmp_path, {"image_id_u": ["a"], "image_id_v": ["b"], "answer": ["same"]})
    monkeypatch.chdir(tmp_path)
    cfg = make_trial_config({"oracle": "replay:a.csv?missing=simulate"})
    assert cfg.oracle == f"replay:{f.resolve()}?missing=simulate"  # absolute: Ray workers run elsewhere
    with pytest.raises(AlreidError, match="does not exist"):
        make_trial_config({"oracle": "replay:nope.csv"})


def test_access_token_rules():
    from alreid.commands.annotate import access_token

    assert access_token("127.0.0.1", None) is None
    assert access_token("::1", "given") == "given"
    t1, t2 = access_token("0.0.0.0", None), access_token("10.0.0.5", None)
    assert t1 and t2 and t1 != t2 and len(t1) >= 20
    with pytest.raises(AlreidError):
        access_token("0.0.0.0", " ")


def test_a_replayed_unsure_pair_may_be_asked_again(tmp_path):
    f = write(tmp_path, {"image_id_u": ["a"], "image_id_v": ["b"], "answer": ["unsure"]})
    o = ReplayOracle(f, keys=np.array(["a", "b"]))
    o.query(np.array([[0, 1]]))
    o.query(np.array([[1, 0]]))  # later cycle: still no constraint, so the sampler may pick it again
    assert o.answered_.tolist() == [False]
