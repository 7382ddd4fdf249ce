"""What the unsupervised Table-1 trainers (ICE, PPLR, RTMem, PurificationReID) share (spec table1_rows A).

All four re-cluster every epoch: k-reciprocal Jaccard distance, DBSCAN, then the refinement hook
(NP3 with the current constraints, noise first made singletons so a must-link can pull an outlier
in), then clusters of one become outliers again and are dropped from training
(``refine_singletons_to_noise``). :class:`USLTrainer` adds to :class:`ImageTrainer` a training loop
whose step sees the un-augmented batch (these methods draw several views, run part branches or a
teacher), extraction of several views in one pass, and a rebuild of the optimiser over extra modules.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.nn as nn

from alreid.trainers.image_training import ImageTrainer, check_clustering_params, _adam


def clustered_labels(dist: np.ndarray, features: np.ndarray, refine: Callable | None, *, eps: float,
                     min_samples: int, singletons_to_noise: bool = True) -> tuple[np.ndarray, dict]:
    """DBSCAN on a precomputed distance, noise -> singletons, ``refine(labels, features)``, then clusters of
    one -> -1 and the rest renumbered 0..C'-1 (spec table1_rows A, hook contract). With
    ``singletons_to_noise=False`` a clustered point that the refinement left alone (a cannot-link split)
    keeps a class of its own; DBSCAN noise left alone is dropped either way, as in every reference."""
    from alreid.clustering.views import dbscan_labels, singletonize

    labels, noise = singletonize(dbscan_labels(dist, eps=eps, min_samples=min_samples))
    if refine is not None:
        labels = np.asarray(refine(labels, features), dtype=np.int64)
    _, inv = np.unique(labels, return_inverse=True)
    sizes = np.bincount(inv)
    clustered = (sizes[inv] > 1) if singletons_to_noise else ((sizes[inv] > 1) | ~noise)
    out = np.full(len(labels), -1, dtype=np.int64)
    if clustered.any():
        _, out[clustered] = np.unique(inv[clustered], return_inverse=True)
    return out, {"n_clusters": int((sizes > 1).sum()), "n_unclustered": int((~clustered).sum())}


def cluster_means(features: torch.Tensor, labels: torch.Tensor, n_clusters: int) -> torch.Tensor:
    """Per-cluster mean of ``features`` over rows with label >= 0 (not re-normalised)."""
    keep = labels >= 0
    sums = torch.zeros(n_clusters, features.shape[1], dtype=features.dtype, device=features.device)
    sums.index_add_(0, labels[keep], features[keep])
    counts = torch.bincount(labels[keep], minlength=n_clusters).clamp(min=1).to(features.dtype)
    return sums / counts[:, None]


class KPerIdentitySampler:
    """ICE's ``MoreCameraSampler`` (spec table1_rows 1.3): every pseudo-identity gives exactly K images.

    Per identity (random order): one random image from each of its cameras; fewer than K -> topped up with
    other images of the identity (without replacement when enough remain, else with replacement); more
    than K -> a random K of the per-camera picks. Without cameras every image counts as camera 0.
    """

    def __init__(self, labels: np.ndarray, *, num_instances: int = 4, cameras: np.ndarray | None = None,
                 rng: np.random.Generator) -> None:
        self.labels = np.asarray(labels)
        self.k = int(num_instances)
        self.cameras = np.zeros(len(self.labels), np.int64) if cameras is None else np.asarray(cameras)
        self.rng = rng
        order = np.argsort(self.labels, kind="stable")
        _, start = np.unique(self.labels[order], return_index=True)
        self.members = np.split(order, start[1:]) if len(order) else []

    def pick(self, members: np.ndarray) -> list[int]:
        """K positions of one identity."""
        rng, k = self.rng, self.k
        cams = self.cameras[members]
        picks = np.array([rng.choice(members[cams == c]) for c in np.unique(cams)])
        if len(picks) >= k:
            return [int(i) for i in rng.choice(picks, size=k, replace=False)]
        rest = np.setdiff1d(members, picks)
        need = k - len(picks)
        if len(rest) == 0:  # nothing else to add: the per-camera picks again, with replacement
            return [int(i) for i in rng.choice(picks, size=k, replace=True)]
        extra = rng.choice(rest, size=need, replace=len(rest) < need)
        return [int(i) for i in np.concatenate([picks, extra])]

    def batches(self, batch_size: int) -> Iterator[np.ndarray]:
        """Batches of ``batch_size // K`` whole identities; passes repeat forever (drop-last within a pass)."""
        per = max(1, int(batch_size) // self.k)
        while True:
            order = self.rng.permutation(len(self.members))
            for s in range(0, len(order) - per + 1, per):
                yield np.array([i for c in order[s:s + per] for i in self.pick(self.members[c])], dtype=np.int64)
            if len(order) < per:  # fewer identities than a batch needs: one short batch per pass
                yield np.array([i for c in order for i in self.pick(self.members[c])], dtype=np.int64)


class USLTrainer(ImageTrainer):
    """Base of the USL Table-1 trainers: shared clustering parameters and a free-form training step."""

    param_defaults = {**ImageTrainer.param_defaults, "eps": 0.6, "min_samples": 4, "k1": 30, "k2": 6,
                      "refine_singletons_to_noise": True}

    def validate_params(self) -> None:
        super().validate_params()
        check_clustering_params(self)
        owner = f"trainer {self.name!r}"
        if not isinstance(self.refine_singletons_to_noise, bool):
            from alreid.errors import ConfigError

            raise ConfigError(f"{owner} parameter refine_singletons_to_noise must be true or false; "
                              f"got {self.refine_singletons_to_noise!r}")

    # helpers ------------------------------------------------------------------------------------
    def pool_cameras(self, train_idx: np.ndarray) -> np.ndarray | None:
        cams = self.dataset_.column("camera")
        if cams is None:
            return None
        _, codes = np.unique(np.asarray(cams)[np.asarray(train_idx)].astype(str), return_inverse=True)
        return codes.astype(np.int64)

    def jaccard(self, features: np.ndarray) -> np.ndarray:
        from alreid.clustering.jaccard import jaccard_distance

        return jaccard_distance(features, int(self.k1), int(self.k2))

    def cluster(self, dist: Any, features: np.ndarray, refine: Callable | None) -> tuple[np.ndarray, dict]:
        """This epoch's training labels (-1 = not trained on) from a distance matrix and the hook."""
        return clustered_labels(dist, features, refine, eps=self.eps, min_samples=self.min_samples,
                                singletons_to_noise=bool(self.refine_singletons_to_noise))

    def epoch_labels(self, train_idx: np.ndarray, refine: Callable | None
                     ) -> tuple[np.ndarray, np.ndarray, dict, float]:
        """One epoch's start: the pool's current features, their Jaccard + DBSCAN labels (refined with the
        answers), the clustering's stats and the seconds all this took."""
        t0 = time.perf_counter()
        feats = self.pool_features(train_idx)
        labels, stats = self.cluster(self.jaccard(feats), feats, refine)
        return feats, labels, stats, time.perf_counter() - t0

    def rebuild_optimizer(self, *extra: nn.Module) -> None:
        """Adam and the step schedule over the backbone's and ``extra`` modules' trainable parameters."""
        params = [p for m in (self.model_, *extra) for p in m.parameters() if p.requires_grad]
        self.optimizer_ = _adam(params, lr=self.lr, weight_decay=self.weight_decay, device=self.device_)
        self.scheduler_ = torch.optim.lr_scheduler.StepLR(self.optimizer_, step_size=int(self.lr_step),
                                                          gamma=float(self.lr_gamma))

    def extract_views(self, net: nn.Module, train_idx: np.ndarray, n_views: int, desc: str) -> list[np.ndarray]:
        """Eval-mode features of the pool from ``net`` (views concatenated), split and L2-normalised per view."""
        from alreid.models.features import extract_features

        feats = extract_features(net, self.store_, np.asarray(train_idx), self.spec_, device=self.device_,
                                 batch_size=int(self.eval_batch_size), amp=self.amp, fold_bn=False,
                                 progress=self.progress, desc=desc, source=f"dataset {self.dataset_.name!r}")
        views = np.split(feats, n_views, axis=1)
        return [v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12) for v in views]

    def finish(self, epochs: list[dict[str, float]], last: dict[str, Any], t_cluster: float) -> dict[str, Any]:
        return self.summarise(epochs, {**last, "seconds_clustering": t_cluster, "epochs_total": self.epochs_done_,
                                       "lr": float(self.optimizer_.param_groups[0]["lr"])})
