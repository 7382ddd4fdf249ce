#!/usr/bin/env python
"""Mutation testing of one module, one forked pytest per mutant: the runner behind tests/mutants/SURVIVORS.md.

`mutmut run` starts a fresh pytest per mutant and, on a loaded 2-core machine, spends most of its time in start-up
and timeouts. This runner uses mutmut's own generator (the same mutant names and diffs as `mutmut show`), writes the
trampolined module into a scratch copy of the package (the repository is never modified), runs the focused tests
once unmutated (they must pass, and every lazy import happens there), then forks one child per mutant that selects
it through MUTANT_UNDER_TEST and runs, with `-x` under a time limit, the focused tests that call its function (noted
in the clean run, as `mutmut run` does; a mutant that survives them is run again with all of them). One JSON line per mutant goes to OUT;
a rerun skips the mutants already in OUT.

    .venv/bin/python scripts/mutants_fork.py alreid/samplers/nis.py /tmp/nis.jsonl -- tests/samplers/test_nis.py
    .venv/bin/python scripts/mutants_fork.py alreid/evaluation/metrics.py OUT --funcs auc_known_unknown --timeout 20 \\
        -- tests/evaluation/test_metrics.py

Status per mutant: killed (a test failed), no tests (no focused test calls its function), survived (all passed: kill it with a test or explain it as equivalent in
SURVIVORS.md), timeout (no result in time: a hang, or a loaded machine; rerun those with --only). Run it under
`nice -n 19` next to other work; BLAS/OpenMP are held to one thread (faiss hangs in a forked child otherwise).
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import gc
import importlib
import io
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from difflib import unified_diff
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    if "--" not in argv:
        raise SystemExit("usage: mutants_fork.py MODULE OUT [options] -- TESTS...  (the tests after '--')")
    sep = argv.index("--")
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("module", help="path of the module to mutate, relative to the repository, e.g. alreid/samplers/nis.py")
    p.add_argument("out", type=Path, help="JSON-lines results (appended; mutants already there are skipped)")
    p.add_argument("--funcs", default="", help="only mutants of these functions (comma-separated name suffixes)")
    p.add_argument("--only", default="", help="only these mutant names (comma-separated)")
    p.add_argument("--timeout", type=float, default=90.0, help="seconds per mutant before it counts as a timeout")
    p.add_argument("--all-tests", action="store_true",
                   help="run every focused test for each mutant, not only those that call its function")
    p.add_argument("--work", type=Path, default=None, help="scratch copy of the package (default: a temporary folder)")
    return p.parse_args(argv[:sep]), argv[sep + 1:]


def scratch_copy(work: Path) -> None:
    """alreid/, tests/ and pyproject.toml of the repository, copied so the mutated module never touches the tree."""
    for name in ("alreid", "tests"):
        shutil.copytree(ROOT / name, work / name, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy2(ROOT / "pyproject.toml", work / "pyproject.toml")


def run_child(name: str, tests: list[str], timeout: float) -> tuple[int | str, str, float]:
    """Fork; the child runs the tests with mutant ``name`` active; (exit code or 'timeout', output tail, seconds)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        import pytest
        import _pytest.python

        os.close(r)
        os.environ["MUTANT_UNDER_TEST"] = name
        # a failure report would re-read the (large) trampolined module for its source lines: one line instead
        _pytest.python.Function.repr_failure = lambda self, excinfo: f"{excinfo.typename}: {str(excinfo.value)[:200]}"
        os.dup2(w, 1)
        os.dup2(w, 2)
        try:
            code = pytest.main(["-x", "-q", "--tb=no", "-p", "no:cacheprovider", *tests])
        except BaseException:  # noqa: BLE001 - any crash of the mutant counts as a failure
            import traceback

            traceback.print_exc()
            code = 3
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(int(code))
    os.close(w)
    os.set_blocking(r, False)
    buf, t0 = b"", time.time()

    def drain() -> None:
        nonlocal buf
        with contextlib.suppress(BlockingIOError):
            while chunk := os.read(r, 65536):
                buf += chunk

    while True:
        drain()
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            drain()
            rc: int | str = os.waitstatus_to_exitcode(status)
            break
        if time.time() - t0 > timeout:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            rc = "timeout"
            break
        time.sleep(0.05)
    os.close(r)
    return rc, buf.decode(errors="replace"), time.time() - t0


def record_reach(tests: list[str]) -> tuple[dict[str, list[str]], dict[str, float]]:
    """Run the tests once unmutated (they must pass) and note, per mutated function, the tests that call it.

    mutmut's trampoline reports every call of a mutated function when MUTANT_UNDER_TEST is "stats"; a pytest hook
    names the running test. A mutant then runs only the tests that reach its function (as `mutmut run` does); one
    that survives them is run again with every focused test, so a function reached only through a fixture computed
    for another test is still judged by all of them.
    """
    import pytest
    import mutmut.mutation.trampoline as trampoline

    reached: dict[str, dict[str, None]] = {}  # function -> the tests that call it, in run order (an ordered set)
    seconds: dict[str, float] = {}
    current = {"test": ""}

    class Tracker:
        @pytest.hookimpl(wrapper=True)
        def pytest_runtest_protocol(self, item, nextitem):  # noqa: ANN001 - pytest hook signature
            current["test"] = item.nodeid
            t0 = time.perf_counter()
            try:
                return (yield)
            finally:
                current["test"] = ""
                seconds[item.nodeid] = time.perf_counter() - t0

    def hit(name: str, caller: str | None = None) -> None:  # noqa: ARG001 - the trampoline's signature
        if current["test"]:
            reached.setdefault(name, {})[current["test"]] = None

    trampoline.record_trampoline_hit = hit
    os.environ["MUTANT_UNDER_TEST"] = "stats"
    with contextlib.redirect_stdout(io.StringIO()) as captured:
        clean = pytest.main(["-x", "-q", "-p", "no:cacheprovider", *tests], plugins=[Tracker()])
    del os.environ["MUTANT_UNDER_TEST"]
    if clean != 0:
        print(captured.getvalue()[-2000:])
        raise SystemExit("the focused tests fail without any mutant: fix them first")
    return {name: list(users) for name, users in reached.items()}, seconds


def failed_tests(output: str) -> list[str]:
    """Node ids pytest's short summary names as FAILED or ERROR."""
    return [line.split()[1] for line in output.splitlines() if line.startswith(("FAILED ", "ERROR ")) and len(line.split()) > 1]


def main(argv: list[str]) -> int:
    args, tests = parse(argv)
    if not tests:
        raise SystemExit("name the focused tests after '--', e.g. -- tests/samplers/test_nis.py")
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    try:
        import libcst as cst
        from mutmut.mutation.diff_apply import read_mutant_function, read_original_function
        from mutmut.mutation.file_mutation import mutate_file_contents
        from mutmut.utils.format_utils import mangled_name_from_mutant_name
    except ImportError:
        raise SystemExit("mutmut is not installed: pip install -e '.[dev]' (mutmut 3.x)") from None
    source_path = ROOT / args.module
    if not source_path.is_file():
        raise SystemExit(f"no module {args.module!r} under {ROOT}")
    work = args.work or Path(tempfile.mkdtemp(prefix="alreid-mutants-"))
    if args.work is None:  # the scratch copy goes when the run ends, also on Ctrl+C or SIGTERM
        atexit.register(shutil.rmtree, work, ignore_errors=True)
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))  # a forked child: os._exit(3)
    scratch_copy(work)
    out = args.out.resolve()
    os.chdir(work)
    sys.path.insert(0, str(work))
    original = source_path.read_text()
    mutated = mutate_file_contents(args.module, original)
    (work / args.module).write_text(mutated.code)
    modname = args.module[:-3].replace("/", ".")
    parsed = cst.parse_module(mutated.code)

    def diff_of(name: str) -> str:
        a, b = (cst.Module([f]).code.strip() for f in (read_original_function(parsed, name),
                                                       read_mutant_function(parsed, name)))
        return "\n".join(unified_diff(a.split("\n"), b.split("\n"), args.module, args.module, lineterm=""))

    import pytest

    mod = importlib.import_module(modname)
    if not str(mod.__file__).startswith(str(work)):
        raise SystemExit(f"{modname} was imported from {mod.__file__}, not the scratch copy: run from another folder")
    for t in tests:  # imported once here, so each child only runs them
        f = t.split("::")[0]
        if f.endswith(".py"):
            importlib.import_module(f[:-3].replace("/", "."))
    reached, seconds = record_reach(tests)
    killers: dict[str, list[str]] = {}  # per function, the tests that killed its latest mutants (tried first)

    done = {json.loads(line)["name"] for line in out.read_text().splitlines()} if out.exists() else set()
    names = list(mutated.mutant_names)
    if args.funcs:
        funcs = args.funcs.split(",")
        names = [n for n in names if any(n.split("__mutmut_")[0].endswith(f) for f in funcs)]
    if args.only:
        only = set(args.only.split(","))
        names = [n for n in names if n in only]
    counts: dict[str, int] = {}
    gc.collect()
    gc.freeze()  # the forked children share the parent's objects without copying pages for the collector's sake
    for k, name in enumerate(names, 1):
        if name in done:
            continue
        func = f"{modname}.{mangled_name_from_mutant_name(name)}"
        if args.all_tests:
            selected = tests
        else:  # -x stops at the first failure: the tests that killed this function's mutants so far, then fastest first
            users = reached.get(func, [])
            first = [t for t in killers.get(func, []) if t in users]
            selected = first + sorted((t for t in users if t not in first), key=lambda t: seconds.get(t, 0.0))
        if not selected:
            rc, tail, secs = "no tests", "no focused test calls this function", 0.0
        else:
            rc, tail, secs = run_child(f"{modname}.{name}", selected, args.timeout)
            if rc == 0 and selected is not tests:  # survived the tests that reach it: confirm with all of them
                rc, tail, more = run_child(f"{modname}.{name}", tests, args.timeout)
                secs += more
        status = {0: "survived", 1: "killed"}.get(rc, rc if rc in ("timeout", "no tests") else f"rc{rc}")
        if status == "killed":
            for t in failed_tests(tail):
                order = killers.setdefault(func, [])
                if t in order:
                    order.remove(t)
                order.insert(0, t)
        counts[status] = counts.get(status, 0) + 1
        rec = {"name": name, "status": status, "secs": round(secs, 1)}
        if status != "killed":
            rec["diff"] = diff_of(f"{modname}.{name}")
            rec["tail"] = tail[-800:]
        with open(out, "a") as fh:
            fh.write(json.dumps(rec) + "\n")
        print(f"[{k}/{len(names)}] {name} {status} {rec['secs']}s", flush=True)
    print("; ".join(f"{v} {k}" for k, v in sorted(counts.items())) or "nothing new to run", f"-> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
