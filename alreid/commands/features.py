"""``alreid features`` (extract embeddings of an image dataset) and ``alreid check`` (find bad images).

``features`` writes the embeddings format that ``--dataset embeddings:OUT`` reads: ``metadata.csv``
plus ``features.npz`` (``features`` float32 (n, d) L2-normalised, ``path``, ``identity``) in the same
row order, and ``features.json`` recording how they were made.
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
from pathlib import Path
from typing import Any


def add_dataset_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", required=True,
                   help="image dataset NAME:ARG, e.g. metadata:ROOT, folders:ROOT, market1501:ROOT, "
                        "wildlife:Class:ROOT")
    p.add_argument("--subset", default=None, metavar="NAME",
                   help="keep rows whose 'dataset' column is NAME (same as appending ?subset=NAME to the spec)")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("features", help="extract embeddings of an image dataset "
                                        "(embeddings format: metadata.csv + features.npz)")
    add_dataset_arguments(p)
    p.add_argument("--backbone", default="efficientnet_lite0",
                   help="backbone name (efficientnet_lite0, resnet50, tiny, megadescriptor[:VARIANT], miewid[:VARIANT])")
    p.add_argument("--weights", default="imagenet",
                   help="imagenet (packaged/cached ImageNet weights), a checkpoint FILE, or none (random init)")
    p.add_argument("--image-size", default=None, metavar="S|HxW",
                   help="input size (default: the backbone's: 224 for efficientnet_lite0, 256x128 for resnet50)")
    p.add_argument("--resize", choices=["squash", "center_crop"], default="squash",
                   help="squash = stretch to the size (re-ID test transform); center_crop = ImageNet-style")
    p.add_argument("--pooling", choices=["avg", "gem", "auto"], default="auto",
                   help="auto = the backbone's own (GeM for miewid, average otherwise)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu or cuda")
    p.add_argument("--out", type=Path, default=None, metavar="DIR",
                   help="output folder (default: features/<dataset>-<backbone>)")
    p.add_argument("--no-cache", action="store_true", help="recompute even when the feature cache has these features")
    p.add_argument("--seed", type=int, default=0, help="seed of random weights (weights=none)")
    p.set_defaults(func=main_features)

    c = sub.add_parser("check", help="decode every image of a dataset and list each missing or unreadable file")
    add_dataset_arguments(c)
    c.add_argument("--workers", type=int, default=None, help="decoding threads (default: cores + 2, at most 8)")
    c.set_defaults(func=main_check)


def load_for_images(spec: str, *, check: str | None = None):
    """Load a dataset through the registry, passing ``check`` to adapters that take it."""
    from alreid.datasets.base import parse_dataset
    from alreid.registry import DATASETS

    parsed = parse_dataset(spec)
    adapter = DATASETS.get(parsed.name)()
    if check is not None and "check" in inspect.signature(adapter.load).parameters:
        return adapter.load(parsed.arg, seed=0, check=check)
    return adapter.load(parsed.arg, seed=0)


def main_features(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from alreid.datasets.images import ImageStore
    from alreid.datasets.metadata import dataset_fingerprint
    from alreid.errors import DatasetError
    from alreid.models.backbones import build_backbone
    from alreid.models.features import cache_key, extract_features, load_cached, pick_device, save_cached
    from alreid.models.transforms import InputSpec, parse_size

    from alreid.datasets.base import with_subset

    spec = with_subset(args.dataset, args.subset)
    ds = load_for_images(spec)
    if ds.root is None or "path" not in ds.metadata.columns:
        raise DatasetError(f"dataset {ds.name!r} has no images (no root/path column); features need an image dataset")
    device = pick_device(args.device)
    model = build_backbone(args.backbone, weights=args.weights, pooling=args.pooling, seed=args.seed).to(device)
    model = model.to(memory_format=torch.channels_last)
    size = parse_size(args.image_size) if args.image_size is not None else tuple(model.default_size)
    ispec = InputSpec(size, model.input_mean, model.input_std, resize=args.resize)
    desc = dict(model.describe(), neck="bn-identity")
    key = cache_key(dataset_fingerprint(ds), desc, ispec) if model.weights_id != "random" else None
    feats = None if (key is None or args.no_cache) else load_cached(key, ds.n)
    cached = feats is not None
    if feats is None:
        store = ImageStore(ds.root, ds.metadata["path"].astype(str).tolist(), cache_bytes=0)
        feats = extract_features(model, store, np.arange(ds.n), ispec, device=device, batch_size=args.batch_size,
                                 progress=True, desc=f"features {ds.name}", source=f"dataset {ds.name!r}")
        if key is not None:
            save_cached(key, feats)
    out = args.out or Path("features") / f"{_safe(ds.name)}-{args.backbone}"
    write_embeddings(out, ds.metadata, feats, {
        "dataset": spec, "dataset_name": ds.name, "image_root": str(Path(ds.root).resolve()), "n": int(ds.n),
        "dim": int(feats.shape[1]), "backbone": args.backbone, "weights": model.weights_id,
        "pooling": model.pooling, "transform": ispec.key(), "device": str(device), "cache_key": key})
    print(f"{ds.n} x {feats.shape[1]} features of {ds.name} ({args.backbone}, {model.weights_id}, "
          f"{size[0]}x{size[1]} {args.resize}){' from the cache' if cached else ''} -> {out}")
    print(f"use them with: alreid run --dataset embeddings:{out}")
    return 0


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name) or "dataset"


def write_embeddings(out: Path, metadata: Any, feats: Any, info: dict[str, Any]) -> None:
    """metadata.csv + features.npz (features, path, identity) + features.json, replacing older files."""
    import numpy as np

    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*"):
        if old.suffix in (".npz", ".npy", ".parquet") and old.is_file():
            old.unlink()  # the embeddings reader wants exactly one features file
    metadata.to_csv(out / "metadata.csv", index=False)
    np.savez(out / "features.npz", features=np.asarray(feats, dtype=np.float32),  # str arrays: no pickle needed
             path=np.array(metadata["path"].astype(str).tolist(), dtype=str),
             identity=np.array(metadata["identity"].astype(str).tolist(), dtype=str))
    (out / "features.json").write_text(json.dumps(info, indent=1))


def main_check(args: argparse.Namespace) -> int:
    from alreid.datasets.images import ImageStore
    from alreid.errors import DatasetError

    from alreid.datasets.base import with_subset

    spec = with_subset(args.dataset, args.subset)
    ds = load_for_images(spec, check="none")
    if ds.root is None or "path" not in ds.metadata.columns:
        raise DatasetError(f"dataset {ds.name!r} has no images (no root/path column) to check")
    store = ImageStore(ds.root, ds.metadata["path"].astype(str).tolist(), cache_bytes=0)
    bad = store.check(workers=args.workers, progress=sys.stderr.isatty())
    for b in bad:
        print(f"{b.path}: {b.reason}")
    n_missing = sum(1 for b in bad if b.reason == "file not found")
    status = "OK" if not bad else "PROBLEMS"
    print(f"{status}: {ds.n} images checked in {ds.root}; {n_missing} missing, {len(bad) - n_missing} unreadable")
    return 1 if bad else 0
