"""The skip policy of tests/conftest.py: which reasons are allowed, and that strict mode fails the run."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import REPO, SHARED_ROOT, skip_allowed


def test_gpu_and_not_provided_reasons_are_allowed():
    assert skip_allowed("needs a CUDA device")
    assert skip_allowed("no GPU on this machine")
    assert skip_allowed("Market-1501 is not in ../shared (download it yourself)")


def test_missing_packages_and_tools_are_not_allowed():
    assert not skip_allowed("could not import 'fastapi': No module named 'fastapi'")
    assert not skip_allowed("alreid entry point not installed")
    assert not skip_allowed("chromium is not installed")


def test_data_reasons_are_checked_against_the_disk():
    absent = "../shared/data/no_such_dataset_here"
    assert skip_allowed(f"{absent} not present")
    assert skip_allowed(f"{SHARED_ROOT / 'data' / 'no_such_dataset_here'} is absent")
    # a hard-coded path outside <repo>/../shared is not an excuse, even when it does not exist
    assert not skip_allowed("NyalaData not available at /somewhere/else/NyalaData")
    # shared data that IS here must be used, not skipped
    if SHARED_ROOT.exists():
        assert not skip_allowed(f"{SHARED_ROOT} is absent")
        assert not skip_allowed("../shared not present")


def test_strict_mode_fails_on_a_disallowed_skip(pytester, monkeypatch):
    pytester.makeconftest((REPO / "tests" / "conftest.py").read_text())
    pytester.makepyfile(test_x="""
        import pytest
        def test_ok():
            pass
        def test_gpu():
            pytest.skip("needs CUDA")
        def test_bad():
            pytest.skip("No module named 'something_make_test_installs'")
    """)
    monkeypatch.setenv("ALREID_STRICT_SKIPS", "1")
    res = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    assert res.ret == 1
    res.stdout.fnmatch_lines(["*skip policy: 2 skipped, 1 allowed*1 not allowed*",
                              "*NOT ALLOWED*test_bad*something_make_test_installs*"])
    monkeypatch.setenv("ALREID_STRICT_SKIPS", "0")
    assert pytester.runpytest_subprocess("-p", "no:cacheprovider").ret == 0


def test_strict_mode_passes_with_only_allowed_skips(pytester, monkeypatch):
    pytester.makeconftest((REPO / "tests" / "conftest.py").read_text())
    pytester.makepyfile(test_y="""
        import pytest
        def test_gpu():
            pytest.skip("needs a GPU")
    """)
    monkeypatch.setenv("ALREID_STRICT_SKIPS", "1")
    res = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    assert res.ret == 0
    res.stdout.fnmatch_lines(["*skip policy: 1 skipped, 1 allowed*0 not allowed*"])
