"""Plugin registries discovered through Python entry points.

Each kind of plugin (samplers, trainers, datasets, backbones) has one :class:`Registry`. Built-in
plugins are declared as entry points in ``pyproject.toml`` exactly like third-party ones; a static
table of the same built-ins is used as a fallback when the package metadata is unavailable (running
from a source tree that was never installed). Entries load lazily, so listing plugins imports nothing
heavy.
"""

from __future__ import annotations

import difflib
import importlib
import warnings
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

from alreid.errors import UnknownPluginError

T = TypeVar("T")


@dataclass(frozen=True)
class _Entry:
    name: str
    target: str  # "module:attr"
    origin: str  # where it was declared, for error messages


def _load_target(target: str) -> Any:
    module_name, _, attr = target.partition(":")
    module = importlib.import_module(module_name)
    obj = module
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


class Registry(Generic[T]):
    """Name -> plugin class, filled from a built-in table and an entry-point group."""

    def __init__(self, kind: str, group: str, builtins: dict[str, str]) -> None:
        self.kind = kind
        self.group = group
        self._builtins = dict(builtins)
        self._entries: dict[str, _Entry] | None = None
        self._loaded: dict[str, type[T]] = {}
        self._extra: dict[str, type[T]] = {}

    # discovery ---------------------------------------------------------------------------------
    def _discover(self) -> dict[str, _Entry]:
        if self._entries is not None:
            return self._entries
        entries = {n: _Entry(n, t, "alreid built-in") for n, t in self._builtins.items()}
        try:
            eps = entry_points(group=self.group)
        except Exception as exc:  # broken metadata must not make the tool unusable
            warnings.warn(f"could not read entry points of group {self.group!r}: {exc}", stacklevel=2)
            eps = []
        for ep in eps:
            dist = getattr(getattr(ep, "dist", None), "name", None) or "unknown distribution"
            new = _Entry(ep.name, ep.value, f"entry point of {dist}")
            old = entries.get(ep.name)
            if old is not None and old.target != new.target:
                raise UnknownPluginError(
                    f"{self.kind} {ep.name!r} is registered twice: {old.target} ({old.origin}) and "
                    f"{new.target} ({new.origin}); uninstall one of them"
                )
            entries[ep.name] = new if old is None else old
        self._entries = entries
        return entries

    def names(self) -> list[str]:
        """All registered names, sorted; plugins that fail to import are still listed."""
        return sorted(set(self._discover()) | set(self._extra))

    def register(self, name: str, cls: type[T]) -> None:
        """Register a class at run time (tests, notebooks)."""
        self._extra[name] = cls

    def unregister(self, name: str) -> None:
        self._extra.pop(name, None)
        self._loaded.pop(name, None)

    def get(self, name: str | type[T]) -> type[T]:
        """The plugin class for ``name``; a miss lists close matches and every available name."""
        if isinstance(name, type):
            return name
        if name in self._extra:
            return self._extra[name]
        if name in self._loaded:
            return self._loaded[name]
        entries = self._discover()
        if name not in entries:
            known = self.names()
            close = difflib.get_close_matches(str(name), known, n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise UnknownPluginError(
                f"unknown {self.kind} {name!r}{hint}; known {self.kind}s: {', '.join(known)}"
            )
        entry = entries[name]
        try:
            cls = _load_target(entry.target)
        except Exception as exc:
            raise UnknownPluginError(
                f"{self.kind} {name!r} ({entry.target}, {entry.origin}) failed to import: {exc}"
            ) from exc
        self._loaded[name] = cls
        return cls

    def describe(self) -> list[tuple[str, str]]:
        """(name, one-line description) for every plugin that imports; failures are described."""
        rows = []
        for name in self.names():
            try:
                cls = self.get(name)
                doc = getattr(cls, "description", None) or (cls.__doc__ or "").strip().split("\n")[0]
            except UnknownPluginError as exc:
                doc = f"(unavailable: {exc})"
            rows.append((name, doc))
        return rows


SAMPLERS: Registry[Any] = Registry(
    "sampler",
    "alreid.samplers",
    {
        "random": "alreid.samplers.random_pairs:RandomSampler",
        "none": "alreid.samplers.no_sampling:NoSampler",
        "aas": "alreid.samplers.aas:AASSampler",
        "gbas": "alreid.samplers.gbas:GBASSampler",
        "lbas": "alreid.samplers.lbas:LBASSampler",
        "nis": "alreid.samplers.nis:NISSampler",
    },
)

TRAINERS: Registry[Any] = Registry(
    "trainer",
    "alreid.trainers",
    {
        "head": "alreid.trainers.head:HeadTrainer",
        "spcl": "alreid.trainers.spcl:SpCLTrainer",
        "clustercontrast": "alreid.trainers.clustercontrast:ClusterContrastTrainer",
        "baseline": "alreid.trainers.reference_trainers:BaselineTrainer",
        "skyline": "alreid.trainers.reference_trainers:SkylineTrainer",
        "ice": "alreid.trainers.ice:ICETrainer",
        "pplr": "alreid.trainers.pplr:PPLRTrainer",
        "rtmem": "alreid.trainers.rtmem:RTMemTrainer",
        "purification": "alreid.trainers.purification:PurificationTrainer",
    },
)

DATASETS: Registry[Any] = Registry(
    "dataset",
    "alreid.datasets",
    {
        "synthetic": "alreid.datasets.synthetic:SyntheticAdapter",
        "embeddings": "alreid.datasets.embeddings:EmbeddingsAdapter",
        "metadata": "alreid.datasets.metadata:MetadataAdapter",
        "folders": "alreid.datasets.folders:FoldersAdapter",
        "market1501": "alreid.datasets.market1501:Market1501Adapter",
        "personx": "alreid.datasets.market1501:PersonXAdapter",
        "wildlife": "alreid.datasets.wildlife:WildlifeAdapter",
    },
)

BACKBONES: Registry[Any] = Registry(
    "backbone",
    "alreid.backbones",
    {
        "efficientnet_lite0": "alreid.models.backbones:EfficientNetLite0",
        "resnet50": "alreid.models.backbones:ResNet50",
        "tiny": "alreid.models.backbones:TinyCNN",
        "megadescriptor": "alreid.models.timm_backbones:MegaDescriptor",
        "miewid": "alreid.models.timm_backbones:MiewID",
    },
)
