"""The GPU path in one command: does alreid's CUDA side work on this machine, and how fast is it?

    benchmarks/gpu_check.sh                  # all four checks; exit 1 on any mismatch or failure
    benchmarks/gpu_check.sh --json out.json  # also keep the figures
    benchmarks/gpu_check.sh --only knn,cycle # a subset: spcl, knn, cycle, bench

1. spcl  - one SpCL epoch (one pass over the pool) with mixed precision on a small real dataset
           (default: ../shared/data/nyala, ~1,900 images): images/s and peak GPU memory.
2. knn   - k-NN on the GPU (faiss GPU index when faiss has GPU support, else an exact torch matmul + top-k
           in float32) against the exact faiss CPU index: the neighbour lists must agree (ties aside).
3. cycle - Jaccard + DBSCAN at n = 40,000 (d = 2048, clustered synthetic embeddings) fed by the GPU k-NN:
           seconds per stage, and the DBSCAN labels must equal those from the CPU k-NN.
4. bench - a 2-trial `alreid bench` with resources {gpu: 0.5}: both SpCL trials must run on the GPU at the
           same time (their wall-clock intervals overlap) and finish.

Without CUDA it says so in one line and exits 0, so it can sit in any CI.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CHECKS = ("spcl", "knn", "cycle", "bench")


class Mismatch(Exception):
    """A result that disagrees with its reference: the check fails."""


# ------------------------------------------------------------------------------------------- k-NN
def gpu_knn(x: np.ndarray, k: int, device: str = "cuda", batch: int = 4096) -> tuple[np.ndarray, np.ndarray, str]:
    """Exact inner-product k-NN of every row among all rows on ``device``: (sims, idx, how).

    faiss's GPU flat index when the installed faiss has GPU support, otherwise a float32 torch matmul
    with TF32 off (so the ranking is the CPU index's, not a reduced-precision approximation)."""
    import faiss

    x = np.ascontiguousarray(x, dtype=np.float32)
    n, d = x.shape
    if device.startswith("cuda") and hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0:
        res = faiss.StandardGpuResources()
        index = faiss.index_cpu_to_gpu(res, 0, faiss.IndexFlatIP(d))
        index.add(x)
        sims, idx = index.search(x, k)
        return sims, idx.astype(np.int64), "faiss GPU IndexFlatIP"
    import torch

    torch.backends.cuda.matmul.allow_tf32 = False
    xt = torch.from_numpy(x).to(device)
    sims = np.empty((n, k), np.float32)
    idx = np.empty((n, k), np.int64)
    for start in range(0, n, batch):
        s, i = torch.topk(xt[start:start + batch] @ xt.T, k, dim=1)
        sims[start:start + batch] = s.cpu().numpy()
        idx[start:start + batch] = i.cpu().numpy()
    return sims, idx, f"torch float32 matmul + topk on {device} (faiss has no GPU support here)"


def compare_knn(ref: tuple[np.ndarray, np.ndarray], got: tuple[np.ndarray, np.ndarray], *,
                atol: float = 1e-4) -> dict[str, float]:
    """How far two k-NN results agree. Similarities must match column by column (within ``atol``);
    neighbour ids may differ only where similarities tie (swapped order at equal values, or a tie at
    the k-th place), so a row's ids must match wherever its k-th similarity is not tied."""
    (s_ref, i_ref), (s_got, i_got) = ref, got
    if s_ref.shape != s_got.shape:
        raise Mismatch(f"k-NN shapes differ: {s_ref.shape} vs {s_got.shape}")
    max_diff = float(np.abs(s_ref - s_got).max())
    same_sets = np.array([set(a) == set(b) for a, b in zip(i_ref.tolist(), i_got.tolist())])
    kth_gap = np.abs(s_ref[:, -1:] - s_ref).min(axis=1) if s_ref.shape[1] > 1 else np.ones(len(s_ref))
    # rows whose k-th value has no near-tie inside the list (and we cannot see ties just outside it: also
    # require the other result's k-th value to agree, which it does when sims agree)
    untied = np.abs(s_ref[:, -1] - s_ref[:, -2]) > atol if s_ref.shape[1] > 1 else np.ones(len(s_ref), bool)
    bad = int((~same_sets & untied).sum())
    out = {"max_sim_diff": max_diff, "rows": len(s_ref), "rows_same_set": int(same_sets.sum()),
           "rows_differing_without_tie": bad, "min_kth_gap": float(kth_gap.min()) if len(kth_gap) else 0.0}
    if max_diff > atol:
        raise Mismatch(f"GPU and CPU k-NN similarities differ by up to {max_diff:.2e} (> {atol})")
    if bad:
        raise Mismatch(f"{bad} rows have different neighbour sets on GPU and CPU with no tie to explain it")
    return out


def check_knn(args: argparse.Namespace) -> dict[str, Any]:
    from alreid.clustering.knn import knn_search, l2_normalise

    rng = np.random.default_rng(args.seed)
    x = l2_normalise(rng.standard_normal((args.knn_n, 256)).astype(np.float32))
    t = time.perf_counter()
    cpu = knn_search(x, args.k)
    cpu_s = time.perf_counter() - t
    gpu_knn(x[:256], 8)  # CUDA context and kernels: not part of the timing
    t = time.perf_counter()
    s, i, how = gpu_knn(x, args.k)
    gpu_s = time.perf_counter() - t
    out = {"n": args.knn_n, "d": 256, "k": args.k, "cpu_s": cpu_s, "gpu_s": gpu_s, "gpu_how": how,
           **compare_knn(cpu, (s, i))}
    print(f"knn   : n={args.knn_n} d=256 k={args.k}: CPU {cpu_s:.2f} s, GPU {gpu_s:.2f} s ({how}); "
          f"max |sim diff| {out['max_sim_diff']:.1e}, {out['rows_same_set']}/{out['rows']} identical sets: agree")
    return out


# ------------------------------------------------------------------------------------------- cycle
def check_cycle(args: argparse.Namespace) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_cycle import clustered_embeddings

    from alreid.clustering.jaccard import jaccard_distance
    from alreid.clustering.knn import knn_search, l2_normalise
    from alreid.clustering.views import dbscan_labels

    x, _ = clustered_embeddings(args.cycle_n, args.cycle_dim, seed=args.seed)
    x = l2_normalise(x)
    stages: dict[str, float] = {}

    def stage(name: str, fn):
        t = time.perf_counter()
        value = fn()
        stages[name] = time.perf_counter() - t
        print(f"cycle : [{args.cycle_n} x {args.cycle_dim}] {name:<24s} {stages[name]:8.2f} s", flush=True)
        return value

    gpu_knn(x[:256], 8)  # CUDA context and kernels: not part of the stage
    s, i, how = stage("gpu knn (k=30)", lambda: gpu_knn(x, 30))
    dist = stage("jaccard (k1=30, k2=6)", lambda: jaccard_distance(x, 30, 6, knn=(s, i)))
    labels = stage("dbscan (eps=0.6)", lambda: dbscan_labels(dist, 0.6, 4))
    cpu = stage("cpu knn (k=30, reference)", lambda: knn_search(x, 30))
    agree = compare_knn(cpu, (s, i))
    ref_labels = dbscan_labels(jaccard_distance(x, 30, 6, knn=cpu), 0.6, 4)
    if not np.array_equal(labels, ref_labels):
        from sklearn.metrics import adjusted_rand_score

        raise Mismatch(f"DBSCAN labels from the GPU k-NN differ from the CPU ones "
                       f"(ARI {adjusted_rand_score(ref_labels, labels):.4f})")
    n_clusters = len(set(labels.tolist()) - {-1})
    print(f"cycle : GPU-kNN cycle {sum(v for k, v in stages.items() if 'reference' not in k):.2f} s "
          f"({how}); {n_clusters} clusters, identical to the CPU k-NN labels")
    return {"n": args.cycle_n, "d": args.cycle_dim, "stages_s": stages, "clusters": n_clusters, "knn": agree}


# ------------------------------------------------------------------------------------------- spcl
def spcl_params(args: argparse.Namespace) -> dict[str, Any]:
    return {"epochs": 1, "al_every": 1, "iters": "one_pass", "device": "cuda", "amp": True,
            "backbone": args.backbone, "progress": False}


def check_spcl(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from alreid.harness.settings import make_trial_config
    from alreid.harness.trial import Trial

    cfg = make_trial_config({"dataset": args.data, "method": "random", "trainer": "spcl", "cycles": 1,
                             "budget_pairs": 20, "trainer_params": spcl_params(args)})
    torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    recs = Trial(cfg).run()
    total = time.perf_counter() - t
    peak = torch.cuda.max_memory_allocated() / 2**30
    row = recs[recs.cycle == 1].iloc[0]
    ips = float(row.get("train_images_per_s", float("nan")))
    if not (ips > 0) or int(row.get("epochs_run", 0)) != 1:
        raise Mismatch(f"the SpCL cycle did not train one epoch (epochs_run={row.get('epochs_run')}, images/s={ips})")
    out = {"data": args.data, "backbone": args.backbone, "images_per_s": ips, "peak_gpu_gib": peak,
           "seconds_training": float(row.get("seconds_training", float("nan"))), "trial_s": total,
           "mAP_cycle0": float(recs.mAP.iloc[0]), "mAP_cycle1": float(row.mAP)}
    print(f"spcl  : one epoch (AMP) on {args.data} with {args.backbone}: {ips:.0f} images/s, "
          f"peak GPU memory {peak:.2f} GiB, training {out['seconds_training']:.1f} s (trial {total:.0f} s)")
    return out


# ------------------------------------------------------------------------------------------- bench
def trial_interval(trial_dir: Path) -> tuple[float, float]:
    """(start, end) wall-clock seconds of one Tune trial from its result.json lines."""
    rows = [json.loads(line) for line in (trial_dir / "result.json").read_text().splitlines() if line.strip()]
    if not rows:
        raise Mismatch(f"trial {trial_dir.name} reported nothing")
    return rows[0]["timestamp"] - rows[0]["time_total_s"], rows[-1]["timestamp"]


def overlap(a: tuple[float, float], b: tuple[float, float]) -> float:
    return max(0.0, min(a[1], b[1]) - max(a[0], b[0]))


def check_bench(args: argparse.Namespace) -> dict[str, Any]:
    import yaml

    with tempfile.TemporaryDirectory(prefix="alreid-gpu-check-") as tmp:
        config = Path(tmp) / "gpu_share.yaml"
        config.write_text(yaml.safe_dump({
            "name": "gpu_share", "datasets": [args.data], "methods": ["random"], "seeds": 2, "cycles": 1,
            "budget_pairs": 20, "trainer": "spcl", "trainer_params": spcl_params(args),
            "resources": {"cpu": 2, "gpu": 0.5}, "max_failures": 0, "storage_path": str(Path(tmp) / "results")}))
        env = {**os.environ, "RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "disabled")}
        t = time.perf_counter()
        res = subprocess.run([sys.executable, "-m", "alreid.cli", "bench", str(config), "--no-mlflow"],
                             capture_output=True, text=True, env=env, cwd=ROOT, timeout=args.bench_timeout)
        seconds = time.perf_counter() - t
        if res.returncode != 0:
            raise Mismatch(f"the 2-trial GPU benchmark exited {res.returncode}:\n{(res.stdout + res.stderr)[-3000:]}")
        trials = sorted(p for p in (Path(tmp) / "results" / "gpu_share" / "tune").iterdir() if p.is_dir())
        if len(trials) != 2:
            raise Mismatch(f"expected 2 trials, found {[p.name for p in trials]}")
        a, b = (trial_interval(p) for p in trials)
        shared = overlap(a, b)
        if shared <= 0:
            raise Mismatch(f"the two gpu: 0.5 trials did not run at the same time (intervals {a}, {b})")
    print(f"bench : 2 SpCL trials with resources {{gpu: 0.5}} finished in {seconds:.0f} s, "
          f"running together for {shared:.0f} s")
    return {"seconds": seconds, "overlap_s": shared, "intervals": [a, b]}


# ------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", default=",".join(CHECKS), help=f"comma-separated subset of {','.join(CHECKS)}")
    p.add_argument("--data", default=f"metadata:{ROOT.parent / 'shared' / 'data' / 'nyala'}",
                   help="dataset of the SpCL epoch and the 2-trial benchmark (default: the Nyala images)")
    p.add_argument("--backbone", default="efficientnet_lite0")
    p.add_argument("--knn-n", type=int, default=20000)
    p.add_argument("--k", type=int, default=30)
    p.add_argument("--cycle-n", type=int, default=40000)
    p.add_argument("--cycle-dim", type=int, default=2048)
    p.add_argument("--bench-timeout", type=float, default=1800)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None, help="also write every figure to this file")
    args = p.parse_args(argv)
    wanted = [c.strip() for c in args.only.split(",") if c.strip()]
    unknown = sorted(set(wanted) - set(CHECKS))
    if unknown:
        print(f"gpu_check: unknown check(s) {', '.join(unknown)}; choose from {', '.join(CHECKS)}", file=sys.stderr)
        return 2
    import torch

    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device on this machine (torch.cuda.is_available() is False); nothing checked")
        return 0
    name = torch.cuda.get_device_name(0)
    print(f"gpu_check on {name} (torch {torch.__version__}, CUDA {torch.version.cuda})", flush=True)
    results: dict[str, Any] = {"gpu": name, "torch": torch.__version__}
    failed = []
    for check in wanted:
        try:
            results[check] = globals()[f"check_{check}"](args)
        except Mismatch as exc:
            failed.append(check)
            results[check] = {"error": str(exc)}
            print(f"{check:<6}: MISMATCH: {exc}", flush=True)
        except Exception as exc:  # noqa: BLE001 - a crash of one check is a failure, the others still run
            failed.append(check)
            results[check] = {"error": f"{type(exc).__name__}: {exc}"}
            print(f"{check:<6}: FAILED: {type(exc).__name__}: {exc}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))
    print(f"gpu_check: {'FAILED ' + ', '.join(failed) if failed else 'all checks passed'} on {name}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
