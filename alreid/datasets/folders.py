"""``folders:ROOT``: one sub-folder per identity (``ROOT/<identity>/<image>``), scanned recursively.

The identity of an image is the name of the folder that holds it, so nested layouts such as
``ROOT/train/<identity>/x.jpg`` work too; the first path component is then kept in a
``source_split`` column (informational: the evaluation split is built from the data, as for any
dataset without a ``split`` column). A folder named ``unknown`` holds images of unknown individuals.
Options as for ``metadata:`` (``?bad=skip&unknown=drop&check=decode``).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from alreid.datasets.base import DatasetSpec
from alreid.datasets.images import IMAGE_SUFFIXES
from alreid.datasets.metadata import ImageAdapter, Scan
from alreid.errors import DatasetError


def scan_identity_folders(root: Path) -> pd.DataFrame:
    """image_id, identity, path (relative, POSIX) for every image file below ``root``, sorted by path."""
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    rows = []
    for p in files:
        rel = p.relative_to(root)
        if len(rel.parts) < 2:
            continue  # an image directly in ROOT has no identity folder
        rows.append({"identity": rel.parts[-2], "path": rel.as_posix(),
                     "source_split": rel.parts[0] if len(rel.parts) > 2 else None})
    df = pd.DataFrame(rows, columns=["identity", "path", "source_split"])
    if df["source_split"].isna().all():
        df = df.drop(columns="source_split")
    df.insert(0, "image_id", range(len(df)))
    return df


class FoldersAdapter(ImageAdapter):
    """``folders:ROOT``: identity = name of each image's folder."""

    name = "folders"
    description = "one folder per identity: ROOT/<identity>/<image> (nested split folders allowed)"
    usage = "folders:ROOT (ROOT/<identity>/<image files>)"

    def scan(self, root: Path, options: dict[str, str], spec: DatasetSpec) -> Scan:
        if not root.is_dir():
            raise DatasetError(f"folders dataset root {root} is not a folder")
        df = scan_identity_folders(root)
        if len(df) == 0:
            raise DatasetError(f"no images found in identity folders below {root} (expected ROOT/<identity>/<image>; "
                               f"image types: {', '.join(IMAGE_SUFFIXES)})")
        return Scan(df, root, root.resolve().name, f"folders:{root}")
