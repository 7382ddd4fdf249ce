"""The `make mutants` review check: which surviving mutants a review file names (scripts/mutants_all.py)."""

from __future__ import annotations

import importlib.util
import json
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("mutants_all", ROOT / "scripts" / "mutants_all.py")
mutants_all = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mutants_all)

REVIEW = """
| mutant | change | verdict |
|---|---|---|
| `xǁGBASSamplerǁvalidate_params__mutmut_2, 11, 12` | name dropped | killed: test_x |
| `_select__mutmut_19..21`, `_30` | loop bound | equivalent: ... |
| `x_draw__mutmut_7` | seed | killed |
| `x_unit_rows__mutmut_4`, 5, 7..8 and 10 | condition | killed |
Plain text mentioning 40 and `_41` without a name does not count.
"""


def test_review_names_lists_ranges_and_bare_numbers_after_a_name():
    named = mutants_all.reviewed_names(REVIEW)
    assert named == {"xǁGBASSamplerǁvalidate_params": {2, 11, 12}, "_select": {19, 20, 21, 30}, "x_draw": {7},
                     "x_unit_rows": {4, 5, 7, 8, 10}}


def test_a_mutant_is_reviewed_by_its_function_suffix_and_number():
    named = mutants_all.reviewed_names(REVIEW)
    assert mutants_all.is_reviewed("xǁGBASSamplerǁ_select__mutmut_20", named)
    assert mutants_all.is_reviewed("xǁGBASSamplerǁvalidate_params__mutmut_11", named)
    assert not mutants_all.is_reviewed("xǁGBASSamplerǁ_select__mutmut_22", named)
    assert not mutants_all.is_reviewed("xǁGBASSamplerǁ_select__mutmut_41", named)
    assert not mutants_all.is_reviewed("x_draw_more__mutmut_7", named)  # another function


def test_check_lists_only_unreviewed_survivors(tmp_path):
    results = tmp_path / "gbas.jsonl"
    recs = [("xǁGBASSamplerǁ_select__mutmut_19", "survived"), ("xǁGBASSamplerǁ_select__mutmut_22", "survived"),
            ("xǁGBASSamplerǁ_select__mutmut_23", "killed"), ("xǁGBASSamplerǁ_select__mutmut_24", "timeout"),
            ("x_draw__mutmut_8", "no tests"), ("x_draw__mutmut_9", "rc-11")]
    results.write_text("".join(json.dumps({"name": n, "status": s, "secs": 1.0}) + "\n" for n, s in recs))
    review = tmp_path / "gbas.md"
    review.write_text(REVIEW)
    counts, open_, timeouts = mutants_all.check(results, review)
    assert counts == {"survived": 2, "killed": 1, "timeout": 1, "no tests": 1, "rc-11": 1}
    assert open_ == ["xǁGBASSamplerǁ_select__mutmut_22", "x_draw__mutmut_8"]
    assert timeouts == ["xǁGBASSamplerǁ_select__mutmut_24"]


def test_every_module_mutmut_mutates_has_focused_tests_and_a_review():
    only = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mutmut"]["only_mutate"]
    config = mutants_all.load_config()  # raises if a named test file is missing
    assert sorted(m["path"] for m in config.values()) == sorted(only)
    for key, m in config.items():
        assert (ROOT / m["path"]).is_file(), key
        assert (ROOT / "tests" / "mutants" / m["review"]).is_file(), key
