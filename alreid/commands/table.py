"""``alreid table``: tables, significance tests and plots from a results folder (no Ray, no MLflow needed)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("table", help="Markdown/CSV/LaTeX tables, significance tests and plots from results/<experiment>")
    p.add_argument("results", type=Path, help="results/<experiment> folder (or a records .parquet/.csv file)")
    p.add_argument("--out", type=Path, default=None, metavar="DIR", help="where to write the report (default: <results>/report)")
    p.add_argument("--reference", default=None,
                   help="method every other is tested against (default: the experiment's reference, else aas)")
    p.add_argument("--metric", default=None, help="metric of the per-dataset table and the tests (default: mAP)")
    p.add_argument("--sync-mlflow", nargs="?", const="", default=None, metavar="URI",
                   help="then log to MLflow exactly what records.parquet has and MLflow lacks (runs, metrics, artifacts, "
                        "statuses), e.g. after the tracking server was down; idempotent (default URI: the run's own)")
    p.set_defaults(func=main)


def _experiment_defaults(results: Path) -> tuple[str, str]:
    """reference and metric as configured for the run (saved in plan.json by ``alreid bench``)."""
    import json

    plan = results / "plan.json"
    if results.is_dir() and plan.is_file():
        try:
            saved = json.loads(plan.read_text())
            return str(saved.get("reference", "aas")), str(saved.get("metric", "mAP"))
        except (ValueError, OSError):
            pass
    return "aas", "mAP"


def main(args: argparse.Namespace) -> int:
    from alreid.harness.tables import load_records, print_report, write_report

    records = load_records(args.results)
    reference, metric = _experiment_defaults(args.results)
    out = args.out or ((args.results if args.results.is_dir() else args.results.parent) / "report")
    report = write_report(records, out, reference=args.reference or reference, metric=args.metric or metric)
    print_report(report)
    print(f"\nwritten to {report.out_dir}: " + ", ".join(sorted(report.paths)))
    if args.sync_mlflow is not None:
        from alreid.errors import AlreidError
        from alreid.harness.tracking import sync_results

        if not args.results.is_dir():
            raise AlreidError("--sync-mlflow needs the results/<experiment> folder, not a records file")
        sync_results(args.results, args.sync_mlflow or None)
    return 0
