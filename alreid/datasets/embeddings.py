"""Precomputed embeddings: ``metadata.csv`` plus a features file in the same row order.

This is the format ``alreid features`` writes and the one ``../shared/data/nyala`` ships, so
frozen-feature trials need no images and no GPU.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from alreid.datasets.base import DatasetAdapter, ReidDataset, validate_metadata
from alreid.errors import DatasetError

FEATURE_SUFFIXES = (".npz", ".npy", ".parquet")


def _find_features(folder: Path) -> Path:
    found = sorted(p for p in folder.iterdir() if p.suffix in FEATURE_SUFFIXES and p.is_file())
    if not found:
        raise DatasetError(
            f"no features file (.npz, .npy or .parquet) in {folder}; run 'alreid features' first or "
            "pass embeddings:FOLDER/FILE.npz")
    if len(found) > 1:
        raise DatasetError(
            f"several features files in {folder} ({', '.join(p.name for p in found)}); "
            f"name one, e.g. embeddings:{folder / found[0].name}")
    return found[0]


def read_features(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """(features float32 (n, d), optional per-row path array for alignment checks)."""
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                key = "features" if "features" in z.files else (z.files[0] if len(z.files) == 1 else None)
                if key is None:
                    raise DatasetError(f"{path} has no 'features' array (arrays: {', '.join(z.files)})")
                feats = z[key]
                paths = z["path"] if "path" in z.files else None
        elif path.suffix == ".npy":
            feats, paths = np.load(path, allow_pickle=False), None
        else:
            df = pd.read_parquet(path)
            paths = df.pop("path").to_numpy() if "path" in df.columns else None
            if "features" in df.columns:  # one list-valued column
                feats = np.stack(df["features"].to_numpy())
            else:
                feats = df.select_dtypes("number").to_numpy()
    except DatasetError:
        raise
    except Exception as exc:
        raise DatasetError(f"cannot read features file {path}: {exc}") from None
    feats = np.asarray(feats)
    if feats.ndim != 2 or feats.shape[1] == 0:
        raise DatasetError(f"features in {path} have shape {feats.shape}; expected (n_images, dim)")
    if not np.issubdtype(feats.dtype, np.number):
        raise DatasetError(f"features in {path} are not numeric ({feats.dtype})")
    feats = feats.astype(np.float32)
    if not np.isfinite(feats).all():
        raise DatasetError(f"features in {path} contain NaN or infinite values")
    return feats, (None if paths is None else np.asarray(paths).astype(str))


def load_embeddings(location: str | Path) -> ReidDataset:
    """Load a folder holding ``metadata.csv`` and one features file, or a features file directly."""
    loc = Path(location).expanduser()
    if not loc.exists():
        raise DatasetError(f"embeddings dataset {loc} does not exist; pass a folder with metadata.csv and features")
    if loc.is_dir():
        folder, feat_path = loc, _find_features(loc)
    else:
        if loc.suffix not in FEATURE_SUFFIXES:
            raise DatasetError(f"{loc} is not a features file (.npz, .npy or .parquet)")
        folder, feat_path = loc.parent, loc
    meta_path = folder / "metadata.csv"
    if not meta_path.exists():
        raise DatasetError(f"{folder} has no metadata.csv; the embeddings format needs it beside the features")
    try:
        raw = pd.read_csv(meta_path)
    except Exception as exc:
        raise DatasetError(f"cannot parse {meta_path}: {exc}") from None
    meta = validate_metadata(raw, source=str(meta_path), require_path=False)
    feats, feat_paths = read_features(feat_path)
    if len(feats) != len(meta):
        raise DatasetError(
            f"{feat_path.name} has {len(feats)} rows but {meta_path} has {len(meta)}; the features must list "
            "the same images in the same order (re-run 'alreid features')")
    if feat_paths is not None and "path" in meta.columns:
        meta_paths = meta["path"].astype(str).to_numpy()
        if not np.array_equal(feat_paths, meta_paths):
            pos = {p: i for i, p in enumerate(feat_paths)}
            if len(pos) != len(feat_paths) or not all(p in pos for p in meta_paths):
                raise DatasetError(
                    f"the 'path' list stored in {feat_path.name} does not match {meta_path}'s paths; "
                    "the features belong to another dataset")
            feats = feats[[pos[p] for p in meta_paths]]  # same images, other order: align to metadata
    name = meta["dataset"].iloc[0] if "dataset" in meta.columns and meta["dataset"].nunique() == 1 else folder.name
    return ReidDataset(name=str(name), metadata=meta, features=feats, root=folder,
                       info={"features_file": str(feat_path)})


class EmbeddingsAdapter(DatasetAdapter):
    """``embeddings:PATH``: metadata.csv plus a .npz/.npy/.parquet features file."""

    name = "embeddings"
    description = "precomputed features: metadata.csv + features (.npz/.npy/.parquet) in row order"
    takes_path = True
    has_images = False
    options = ()

    def load(self, arg: str | None, *, seed: int = 0) -> ReidDataset:
        if not arg:
            raise DatasetError("embeddings needs a location: embeddings:PATH (folder with metadata.csv and features)")
        return load_embeddings(arg)
