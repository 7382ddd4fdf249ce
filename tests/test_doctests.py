"""The Examples sections of the public API run as doctests (on the synthetic dataset, kept small).

Only the API modules are collected: other modules' docstrings are prose, not examples.
"""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["alreid", "alreid.api"]
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def _tests(module_name: str) -> list[doctest.DocTest]:
    module = importlib.import_module(module_name)
    return [t for t in doctest.DocTestFinder().find(module, module_name) if t.examples]


CASES = [(m, t.name) for m in MODULES for t in _tests(m)]


def test_every_public_name_has_an_example():
    import alreid

    documented = {name.rpartition(".")[2] for _, name in CASES}
    missing = [n for n in alreid.__all__ if n not in ("AlreidError", "__version__", "BenchmarkResult", "Results")
               and n not in documented]
    assert not missing, f"public names without an Examples section: {missing}"


@pytest.mark.parametrize("module_name,test_name", CASES, ids=[name for _, name in CASES])
def test_docstring_examples(module_name, test_name, monkeypatch, tmp_path):
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    monkeypatch.setenv("RAY_ADDRESS", "local")  # a fresh local Ray, never one left behind in /tmp/ray by another run
    monkeypatch.chdir(tmp_path)  # anything an example writes by accident lands in tmp_path
    (test,) = [t for t in _tests(module_name) if t.name == test_name]
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples of {test_name} failed (output above)"
