"""``wildlife:ClassName:ROOT``: any dataset class of the ``wildlife-datasets`` package, read from a local root.

The class builds its own catalogue (``ClassName(root).df``, e.g. ``WildlifeReID10k``, ``NyalaData``,
``Dataset_Metadata``); nothing is downloaded. Options as for ``metadata:``, plus ``subset=NAME``
on the ``dataset`` column (``wildlife:WildlifeReID10k:/data/wr10k?subset=CowDataset``).
"""

from __future__ import annotations

import difflib
import warnings
from pathlib import Path

from alreid.datasets.base import DatasetAdapter, ReidDataset
from alreid.datasets.metadata import finish_image_dataset, image_options, select_subset, split_options
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


class WildlifeAdapter(DatasetAdapter):
    """``wildlife:ClassName:ROOT[?options]`` through wildlife-datasets."""

    name = "wildlife"
    description = "a wildlife-datasets class on a local root: wildlife:ClassName:ROOT (e.g. WildlifeReID10k)"
    has_features = False

    def load(self, arg: str | None, *, seed: int = 0, check: str | None = None) -> ReidDataset:
        source = "wildlife dataset"
        rest, opts = split_options(arg, source=source)
        cls_name, sep, root_s = rest.partition(":")
        if not sep or not cls_name or not root_s:
            raise DatasetError("wildlife needs a class and a root: wildlife:ClassName:ROOT, e.g. "
                               "wildlife:WildlifeReID10k:/data/WildlifeReID10k")
        opts = image_options(opts, source=source, extra=("subset",), check=check)
        root = Path(root_s).expanduser()
        if not root.exists():
            raise DatasetError(f"wildlife dataset root {root} does not exist (nothing is downloaded; "
                               f"fetch it first with {cls_name}.get_data(root))")
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
        subset = opts.get("subset")
        if subset:
            df = select_subset(df, subset, source=f"{cls_name} at {root}")
        return finish_image_dataset(df, root, name=subset or cls_name, source=f"{cls_name} at {root}", opts=opts,
                                    info={"wildlife_class": cls_name, "subset": subset})
