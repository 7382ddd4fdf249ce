"""``alreid run``: one active-learning trial in memory, printing a row per cycle."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any


def iters_value(text: str) -> int | str:
    """``--iters``: a positive integer or ``one_pass`` (one pass over the pool per epoch, CPU smoke runs)."""
    if text == "one_pass":
        return text
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer or one_pass, got {text!r}")
    return value


#: top-level flags that only set a trainer parameter (the issue's `--backbone ... --epochs 20 --al-every 4`)
TRAINER_SHORTCUTS = [("--backbone", "backbone", str), ("--weights", "weights", str), ("--epochs", "epochs", int),
                     ("--al-every", "al_every", int), ("--image-size", "image_size", str),
                     ("--iters", "iters", iters_value)]


def add_trial_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments shared by every command that builds a TrialConfig."""
    p.add_argument("--dataset", default=None, help="NAME[:ARG], e.g. synthetic or embeddings:PATH (see 'alreid methods --all')")
    p.add_argument("--method", default=None, help="sampler name (default: random; see 'alreid methods')")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="sampler hyperparameter, repeatable (e.g. --param epsilon=0.6)")
    p.add_argument("--trainer", default=None, help="trainer name (default: head on frozen features)")
    p.add_argument("--trainer-param", action="append", default=[], metavar="KEY=VALUE",
                   help="trainer hyperparameter, repeatable (e.g. --trainer-param iters=100)")
    p.add_argument("--seed", type=int, default=None, help="trial seed (default 0)")
    p.add_argument("--cycles", type=int, default=None,
                   help="active-learning cycles after cycle 0 (default 5, or epochs / al-every when those are given)")
    p.add_argument("--budget-fraction", type=float, default=None,
                   help="pairs per cycle as a fraction of all pairs (default 2e-4 = 0.02%%)")
    p.add_argument("--budget-pairs", type=int, default=None, help="fixed number of pairs per cycle (overrides the fraction)")
    p.add_argument("--oracle-error", type=float, default=None, help="probability that the simulated annotator answers wrongly")
    p.add_argument("--refine", choices=["np3", "ml_merge", "none"], default=None, help="default: np3")
    p.add_argument("--clustering", choices=["jaccard", "cosine"], default=None, help="base clustering (default: DBSCAN on k-reciprocal Jaccard)")
    p.add_argument("--split-seed", type=int, default=None, help="seed of the train/test split and gallery (fixed per dataset)")
    p.add_argument("--camera-column", default=None, help="metadata column used as camera id for same-camera filtering (e.g. encounter)")
    p.add_argument("--subset", default=None, metavar="NAME", help="rows whose 'dataset' column is NAME (metadata:/wildlife: datasets)")
    g = p.add_argument_group("image trainers (spcl, clustercontrast, skyline, baseline): shortcuts for --trainer-param")
    for flag, key, kind in TRAINER_SHORTCUTS:
        g.add_argument(flag, dest=f"tp_{key}", type=kind, default=None, metavar="VALUE",
                       help=f"same as --trainer-param {key}=VALUE")


def parse_kv_list(items: list[str], flag: str) -> dict[str, Any]:
    from alreid.errors import ConfigError
    from alreid.harness.settings import parse_param_value

    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{flag} expects KEY=VALUE, got {item!r}")
        out[key.strip()] = parse_param_value(value.strip())
    return out


def trial_config_from_args(args: argparse.Namespace):
    """The TrialConfig of the flags that were given; the schema (``TrialSettings``) fills in the rest, and
    cycles not given follow the trainer's schedule (``Trainer.planned_cycles``), as in ``alreid bench``."""
    from alreid.datasets.base import parse_dataset, with_subset
    from alreid.harness.experiment import check_trainer_fits_dataset
    from alreid.harness.settings import make_trial_config
    from alreid.registry import TRAINERS

    trainer_params = parse_kv_list(args.trainer_param, "--trainer-param")
    for _, key, _ in TRAINER_SHORTCUTS:
        value = getattr(args, f"tp_{key}", None)
        if value is not None:
            trainer_params[key] = value
    given = {"method": args.method, "trainer": args.trainer, "seed": args.seed, "cycles": args.cycles,
             "budget_fraction": args.budget_fraction, "budget_pairs": args.budget_pairs,
             "oracle_error_rate": args.oracle_error, "refine": args.refine, "oracle": getattr(args, "oracle", None)}
    data: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
    if args.dataset is not None:
        data["dataset"] = with_subset(args.dataset, args.subset)
    elif args.subset is not None:
        data["dataset"] = with_subset("synthetic", args.subset)  # says which datasets take --subset
    if args.clustering is not None:
        data["clustering"] = {"method": args.clustering}
    protocol = {"split_seed": args.split_seed, "camera_column": args.camera_column}
    data["protocol"] = {k: v for k, v in protocol.items() if v is not None}
    data["params"] = parse_kv_list(args.param, "--param")
    data["trainer_params"] = trainer_params
    cfg = make_trial_config(data)
    check_trainer_fits_dataset(parse_dataset(cfg.dataset), cfg.trainer)
    if args.cycles is None:
        planned = TRAINERS.get(cfg.trainer).from_params(cfg.trainer_params).planned_cycles()
        if planned is not None:
            cfg = make_trial_config({**cfg.model_dump(exclude_unset=True), "cycles": planned})
    return cfg


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run one active-learning trial in memory and print per-cycle metrics")
    add_trial_arguments(p)
    p.add_argument("--oracle", default=None, metavar="simulated|replay:FILE",
                   help="who answers: the simulated annotator (default) or answers from a file ('alreid annotate "
                        "export'); replay:FILE?missing=simulate simulates the pairs the file lacks and counts them")
    p.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write the per-cycle records as JSON")
    p.set_defaults(func=main)


COLUMNS = [("cycle", "cycle", "{:d}"), ("pairs", "pairs_asked", "{:d}"), ("used", "pairs_cum", "{:d}"),
           ("used%", "budget_used_pct", "{:.4f}"), ("mAP", "mAP", "{:.2f}"), ("mINP", "mINP", "{:.2f}"),
           ("top1", "top1", "{:.2f}"), ("top3", "top3", "{:.2f}"), ("top5", "top5", "{:.2f}"),
           ("top10", "top10", "{:.2f}"), ("BAKS", "BAKS", "{:.2f}"), ("AUC", "AUC", "{:.2f}"), ("sec", "seconds", "{:.1f}")]


def format_row(rec: dict[str, Any]) -> list[str]:
    from alreid.harness.stats import FRACTION_METRICS  # the one metric list (fractions, shown in percent)

    cells = []
    for _, key, fmt in COLUMNS:
        v = rec.get(key, float("nan"))
        if isinstance(v, float) and math.isnan(v):
            cells.append("nan")
            continue
        cells.append(fmt.format(100 * v if key in FRACTION_METRICS else v))
    return cells


def main(args: argparse.Namespace) -> int:
    from alreid.api import ActiveLearningLoop

    cfg = trial_config_from_args(args)
    loop = ActiveLearningLoop.from_config(cfg)  # the Python API's loop: one implementation of the cycle
    trial = loop.trial
    evaluation = (f"{len(trial.protocol.query_idx)} queries, {len(trial.protocol.gallery_idx)} gallery exemplars"
                  if trial.protocol is not None else "no identities, so no evaluation")
    print(f"dataset {trial.dataset.name}: {trial.n} training images, {evaluation}; method {cfg.method}, trainer {cfg.trainer}, "
          f"seed {cfg.seed}; budget {trial.budget} pairs per cycle ({100 * trial.budget / trial.pairs_total:.4f}% "
          f"of {trial.pairs_total} pairs); metrics in %")
    widths = [max(len(h), 7) for h, _, _ in COLUMNS]
    print("  ".join(h.rjust(w) for (h, _, _), w in zip(COLUMNS, widths)), flush=True)

    def show(rec: dict[str, Any], _trial: Any) -> None:
        print("  ".join(c.rjust(w) for c, w in zip(format_row(rec), widths)), flush=True)
        pool = {k[5:]: v for k, v in rec.items() if k.startswith("pool_")}
        if pool:
            print("        pool: " + ", ".join(f"{k}={v}" for k, v in pool.items()), flush=True)

    records = loop.run(on_cycle=show, progress=False)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(json.loads(records.to_json(orient="records")), indent=1))
        print(f"records written to {args.json}")
    return 0
