"""AAS pool sizes and budget used per cycle under its two spec assumptions (issue 10 item 7).

Spec 1.3 makes two choices the paper does not state: FINCH's partition is level 0 (``finch_level``
0 vs ``"match_dbscan"``) and every DBSCAN outlier is its own singleton cluster in view A (vs all
outliers grouped in one cluster, sklearn's -1 label taken as a cluster). The paper's AAS used about a
third of its budget (0.033 % of 0.1 %). This script runs AAS trials (head trainer) under the four
combinations and reports per cycle: the candidate pool |U| (U_os, U_us), the pairs asked, the budget
offered, and the final mAP.

    .venv/bin/python benchmarks/aas_pools.py --datasets synthetic embeddings:../shared/data/lion \
        --seeds 0 --cycles 5 --json /tmp/aas_pools.json

"grouped" is applied here, to the context AAS sees (view A and the refined labels), not in AAS
itself: it is a measurement, and the evidence decides whether AAS needs the option.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import numpy as np
import pandas as pd

VARIANTS = {"level0/singletons": (0, False), "match_dbscan/singletons": ("match_dbscan", False),
            "level0/grouped": (0, True), "match_dbscan/grouped": ("match_dbscan", True)}


def grouped_context(ctx: Any, trial: Any) -> Any:
    """The same context with every DBSCAN outlier in one cluster of view A (refined again with NP3)."""
    from dataclasses import replace

    from alreid.clustering.refine import refine_labels

    base = np.asarray(ctx.base_labels).copy()
    out = np.asarray(ctx.outliers, dtype=bool)
    if not out.any():
        return ctx
    base[out] = base.max() + 1
    _, base = np.unique(base, return_inverse=True)
    labels = refine_labels(base, ctx.constraints, ctx.features, trial.cfg.refine, trial.cfg.np3.model_dump())
    return replace(ctx, base_labels=base, labels=np.asarray(labels))


def run(args: argparse.Namespace) -> pd.DataFrame:
    from alreid.harness.settings import make_trial_config
    from alreid.harness.trial import Trial

    rows: list[dict[str, Any]] = []
    for dataset in args.datasets:
        for variant in args.variants:
            level, grouped = VARIANTS[variant]
            for seed in args.seeds:
                t0 = time.perf_counter()
                cfg = make_trial_config({"dataset": dataset, "method": "aas", "params": {"finch_level": level},
                                         "seed": seed, "cycles": args.cycles, "budget_fraction": args.budget_fraction})
                trial = Trial(cfg)
                if grouped:
                    plain = trial.sampling_context
                    trial.sampling_context = lambda cycle, _p=plain, _t=trial: grouped_context(_p(cycle), _t)
                recs = trial.run()
                for rec in recs.to_dict("records"):
                    rows.append({"dataset": rec["dataset"], "variant": variant, "seed": seed, "cycle": rec["cycle"],
                                 "budget": rec.get("budget_pairs", 0), "asked": rec.get("pairs_asked", 0),
                                 "pool": rec.get("pool_pool", np.nan), "u_os": rec.get("pool_u_os", np.nan),
                                 "u_us": rec.get("pool_u_us", np.nan), "regions": rec.get("pool_regions", np.nan),
                                 "n_outliers": rec.get("n_outliers", np.nan), "mAP": rec["mAP"],
                                 "budget_used_pct": rec["budget_used_pct"]})
                print(f"{dataset} {variant} seed {seed}: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    return pd.DataFrame(rows)


def summarise(df: pd.DataFrame) -> pd.DataFrame:
    """Per dataset and variant: pool and asked per cycle (seed means), share of budget used, final mAP."""
    out = []
    for (ds, var), part in df.groupby(["dataset", "variant"], sort=False):
        cyc = part[part["cycle"] > 0].groupby("cycle")[["pool", "asked", "budget"]].mean()
        last = part[part["cycle"] == part["cycle"].max()]
        first = part[part["cycle"] == 0]
        out.append({"dataset": ds, "variant": var,
                    "pool per cycle": " ".join(f"{v:.0f}" for v in cyc["pool"]),
                    "asked per cycle": " ".join(f"{v:.0f}" for v in cyc["asked"]),
                    "budget/cycle": int(cyc["budget"].iloc[0]) if len(cyc) else 0,
                    "used of budget (%)": 100 * cyc["asked"].sum() / max(cyc["budget"].sum(), 1),
                    "pairs used (% of all)": float(last["budget_used_pct"].mean()),
                    "mAP c0": 100 * float(first["mAP"].mean()), "mAP final": 100 * float(last["mAP"].mean())})
    return pd.DataFrame(out)


def markdown(df: pd.DataFrame) -> str:
    """A Markdown table without the optional tabulate dependency."""
    cells = [[f"{v:.2f}" if isinstance(v, float) else str(v) for v in row] for row in df.itertuples(index=False)]
    lines = ["| " + " | ".join(df.columns) + " |", "|" + "---|" * len(df.columns)]
    return "\n".join(lines + ["| " + " | ".join(c) + " |" for c in cells])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", nargs="+", default=["synthetic"])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--cycles", type=int, default=5)
    ap.add_argument("--budget-fraction", type=float, default=2e-4)
    ap.add_argument("--json", default=None, help="write the per-cycle rows here")
    args = ap.parse_args(argv)
    df = run(args)
    if args.json:
        df.to_json(args.json, orient="records", indent=1)
    print(markdown(summarise(df)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
