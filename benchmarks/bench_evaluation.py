"""Time rank_metrics on a Market-1501-sized problem (3,368 queries x 15,913 gallery, 751 ids, 6 cameras).

Run: ``.venv/bin/python benchmarks/bench_evaluation.py [--repeats 3] [--chunk 512]``. Prints the
best wall time and the process's peak RSS; the RSS includes the 214 MB float32 similarity matrix
itself, which is printed separately so the evaluator's own overhead can be read off.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time

import numpy as np

from alreid.evaluation.metrics import rank_metrics


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB (ru_maxrss is KiB on Linux, bytes on macOS)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--queries", type=int, default=3368)
    ap.add_argument("--gallery", type=int, default=15913)
    ap.add_argument("--ids", type=int, default=751)
    ap.add_argument("--chunk", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    g_ids = rng.integers(0, args.ids, args.gallery)
    q_ids = rng.integers(0, args.ids, args.queries)
    g_cams, q_cams = rng.integers(0, 6, args.gallery), rng.integers(0, 6, args.queries)
    sim = rng.random((args.queries, args.gallery), dtype=np.float32)
    for a in range(0, args.queries, 256):  # lift true matches so the metrics are not trivially ~0
        sim[a:a + 256] += 0.5 * (q_ids[a:a + 256, None] == g_ids[None, :])
    base = peak_rss_mb()

    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        out = rank_metrics(sim, q_ids, g_ids, q_cams, g_cams, chunk=args.chunk)
        times.append(time.perf_counter() - t0)
    print(f"rank_metrics {args.queries} x {args.gallery} (chunk {args.chunk}): best {min(times):.2f} s, "
          f"median {float(np.median(times)):.2f} s over {args.repeats} runs")
    print(f"peak RSS {peak_rss_mb():.0f} MiB (after building inputs: {base:.0f} MiB; "
          f"similarity matrix {sim.nbytes / 2**20:.0f} MiB)")
    print({k: round(v, 4) if isinstance(v, float) else v for k, v in out.items()})


if __name__ == "__main__":
    main()
