"""Per-cycle diagnostics of the ``head`` trainer on embedding datasets (issue 14).

For every cycle of one trial this prints and (with --json) stores: mAP, the trainer's settings
(iterations, learning rate, momentum, temperature, epochs), the base clustering of the sampling
features (clusters, outliers), the k-reciprocal Jaccard distances of those features (quantiles of
each point's nearest-neighbour distance, same- vs different-identity k-NN pairs, share of points
with at least ``min_samples`` neighbours within eps) and the purity of the labels the head trained
on. Purity uses the ground truth of the pool and is computed here, outside the trainer: for the
report only.

    .venv/bin/python benchmarks/head_diagnostics.py --dataset embeddings:../shared/data/nyala \
        --method none --seeds 0 --cycles 5 [--trainer-param iters=100 ...] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import numpy as np


def pair_purity(labels: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Pairwise precision/recall of co-clustered pairs and majority purity of clusters with > 1 member."""
    _, lab = np.unique(np.asarray(labels), return_inverse=True)
    _, ids = np.unique(np.asarray(truth).astype(str), return_inverse=True)
    sizes = np.bincount(lab)
    _, joint = np.unique(lab.astype(np.int64) * (ids.max() + 1) + ids, return_inverse=True, axis=None)
    joint_sizes = np.bincount(joint)
    same_and_co = float((joint_sizes * (joint_sizes - 1) / 2).sum())
    co = float((sizes * (sizes - 1) / 2).sum())
    id_sizes = np.bincount(ids)
    same = float((id_sizes * (id_sizes - 1) / 2).sum())
    multi = sizes[lab] > 1
    maj = 0
    for c in np.flatnonzero(sizes > 1):
        maj += np.bincount(ids[lab == c]).max()
    return {"clusters": int((sizes > 1).sum()), "clustered": int(multi.sum()), "singletons": int((sizes == 1).sum()),
            "pair_precision": same_and_co / co if co else float("nan"),
            "pair_recall": same_and_co / same if same else float("nan"),
            "majority_purity": maj / multi.sum() if multi.any() else float("nan")}


def jaccard_stats(z: np.ndarray, truth: np.ndarray, *, k1: int, k2: int, eps: float, min_samples: int) -> dict[str, Any]:
    """How the Jaccard distances of these features sit around DBSCAN's eps."""
    from alreid.clustering.jaccard import jaccard_distance

    d = jaccard_distance(z, k1, k2).tocsr()
    d.setdiag(0)
    d.eliminate_zeros()  # exact zeros off the diagonal are rare; they count as 'absent' (distance 1) below
    coo = d.tocoo()
    off = coo.row != coo.col
    r, c, v = coo.row[off], coo.col[off], coo.data[off]
    truth = np.asarray(truth).astype(str)
    same = truth[r] == truth[c]
    nearest = np.ones(len(z))
    np.minimum.at(nearest, r, v)
    within = np.bincount(r[v <= eps], minlength=len(z)) + 1  # + itself, as DBSCAN counts
    q = [0.05, 0.25, 0.5, 0.75, 0.95]
    return {
        "nn_dist_q": [round(float(x), 3) for x in np.quantile(nearest, q)],
        "same_dist_median": float(np.median(v[same])) if same.any() else float("nan"),
        "diff_dist_median": float(np.median(v[~same])) if (~same).any() else float("nan"),
        "share_pairs_below_eps_same": float((v[same] <= eps).mean()) if same.any() else float("nan"),
        "precision_below_eps": float(same[v <= eps].mean()) if (v <= eps).any() else float("nan"),
        "core_share": float((within >= min_samples).mean()),
    }


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    from alreid.harness.settings import make_trial_config, parse_param_value
    from alreid.harness.trial import Trial

    tparams = {k: parse_param_value(v) for k, v in (p.split("=", 1) for p in args.trainer_param)}
    out: list[dict[str, Any]] = []
    for seed in args.seeds:
        cfg = make_trial_config({"dataset": args.dataset, "method": args.method, "trainer": args.trainer,
                                 "trainer_params": tparams, "seed": seed, "cycles": args.cycles,
                                 "budget_fraction": args.budget_fraction})
        trial = Trial(cfg)
        truth = trial.pool_identities
        c = cfg.clustering
        while trial.next_cycle <= cfg.cycles:
            t0 = time.perf_counter()
            row: dict[str, Any] = {"dataset": trial.dataset.name, "seed": seed, "cycle": trial.next_cycle}
            if trial.next_cycle > 0:
                trial.next_pairs()
                pend = trial._pending  # the cycle's clustering of the sampling features
                if args.jaccard:
                    row.update(jaccard_stats(pend["z"], truth, k1=c.k1, k2=c.k2, eps=c.eps,
                                             min_samples=c.min_samples))
                row.update({f"dbscan_{k}": v for k, v in pair_purity(pend["labels"], truth).items()})
                trial.ask_oracle()
            rec = trial.train_and_evaluate()
            learner = getattr(trial.trainer, "learner_", None)
            used = getattr(learner, "last_labels_", None)
            if trial.next_cycle > 1 and used is not None:
                row.update({f"train_{k}": v for k, v in pair_purity(used, truth).items()})
            for key in ("mAP", "top1", "pairs_asked", "train_loss", "lr", "iters", "epochs_run", "momentum",
                        "temperature", "n_clusters", "n_outliers", "seconds_training", "seconds_clustering"):
                if key in rec:
                    row[key] = rec[key]
            row["seconds_cycle"] = time.perf_counter() - t0
            out.append(row)
            print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}), flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--method", default="none")
    ap.add_argument("--trainer", default="head")
    ap.add_argument("--trainer-param", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--cycles", type=int, default=5)
    ap.add_argument("--budget-fraction", type=float, default=2e-4)
    ap.add_argument("--no-jaccard", dest="jaccard", action="store_false", help="skip the distance statistics")
    ap.add_argument("--json", default=None, help="write all rows to this file")
    args = ap.parse_args(argv)
    rows = run(args)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1, default=float)
    return 0


if __name__ == "__main__":
    sys.exit(main())
