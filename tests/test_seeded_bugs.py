"""scripts/seeded_bugs.py stays runnable: every bug it seeds still finds its original text exactly once, and the
tests meant to catch it exist (the run itself, a copy of the repository per bug, is on demand)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("seeded_bugs", ROOT / "scripts" / "seeded_bugs.py")
seeded = importlib.util.module_from_spec(spec)
spec.loader.exec_module(seeded)


@pytest.mark.parametrize("bug", seeded.BUGS, ids=[b[0].split()[0] for b in seeded.BUGS])
def test_each_seeded_bug_still_applies(bug):
    name, path, old, new, tests = bug
    assert (ROOT / path).read_text().count(old) == 1, f"{name}: original text not found once in {path}"
    assert new != old and tests
    for t in tests:
        assert (ROOT / t.split("::")[0]).is_file(), t


def test_labels_are_distinct():
    labels = [b[0].split()[0] for b in seeded.BUGS]
    assert len(set(labels)) == len(labels) == 19
