"""ConstraintStore details the closure tests do not pin: conflict messages, add_many, was_asked, files.
(Written to kill the mutants `make mutants` left alive in alreid/constraints.py; see tests/mutants/SURVIVORS.md.)"""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from alreid.constraints import CL, ML, UNKNOWN, ConstraintStore
from alreid.errors import ConstraintConflictError, DatasetError


def chain(n_links: int) -> ConstraintStore:
    s = ConstraintStore(n_links + 2)
    for i in range(n_links):
        s.add(i, i + 1, True)
    return s


def test_must_link_conflict_message_lists_the_answers():
    s = chain(2)
    with pytest.raises(ConstraintConflictError) as err:
        s.add(0, 2, False)
    assert str(err.value) == ("answer cannot-link for pair (0, 2) contradicts must-link implied by must-link "
                              "answers (0, 1), (1, 2); re-check both annotations and remove the wrong one")


@pytest.mark.parametrize(("links", "more"), [(5, ""), (6, " and 1 more"), (8, " and 3 more")])
def test_must_link_conflict_message_shows_five_answers(links, more):
    s = chain(links)
    with pytest.raises(ConstraintConflictError) as err:
        s.add(0, links, False)
    shown = ", ".join(f"({i}, {i + 1})" for i in range(5))
    assert f"must-link answers {shown}{more};" in str(err.value)


def test_cannot_link_conflict_message_names_the_answer():
    s = ConstraintStore(6)
    s.add(0, 1, True)
    s.add(2, 3, True)
    s.add(1, 3, False)  # the witness; stored under the component roots (0, 2)
    with pytest.raises(ConstraintConflictError) as err:
        s.add(1, 2, True)  # neither the witness nor the roots: the message must look the witness up
    assert "contradicts cannot-link implied by cannot-link answer (1, 3) together with the must-links" in str(err.value)


def test_add_many_and_was_asked():
    s = ConstraintStore(5)
    s.add_many(np.array([[3, 1], [1, 2]]), np.array([True, False]), cycle=4)
    a = s.answers
    assert a.u.tolist() == [1, 1] and a.v.tolist() == [3, 2]  # stored as (min, max)
    assert a.same.tolist() == [True, False] and a.cycle.tolist() == [4, 4]
    assert s.was_asked(1, 3) and s.was_asked(3, 1) and s.was_asked(2, 1)
    assert s.implied(2, 3) == CL and not s.was_asked(2, 3)  # implied is not asked
    assert not s.was_asked(0, 4) and s.implied(0, 4) == UNKNOWN
    s.add_many(np.zeros((0, 2), np.int64), np.zeros(0, bool))
    assert len(s) == 2


def test_parquet_round_trip_and_errors(tmp_path):
    s = ConstraintStore(6)
    s.add(0, 1, True, cycle=1)
    s.add(4, 2, False, cycle=2)
    path = tmp_path / "c.parquet"
    s.to_parquet(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.parquet"]  # the temporary file is gone
    table = pq.read_table(path)
    assert table.column_names == ["u", "v", "same", "cycle"]
    assert table.schema.metadata[b"alreid.n"] == b"6"
    back = ConstraintStore.from_parquet(path)
    assert back.n == 6 and back.answers.equals(s.answers) and back.implied(0, 1) == ML
    with pytest.raises(DatasetError, match="holds constraints over 6 items, expected 7"):
        ConstraintStore.from_parquet(path, n=7)
    missing = tmp_path / "nope.parquet"
    with pytest.raises(DatasetError, match=r"constraint file .*nope\.parquet does not exist"):
        ConstraintStore.from_parquet(missing)


def test_parquet_with_and_without_the_item_count(tmp_path):
    import pandas as pd

    s = ConstraintStore(5)
    s.add(1, 3, True, cycle=2)
    path = tmp_path / "c.parquet"
    s.to_parquet(path)
    assert ConstraintStore.from_parquet(path, n=5).answers.equals(s.answers)  # n given and equal: fine
    bare = tmp_path / "bare.parquet"  # written by another tool: no alreid.n in the metadata
    pd.DataFrame({"u": [1], "v": [3], "same": [True], "cycle": [2]}).to_parquet(bare, index=False)
    with pytest.raises(DatasetError, match=r"bare\.parquet does not record the number of items; pass n"):
        ConstraintStore.from_parquet(bare)
    loaded = ConstraintStore.from_parquet(bare, n=4)
    assert loaded.n == 4 and loaded.implied(1, 3) == ML and loaded.answers.cycle.tolist() == [2]
