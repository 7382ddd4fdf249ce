"""``wildlife:ClassName:ROOT``: any dataset class of the ``wildlife-datasets`` package, read from a local root.

The class builds its own catalogue (``ClassName(root).df``, e.g. ``WildlifeReID10k``, ``NyalaData``,
``Dataset_Metadata``); nothing is downloaded. Options as for ``metadata:``, plus ``subset=NAME``
on the ``dataset`` column (``wildlife:WildlifeReID10k:/data/wr10k?subset=CowDataset``).
"""

from __future__ import annotations

import difflib
import warnings
from pathlib import Path

from alreid.datasets.base import DatasetSpec
from alreid.datasets.metadata import ImageAdapter, Scan
from alreid.errors import DatasetError


def wildlife_class(name: str) -> type:
    try:
        from wildlife_datasets import datasets as wd
    except ImportError:
        raise DatasetError("the wildlife: adapter needs the 'wildlife-datasets' package "
                           "(pip install 'alreid[wildlife]' or pip install wildlife-datasets); "
                           "alternatively use metadata:ROOT on a folder with metadata.csv") from None
    cls = getattr(wd, name, None)
    if not isinstance(cls, type) or not hasattr(cls, "create_catalogue"):
        names = sorted(n for n in dir(wd)
                       if isinstance(getattr(wd, n), type) and hasattr(getattr(wd, n), "create_catalogue"))
        close = difflib.get_close_matches(name, names, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise DatasetError(f"wildlife-datasets has no dataset class {name!r}{hint}; e.g. {', '.join(names[:12])} ...")
    return cls


class WildlifeAdapter(ImageAdapter):
    """``wildlife:ClassName:ROOT[?options]`` through wildlife-datasets."""

    name = "wildlife"
    description = "a wildlife-datasets class on a local root: wildlife:ClassName:ROOT (e.g. WildlifeReID10k)"
    usage = "wildlife:ClassName:ROOT, e.g. wildlife:WildlifeReID10k:/data/WildlifeReID10k"
    qualified = True
    extra_options = ("subset",)

    def missing_hint(self, spec: DatasetSpec) -> str:
        return f" (nothing is downloaded; fetch it first with {spec.qualifier}.get_data(root))"

    def scan(self, root: Path, options: dict[str, str], spec: DatasetSpec) -> Scan:
        cls_name = str(spec.qualifier)
        cls = wildlife_class(cls_name)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                df = cls(str(root), check_files=False).df
        except DatasetError:
            raise
        except Exception as exc:
            raise DatasetError(f"wildlife-datasets could not read {cls_name} from {root}: "
                               f"{type(exc).__name__}: {exc}") from None
        return Scan(df, root, cls_name, f"{cls_name} at {root}", {"wildlife_class": cls_name})
