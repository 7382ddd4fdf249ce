"""Benchmark records on disk: one Parquet row per trial x cycle, rewritten atomically as trials finish.

A reader (``alreid table``, a notebook, a crashed driver's successor) must never see a half-written
file, so every write goes to a temporary file in the same folder and is moved in with ``os.replace``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

RECORDS_FILE = "records.parquet"
PAIRS_DIR = "pairs"
#: Columns the harness adds to every trial record.
ID_COLUMNS = ("trial_key", "trial_id", "label", "node")


def arrow_safe(df: pd.DataFrame) -> pd.DataFrame:
    """Object columns mixing types (a pool stat that is a bool for one sampler and a str for another)
    become strings, so Parquet can store them; numbers and missing values are kept."""
    import pyarrow as pa

    out = df.copy()
    for col in out.columns:
        if out[col].dtype != object:
            continue
        try:
            pa.array(out[col], from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            out[col] = out[col].map(lambda v: v if v is None or (isinstance(v, float) and v != v) else str(v))
    return out


def write_parquet_atomic(df: pd.DataFrame, path: str | Path) -> Path:
    """Write ``df`` to ``path`` so that readers see the old file or the new one, never a partial one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        arrow_safe(df).to_parquet(tmp, index=False)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


class RecordStore:
    """The records of the finished trials of one experiment, merged and deduplicated by (trial, cycle)."""

    def __init__(self, results_dir: str | Path, order: Iterable[str] = ()) -> None:
        self.dir = Path(results_dir)
        self.path = self.dir / RECORDS_FILE
        self.pairs_dir = self.dir / PAIRS_DIR
        self._order = {k: i for i, k in enumerate(order)}
        self.frame = pd.read_parquet(self.path) if self.path.is_file() else pd.DataFrame()

    def finished_keys(self) -> set[str]:
        if self.frame.empty or "trial_key" not in self.frame.columns:
            return set()
        return set(self.frame["trial_key"].astype(str))

    def add_trial(self, key: str, records: pd.DataFrame | list[dict[str, Any]], **ids: Any) -> pd.DataFrame:
        """Merge one finished trial's records (replacing any earlier copy of it) and rewrite the file."""
        new = pd.DataFrame(records).copy()
        if new.empty:
            return self.frame
        for col, value in {"trial_key": key, **ids}.items():
            new[col] = value
        old = self.frame
        if not old.empty:
            old = old[old["trial_key"].astype(str) != key]
        merged = pd.concat([old, new], ignore_index=True) if not old.empty else new
        merged = merged.drop_duplicates(subset=["trial_key", "cycle"], keep="last")
        rank = merged["trial_key"].map(lambda k: self._order.get(k, len(self._order)))
        merged = merged.assign(_rank=rank).sort_values(["_rank", "cycle"], kind="stable").drop(columns="_rank")
        front = [c for c in ID_COLUMNS if c in merged.columns]
        merged = merged[front + [c for c in merged.columns if c not in front]].reset_index(drop=True)
        write_parquet_atomic(merged, self.path)
        self.frame = merged
        return merged

    def pairs_path(self, key: str) -> Path:
        return self.pairs_dir / f"{key}.parquet"

    def add_pairs(self, key: str, pairs: pd.DataFrame) -> Path:
        return write_parquet_atomic(pairs, self.pairs_path(key))
