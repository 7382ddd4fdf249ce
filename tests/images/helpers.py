"""Tiny generated image datasets for the image tests (written into pytest's tmp_path)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def identity_pattern(rng: np.random.Generator, size: int = 32) -> np.ndarray:
    """A random 4 x 4 colour grid upsampled to size x size: one individual's 'coat'."""
    grid = rng.integers(0, 256, size=(4, 4, 3)).astype(np.float32)
    return np.kron(grid, np.ones((size // 4, size // 4, 1), np.float32))


def instance(pattern: np.ndarray, rng: np.random.Generator, noise: float = 40.0, shift: int = 4,
             background: bool = False) -> np.ndarray:
    """One photo of an individual: shifted, brightness-jittered, noisy; ``background`` puts the coat
    on a random solid colour (a strong per-photo nuisance, as scenery is for camera-trap images)."""
    if background:
        size = pattern.shape[0]
        img = np.broadcast_to(rng.integers(0, 256, size=3).astype(np.float32), (2 * size, 2 * size, 3)).copy()
        y, x = rng.integers(0, size + 1, size=2)
        img[y:y + size, x:x + size] = pattern
    else:
        img = np.roll(pattern, tuple(rng.integers(-shift, shift + 1, size=2)), axis=(0, 1))
    img = img * rng.uniform(0.7, 1.3) + rng.normal(0, noise, size=img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def write_identity_dataset(root: Path, n_ids: int = 6, per_id: int = 4, *, seed: int = 0, size: int = 32,
                           noise: float = 40.0, layout: str = "metadata", extra: dict | None = None,
                           background: bool = False) -> pd.DataFrame:
    """Write PNGs (and metadata.csv for layout='metadata') below ``root``; returns the metadata."""
    rng = np.random.default_rng(seed)
    rows = []
    for k in range(n_ids):
        pat = identity_pattern(rng, size)
        for j in range(per_id):
            if layout == "folders":
                rel = Path(f"id{k:03d}") / f"img{j:02d}.png"
            else:
                rel = Path("images") / f"id{k:03d}_{j:02d}.png"
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(instance(pat, rng, noise, background=background)).save(root / rel)
            rows.append({"image_id": len(rows), "identity": f"id{k:03d}", "path": rel.as_posix()})
    df = pd.DataFrame(rows)
    for col, values in (extra or {}).items():
        df[col] = values
    if layout == "metadata":
        df.to_csv(root / "metadata.csv", index=False)
    return df
