#!/usr/bin/env python
"""`make mutants`: mutate every core module (tests/mutants/focus.toml), then check each survivor is reviewed.

For each module, scripts/mutants_fork.py runs mutmut's mutants against the module's focused tests and writes one JSON
line per mutant to results/mutants/<module>.jsonl. Then every mutant that was not killed must be named in the
module's review file under tests/mutants/ (killed by a test added since, or explained as equivalent); the ones that
are not are listed, and the exit code is 1. Timeouts count as killed (a hang) but are listed too: on a loaded
machine rerun them (`mutants_fork.py ... --only NAME`).

    .venv/bin/python scripts/mutants_all.py                 # every module (hours on two cores)
    .venv/bin/python scripts/mutants_all.py gbas lbas       # some modules
    .venv/bin/python scripts/mutants_all.py --check-only    # only compare existing results with the reviews
    .venv/bin/python scripts/mutants_all.py --resume np3    # continue an interrupted run
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "tests" / "mutants" / "focus.toml"
REVIEWS = ROOT / "tests" / "mutants"
NAME = re.compile(r"([A-Za-z_ǁ][\wǁ]*?)__mutmut_(\d+(?:\.\.\d+)?(?:\s*,\s*\d+(?:\.\.\d+)?)*)")
MORE = re.compile(r"`?\s*(?:,|and)\s*`?_?(\d+)(?:\.\.(\d+))?(?![\w.])`?")
BARE = re.compile(r"`_?(\d+)(?:\.\.(\d+))?`")


def load_config(path: Path = CONFIG, keys: list[str] | None = None) -> dict[str, dict]:
    """The modules table of focus.toml, each with path, tests, timeout and review; the test files of ``keys``
    (default: all) must exist."""
    modules = tomllib.loads(path.read_text())["modules"]
    for key, m in modules.items():
        if keys and key not in keys:
            continue
        missing = [t for t in m["tests"] if ".py" in t and not (ROOT / t.split("::")[0]).is_file()]
        if missing:
            raise SystemExit(f"focus.toml module {key!r} names tests that do not exist: {', '.join(missing)}")
    return modules


def _span(lo: str, hi: str | None) -> range:
    """Mutant numbers `lo` or `lo..hi` (inclusive)."""
    return range(int(lo), int(hi or lo) + 1)


def _numbers(text: str) -> set[int]:
    out: set[int] = set()
    for part in text.split(","):
        lo, _, hi = part.strip().partition("..")
        out.update(_span(lo, hi))
    return out


def reviewed_names(text: str) -> dict[str, set[int]]:
    """Mutants a review names: `fn__mutmut_3, 5, 8..10` (function-name suffix and numbers, also continued after the
    closing backtick: `fn__mutmut_3`, 5, 8), and on the same line bare `_12` / `12..14` tokens after such a name
    (they belong to the last function named on that line)."""
    named: dict[str, set[int]] = {}
    for line in text.splitlines():
        last = None
        pos = 0
        while True:
            m = NAME.search(line, pos)
            b = BARE.search(line, pos)
            if m and (not b or m.start() <= b.start()):
                last = m.group(1)
                named.setdefault(last, set()).update(_numbers(m.group(2)))
                pos = m.end()
                while c := MORE.match(line, pos):  # `fn__mutmut_4`, 5, 6..8 (numbers after the closing backtick)
                    named[last].update(_span(c.group(1), c.group(2)))
                    pos = c.end()
            elif b and last is not None:
                named[last].update(_span(b.group(1), b.group(2)))
                pos = b.end()
            else:
                break
    return named


def is_reviewed(name: str, named: dict[str, set[int]]) -> bool:
    func, _, num = name.rpartition("__mutmut_")
    return any(func.endswith(f) and int(num) in nums for f, nums in named.items())


def check(results: Path, review: Path) -> tuple[dict[str, int], list[str], list[str]]:
    """(status counts, non-killed mutants the review does not name, timeouts) of one module's results file."""
    recs = [json.loads(line) for line in results.read_text().splitlines() if line.strip()]
    counts: dict[str, int] = {}
    for r in recs:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    named = reviewed_names(review.read_text()) if review.is_file() else {}
    # a crash of the tests (status rcN: a segfault or abort in a compiled library) counts as killed too
    open_ = [r["name"] for r in recs if r["status"] in ("survived", "no tests") and not is_reviewed(r["name"], named)]
    return counts, open_, [r["name"] for r in recs if r["status"] == "timeout"]


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("modules", nargs="*", help="module keys of focus.toml (default: all)")
    p.add_argument("--out-dir", type=Path, default=ROOT / "results" / "mutants")
    p.add_argument("--check-only", action="store_true", help="do not run; check existing results against the reviews")
    p.add_argument("--resume", action="store_true",
                   help="keep each module's earlier results and run only the mutants not in them (an interrupted run); "
                        "by default a module's results start afresh, so a changed module or test is judged anew")
    args = p.parse_args(argv)
    config = load_config(keys=args.modules)
    unknown = [k for k in args.modules if k not in config]
    if unknown:
        raise SystemExit(f"unknown module {', '.join(unknown)}; focus.toml has: {', '.join(config)}")
    keys = args.modules or list(config)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    status = 0
    rows = []
    for key in keys:
        m = config[key]
        out = args.out_dir / f"{key}.jsonl"
        if not args.check_only:
            print(f"== {key}: {m['path']} (results: {out})", flush=True)
            if not args.resume:
                out.unlink(missing_ok=True)
            run = subprocess.run([sys.executable, str(ROOT / "scripts" / "mutants_fork.py"), m["path"], str(out),
                                  "--timeout", str(m["timeout"]), "--", *m["tests"]], cwd=ROOT)
            if run.returncode != 0:
                raise SystemExit(f"the mutation run of {key!r} stopped (exit {run.returncode}, its message is above); "
                                 f"fix that, then rerun with --resume to keep the mutants already judged")
        if not out.is_file():
            rows.append(f"{key:<12} no results ({out} missing)")
            continue
        counts, open_, timeouts = check(out, REVIEWS / m["review"])
        total = sum(counts.values())
        rows.append(f"{key:<12} {total:>5} mutants  " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
                    + f"  | not reviewed in tests/mutants/{m['review']}: {len(open_)}")
        if open_:
            status = 1
            rows.extend(f"    {n}" for n in open_)
        if timeouts:
            rows.append(f"    timeouts (hangs count as killed; rerun under less load if unsure): {', '.join(timeouts)}")
    print("\n".join(rows))
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
