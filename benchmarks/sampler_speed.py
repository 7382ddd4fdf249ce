"""CPU seconds per cycle that GBAS and LBAS spend choosing pairs on the dogfacenet embeddings (issue 14).

Run: ``.venv/bin/python benchmarks/sampler_speed.py [--cycles 5] [--seeds 0] [--methods gbas,lbas]
[--save-pairs DIR]``. Each (method, seed) is one real trial as ``alreid run`` drives it (head
trainer, budget fraction 2e-4: 4,382 pairs per cycle on the 6,620-image pool, NP3 refinement), so
later cycles face the constraints the earlier answers made. Only ``Sampler.select`` is timed, in
CPU seconds of this process (``time.process_time``: all its threads, so it stays meaningful on a
machine shared with other jobs; BLAS threads that spin while waiting count too). ``--save-pairs``
writes each cycle's pairs as ``<method>_s<seed>_c<cycle>.npy`` to compare two versions of the code
pair for pair. Skips with one line when ../shared/data/dogfacenet is absent.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "dogfacenet"


def blas_threads() -> str:
    """The BLAS thread counts in use (the similarity rows' last bits depend on them)."""
    try:
        import threadpoolctl
    except ImportError:
        return "unknown"
    return ", ".join(f"{i['internal_api']} {i['num_threads']}" for i in threadpoolctl.threadpool_info()
                     if i.get("user_api") == "blas") or "none"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cycles", type=int, default=5)
    ap.add_argument("--seeds", default="0", help="comma-separated trial seeds")
    ap.add_argument("--methods", default="gbas,lbas", help="comma-separated sampler names")
    ap.add_argument("--save-pairs", type=Path, default=None, help="folder for each cycle's pairs (.npy)")
    args = ap.parse_args(argv)
    if not (DATA / "metadata.csv").is_file():
        print(f"skipped: {DATA} is absent (the dogfacenet embeddings are needed)")
        return 0
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import alreid

    data = alreid.load_dataset(f"embeddings:{DATA}")
    if args.save_pairs is not None:
        args.save_pairs.mkdir(parents=True, exist_ok=True)
    print(f"dogfacenet embeddings, head trainer, {args.cycles} cycles; BLAS threads: {blas_threads()}")
    print("method  seed  " + "  ".join(f"cycle {c:>2}" for c in range(1, args.cycles + 1)) + "   total (CPU s)")
    for method in args.methods.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            loop = alreid.ActiveLearningLoop(data, sampler=method, trainer="head", seed=seed, cycles=args.cycles)
            sampler = loop.trial.sampler
            select = sampler.select
            seconds: list[float] = []

            def timed(ctx, budget, rng, _select=select, _method=method, _seed=seed, _seconds=seconds):
                t0 = time.process_time()
                pairs = _select(ctx, budget, rng)
                _seconds.append(time.process_time() - t0)
                if args.save_pairs is not None:
                    np.save(args.save_pairs / f"{_method}_s{_seed}_c{ctx.cycle}.npy", pairs)
                return pairs

            sampler.select = timed  # the loop's own copy of the sampler: time exactly what the trial calls
            loop.run()
            cells = "  ".join(f"{s:8.1f}" for s in seconds)
            print(f"{method:<6}  {seed:>4}  {cells}   {sum(seconds):8.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
