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

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from alreid.datasets.base import UNKNOWN_IDENTITY, DatasetAdapter, ReidDataset, parse_kv, validate_metadata
from alreid.datasets.images import ImageStore, apply_bad_policy
from alreid.errors import DatasetError

IMAGE_OPTIONS = {"check": ("exists", "decode", "none"), "bad": ("error", "skip"), "unknown": ("keep", "drop")}


def split_options(arg: str | None, *, source: str) -> tuple[str, dict[str, str]]:
    """``"ROOT?a=1&b=2"`` -> ("ROOT", {"a": "1", "b": "2"}); a ``?`` not followed by key=value stays in ROOT."""
    if not arg:
        return "", {}
    head, sep, tail = arg.rpartition("?")
    if not sep or "=" not in tail:
        return arg, {}
    return head, parse_kv(tail.replace("&", ","), source=source)


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


class MetadataAdapter(DatasetAdapter):
    """``metadata:ROOT[?options]``: ROOT/metadata.csv (image_id, identity, path relative to ROOT, ...)."""

    name = "metadata"
    description = "images + metadata.csv in the wildlife-datasets convention (options: ?subset=NAME&bad=skip)"
    has_features = False

    def load(self, arg: str | None, *, seed: int = 0, check: str | None = None) -> ReidDataset:
        source = "metadata dataset"
        root_s, opts = split_options(arg, source=source)
        if not root_s:
            raise DatasetError("metadata needs a location: metadata:ROOT (a folder with metadata.csv and the images)")
        opts = image_options(opts, source=source, extra=("subset", "file"), check=check)
        loc = Path(root_s).expanduser()
        if loc.is_file():
            csv, root = loc, loc.parent
        else:
            root = loc
            csv = loc / opts.get("file", "metadata.csv")
        if not root.exists():
            raise DatasetError(f"metadata dataset root {root} does not exist")
        if not csv.is_file():
            raise DatasetError(f"{root} has no {csv.name}; a metadata dataset needs ROOT/metadata.csv with image_id, "
                               "identity and path (relative to ROOT) columns")
        df = read_metadata_csv(csv)
        subset = opts.get("subset")
        if subset:
            df = select_subset(df, subset, source=str(csv))
        if subset:
            name = subset
        elif "dataset" in df.columns and df["dataset"].nunique() == 1:
            name = str(df["dataset"].iloc[0])
        else:
            name = root.resolve().name
        return finish_image_dataset(df, root, name=name, source=str(csv), opts=opts,
                                    info={"metadata_file": str(csv), "subset": subset})


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
