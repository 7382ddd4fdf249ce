"""``market1501:ROOT`` and ``personx:ROOT``: person re-ID benchmarks with their standard query/gallery.

File names carry the person id and camera (``0002_c1s1_000451_03.jpg`` -> pid 2, camera 1). Person id
-1 marks junk detections and is dropped; 0 marks distractors, kept in the gallery as identity "0".
Columns added to the metadata:

- ``split``: ``train`` for ``bounding_box_train``, ``test`` for ``query`` and ``bounding_box_test``;
- ``role``: ``train`` / ``query`` / ``gallery``: the standard protocol (query = ``query`` folder,
  gallery = ``bounding_box_test``), for a trial that evaluates with it instead of the open-set one;
- ``camera``: the camera number, for same-camera filtering (``--camera-column camera``).

ROOT may be the dataset folder itself or any folder containing it (``Market-1501-v15.09.15``,
``market1501/Market-1501-v15.09.15``, ``PersonX``).
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from alreid.datasets.base import DatasetSpec
from alreid.datasets.metadata import ImageAdapter, Scan
from alreid.errors import DatasetError

#: (folder, split, role)
FOLDERS = (("bounding_box_train", "train", "train"), ("query", "test", "query"),
           ("bounding_box_test", "test", "gallery"))
NAME_RE = re.compile(r"([-\d]+)_c(\d+)")


def parse_person_name(name: str) -> tuple[int, int] | None:
    """(pid, camera) from a Market-style file name, or None when it does not match."""
    m = NAME_RE.search(name)
    return (int(m.group(1)), int(m.group(2))) if m else None


def find_root(root: Path, candidates: tuple[str, ...]) -> Path:
    """The folder below ``root`` (or ``root`` itself) that holds bounding_box_train/query/bounding_box_test."""
    for c in ("",) + candidates:
        d = root / c if c else root
        if all((d / f).is_dir() for f, _, _ in FOLDERS):
            return d
    raise DatasetError(f"{root} does not contain {', '.join(f for f, _, _ in FOLDERS)} "
                       f"(looked in {root} and {', '.join(str(root / c) for c in candidates)})")


def scan_person_dataset(root: Path) -> pd.DataFrame:
    rows = []
    for folder, split, role in FOLDERS:
        for p in sorted((root / folder).glob("*")):
            if p.suffix.lower() not in (".jpg", ".jpeg", ".png"):
                continue
            parsed = parse_person_name(p.name)
            if parsed is None:
                raise DatasetError(f"{p}: file name does not match <pid>_c<camera>...; is this a Market-1501 layout?")
            pid, cam = parsed
            if pid == -1:
                continue  # junk
            rows.append({"identity": str(pid), "path": f"{folder}/{p.name}", "split": split, "role": role,
                         "camera": cam})
    df = pd.DataFrame(rows, columns=["identity", "path", "split", "role", "camera"])
    df.insert(0, "image_id", range(len(df)))
    return df


class Market1501Adapter(ImageAdapter):
    """``market1501:ROOT``: Market-1501 with pid/camera parsed from file names."""

    name = "market1501"
    description = "Market-1501 (bounding_box_train / query / bounding_box_test), standard query/gallery roles"
    candidates: tuple[str, ...] = ("Market-1501-v15.09.15", "market1501/Market-1501-v15.09.15", "market1501",
                                   "Market-1501")

    def scan(self, root: Path, options: dict[str, str], spec: DatasetSpec) -> Scan:
        root = find_root(root, self.candidates)
        df = scan_person_dataset(root)
        if len(df) == 0:
            raise DatasetError(f"no images found in {root}")
        return Scan(df, root, self.name, f"{self.name}:{root}", {"protocol": "standard", "camera_column": "camera"})


class PersonXAdapter(Market1501Adapter):
    """``personx:ROOT``: PersonX in the Market-1501 layout (SpCL's ``personx.py``)."""

    name = "personx"
    description = "PersonX (Market-1501 layout), standard query/gallery roles"
    candidates = ("PersonX", "personx")
