"""The one data model every adapter produces, and the shared metadata checks.

A dataset is a metadata DataFrame in the wildlife-datasets convention (``image_id``, ``identity``,
``path`` plus optional columns such as ``split``, ``encounter``, ``date``, ``orientation``) and,
when features were precomputed, an (n, d) float32 matrix in the same row order.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from alreid.errors import DatasetError

UNKNOWN_IDENTITY = "unknown"


@dataclass
class ReidDataset:
    """Metadata (one row per image) plus optional precomputed features in row order."""

    name: str
    metadata: pd.DataFrame
    features: np.ndarray | None = None
    root: Path | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.features is not None and len(self.features) != len(self.metadata):
            raise DatasetError(
                f"dataset {self.name!r}: {len(self.features)} feature rows but {len(self.metadata)} "
                "metadata rows; they must describe the same images in the same order")

    @property
    def n(self) -> int:
        return len(self.metadata)

    @property
    def identities(self) -> np.ndarray:
        return self.metadata["identity"].astype(str).to_numpy()

    def column(self, name: str) -> np.ndarray | None:
        """A metadata column as an array, or None when absent."""
        return self.metadata[name].to_numpy() if name in self.metadata.columns else None


def validate_metadata(df: pd.DataFrame, *, source: str, require_path: bool = True) -> pd.DataFrame:
    """Check the wildlife-datasets columns and return a clean copy with a fresh RangeIndex.

    Errors name the file, the problem and the fix, because this is where a user's own data first
    meets the tool.
    """
    required = ["identity"] + (["path"] if require_path else [])
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise DatasetError(
            f"{source} lacks required column(s) {', '.join(missing)}; a metadata.csv needs image_id, "
            f"identity and path columns (wildlife-datasets convention); found: {', '.join(map(str, df.columns))}")
    df = df.copy()
    if "image_id" not in df.columns:
        df.insert(0, "image_id", np.arange(len(df)))
    dup = df["image_id"].duplicated(keep=False)
    if dup.any():
        shown = ", ".join(map(str, df.loc[dup, "image_id"].unique()[:5]))
        raise DatasetError(f"{source} has duplicate image_id values ({shown}); every image needs a unique image_id")
    if df["identity"].isna().any():
        n_na = int(df["identity"].isna().sum())
        raise DatasetError(
            f"{source} has {n_na} row(s) with an empty identity; write 'unknown' for individuals that are not known")
    df["identity"] = df["identity"].astype(str)
    if require_path and df["path"].isna().any():
        raise DatasetError(f"{source} has rows with an empty path")
    if len(df) == 0:
        raise DatasetError(f"{source} has no rows")
    return df.reset_index(drop=True)


class DatasetAdapter(abc.ABC):
    """Turns a dataset argument (the part after ``name:``) into a :class:`ReidDataset`."""

    name: str = ""
    description: str = ""
    #: True when the adapter yields precomputed features (frozen-embedding trials can use it directly)
    has_features: bool = True

    @abc.abstractmethod
    def load(self, arg: str | None, *, seed: int = 0) -> ReidDataset:
        """Load the dataset named by ``arg``."""


def parse_dataset_spec(spec: str) -> tuple[str, str | None]:
    """``"embeddings:../data/nyala"`` -> ("embeddings", "../data/nyala"); ``"synthetic"`` -> ("synthetic", None)."""
    if not isinstance(spec, str) or not spec.strip():
        raise DatasetError("empty dataset name; use e.g. 'synthetic' or 'embeddings:PATH'")
    name, sep, arg = spec.partition(":")
    return name.strip(), (arg if sep else None)


def load_dataset(spec: str, *, seed: int = 0) -> ReidDataset:
    """Load a dataset from a ``name[:arg]`` spec through the dataset registry."""
    from alreid.registry import DATASETS

    name, arg = parse_dataset_spec(spec)
    adapter_cls = DATASETS.get(name)
    return adapter_cls().load(arg, seed=seed)


def parse_kv(arg: str | None, *, source: str) -> dict[str, str]:
    """``"a=1,b=x"`` -> {"a": "1", "b": "x"}; a clear error for malformed items."""
    out: dict[str, str] = {}
    if not arg:
        return out
    for item in arg.split(","):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise DatasetError(f"{source}: expected key=value items separated by commas, got {item!r}")
        out[key.strip()] = value.strip()
    return out
