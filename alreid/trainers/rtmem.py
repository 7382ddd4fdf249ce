"""RTMem (Yin et al., TIP 2023; ``PRIS-CV/RTMem``; spec table1_rows 3) with NP3-refined pseudo-labels.

Every epoch: fresh eval features, Jaccard, DBSCAN (eps 0.5), the refinement hook, outliers dropped.
Each cluster's memory slot holds ONE instance feature: a random member at the start of the epoch,
then, after every step, the feature of a batch sample of that cluster (momentum 0, i.e. replaced;
with K consecutive samples per cluster it ends as the last one). The loss is cross-entropy over the
slots at temperature 0.05; the released code adds the same term a second time with weight 1.2 (its
instance-memory loss is computed and overwritten), so the loss is 2.2 x L_cc (``loss_scale``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from alreid.plugin import check_range
from alreid.trainers.base import CycleInput
from alreid.trainers.clustercontrast import ClusterMemory
from alreid.trainers.image_training import RandomMultipleGallerySampler
from alreid.trainers.usl_common import USLTrainer


class InstanceClusterMemory(ClusterMemory):
    """One slot per cluster = the normalised feature of one member; replaced (momentum 0) by batch samples."""

    def __init__(self, features: torch.Tensor, labels: np.ndarray, *, rng: np.random.Generator,
                 temperature: float = 0.05, loss_scale: float = 2.2) -> None:
        super().__init__(features, labels, temperature=temperature, momentum=0.0)
        lab = np.asarray(labels)
        k = int(lab.max()) + 1 if (lab >= 0).any() else 0
        picks = [int(rng.choice(np.flatnonzero(lab == c))) for c in range(k)]  # RTMem: a random member, not the mean
        self.prototypes = F.normalize(features[picks].float(), dim=1) if k else self.prototypes
        self.loss_scale = float(loss_scale)

    def loss(self, f: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        return self.loss_scale * super().loss(f, pos)


class RTMemTrainer(USLTrainer):
    """RTMem on images: cluster memory of randomly chosen instances, updated by replacement."""

    name = "rtmem"
    description = "RTMem: per-epoch DBSCAN (NP3-refined), one random instance per cluster as memory, replaced each step"
    spec_iters = 200
    param_defaults = {**USLTrainer.param_defaults, "pooling": "gem", "batch_size": 256, "num_instances": 16,
                      "eps": 0.5, "loss_scale": 2.2}

    def validate_params(self) -> None:
        super().validate_params()
        check_range(f"trainer {self.name!r}", "loss_scale", self.loss_scale, 0, lo_open=True)

    def _fit(self, inp: CycleInput, n_epochs: int) -> dict[str, Any]:
        train_idx = np.asarray(inp.train_idx)
        gen = torch.Generator().manual_seed(int(inp.seed))
        rng = np.random.default_rng(int(inp.seed))
        cams = self.pool_cameras(train_idx)
        epochs, last, t_cluster = [], {}, 0.0
        for _ in range(n_epochs):
            feats, labels, last, seconds = self.epoch_labels(train_idx, inp.refine)
            t_cluster += seconds
            pos = np.flatnonzero(labels >= 0)
            if len(pos) < 2:
                self.end_epoch()
                continue
            memory = InstanceClusterMemory(torch.as_tensor(feats, device=self.device_), labels, rng=rng,
                                           temperature=self.temperature, loss_scale=self.loss_scale)
            sampler = RandomMultipleGallerySampler(labels[pos], num_instances=self.num_instances, rng=rng,
                                                   cameras=None if cams is None else cams[pos])
            batches = (pos[b] for b in sampler.batches(int(self.batch_size)))
            epochs.append(self.train_epoch(train_idx, batches, self.iters_for(len(pos)), memory.loss, memory.update,
                                           gen, desc=f"rtmem epoch {self.epochs_done_ + 1}/{self.epochs}"))
            self.end_epoch()
        return self.finish(epochs, last, t_cluster)
