"""Skip policy: a test may skip only for a GPU / CUDA or for data that is not in ``../shared``.

Every skip is collected with its reason. At the end of the session the count is printed (allowed and
not allowed, with the reasons of the latter), and with ``ALREID_STRICT_SKIPS=1`` (set by ``make test``,
so by CI) any skip outside the allow-list fails the session: a test that needs only what ``make test``
installs and ``../shared`` provides must run. Allowed reasons:

* the reason mentions a GPU or CUDA (``\\bGPU\\b``, ``CUDA``);
* the reason names a path under ``<repo>/../shared`` (written ``../shared/...`` or absolute) and that
  path really does not exist here (a hard-coded path elsewhere, or shared data that *is* present, is
  not an excuse);
* the reason says the data is ``not in ../shared`` (data the shared folder does not provide at all).

A missing Python package, an uninstalled entry point or a missing browser is never allowed: ``make test``
installs them. README "Development" documents this.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_ROOT = (REPO.parent / "shared").resolve()
STRICT_ENV = "ALREID_STRICT_SKIPS"

_GPU = re.compile(r"\bGPUs?\b|CUDA", re.IGNORECASE)
_NOT_PROVIDED = re.compile(r"not in \.\./shared", re.IGNORECASE)
_PATHISH = re.compile(r"(?:\.\./shared|/)[^\s'\"(),;]*")

pytest_plugins = ["pytester"]  # tests/test_skip_policy.py runs the policy on a throwaway test tree

_skips: list[tuple[str, str]] = []


def _paths_in(reason: str) -> list[Path]:
    out = []
    for token in _PATHISH.findall(reason):
        token = token.rstrip(".:")
        if token.startswith("../shared"):
            out.append((REPO / token).resolve())
        elif token.startswith("/") and len(token) > 1:
            out.append(Path(token).resolve())
    return out


def skip_allowed(reason: str) -> bool:
    """True when ``reason`` is a GPU / CUDA skip or names shared data that is really absent."""
    if _GPU.search(reason) or _NOT_PROVIDED.search(reason):
        return True
    for path in _paths_in(reason):
        try:
            inside = path == SHARED_ROOT or path.is_relative_to(SHARED_ROOT)
        except ValueError:
            inside = False
        if inside and not path.exists():
            return True
    return False


def _reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and not hasattr(report, "wasxfail"):
        _skips.append((report.nodeid, _reason(report)))


def pytest_collectreport(report: pytest.CollectReport) -> None:
    """Module-level ``importorskip`` / ``pytest.skip(allow_module_level=True)`` skip whole files."""
    if report.skipped:
        _skips.append((report.nodeid, _reason(report)))


def _strict() -> bool:
    return os.environ.get(STRICT_ENV, "") not in ("", "0", "false", "no")


def _bad() -> list[tuple[str, str]]:
    return [(node, reason) for node, reason in _skips if not skip_allowed(reason)]


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    bad = _bad()
    tr = terminalreporter
    tr.write_sep("-", f"skip policy: {len(_skips)} skipped, {len(_skips) - len(bad)} allowed "
                      f"(GPU/CUDA or data not in ../shared), {len(bad)} not allowed")
    for node, reason in bad:
        tr.write_line(f"NOT ALLOWED  {node}: {reason}")
    if bad and not _strict():
        tr.write_line(f"(set {STRICT_ENV}=1, as `make test` does, to fail on these)")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _strict() and _bad() and session.exitstatus == 0:
        session.exitstatus = 1
