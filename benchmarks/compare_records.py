"""Compare two records.parquet files row by row, ignoring timing and run-id columns.

Used to check that a refactor changes no result: run ``alreid bench configs/default.yaml`` before and after,
then ``python benchmarks/compare_records.py BEFORE.parquet AFTER.parquet``. Prints the columns only one side has
and every column whose values differ (with the number of differing rows); exits 1 when anything differs.
"""

from __future__ import annotations

import sys

import pandas as pd

IGNORED = {"train_images_per_s", "trial_id", "run_id", "node", "hostname", "node_ip", "timestamp", "commit"}
KEY = ["dataset", "method", "seed", "cycle"]


def comparable(records: pd.DataFrame) -> pd.DataFrame:
    keep = [c for c in records.columns if not c.startswith("seconds") and c not in IGNORED]
    return records[keep].sort_values(KEY).reset_index(drop=True)


def main(before_path: str, after_path: str) -> int:
    a, b = comparable(pd.read_parquet(before_path)), comparable(pd.read_parquet(after_path))
    only_a, only_b = sorted(set(a.columns) - set(b.columns)), sorted(set(b.columns) - set(a.columns))
    print("columns only before:", only_a)
    print("columns only after:", only_b)
    if len(a) != len(b):
        print(f"rows differ: {len(a)} before, {len(b)} after")
        return 1
    diff = []
    for c in (c for c in a.columns if c in b.columns):
        same = (a[c] == b[c]) | (a[c].isna() & b[c].isna())
        if not same.all():
            diff.append((c, int((~same).sum())))
    print(f"rows {len(a)}; differing columns: {diff or 'none'}")
    return 1 if diff or only_a or only_b else 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python benchmarks/compare_records.py BEFORE.parquet AFTER.parquet")
    sys.exit(main(sys.argv[1], sys.argv[2]))
