"""The one data model every adapter produces, and the shared metadata checks.

A dataset is a metadata DataFrame in the wildlife-datasets convention (``image_id``, ``identity``,
``path`` plus optional columns such as ``split``, ``encounter``, ``date``, ``orientation``) and,
when features were precomputed, an (n, d) float32 matrix in the same row order.
"""

from __future__ import annotations

import abc
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from alreid.errors import ConfigError, DatasetError
from alreid.registry import DATASETS

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
    """Turns a dataset argument (the part after ``name:``) into a :class:`ReidDataset`.

    An adapter declares how its argument reads, so :func:`parse_dataset` (the one parser every
    caller uses) can split it without loading anything: ``takes_path`` (the argument is a local
    location, made absolute on the driver before Ray workers see it), ``qualified`` (a word and a
    colon come before the path, as in ``wildlife:ClassName:ROOT``) and ``options`` (the accepted
    ``?key=value`` names; ``None`` = the adapter checks them itself).
    """

    name: str = ""
    description: str = ""
    #: True when the adapter yields precomputed features (frozen-embedding trials can use it directly)
    has_features: bool = True
    #: False when the dataset has no images an image trainer could read (precomputed features only)
    has_images: bool = True
    #: True when the argument is a filesystem location (then options follow a ``?``)
    takes_path: bool = False
    #: True when a ``QUALIFIER:`` (e.g. a wildlife-datasets class name) precedes the location
    qualified: bool = False
    #: accepted option names (``None``: not checked at parse time)
    options: tuple[str, ...] | None = None
    #: how the argument is written, for error messages (``wildlife:ClassName:ROOT``)
    usage: str = ""

    @abc.abstractmethod
    def load(self, arg: str | None, *, seed: int = 0) -> ReidDataset:
        """Load the dataset named by ``arg``."""


@dataclass(frozen=True)
class DatasetSpec:
    """A parsed dataset argument: ``name[:qualifier]:path?key=value&...`` or ``name:key=value,...``.

    ``path`` is None for adapters without a location (``synthetic``); ``options`` keep their order.
    ``str(spec)`` writes it back in the canonical form every command accepts.
    """

    name: str
    path: str | None = None
    qualifier: str | None = None
    options: tuple[tuple[str, str], ...] = ()
    takes_path: bool = False
    #: the argument verbatim, for adapters without a location (``synthetic:n_images=500``)
    raw: str | None = None

    @property
    def option_dict(self) -> dict[str, str]:
        return dict(self.options)

    @property
    def arg(self) -> str | None:
        """The part after ``name:`` as the adapter's :meth:`~DatasetAdapter.load` receives it."""
        if not self.takes_path:
            return self.raw
        if self.path is None:
            return None
        head = f"{self.qualifier}:{self.path}" if self.qualifier is not None else self.path
        return head + ("?" + "&".join(f"{k}={v}" for k, v in self.options) if self.options else "")

    def __str__(self) -> str:
        arg = self.arg
        return self.name if arg is None else f"{self.name}:{arg}"

    def with_options(self, **options: str) -> "DatasetSpec":
        merged = {**self.option_dict, **options}
        raw = ",".join(f"{k}={v}" for k, v in merged.items()) if not self.takes_path else None
        return DatasetSpec(self.name, self.path, self.qualifier, tuple(merged.items()), self.takes_path, raw)

    def absolute(self) -> "DatasetSpec":
        """The same spec with an existing relative path made absolute (Ray workers run elsewhere)."""
        if self.path is None:
            return self
        p = Path(self.path).expanduser()
        if p.is_absolute() or not p.exists():
            return self
        return DatasetSpec(self.name, str(p.resolve()), self.qualifier, self.options, self.takes_path)

    def exists_here(self) -> bool:
        """False only for a location that does not exist on this machine."""
        return self.path is None or Path(self.path).expanduser().exists()

    def short_name(self) -> str:
        """A readable, file-safe name: the ``subset`` option, else the last path part, else name_options."""
        opts = self.option_dict
        if self.path is not None:
            short = opts.get("subset") or Path(self.path.rstrip("/")).name or self.name
        elif self.raw:
            short = f"{self.name}_{self.raw}"
        else:
            short = self.name
        return re.sub(r"[^A-Za-z0-9_.-]+", "_", short).strip("_") or self.name


def _split_query(arg: str) -> tuple[str, str]:
    """``"ROOT?a=1&b=2"`` -> ("ROOT", "a=1&b=2"); a ``?`` not followed by key=value belongs to ROOT."""
    head, sep, tail = arg.rpartition("?")
    if not sep or "=" not in tail:
        return arg, ""
    return head, tail


def parse_dataset(spec: "str | DatasetSpec") -> DatasetSpec:
    """Parse a dataset spec once, as its adapter declares it; unknown names and options fail here."""
    if isinstance(spec, DatasetSpec):
        return spec
    if not isinstance(spec, str) or not spec.strip():
        raise DatasetError("empty dataset name; use e.g. 'synthetic' or 'embeddings:PATH'")
    name, sep, arg = spec.partition(":")
    name = name.strip()
    return parse_arg(DATASETS.get(name), name, arg if sep else None)


def parse_arg(adapter: type[DatasetAdapter], name: str, arg: str | None) -> DatasetSpec:
    """The :class:`DatasetSpec` of ``name:arg`` for a known adapter class (what :func:`parse_dataset` does
    after the registry lookup; adapters call it on the argument they are given)."""
    source = f"dataset {name}:{arg}" if arg is not None else f"dataset {name}"
    if not getattr(adapter, "takes_path", False):  # the adapter reads its argument itself (key=value options)
        try:
            opts = tuple(parse_kv(arg, source=source).items())
        except DatasetError:
            opts = ()
        return DatasetSpec(name, None, None, opts, False, arg)
    if not arg:
        return DatasetSpec(name, None, None, (), True)
    location, query = _split_query(arg)
    opts = parse_kv(query.replace("&", ","), source=source)
    allowed = getattr(adapter, "options", None)
    if allowed is not None:
        unknown = sorted(set(opts) - set(allowed))
        if unknown:
            raise DatasetError(f"{source}: unknown option(s) {', '.join(unknown)}; valid: {', '.join(sorted(allowed))}")
    qualifier = None
    if getattr(adapter, "qualified", False):
        qualifier, colon, location = location.partition(":")
        if not colon or not qualifier or not location:
            usage = getattr(adapter, "usage", "") or f"{name}:QUALIFIER:ROOT"
            raise DatasetError(f"{name} needs a qualifier and a location: {usage}; got {name}:{arg}")
    return DatasetSpec(name, location, qualifier, tuple(opts.items()), True)


def parse_dataset_spec(spec: str) -> tuple[str, str | None]:
    """``"embeddings:../data/nyala"`` -> ("embeddings", "../data/nyala"); ``"synthetic"`` -> ("synthetic", None)."""
    if not isinstance(spec, str) or not spec.strip():
        raise DatasetError("empty dataset name; use e.g. 'synthetic' or 'embeddings:PATH'")
    name, sep, arg = spec.partition(":")
    return name.strip(), (arg if sep else None)


def with_subset(spec: str, subset: str | None) -> str:
    """Fold a ``--subset NAME`` flag into the spec as the ``subset`` option (adapters that accept one)."""
    if not subset:
        return spec
    parsed = parse_dataset(spec)
    allowed = getattr(DATASETS.get(parsed.name), "options", None) or ()
    if "subset" not in allowed:
        raise ConfigError(f"--subset works with datasets that take a subset option (metadata:, wildlife:), "
                          f"not {parsed.name!r}")
    return str(parsed.with_options(subset=subset))


def load_dataset(spec: "str | DatasetSpec", *, seed: int = 0) -> ReidDataset:
    """Load a dataset from a ``name[:arg]`` spec through the dataset registry."""
    parsed = parse_dataset(spec)
    return DATASETS.get(parsed.name)().load(parsed.arg, seed=seed)


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
