"""Animal re-ID foundation models built with timm: MegaDescriptor (Swin) and MiewID (EfficientNetV2 + GeM).

Both are used zero-shot by the ``baseline`` trainer (Table 1's foundation rows) and can serve as a
protocol's reference embedding. Each keeps its authors' preprocessing (spec table1_rows 6.2, 7.2):
a square resize to the model's input size and ImageNet mean/std. Weights never come from the
network: ``weights=FILE`` (a timm, safetensors or torch state dict, or one saved from this class) or
the local Hugging Face hub cache when it already holds the authors' checkpoint; ``weights=none``
is random initialisation on purpose (tests). A size is chosen with ``name:VARIANT``, e.g.
``megadescriptor:T-224`` or ``miewid:msv3``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from alreid.errors import ConfigError
from alreid.models.backbones import IMAGENET_MEAN, IMAGENET_STD, Backbone, GeM, _file_id, read_state_dict, weights_mode


@dataclass(frozen=True)
class Variant:
    """One released model: its timm architecture, input size, width and the hub repositories holding it."""

    arch: str
    size: tuple[int, int]
    dim: int
    hub_ids: tuple[str, ...]


def hub_cache_dir() -> Path:
    """The Hugging Face hub cache folder, read at call time: HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or str(Path.home() / ".cache" / "huggingface")
    return Path(home).expanduser() / "hub"


WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin")


def find_in_hub_cache(hub_ids: tuple[str, ...]) -> Path | None:
    """A weights file of the first of ``hub_ids`` already in the local hub cache (newest snapshot)."""
    root = hub_cache_dir()
    for hub_id in hub_ids:
        snaps = root / f"models--{hub_id.replace('/', '--')}" / "snapshots"
        if not snaps.is_dir():
            continue
        for snap in sorted(snaps.iterdir(), key=lambda p: p.stat().st_mtime, reverse=True):
            for name in WEIGHT_FILES:
                if (snap / name).is_file():
                    return snap / name
    return None


def read_any_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from a ``.safetensors`` file or anything :func:`read_state_dict` reads."""
    if path.suffix == ".safetensors":
        if not path.is_file():
            raise ConfigError(f"weights file {path} does not exist")
        try:
            from safetensors.torch import load_file

            raw = load_file(str(path), device="cpu")
        except Exception as exc:
            raise ConfigError(f"cannot read weights file {path}: {exc}") from None
        return {k.removeprefix("module."): v for k, v in raw.items()}
    return read_state_dict(path)


class FoundationBackbone(Backbone):
    """A timm body with the authors' pooling, then the shared BatchNorm neck; variants via ``name:VARIANT``."""

    variants: dict[str, Variant] = {}
    default_variant = ""
    #: the ``forward`` input must have exactly this size (the authors' preprocessing; Swin needs it)
    fixed_size = True
    input_mean = IMAGENET_MEAN
    input_std = IMAGENET_STD
    cpu_frozen_stages = 2

    def __init__(self, *, weights: str | None = "imagenet", pooling: str = "avg", variant: str | None = None) -> None:
        variant = variant or self.default_variant
        if variant not in self.variants:
            raise ConfigError(f"backbone {self.name!r} has no variant {variant!r}; choose one of "
                              f"{', '.join(self.variants)} (e.g. --backbone {self.name}:{self.default_variant})")
        self.variant = variant
        spec = self.variants[variant]
        self.feature_dim = spec.dim
        self.default_size = spec.size
        self.check_pooling(pooling)
        mode = weights_mode(weights)
        path = None  # found before the (slow) build, so a missing file fails at once
        if mode != "random":
            path = self.find_weights() if mode == "imagenet" else Path(str(weights)).expanduser()
            if not path.is_file():
                raise ConfigError(f"weights file {path} does not exist")
        super().__init__(pooling=pooling)
        import timm

        self.body = timm.create_model(spec.arch, pretrained=False, num_classes=0)
        width = int(getattr(self.body, "num_features"))
        if width != spec.dim:  # the spec derives the widths; the architecture must agree
            raise ConfigError(f"{self.name}:{variant} ({spec.arch}) has width {width}, expected {spec.dim}")
        self.adapt_body()
        if path is not None:
            self.load_weights(path)
            self.weights_id = (f"hub:{path.parent.parent.parent.name}:{path.parent.name[:12]}" if mode == "imagenet"
                               else _file_id(path))

    # construction hooks --------------------------------------------------------------------------
    def check_pooling(self, pooling: str) -> None:
        """Reject poolings the model cannot use."""

    def adapt_body(self) -> None:
        """Drop the parts of the timm model this class replaces."""

    def timm_filter(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Map a checkpoint of the released model onto :attr:`body` / :attr:`pool` / :attr:`neck` keys."""
        return {f"body.{k}": v for k, v in state.items()}

    # weights -------------------------------------------------------------------------------------
    def find_weights(self) -> Path:
        spec = self.variants[self.variant]
        found = find_in_hub_cache(spec.hub_ids)
        if found is None:
            raise ConfigError(
                f"no weights for {self.name}:{self.variant}: nothing is downloaded here and the Hugging Face hub "
                f"cache ({hub_cache_dir()}) holds no {spec.hub_ids[0]}; pass --weights FILE (a timm/safetensors/"
                f"torch state dict; trainer param weights=FILE) or --weights none for random weights on purpose")
        return found

    def load_weights(self, path: Path) -> None:
        """Load a state dict saved from this class (``body.``/``pool.``/``neck.`` keys) or the released one."""
        raw = read_any_state_dict(path)
        own = self.state_dict()
        state = raw if any(k.startswith("body.") for k in raw) else self.timm_filter(raw)
        state = {k: (v.reshape(own[k].shape) if k in own and v.numel() == own[k].numel() else v)
                 for k, v in state.items()}
        params = {k for k, _ in self.named_parameters() if k.startswith("body.")}
        missing = sorted(params - set(state))
        if missing:
            raise ConfigError(f"weights file {path} is not a {self.name}:{self.variant} checkpoint: {len(missing)} "
                              f"parameters missing (e.g. {', '.join(missing[:3])})")
        unknown = sorted(k for k in state if k not in own)
        if unknown:
            raise ConfigError(f"weights file {path} is not a {self.name}:{self.variant} checkpoint: unexpected "
                              f"keys (e.g. {', '.join(unknown[:3])})")
        bad = [k for k in state if own[k].shape != state[k].shape]
        if bad:
            raise ConfigError(f"weights file {path} has wrong shapes for {', '.join(bad[:3])} "
                              f"(another {self.name} variant?)")
        self.load_state_dict(state, strict=False)

    # forward -------------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fixed_size and tuple(x.shape[-2:]) != tuple(self.default_size):
            h, w = self.default_size
            raise ConfigError(f"{self.name}:{self.variant} takes {h}x{w} images (its authors' preprocessing); "
                              f"got {x.shape[-2]}x{x.shape[-1]}: use image_size={h}x{w} (or auto)")
        return super().forward(x)

    def train(self, mode: bool = True) -> "FoundationBackbone":
        """Frozen stages in eval mode; no batch-norm folding (timm's BatchNormAct2d carries an activation)."""
        nn.Module.train(self, mode)
        for stage in self.stage_list()[:getattr(self, "frozen_stages", 0)]:
            stage.eval()
        object.__setattr__(self, "_frozen_fast", None)
        return self

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "backbone": f"{self.name}:{self.variant}"}


class _NHWCToNCHW(nn.Module):
    """Swin's final LayerNorm, then channels first, so the shared pooling and part heads apply."""

    def __init__(self, norm: nn.Module) -> None:
        super().__init__()
        self.norm = norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x).permute(0, 3, 1, 2)


class MegaDescriptor(FoundationBackbone):
    """MegaDescriptor (Cermak et al., WACV 2024): timm Swin, token-average pooling, square input, ImageNet stats."""

    name = "megadescriptor"
    description = ("MegaDescriptor (Swin; variants T-224 S-224 B-224 L-224 L-384, default L-384): weights from "
                   "--weights FILE or the local HF hub cache (BVRA/MegaDescriptor-*)")
    variants = {
        "T-224": Variant("swin_tiny_patch4_window7_224", (224, 224), 768, ("BVRA/MegaDescriptor-T-224",)),
        "S-224": Variant("swin_small_patch4_window7_224", (224, 224), 768, ("BVRA/MegaDescriptor-S-224",)),
        "B-224": Variant("swin_base_patch4_window7_224", (224, 224), 1024, ("BVRA/MegaDescriptor-B-224",)),
        "L-224": Variant("swin_large_patch4_window7_224", (224, 224), 1536, ("BVRA/MegaDescriptor-L-224",)),
        "L-384": Variant("swin_large_patch4_window12_384", (384, 384), 1536,
                         ("BVRA/MegaDescriptor-L-384", "BVRA/wildlife-mega-L-384")),
    }
    default_variant = "L-384"

    def check_pooling(self, pooling: str) -> None:
        if pooling != "avg":
            raise ConfigError(f"backbone 'megadescriptor' pools by token average as its authors ship it; "
                              f"use pooling=avg (got {pooling!r})")

    def timm_filter(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """timm's own Swin converter (older checkpoints keep downsampling at the end of a stage); head dropped."""
        from timm.models.swin_transformer import checkpoint_filter_fn

        state = checkpoint_filter_fn(state, self.body)
        return {f"body.{k}": v for k, v in state.items() if not k.startswith("head.")}

    def stage_list(self) -> list[nn.Module]:
        """Patch embedding, the four Swin stages, and the final LayerNorm (channels first)."""
        return [self.body.patch_embed, *self.body.layers, _NHWCToNCHW(self.body.norm)]


class MiewID(FoundationBackbone):
    """MiewID (Otarashvili et al. 2024): timm EfficientNetV2-rw-m body, GeM, its own BatchNorm1d (2152-d)."""

    name = "miewid"
    description = ("MiewID (EfficientNetV2-rw-m + GeM + BN, 2152-d, 440x440; variants msv2 msv3): weights from "
                   "--weights FILE or the local HF hub cache (conservationxlabs/miewid-*)")
    variants = {
        "msv2": Variant("efficientnetv2_rw_m", (440, 440), 2152, ("conservationxlabs/miewid-msv2",)),
        "msv3": Variant("efficientnetv2_rw_m", (440, 440), 2152, ("conservationxlabs/miewid-msv3",)),
    }
    default_variant = "msv2"
    native_pooling = "gem"
    fixed_size = False  # a CNN: any size runs; the authors' 440x440 is the default
    cpu_frozen_stages = 4

    def __init__(self, *, weights: str | None = "imagenet", pooling: str = "gem", variant: str | None = None) -> None:
        super().__init__(weights=weights, pooling=pooling, variant=variant)
        self.neck.bias.requires_grad_(True)  # MiewID trains its BN bias (use_fc=False path)

    def adapt_body(self) -> None:
        self.body.global_pool = nn.Identity()
        self.body.classifier = nn.Identity()

    def timm_filter(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``MiewIdNet`` names (``backbone.*``, ``pooling.p``, ``bn.*``, under any prefix) -> ours; heads dropped."""
        anchor = next((k for k in state if k.endswith("backbone.conv_stem.weight")), None)
        prefix = "" if anchor is None else anchor[: -len("backbone.conv_stem.weight")]
        out = {}
        for key, value in state.items():
            if not key.startswith(prefix):
                continue
            k = key[len(prefix):]
            if anchor is None:  # a bare timm EfficientNetV2 checkpoint (e.g. the ImageNet init)
                if not k.startswith("classifier."):
                    out[f"body.{k}"] = value
            elif k.startswith("backbone.") and not k.startswith("backbone.classifier."):
                out["body." + k[len("backbone."):]] = value
            elif k == "pooling.p" and self.pooling == "gem":
                out["pool.p"] = value
            elif k.startswith("bn."):
                out["neck." + k[3:]] = value
        return out

    def stage_list(self) -> list[nn.Module]:
        """Stem (conv + BN-act), the six block stages, the 1x1 head (conv + BN-act)."""
        return [nn.Sequential(self.body.conv_stem, self.body.bn1), *self.body.blocks,
                nn.Sequential(self.body.conv_head, self.body.bn2)]


def split_variant(name: str) -> tuple[str, str | None]:
    """``"megadescriptor:T-224"`` -> ``("megadescriptor", "T-224")``; a plain name has no variant."""
    base, sep, variant = str(name).partition(":")
    return base, (variant if sep else None)


__all__ = ["MegaDescriptor", "MiewID", "FoundationBackbone", "Variant", "find_in_hub_cache", "hub_cache_dir",
           "split_variant", "GeM"]
