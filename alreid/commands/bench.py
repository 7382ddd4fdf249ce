"""``alreid bench`` and ``alreid sweep``: run an experiment config on Ray Tune, then write the report."""

from __future__ import annotations

import argparse
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


def _parent_params(plan: Any) -> dict[str, Any]:
    cfg = plan.config
    return {"config": plan.source, "name": cfg.name, "datasets": ",".join(cfg.datasets), "methods": ",".join(plan.labels),
            "seeds": ",".join(map(str, cfg.seed_list())), "cycles": cfg.cycles, "budget_fraction": cfg.budget_fraction,
            "budget_pairs": cfg.budget_pairs, "refine": cfg.refine, "oracle_error_rate": cfg.oracle_error_rate,
            "trainer": cfg.trainer, "n_trials": len(plan.trials), "sweep": plan.sweep, "smoke_test": plan.smoke}


def main(args: argparse.Namespace) -> int:
    from alreid.errors import ConfigError
    from alreid.harness.experiment import check_local_datasets, load_plan

    if args.max_concurrent is not None and args.max_concurrent < 1:
        raise ConfigError(f"--max-concurrent must be >= 1; got {args.max_concurrent}")
    plan = load_plan(args.config, sweep=args.sweep, smoke=args.smoke_test, storage_path=args.storage,
                     tracking_uri=args.tracking_uri)
    cfg = plan.config
    if args.address is None:
        check_local_datasets(plan)

    from alreid.harness import tune_runner

    resume = tune_runner.prepare_results(plan, resume=args.resume, overwrite=args.overwrite)
    tracker = None
    if not args.no_mlflow:
        from alreid.harness.tracking import Tracker

        uri = cfg.resolved_tracking_uri()
        try:
            tracker = Tracker(uri, cfg.mlflow_experiment or cfg.name, plan.results_dir)
            tracker.start(run_name=cfg.name, params=_parent_params(plan), resume=resume)
        except Exception as exc:  # noqa: BLE001 - unreachable server, bad URI, locked database
            from alreid.errors import AlreidError

            raise AlreidError(f"cannot use MLflow at {uri}: {type(exc).__name__}: {exc} "
                              f"(check --tracking-uri, or pass --no-mlflow)") from None
        print(f"MLflow: experiment {tracker.experiment_name!r} at {uri} (parent run {tracker.parent_id})")
    try:
        outcome = tune_runner.run_benchmark(plan, resume=resume, tracker=tracker, address=args.address,
                                            max_concurrent=args.max_concurrent)
    except KeyboardInterrupt:
        print(f"alreid: interrupted; finished trials are saved in {plan.results_dir}.\n"
              f"resume with: {_resume_hint(args)}", file=sys.stderr)
        return 130
    if outcome.interrupted:
        print(f"stopped: {len(outcome.finished)} of {len(plan.trials)} trials finished, "
              f"{len(outcome.unfinished)} unfinished (kept at their last cycle).\nresume with: {_resume_hint(args)}")
        return 130
    print(f"{len(outcome.finished)} of {len(plan.trials)} trials finished in {outcome.seconds:.0f} s"
          + (f"; {len(outcome.errors)} failed" if outcome.errors else ""))
    status = "FAILED" if outcome.errors else "FINISHED"
    if outcome.finished:
        from alreid.harness.tables import load_records, render_terminal_table, write_report

        records = load_records(plan.results_dir)
        report = write_report(records, plan.results_dir / "report", reference=cfg.reference, metric=cfg.metric)
        print()
        print(render_terminal_table(report.summary))
        for note in report.notes:
            print(f"note: {note}")
        if report.pvalues:
            print("p-values: " + ", ".join(f"{k}={v:.3g}" for k, v in report.pvalues.items()))
        print(f"\nrecords: {plan.results_dir / 'records.parquet'}\nreport:  {report.out_dir}")
        if tracker is not None:
            try:
                tracker.log_report(report)
            except Exception as exc:  # noqa: BLE001 - the report on disk is what matters
                print(f"warning: could not log the report to MLflow: {exc}")
    if tracker is not None:
        tracker.finish(status)
    if outcome.errors:
        print(f"{len(outcome.errors)} trial(s) failed after {cfg.max_failures} retries:")
        for key, msg in outcome.errors.items():
            print(f"  {key}: {msg}")
        print(f"fix the cause and rerun with: {_resume_hint(args)}  (failed trials continue from their last cycle)")
        return 1
    return 0
