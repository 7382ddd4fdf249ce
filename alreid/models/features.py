"""Embedding extraction for image datasets, with a progress bar and an on-disk cache.

The cache key covers the dataset's files (root, paths, sizes, modification times), the backbone and
its weights, the pooling and the test transform, so a stale entry cannot be served after any of
them changes. Only untrained (pretrained-start) models are cached: a trained model's features
depend on a whole run.
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from alreid.datasets.images import BadImage, ImageReadError, ImageStore, bad_images_error
from alreid.models.transforms import InputSpec


def pick_device(device: str | torch.device | None = "auto") -> torch.device:
    """'auto' -> CUDA when available, else CPU; anything else as given."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        from alreid.errors import ConfigError

        raise ConfigError("device=cuda requested but no CUDA GPU is available; use device=auto or cpu")
    return dev


def autocast(device: torch.device, enabled: bool):
    """float16 autocast on CUDA (mixed precision); a no-op elsewhere."""
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    return nullcontext()


@torch.no_grad()
def extract_features(model: torch.nn.Module, store: ImageStore, rows: Sequence[int], spec: InputSpec, *,
                     device: torch.device, batch_size: int = 64, amp: bool = True, fold_bn: bool = True,
                     progress: bool = True, desc: str = "features", source: str = "dataset") -> np.ndarray:
    """L2-normalised eval-mode embeddings of ``rows`` (float32, (len(rows), d)).

    Every unreadable image is collected and reported together at the end (one error listing them
    all), so the first pass over a dataset doubles as its full check.
    """
    from alreid.models.backbones import fold_batchnorm

    rows = np.asarray(rows, dtype=np.int64)
    channels_last = device.type in ("cpu", "cuda")
    net = fold_batchnorm(model) if fold_bn else model
    net.eval()
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    bad: list[BadImage] = []
    h, w = spec.size

    def load(chunk: np.ndarray) -> np.ndarray:
        arrs = []
        for r in chunk:
            try:
                arrs.append(store.resized(int(r), spec.size, spec.resize))
            except ImageReadError as exc:
                bad.append(BadImage(int(r), exc.path, exc.reason))
                arrs.append(np.zeros((h, w, 3), np.uint8))
        return np.stack(arrs)

    chunks = [rows[i:i + batch_size] for i in range(0, len(rows), batch_size)]
    out: list[torch.Tensor] = []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(rows), desc=desc, unit="img", leave=False, mininterval=1.0)
    with ThreadPoolExecutor(1) as pool:  # decode the next batch while the network runs
        pending = pool.submit(load, chunks[0]) if chunks else None
        for k in range(len(chunks)):
            batch = pending.result()
            pending = pool.submit(load, chunks[k + 1]) if k + 1 < len(chunks) else None
            x = spec.normalise(batch, device, channels_last=channels_last)
            with autocast(device, amp):
                f = net(x)
            out.append(F.normalize(f.float(), dim=1).cpu())
            if bar is not None:
                bar.update(len(batch))
    if bar is not None:
        bar.close()
    if bad:
        raise bad_images_error(sorted(bad, key=lambda b: b.row), source)
    dim = getattr(model, "feature_dim", 0)
    return torch.cat(out).numpy() if out else np.zeros((0, dim), np.float32)


# cache --------------------------------------------------------------------------------------------
def cache_dir() -> Path:
    """``$ALREID_CACHE_DIR`` or ``$XDG_CACHE_HOME/alreid`` (default ``~/.cache/alreid``), plus ``/features``."""
    base = os.environ.get("ALREID_CACHE_DIR")
    if not base:
        base = str(Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "alreid")
    return Path(base).expanduser() / "features"


def cache_key(dataset_fingerprint: str, model_desc: dict, spec: InputSpec, rows_hash: str = "all") -> str:
    blob = json.dumps({"data": dataset_fingerprint, "model": model_desc, "transform": spec.key(),
                       "rows": rows_hash, "format": 1}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def load_cached(key: str, n: int) -> np.ndarray | None:
    path = cache_dir() / f"{key}.npy"
    if not path.is_file():
        return None
    try:
        feats = np.load(path, allow_pickle=False)
    except Exception:
        return None
    return feats if feats.ndim == 2 and len(feats) == n else None


def save_cached(key: str, feats: np.ndarray) -> None:
    """Write atomically; a cache that cannot be written is skipped silently (read-only home, full disk)."""
    folder = cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{key}.{os.getpid()}.tmp.npy"
        np.save(tmp, feats.astype(np.float32))
        os.replace(tmp, folder / f"{key}.npy")
    except OSError:
        pass
