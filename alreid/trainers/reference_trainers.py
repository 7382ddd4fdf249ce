"""The two reference rows of every table: ``baseline`` (pretrained features, no training) and
``skyline`` (the same network and loss as SpCL, trained on ground-truth identities: 100 % labels).

Spec 1.11: skyline = memory labels are the true identities, no clustering, no self-paced ejection;
``unknown`` individuals count as one identity per image (as the simulated annotator sees them).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from alreid.errors import AlreidError
from alreid.trainers.image_training import COMMON_DEFAULTS, ImageTrainer, factorize
from alreid.trainers.spcl import SpCLTrainer
from alreid.trainers.base import CycleInput


class BaselineTrainer(ImageTrainer):
    """Pretrained backbone, no training: every cycle evaluates the same ImageNet embedding."""

    name = "baseline"
    description = "pretrained backbone features, no training (the table's baseline row)"
    def __init__(self, *, backbone: str = "efficientnet_lite0", weights: str | None = "imagenet",
                 pooling: str = "avg", image_size: Any = "256x128", device: str = "auto", amp: bool = True,
                 eval_batch_size: int = 64, cache_features: bool = True, cache_bytes: int = 2 << 30,
                 threads: int | None = None, progress: bool = True) -> None:
        self._store_params(locals())

    def fit_cycle(self, inp: CycleInput) -> dict[str, Any]:
        return {"epochs_run": 0, "train_images": 0, "train_images_per_s": 0.0}


# training settings a baseline never uses, as class attributes because the shared setup reads them
for _key, _value in COMMON_DEFAULTS.items():
    if _key not in BaselineTrainer.param_names():
        setattr(BaselineTrainer, _key, _value)


class SkylineTrainer(SpCLTrainer):
    """SpCL's network and hybrid-memory loss with memory labels = ground-truth identities of the pool."""

    name = "skyline"
    description = "SpCL network/loss trained on ground-truth identities (100% labels; the table's skyline row)"
    eps, eps_gap, min_samples, k1, k2, refine_all, protect_constrained = 0.6, 0.02, 4, 30, 6, True, False

    def __init__(self, *, backbone: str = "efficientnet_lite0", weights: str | None = "imagenet",
                 pooling: str = "avg", image_size: Any = "256x128", epochs: int = 50, al_every: int = 10,
                 iters: int | None = None, batch_size: int = 64, num_instances: int = 4, lr: float = 3.5e-4,
                 weight_decay: float = 5e-4, lr_step: int = 20, lr_gamma: float = 0.1, temperature: float = 0.05,
                 momentum: float = 0.2, frozen_stages: int | str = "auto", device: str = "auto", amp: bool = True,
                 eval_batch_size: int = 64, cache_features: bool = True, cache_bytes: int = 2 << 30,
                 threads: int | None = None, progress: bool = True) -> None:
        self._store_params(locals())

    def epoch_labels(self, inp: CycleInput) -> tuple[np.ndarray, dict]:
        if inp.identities is None:
            raise AlreidError("the skyline trainer needs the pool's ground-truth identities (CycleInput.identities)")
        labels = factorize(np.asarray(inp.identities))
        sizes = np.bincount(labels)
        return labels, {"n_clusters": int((sizes > 1).sum()), "n_unclustered": int((sizes == 1).sum())}
