"""A small embeddings dataset with real image files, for the annotate tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def make_photos(folder: Path, *, identities: int = 4, per_identity: int = 6, unknown: bool = True,
                dim: int = 16, seed: int = 0) -> str:
    """Write metadata.csv (image_id, identity, path, date, encounter), features.npz and PNG files.

    Images of one individual share a colour, so a person (or a test) can tell them apart; features are
    Gaussian clusters around one centre per individual. Returns the dataset spec ``embeddings:FOLDER``.
    """
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "images").mkdir(exist_ok=True)
    centres = rng.normal(size=(identities, dim)) * 3
    rows, feats = [], []
    for k in range(identities):
        colour = tuple(int(c) for c in rng.integers(40, 230, size=3))
        for j in range(per_identity):
            image_id = f"img{k:02d}_{j:02d}"
            path = f"images/ind{k}/{image_id}.png"
            (folder / path).parent.mkdir(parents=True, exist_ok=True)
            arr = np.full((48, 64, 3), colour, dtype=np.uint8)
            arr[8 + 4 * j: 14 + 4 * j, 10:54] = 255 - np.array(colour, dtype=np.uint8)
            Image.fromarray(arr).save(folder / path)
            rows.append({"image_id": image_id, "identity": "unknown" if unknown else f"ind{k}", "path": path,
                         "date": f"2024-05-{1 + j:02d}", "encounter": f"e{j % 3}"})
            feats.append(centres[k] + rng.normal(size=dim))
    pd.DataFrame(rows).to_csv(folder / "metadata.csv", index=False)
    np.savez(folder / "features.npz", features=np.asarray(feats, dtype=np.float32))
    return f"embeddings:{folder}"


def true_identity(image_id: str) -> str:
    """The individual an image of :func:`make_photos` shows (from its id, as the colours do for a person)."""
    return f"ind{int(image_id[3:5])}"
