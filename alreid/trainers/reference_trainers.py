"""The two reference rows of every table: ``baseline`` (pretrained features, no training) and
``skyline`` (the same network and loss as SpCL, trained on ground-truth identities: 100 % labels).

Spec 1.11: skyline = memory labels are the true identities, no clustering, no self-paced ejection;
``unknown`` individuals count as one identity per image (as the simulated annotator sees them).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from alreid.errors import AlreidError
from alreid.trainers.image_training import ImageTrainer, factorize
from alreid.trainers.spcl import SpCLTrainer
from alreid.trainers.base import CycleInput


class BaselineTrainer(ImageTrainer):
    """Pretrained backbone, no training: every cycle evaluates the same ImageNet embedding."""

    name = "baseline"
    description = "pretrained backbone features, no training (the table's baseline row)"
    #: only the embedding settings; the training ones stay at ImageTrainer's defaults (class attributes)
    param_defaults = {k: ImageTrainer.param_defaults[k] for k in (
        "backbone", "weights", "pooling", "image_size", "device", "amp", "eval_batch_size", "cache_features",
        "cache_bytes", "threads", "progress")}

    def fit_cycle(self, inp: CycleInput) -> dict[str, Any]:
        return {"epochs_run": 0, "train_images": 0, "train_images_per_s": 0.0}


class SkylineTrainer(SpCLTrainer):
    """SpCL's network and hybrid-memory loss with memory labels = ground-truth identities of the pool."""

    name = "skyline"
    description = "SpCL network/loss trained on ground-truth identities (100% labels; the table's skyline row)"
    needs_identities = True
    #: SpCL's training settings without its clustering ones (no clustering here; SpCL's defaults stay class attributes)
    param_defaults = dict(ImageTrainer.param_defaults)

    def epoch_labels(self, inp: CycleInput) -> tuple[np.ndarray, dict]:
        if inp.identities is None:
            raise AlreidError("the skyline trainer needs the pool's ground-truth identities (CycleInput.identities)")
        labels = factorize(np.asarray(inp.identities))
        sizes = np.bincount(labels)
        return labels, {"n_clusters": int((sizes > 1).sum()), "n_unclustered": int((sizes == 1).sum())}
