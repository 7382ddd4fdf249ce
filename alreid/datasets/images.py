"""Lazy image access for image datasets: decode on demand, keep resized copies in a bounded LRU cache.

Every image is decoded, converted to RGB and resized to the network's input size once; the uint8
result (tens of kB at re-ID sizes) is what the cache holds, so after the first pass an epoch costs
no JPEG decoding. Unreadable files raise :class:`ImageReadError` naming the path; ``check_images``
collects *all* of them so a user can fix a dataset in one go.

Policy for bad files (missing or corrupt): fail up front with the complete list. Adapters check
that every file exists when a dataset is loaded (``check=exists``, cheap); the first embedding pass
of an image trainer decodes every image before any training, so a corrupt file stops the run
before cycle 0, never halfway. ``bad=skip`` in a dataset spec drops such rows with a warning
instead, and ``alreid check`` lists every problem without running anything.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from alreid.errors import DatasetError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm")
#: default byte budget of the resized-image cache (nyala at 256 x 128 needs ~190 MB)
DEFAULT_CACHE_BYTES = 2 << 30
RESIZE_MODES = ("squash", "center_crop")


class ImageReadError(DatasetError):
    """One image could not be read; ``path`` is the file and ``reason`` what went wrong."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"cannot read image {self.path}: {reason}")


@dataclass(frozen=True)
class BadImage:
    row: int
    path: str
    reason: str


def decode_rgb(path: str | Path, draft: tuple[int, int] | None = None) -> "Image.Image":  # noqa: F821
    """Open and fully decode an image as RGB; any failure becomes :class:`ImageReadError`.

    ``draft=(w, h)`` lets JPEG decoding skip resolution the caller will throw away (DCT scaling
    keeps the result at least that large), which makes large photos several times cheaper.
    """
    from PIL import Image, UnidentifiedImageError

    p = Path(path)
    if not p.is_file():
        raise ImageReadError(p, "file not found" if not p.exists() else "not a regular file")
    try:
        with Image.open(p) as img:
            if draft is not None and img.format == "JPEG":
                img.draft("RGB", draft)
            img.load()
            return img.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageReadError(p, f"corrupt or unsupported image ({type(exc).__name__}: {exc})") from None
    except Image.DecompressionBombError as exc:
        raise ImageReadError(p, f"image too large ({exc})") from None


def resize_rgb(img: "Image.Image", size: tuple[int, int], mode: str = "squash") -> np.ndarray:  # noqa: F821
    """(h, w, 3) uint8 at ``size`` = (height, width).

    ``squash`` stretches to the size (SpCL's test transform, keeps the whole animal);
    ``center_crop`` scales the shorter side to size/0.875 and crops the centre (ImageNet evaluation).
    """
    from PIL import Image

    h, w = size
    if mode == "squash":
        out = img.resize((w, h), Image.BICUBIC)
    elif mode == "center_crop":
        scale = max(h, w) / 0.875 / min(img.size)
        rw, rh = max(w, round(img.size[0] * scale)), max(h, round(img.size[1] * scale))
        img = img.resize((rw, rh), Image.BILINEAR)
        left, top = (rw - w) // 2, (rh - h) // 2
        out = img.crop((left, top, left + w, top + h))
    else:
        raise DatasetError(f"unknown resize mode {mode!r}; use one of {', '.join(RESIZE_MODES)}")
    return np.asarray(out, dtype=np.uint8)


class ImageStore:
    """Rows of a dataset as images: ``root / paths[i]``, decoded lazily, resized copies cached (LRU)."""

    def __init__(self, root: str | Path | None, paths: Sequence[str], *,
                 cache_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        self.root = Path(root) if root is not None else None
        self.paths = [str(p) for p in paths]
        self.cache_bytes = int(cache_bytes)
        self._cache: OrderedDict[tuple[int, tuple[int, int], str], np.ndarray] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self.paths)

    def __getstate__(self) -> dict:
        # worker processes get an empty cache and a fresh lock
        state = dict(self.__dict__)
        state["_cache"], state["_bytes"], state["_lock"] = OrderedDict(), 0, None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def file(self, i: int) -> Path:
        p = Path(self.paths[i])
        return p if (p.is_absolute() or self.root is None) else self.root / p

    def load(self, i: int, draft: tuple[int, int] | None = None) -> "Image.Image":  # noqa: F821
        """The RGB image of row ``i`` (not cached); ``draft`` as in :func:`decode_rgb`."""
        return decode_rgb(self.file(i), draft)

    def resized(self, i: int, size: tuple[int, int], mode: str = "squash") -> np.ndarray:
        """(h, w, 3) uint8 of row ``i`` at ``size``; served from the cache when possible."""
        key = (int(i), (int(size[0]), int(size[1])), mode)
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                self.hits += 1
                return hit
        h, w = key[1]
        arr = resize_rgb(self.load(i, draft=(2 * w, 2 * h)), key[1], mode)
        arr.setflags(write=False)
        with self._lock:
            self.misses += 1
            if arr.nbytes <= self.cache_bytes and key not in self._cache:
                self._cache[key] = arr
                self._bytes += arr.nbytes
                while self._bytes > self.cache_bytes:
                    _, old = self._cache.popitem(last=False)
                    self._bytes -= old.nbytes
        return arr

    def batch(self, rows: Sequence[int], size: tuple[int, int], mode: str = "squash",
              workers: int = 1) -> np.ndarray:
        """(b, h, w, 3) uint8 for ``rows``; decoding is spread over ``workers`` threads (PIL frees the GIL)."""
        if workers > 1 and len(rows) > 1:
            with ThreadPoolExecutor(workers) as pool:
                arrs = list(pool.map(lambda r: self.resized(r, size, mode), rows))
        else:
            arrs = [self.resized(r, size, mode) for r in rows]
        return np.stack(arrs) if arrs else np.zeros((0, size[0], size[1], 3), np.uint8)

    def missing(self) -> list[BadImage]:
        """Rows whose file does not exist (a stat per file, no decoding)."""
        return [BadImage(i, str(self.file(i)), "file not found") for i in range(len(self))
                if not self.file(i).is_file()]

    def check(self, rows: Iterable[int] | None = None, *, workers: int | None = None,
              progress: bool = False) -> list[BadImage]:
        """Decode every image (or ``rows``) and return all that fail, in row order."""
        rows = list(range(len(self))) if rows is None else list(rows)
        workers = workers or min(8, (os.cpu_count() or 1) + 2)

        def probe(i: int) -> BadImage | None:
            try:
                decode_rgb(self.file(i))
            except ImageReadError as exc:
                return BadImage(i, exc.path, exc.reason)
            return None

        with ThreadPoolExecutor(workers) as pool:
            it = pool.map(probe, rows)
            if progress:
                from tqdm import tqdm

                it = tqdm(it, total=len(rows), desc="checking images", unit="img")
            bad = [b for b in it if b is not None]
        return bad


def describe_bad(bad: Sequence[BadImage], *, limit: int = 20) -> str:
    """A readable list of bad images (the first ``limit``, then a count)."""
    lines = [f"  {b.path}: {b.reason}" for b in bad[:limit]]
    if len(bad) > limit:
        lines.append(f"  ... and {len(bad) - limit} more")
    return "\n".join(lines)


def bad_images_error(bad: Sequence[BadImage], source: str) -> DatasetError:
    return DatasetError(
        f"{source}: {len(bad)} image(s) are missing or unreadable:\n{describe_bad(bad)}\n"
        "Fix or remove them ('alreid check --dataset ...' lists every one), or add bad=skip to the dataset "
        "spec (e.g. metadata:ROOT?bad=skip) to drop those rows with a warning")


def apply_bad_policy(bad: Sequence[BadImage], policy: str, source: str) -> np.ndarray:
    """Rows to drop for ``policy='skip'`` (with a warning); raise for ``'error'``."""
    if not bad:
        return np.zeros(0, dtype=np.int64)
    if policy == "skip":
        warnings.warn(f"{source}: skipping {len(bad)} missing or unreadable image(s):\n{describe_bad(bad)}",
                      stacklevel=3)
        return np.asarray([b.row for b in bad], dtype=np.int64)
    raise bad_images_error(bad, source)
