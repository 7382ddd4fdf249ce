"""``metadata:ROOT``: a wildlife-datasets folder (``ROOT/metadata.csv`` + images), the generic image dataset.

Options follow the root after a ``?``, as ``key=value`` items separated by ``&`` or ``,``::

    metadata:/data/WildlifeReID10k?subset=CowDataset
    metadata:../shared/data/lion?bad=skip&unknown=drop

- ``subset=NAME``: keep the rows whose ``dataset`` column equals NAME (several: ``A+B``);
- ``check=exists|decode|none``: how images are verified at load (default ``exists``: one stat per
  file; ``decode`` opens every image, slower but catches corrupt files before anything runs);
- ``bad=error|skip``: missing/corrupt images stop the load with the full list (default) or are
  dropped with a warning;
- ``unknown=keep|drop``: rows whose identity is ``unknown`` stay in the unlabelled training pool
  (default) or are removed;
- ``file=NAME.csv``: another metadata file inside ROOT.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from alreid.datasets.base import (UNKNOWN_IDENTITY, DatasetAdapter, DatasetSpec, ReidDataset, parse_arg, parse_kv,
                                  validate_metadata)
from alreid.datasets.images import ImageStore, apply_bad_policy
from alreid.errors import DatasetError

IMAGE_OPTIONS = {"check": ("exists", "decode", "none"), "bad": ("error", "skip"), "unknown": ("keep", "drop")}


def image_options(opts: dict[str, str], *, source: str, extra: tuple[str, ...] = (),
                  check: str | None = None) -> dict[str, str]:
    """Validated image options with defaults; ``check`` overrides the spec (``alreid check`` passes none)."""
    allowed = set(IMAGE_OPTIONS) | set(extra)
    unknown = sorted(set(opts) - allowed)
    if unknown:
        raise DatasetError(f"{source}: unknown option(s) {', '.join(unknown)}; valid: {', '.join(sorted(allowed))}")
    out = {k: v[0] for k, v in IMAGE_OPTIONS.items()}
    out.update(opts)
    if check is not None:
        out["check"] = check
    for key, values in IMAGE_OPTIONS.items():
        if out[key] not in values:
            raise DatasetError(f"{source}: option {key} must be one of {', '.join(values)}; got {out[key]!r}")
    return out


def finish_image_dataset(df: pd.DataFrame, root: Path, *, name: str, source: str, opts: dict[str, str],
                         info: dict[str, Any] | None = None) -> ReidDataset:
    """Validate, apply the unknown/check/bad options, and wrap as a :class:`ReidDataset` (no features)."""
    df = validate_metadata(df, source=source)
    if opts.get("unknown") == "drop":
        df = df[df["identity"] != UNKNOWN_IDENTITY].reset_index(drop=True)
        if len(df) == 0:
            raise DatasetError(f"{source}: no rows left after dropping identity 'unknown'")
    df["path"] = df["path"].astype(str)
    store = ImageStore(root, df["path"].tolist())
    mode = opts.get("check", "exists")
    if mode != "none":
        bad = store.missing() if mode == "exists" else store.check(progress=len(df) > 2000)
        drop = apply_bad_policy(bad, opts.get("bad", "error"), source)
        if len(drop):
            df = df.drop(index=drop).reset_index(drop=True)
            if len(df) == 0:
                raise DatasetError(f"{source}: no readable images left")
    meta_info = {"images": True, "checked": mode}
    meta_info.update(info or {})
    return ReidDataset(name=name, metadata=df, features=None, root=root, info=meta_info)


def select_subset(df: pd.DataFrame, subset: str, *, source: str) -> pd.DataFrame:
    """Rows whose ``dataset`` column is one of ``subset`` ('A' or 'A+B')."""
    if "dataset" not in df.columns:
        raise DatasetError(f"{source} has no 'dataset' column, so subset={subset!r} cannot select rows")
    wanted = [s.strip() for s in subset.split("+") if s.strip()]
    values = df["dataset"].astype(str)
    keep = values.isin(wanted)
    if not keep.any():
        avail = sorted(values.unique())
        shown = ", ".join(avail[:40]) + (" ..." if len(avail) > 40 else "")
        raise DatasetError(f"{source}: no rows with dataset {' or '.join(map(repr, wanted))}; available: {shown}")
    missing = [w for w in wanted if not (values == w).any()]
    if missing:
        raise DatasetError(f"{source}: subset {', '.join(missing)} not found in the 'dataset' column")
    return df[keep].reset_index(drop=True)


def read_metadata_csv(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path, low_memory=False)
    except Exception as exc:
        raise DatasetError(f"cannot parse {path}: {exc}") from None


@dataclass
class Scan:
    """What an image adapter's :meth:`ImageAdapter.scan` found: the rows and how to name them."""

    metadata: pd.DataFrame
    root: Path
    name: str
    source: str
    info: dict[str, Any] = field(default_factory=dict)


class ImageAdapter(DatasetAdapter):
    """The common ``load`` of the image adapters: parse the spec, check the options and the location,
    :meth:`scan` it (the one hook a new image layout implements), select ``subset``, then validate,
    check the images and wrap them (:func:`finish_image_dataset`)."""

    has_features = False
    takes_path = True
    #: options beyond check/bad/unknown
    extra_options: tuple[str, ...] = ()
    options = tuple(IMAGE_OPTIONS)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.options = tuple(IMAGE_OPTIONS) + tuple(cls.extra_options)

    def load(self, arg: str | None, *, seed: int = 0, check: str | None = None) -> ReidDataset:
        spec = parse_arg(type(self), self.name, arg)
        source = f"{self.name} dataset"
        if spec.path is None:
            raise DatasetError(f"{self.name} needs a location: {self.usage or self.name + ':ROOT'}")
        opts = image_options(spec.option_dict, source=source, extra=self.extra_options, check=check)
        root = Path(spec.path).expanduser()
        if not root.exists():
            raise DatasetError(f"{self.name} dataset root {root} does not exist{self.missing_hint(spec)}")
        found = self.scan(root, opts, spec)
        subset = opts.get("subset")
        df, name = found.metadata, found.name
        if subset:
            df, name = select_subset(df, subset, source=found.source), subset
        return finish_image_dataset(df, found.root, name=name, source=found.source, opts=opts,
                                    info={**found.info, **({"subset": subset} if "subset" in self.options else {})})

    def missing_hint(self, spec: DatasetSpec) -> str:
        """Extra words for a missing root (e.g. how to download it)."""
        return ""

    @abc.abstractmethod
    def scan(self, root: Path, options: dict[str, str], spec: DatasetSpec) -> Scan:
        """Read the catalogue below ``root`` (rows with identity and path relative to the returned root)."""


class MetadataAdapter(ImageAdapter):
    """``metadata:ROOT[?options]``: ROOT/metadata.csv (image_id, identity, path relative to ROOT, ...)."""

    name = "metadata"
    description = "images + metadata.csv in the wildlife-datasets convention (options: ?subset=NAME&bad=skip)"
    usage = "metadata:ROOT (a folder with metadata.csv and the images)"
    extra_options = ("subset", "file")

    def scan(self, root: Path, options: dict[str, str], spec: DatasetSpec) -> Scan:
        if root.is_file():
            csv, root = root, root.parent
        else:
            csv = root / options.get("file", "metadata.csv")
        if not csv.is_file():
            raise DatasetError(f"{root} has no {csv.name}; a metadata dataset needs ROOT/metadata.csv with image_id, "
                               "identity and path (relative to ROOT) columns")
        df = read_metadata_csv(csv)
        if "dataset" in df.columns and df["dataset"].nunique() == 1:
            name = str(df["dataset"].iloc[0])
        else:
            name = root.resolve().name
        return Scan(df, root, name, str(csv), {"metadata_file": str(csv)})


def dataset_fingerprint(ds: ReidDataset) -> str:
    """A short hash of what identifies a dataset's images (root, paths, file sizes and mtimes)."""
    import hashlib

    h = hashlib.sha256()
    h.update(str(Path(ds.root).resolve() if ds.root is not None else "").encode())
    store = ImageStore(ds.root, ds.metadata["path"].astype(str).tolist())
    for i, p in enumerate(store.paths):
        h.update(p.encode())
        try:
            st = store.file(i).stat()
            h.update(np.asarray([st.st_size, int(st.st_mtime)], dtype=np.int64).tobytes())
        except OSError:
            h.update(b"missing")
    return h.hexdigest()[:16]
