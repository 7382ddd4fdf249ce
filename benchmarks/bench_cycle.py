"""Time and memory of one full sampling cycle on synthetic clustered embeddings.

Stages, as the trial loop runs them (through its context builder, ``build_context``): k-NN (the
neighbour cache, k=32), sparse Jaccard (k1=30, k2=6), DBSCAN (eps 0.6, min_samples 4), FINCH level 0
(initial_rank from the same k-NN), the context with a few hundred consistent answers (DBSCAN again
plus NP3 of its labels), NP3 of the FINCH view, and the AAS draw when the "aas" sampler imports (it
recomputes its own FINCH and NP3 of view B internally). Every size runs in a fresh subprocess so its peak RSS
is its own. For the wide (d=2048) cases the cycle time is also divided by the time of ONE exact
faiss k-NN search with k=30 of the same features.

    .venv/bin/python benchmarks/bench_cycle.py                      # 10k, 100k at d=128; 20k, 40k at d=2048
    .venv/bin/python benchmarks/bench_cycle.py --sizes 1000000 --wide-sizes ""
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import threading
import time
from typing import Any, Callable

import numpy as np

GIB = 1024**3


# memory ------------------------------------------------------------------------------------------
def rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def max_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


class PeakRSS:
    """Samples the resident set size in a background thread while a stage runs."""

    def __init__(self, every: float = 0.01) -> None:
        self.every, self.peak = every, 0
        self._stop = threading.Event()

    def __enter__(self) -> "PeakRSS":
        self.peak = rss_bytes()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.peak = max(self.peak, rss_bytes())

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())


# data --------------------------------------------------------------------------------------------
def clustered_embeddings(n: int, dim: int, *, per_id: float = 20.0, noise: float = 0.65, seed: int = 0,
                         chunk: int = 100_000) -> tuple[np.ndarray, np.ndarray]:
    """Unit float32 rows around n/per_id random identity centres (within-identity cosine ~0.7)."""
    rng = np.random.default_rng(seed)
    n_ids = max(1, int(round(n / per_id)))
    centres = rng.standard_normal((n_ids, dim), dtype=np.float32)
    ids = rng.integers(0, n_ids, n)
    x = np.empty((n, dim), dtype=np.float32)
    for a in range(0, n, chunk):
        b = min(n, a + chunk)
        block = centres[ids[a:b]] + noise * rng.standard_normal((b - a, dim), dtype=np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        x[a:b] = block
    return x, ids


def consistent_constraints(ids: np.ndarray, labels: np.ndarray, m: int, rng: np.random.Generator) -> np.ndarray:
    """m distinct pairs (u, v, same): a third within one identity, a third inside one base cluster
    (violations when identities differ), a third at random; answers from the hidden identities."""
    n = len(ids)
    order = np.argsort(ids, kind="stable")
    starts = np.searchsorted(ids[order], ids)
    counts = np.bincount(ids)[ids]
    u = rng.integers(0, n, 3 * m)
    same_id = order[starts[u[:m]] + rng.integers(0, 1 << 30, m) % counts[u[:m]]]
    lorder = np.argsort(labels, kind="stable")
    lstarts = np.searchsorted(labels[lorder], labels)
    lcounts = np.bincount(labels)[labels]
    uu = u[m:2 * m]
    same_cluster = lorder[lstarts[uu] + rng.integers(0, 1 << 30, m) % lcounts[uu]]
    v = np.concatenate([same_id, same_cluster, rng.integers(0, n, m)])
    pairs = np.sort(np.stack([u, v], axis=1), axis=1)
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    pairs = np.unique(pairs, axis=0)
    pairs = pairs[rng.permutation(len(pairs))[:m]]
    return np.column_stack([pairs, ids[pairs[:, 0]] == ids[pairs[:, 1]]]).astype(np.int64)


# one size ----------------------------------------------------------------------------------------
def run_one(n: int, dim: int, *, n_constraints: int, index: str, seed: int, reference_knn: bool,
            aas: bool) -> dict[str, Any]:
    from alreid.clustering.knn import knn_search
    from alreid.clustering.np3 import np3
    from alreid.clustering.settings import ClusteringSettings
    from alreid.clustering.views import finch_labels
    from alreid.constraints import ConstraintStore
    from alreid.samplers.base import NeighbourCache, build_context

    import warnings

    with warnings.catch_warnings():  # one-off imports are not part of a cycle's cost
        warnings.simplefilter("ignore")
        import finch  # noqa: F401
        import networkx  # noqa: F401
        import scipy.optimize  # noqa: F401
        import sklearn.cluster  # noqa: F401
    rng = np.random.default_rng(seed)
    t = time.perf_counter()
    x, ids = clustered_embeddings(n, dim, seed=seed)
    out: dict[str, Any] = {"n": n, "d": dim, "index": index, "data_s": time.perf_counter() - t, "stages": []}

    def stage(name: str, fn: Callable[[], Any]) -> Any:
        with PeakRSS() as mem:
            t0 = time.perf_counter()
            value = fn()
            sec = time.perf_counter() - t0
        out["stages"].append({"stage": name, "seconds": sec, "peak_rss_gib": mem.peak / GIB,
                              "max_rss_gib": max_rss_bytes() / GIB})
        print(f"  [{n} x {dim}] {name:<22s} {sec:9.2f} s   stage peak RSS {mem.peak / GIB:6.2f} GiB", flush=True)
        return value

    if reference_knn:
        with PeakRSS() as mem:
            t0 = time.perf_counter()
            knn_search(x, 30, index="exact")
            out["reference_knn30_s"] = time.perf_counter() - t0
        out["reference_knn30_peak_gib"] = mem.peak / GIB
        print(f"  [{n} x {dim}] reference exact k-NN (k=30) {out['reference_knn30_s']:.2f} s", flush=True)

    settings = ClusteringSettings(k1=30, k2=6, eps=0.6, min_samples=4, knn_index=index)
    cache = NeighbourCache(x, index=index)
    _, idx = stage("knn (k=32)", lambda: cache.knn(32))
    dist = stage("jaccard (k1=30,k2=6)", lambda: cache.jaccard(30, 6))
    # the trial's context builder; with no answers yet it is the base clustering alone
    ctx0 = stage("dbscan (eps=0.6)", lambda: build_context(x, ConstraintStore(n), settings, neighbours=cache))
    labels, outliers = ctx0.base_labels, ctx0.outliers
    finch = stage("finch level 0", lambda: finch_labels(x, level=0, initial_rank=idx))
    cons = consistent_constraints(ids, labels, n_constraints, rng)
    ml, cl = cons[cons[:, 2] == 1, :2], cons[cons[:, 2] == 0, :2]
    store = ConstraintStore(n)
    store.add_many(cons[:, :2], cons[:, 2].astype(bool))
    ctx = stage("context with answers", lambda: build_context(x, store, settings, neighbours=cache, refine="np3"))
    stage("np3 (finch view)", lambda: np3(finch, ml, cl, x))
    raw_clusters = int(len(np.unique(labels[~outliers])))
    out.update(jaccard_nnz_per_row=dist.nnz / n, dbscan_clusters=raw_clusters,
               outliers=int(outliers.sum()), finch_clusters=int(len(np.unique(finch))), n_ml=len(ml),
               n_cl=len(cl), np3_clusters=int(len(np.unique(ctx.labels))), base_clusters=int(labels.max()) + 1)
    if aas:
        from alreid.errors import UnknownPluginError
        from alreid.registry import SAMPLERS

        try:
            sampler_cls = SAMPLERS.get("aas")
        except UnknownPluginError as exc:
            out["aas"] = f"skipped: {exc}"
            print(f"  [{n} x {dim}] AAS draw skipped ({exc})", flush=True)
        else:
            budget = int(np.ceil(2e-4 * n * (n - 1) / 2))
            pairs = stage("aas select", lambda: sampler_cls().select(ctx, budget, np.random.default_rng(seed)))
            out["aas"] = {"budget": budget, "pairs": int(len(pairs))}
    else:
        out["aas"] = "skipped: --no-aas"
    total = sum(s["seconds"] for s in out["stages"])
    out["cycle_s"] = total
    out["cycle_without_aas_s"] = sum(s["seconds"] for s in out["stages"] if s["stage"] != "aas select")
    out["peak_rss_gib"] = max_rss_bytes() / GIB
    return out


# driver ------------------------------------------------------------------------------------------
def _sizes(text: str) -> list[int]:
    return [int(float(s)) for s in text.split(",") if s.strip()]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="10000,100000", help="n at --dim (comma separated; '' for none)")
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--wide-sizes", default="20000,40000", help="n at --wide-dim, with the k-NN ratio")
    p.add_argument("--wide-dim", type=int, default=2048)
    p.add_argument("--constraints", type=int, default=300)
    p.add_argument("--hnsw-from", type=int, default=500_000, help="use the HNSW index from this n on")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-aas", action="store_true")
    p.add_argument("--json", default=None, help="also write all results to this file")
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)  # "n,dim,ratio" in a child process
    args = p.parse_args(argv)

    if args.one:
        n, dim, ratio = (int(v) for v in args.one.split(","))
        res = run_one(n, dim, n_constraints=args.constraints, index="hnsw" if n >= args.hnsw_from else "exact",
                      seed=args.seed, reference_knn=bool(ratio), aas=not args.no_aas)
        print("RESULT " + json.dumps(res), flush=True)
        return 0

    jobs = [(n, args.dim, 0) for n in _sizes(args.sizes)] + [(n, args.wide_dim, 1) for n in _sizes(args.wide_sizes)]
    results = []
    for n, dim, ratio in jobs:
        print(f"== n={n} d={dim}", flush=True)
        cmd = [sys.executable, __file__, "--one", f"{n},{dim},{ratio}", "--constraints", str(args.constraints),
               "--hnsw-from", str(args.hnsw_from), "--seed", str(args.seed)] + (["--no-aas"] if args.no_aas else [])
        found = []
        with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) as proc:  # stream stage lines as they come
            for line in proc.stdout:
                if line.startswith("RESULT "):
                    found.append(json.loads(line[7:]))
                else:
                    print(line, end="", flush=True)
        if proc.returncode != 0 or not found:
            print(f"   n={n} d={dim} failed (exit {proc.returncode})")
            continue
        results.append(found[0])
    print()
    print(f"{'n':>9} {'d':>5} {'index':>6} {'cycle s':>9} {'w/o AAS':>9} {'peak GiB':>9} {'knn30 s':>8} {'ratio':>6}"
          f" {'J nnz/row':>9}  details")
    for r in results:
        ref = r.get("reference_knn30_s")
        ratio = f"{r['cycle_s'] / ref:6.2f}" if ref else "     -"
        ref_s = f"{ref:8.1f}" if ref else "       -"
        print(f"{r['n']:>9} {r['d']:>5} {r['index']:>6} {r['cycle_s']:9.1f} {r['cycle_without_aas_s']:9.1f} "
              f"{r['peak_rss_gib']:9.2f} {ref_s} {ratio} {r['jaccard_nnz_per_row']:9.1f}  "
              f"dbscan {r['dbscan_clusters']} clusters/{r['outliers']} outliers, finch {r['finch_clusters']}, "
              f"ML {r['n_ml']} CL {r['n_cl']}, aas {r['aas']}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
