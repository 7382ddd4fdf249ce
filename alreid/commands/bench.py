"""``alreid bench`` and ``alreid sweep``: run an experiment config on Ray Tune, then write the report."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", type=Path, help="experiment YAML (see configs/default.yaml)")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run: finished trials are kept, unfinished ones continue from their last cycle")
    p.add_argument("--overwrite", action="store_true", help="delete an earlier run of this experiment and start again")
    p.add_argument("--storage", default=None, metavar="DIR", help="results folder (default: storage_path of the config, results/)")
    p.add_argument("--tracking-uri", default=None, metavar="URI",
                   help="MLflow tracking URI, e.g. http://head:5000 (default: sqlite:///<storage>/mlflow.db)")
    p.add_argument("--no-mlflow", action="store_true", help="do not log to MLflow (records.parquet is always written)")
    p.add_argument("--address", default=None, help="Ray cluster to join, e.g. 'auto' on a cluster node (default: a local Ray)")
    p.add_argument("--max-concurrent", type=int, default=None, metavar="N", help="run at most N trials at a time")
    p.add_argument("--smoke-test", action="store_true",
                   help="1 seed, at most 2 cycles (and 2 values per sweep axis); results go to <name>-smoke")
    p.add_argument("--dry-run", action="store_true",
                   help="validate the config and print the planned trials; start nothing (no Ray, no MLflow)")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="run a benchmark (datasets x methods x seeds) on Ray Tune and print the table")
    _add_common(p)
    p.set_defaults(func=main, sweep=False)
    p = sub.add_parser("sweep", help="run the hyperparameter grid of a config's 'sweep' section (e.g. AAS epsilon x k_max x s_min)")
    _add_common(p)
    p.set_defaults(func=main, sweep=True)


def _resume_hint(args: argparse.Namespace) -> str:
    """The user's own command line with --resume (and without --overwrite, which would discard the run)."""
    argv = sys.argv[1:] if sys.argv[1:2] in (["bench"], ["sweep"]) else \
        ["sweep" if args.sweep else "bench", str(args.config)]
    words = [w for w in argv if w not in ("--overwrite", "--resume")]
    return shlex.join(["alreid", *words, "--resume"])


def print_plan(plan: Any, out: Any = print) -> None:
    """One line per planned trial: dataset, row label, trainer, seed and the settings that vary."""
    trials = plan.trials
    keys = ("cycles", "budget_fraction", "budget_pairs", "oracle_error_rate", "refine", "oracle")
    varying = [k for k in keys if len({json.dumps(t.trial.get(k), default=str) for t in trials}) > 1]
    shown = ["cycles", "budget_fraction"] + [k for k in varying if k not in ("cycles", "budget_fraction")]
    out(f"{plan.config.name}: {len(trials)} trials ({len(plan.labels)} rows x {len(plan.config.datasets)} datasets "
        f"x {len(plan.config.seed_list())} seeds); results would go to {plan.results_dir}")
    rows = [["dataset", "row", "trainer", "seed", *shown]]
    for t in trials:
        rows.append([t.dataset, t.label, t.trial["trainer"], str(t.seed), *(str(t.trial.get(k)) for k in shown)])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        out("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())


def main(args: argparse.Namespace) -> int:
    from alreid.errors import ConfigError
    from alreid.harness.experiment import check_local_datasets, load_plan

    if args.max_concurrent is not None and args.max_concurrent < 1:
        raise ConfigError(f"--max-concurrent must be >= 1; got {args.max_concurrent}")
    plan = load_plan(args.config, sweep=args.sweep, smoke=args.smoke_test, storage_path=args.storage,
                     tracking_uri=args.tracking_uri)
    cfg = plan.config
    if getattr(args, "dry_run", False):  # a plan to read: missing local data is worth a warning, not a stop
        if args.address is None:
            try:
                check_local_datasets(plan)
            except ConfigError as exc:
                print(f"warning: {exc}")
        print_plan(plan)
        return 0
    if args.address is None:
        check_local_datasets(plan)

    from alreid.api import BenchmarkInterrupted, run_benchmark

    try:  # the Python API's run_benchmark: results folder, MLflow, Ray Tune, report
        outcome = run_benchmark(plan, resume=args.resume, overwrite=args.overwrite, mlflow=not args.no_mlflow,
                                address=args.address, max_concurrent=args.max_concurrent)
    except BenchmarkInterrupted:
        print(f"alreid: interrupted; finished trials are saved in {plan.results_dir}.\n"
              f"resume with: {_resume_hint(args)}", file=sys.stderr)
        return 130
    if outcome.interrupted:
        print(f"stopped: {len(outcome.finished)} of {len(plan.trials)} trials finished, "
              f"{len(outcome.unfinished)} unfinished (kept at their last cycle).\nresume with: {_resume_hint(args)}")
        return 130
    print(f"{len(outcome.finished)} of {len(plan.trials)} trials finished in {outcome.seconds:.0f} s"
          + (f"; {len(outcome.errors)} failed" if outcome.errors else ""))
    if outcome.report is not None:
        from alreid.harness.tables import print_report

        print()
        print_report(outcome.report)
        print(f"\nrecords: {plan.results_dir / 'records.parquet'}\nreport:  {outcome.report.out_dir}")
    for warning in outcome.warnings:
        print(f"warning: {warning}")
    if outcome.errors:
        print(f"{len(outcome.errors)} trial(s) failed after {cfg.max_failures} retries:")
        for key, msg in outcome.errors.items():
            print(f"  {key}: {msg}")
        print(f"fix the cause and rerun with: {_resume_hint(args)}  (failed trials continue from their last cycle)")
        return 1
    return 0
