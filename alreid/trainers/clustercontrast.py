"""ClusterContrast (Dai et al.; spec 4.7) with NP3-refined pseudo-labels.

Every epoch: fresh eval-mode features of the training pool, k-reciprocal Jaccard, DBSCAN(eps),
NP3 with the current constraints (noise first made singletons, so a must-link can pull an outlier
into a cluster), then outliers, i.e. clusters of one, are dropped from training. The memory holds
one prototype per cluster (the normalised cluster mean, rebuilt every epoch); the loss is cross-
entropy over prototypes at temperature tau, and each prototype moves towards its batch samples by
momentum (``use_hard``: only towards the batch sample least similar to it).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from alreid.trainers.image_training import ImageTrainer, check_clustering_params, RandomMultipleGallerySampler
from alreid.clustering.jaccard import jaccard_distance
from alreid.clustering.views import dbscan_labels, singletonize
from alreid.trainers.base import CycleInput


class ClusterMemory:
    """One L2-normalised prototype per cluster; ``labels`` maps pool positions to clusters (-1 = not trained)."""

    def __init__(self, features: torch.Tensor, labels: np.ndarray, *, temperature: float = 0.05,
                 momentum: float = 0.1, use_hard: bool = False) -> None:
        dev = features.device
        lab = torch.as_tensor(np.asarray(labels), dtype=torch.long, device=dev)
        keep = lab >= 0
        k = int(lab[keep].max()) + 1 if keep.any() else 0
        sums = torch.zeros(k, features.shape[1], device=dev, dtype=torch.float32)
        sums.index_add_(0, lab[keep], features[keep].float())
        self.prototypes = F.normalize(sums, dim=1)
        self.labels = lab
        self.temperature = temperature
        self.momentum = momentum
        self.use_hard = use_hard

    def loss(self, f: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        logits = f @ self.prototypes.T / self.temperature
        return F.cross_entropy(logits, self.labels[pos])

    @torch.no_grad()
    def update(self, f: torch.Tensor, pos: torch.Tensor) -> None:
        y = self.labels[pos]
        if self.use_hard:
            sims = (f * self.prototypes[y]).sum(1)
            for c in torch.unique(y).tolist():
                members = (y == c).nonzero().flatten()
                hardest = members[torch.argmin(sims[members])]
                self._move(c, f[hardest])
            return
        for i in range(len(y)):  # sequential, as the reference: a prototype may move several times per batch
            self._move(int(y[i]), f[i])

    def _move(self, c: int, x: torch.Tensor) -> None:
        self.prototypes[c] = F.normalize(self.momentum * self.prototypes[c] + (1.0 - self.momentum) * x, dim=0)


def cc_pseudo_labels(features: np.ndarray, refine, *, eps: float, min_samples: int, k1: int, k2: int
                     ) -> tuple[np.ndarray, dict]:
    """Cluster ids per pool position after NP3; -1 marks points left alone (trained on by no one)."""
    t0 = time.perf_counter()
    labels, _ = singletonize(dbscan_labels(jaccard_distance(features, k1, k2), eps=eps, min_samples=min_samples))
    if refine is not None:
        labels = np.asarray(refine(labels, features), dtype=np.int64)
    _, inv = np.unique(labels, return_inverse=True)
    sizes = np.bincount(inv)
    clustered = sizes[inv] > 1
    out = np.full(len(labels), -1, dtype=np.int64)
    _, out[clustered] = np.unique(inv[clustered], return_inverse=True)
    return out, {"n_clusters": int((sizes > 1).sum()), "n_unclustered": int((~clustered).sum()),
                 "seconds_clustering": time.perf_counter() - t0}


class ClusterContrastTrainer(ImageTrainer):
    """ClusterContrast on images; outliers dropped, cluster-prototype memory re-created each epoch."""

    name = "clustercontrast"
    description = "ClusterContrast: per-epoch DBSCAN (NP3-refined), cluster-prototype memory, outliers dropped"
    #: the repository's default (argparse ``--iters 400`` of cluster_contrast_train_usl.py; its README runs
    #: Market-1501/Duke with ``--iters 200``, MSMT17/VeRi with 400)
    spec_iters = 400

    param_defaults = {**ImageTrainer.param_defaults, "pooling": "gem", "batch_size": 256, "num_instances": 16,
                      "momentum": 0.1, "use_hard": False, "eps": 0.6, "min_samples": 4, "k1": 30, "k2": 6}

    def validate_params(self) -> None:
        super().validate_params()
        check_clustering_params(self)

    def _fit(self, inp: CycleInput, n_epochs: int) -> dict[str, Any]:
        train_idx = np.asarray(inp.train_idx)
        gen = torch.Generator().manual_seed(int(inp.seed))
        rng = np.random.default_rng(int(inp.seed))
        cams = self.dataset_.column("camera")
        epochs, last = [], {}
        t_cluster = 0.0
        for _ in range(n_epochs):
            feats = self.pool_features(train_idx)  # fresh features each epoch (cached when the model is unchanged)
            labels, last = cc_pseudo_labels(feats, inp.refine, eps=self.eps, min_samples=self.min_samples,
                                            k1=self.k1, k2=self.k2)
            t_cluster += last.pop("seconds_clustering")
            pos = np.flatnonzero(labels >= 0)
            if len(pos) < 2:
                self.end_epoch()
                continue
            memory = ClusterMemory(torch.as_tensor(feats, device=self.device_), labels,
                                   temperature=self.temperature, momentum=self.momentum, use_hard=self.use_hard)
            sampler = RandomMultipleGallerySampler(labels[pos], num_instances=self.num_instances, rng=rng,
                                                   cameras=None if cams is None else np.asarray(cams)[train_idx][pos])
            batches = (pos[b] for b in sampler.batches(int(self.batch_size)))
            ep = self.train_epoch(train_idx, batches, self.iters_for(len(pos)), memory.loss, memory.update, gen,
                                  desc=f"clustercontrast epoch {self.epochs_done_ + 1}/{self.epochs}")
            epochs.append(ep)
            self.end_epoch()
        return self.summarise(epochs, {**last, "seconds_clustering": t_cluster, "epochs_total": self.epochs_done_,
                                       "lr": float(self.optimizer_.param_groups[0]["lr"])})
