"""PurificationReID (Lan et al., TIP 2023; ``tengxiao14/Purification_ReID``; spec table1_rows 4), NP3-refined.

Three views of the backbone's map: global, upper half and lower half, each with its own GeM and
BatchNorm neck. Every epoch: the views' eval features, a fused Jaccard distance
(1 - 2 lambda1) J(global) + lambda1 J(upper) + lambda1 J(lower), DBSCAN (eps 0.6), the refinement hook,
outliers dropped; one cluster memory per view (normalised means, momentum 0.1). Two stages, as the
reference: a teacher trained with the views' weighted cluster contrast (1 - lambda2, lambda2, lambda2),
then a student from the same ImageNet start with the same loss plus mu x the squared distance of its
normalised features to the frozen teacher's; the student starts with one warm-up epoch (2x iterations,
memories frozen) clustered on teacher features. Both stages run inside the first cycle's budget of
``teacher_epochs`` (default: ``epochs``, the reference's 50 + 50), then the student follows the AL
schedule.
"""

from __future__ import annotations

import copy
import time
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from alreid.errors import ConfigError
from alreid.plugin import check_range
from alreid.trainers.base import CycleInput
from alreid.trainers.clustercontrast import ClusterMemory
from alreid.trainers.image_training import RandomMultipleGallerySampler
from alreid.trainers.usl_common import USLTrainer


# pure functions ------------------------------------------------------------------------------------
def fused_distance(dists: list[Any], lambda1: float) -> Any:
    """(1 - 2 lambda1) D_global + lambda1 D_upper + lambda1 D_lower.

    Sparse Jaccard matrices store only overlapping pairs (an absent entry is distance 1), so they are
    fused as similarities 1 - D (absent = 0) and turned back: absent in every view stays absent.
    """
    import scipy.sparse as sp

    weights = (1 - 2 * lambda1, lambda1, lambda1)
    if not any(sp.issparse(d) for d in dists):
        return sum(w * np.asarray(d) for w, d in zip(weights, dists))
    sim = None
    for w, d in zip(weights, dists):
        s = sp.csr_matrix(d, dtype=np.float64, copy=True)
        s.data = w * (1.0 - s.data)
        sim = s if sim is None else sim + s
    out = sim.tocsr()
    out.data = 1.0 - out.data
    return out.astype(np.float32)


def view_weights(lambda2: float) -> tuple[float, float, float]:
    return (1 - lambda2, lambda2, lambda2)


def purification_loss(feats: list[torch.Tensor], memories: list[ClusterMemory], pos: torch.Tensor, *,
                      lambda2: float = 0.2, teacher: list[torch.Tensor] | None = None, mu: float = 1.0
                      ) -> torch.Tensor:
    """sum_v w_v (CE_v + mu KD_v); CE_v over view v's cluster memory, KD_v = mean_i ||f_i - t_i||^2 (student only)."""
    total = feats[0].new_zeros(())
    for v, (f, mem, w) in enumerate(zip(feats, memories, view_weights(lambda2))):
        term = mem.loss(f, pos)
        if teacher is not None:
            term = term + mu * (f - teacher[v]).pow(2).sum(1).mean()
        total = total + w * term
    return total


class ThreeViews(nn.Module):
    """Normalised global, upper and lower embeddings of a batch (concatenated for extraction, a list in training)."""

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def views(self, x: torch.Tensor) -> list[torch.Tensor]:
        fmap = self.backbone.features(x)
        glob = self.backbone.neck(self.backbone.pool(fmap))
        return [F.normalize(v.float(), dim=1) for v in [glob, *self.head(fmap)]]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat(self.views(x), dim=1)


class PurificationTrainer(USLTrainer):
    """PurificationReID on images: 3-view cluster contrast, a teacher, then a distilled student."""

    name = "purification"
    description = ("PurificationReID: global/upper/lower GeM views, fused-Jaccard DBSCAN (NP3-refined), "
                   "teacher then distilled student")
    spec_iters = 200
    param_defaults = {**USLTrainer.param_defaults, "pooling": "gem", "batch_size": 256, "num_instances": 16,
                      "momentum": 0.1, "eps": 0.6, "lambda1": 0.15, "lambda2": 0.2, "mu": 1.0,
                      "teacher_epochs": None, "teacher_bn_train": True}

    def validate_params(self) -> None:
        super().validate_params()
        owner = f"trainer {self.name!r}"
        check_range(owner, "lambda1", self.lambda1, 0, 0.5)
        check_range(owner, "lambda2", self.lambda2, 0, 1)
        check_range(owner, "mu", self.mu, 0)
        if self.teacher_epochs is not None:
            check_range(owner, "teacher_epochs", self.teacher_epochs, 0, integer=True)
        if self.pooling != "gem":
            raise ConfigError(f"trainer 'purification' pools its three views by GeM; use pooling=gem "
                              f"(got {self.pooling!r})")

    def setup_extra(self) -> None:
        from alreid.models.parts import StripeHead

        self.head_ = StripeHead(self.model_.feature_dim, 2, "gem").to(self.device_)
        self.net_ = ThreeViews(self.model_, self.head_)
        self.rebuild_optimizer(self.head_)
        self.start_state_ = copy.deepcopy(self.net_.state_dict())  # the student restarts from here
        self.teacher_: ThreeViews | None = None
        self.warmed_up_ = False

    # one epoch of either stage -------------------------------------------------------------------
    def _epoch(self, inp: CycleInput, train_idx: np.ndarray, rng: np.random.Generator, gen: torch.Generator,
               cams: np.ndarray | None, *, cluster_net: ThreeViews, warmup: bool, desc: str
               ) -> tuple[dict[str, float] | None, dict, float]:
        from alreid.models.features import autocast

        dev = self.device_
        t0 = time.perf_counter()
        views = self.extract_views(cluster_net, train_idx, 3, desc=f"{desc}: features")
        dist = fused_distance([self.jaccard(v) for v in views], float(self.lambda1))
        labels, stats = self.cluster(dist, views[0], inp.refine)
        t_cluster = time.perf_counter() - t0
        pos = np.flatnonzero(labels >= 0)
        if len(pos) < 2:
            return None, stats, t_cluster
        momentum = 1.0 if warmup else float(self.momentum)  # the warm-up epoch keeps its memories fixed
        memories = [ClusterMemory(torch.as_tensor(v, device=dev), labels, temperature=self.temperature,
                                  momentum=momentum) for v in views]
        sampler = RandomMultipleGallerySampler(labels[pos], num_instances=self.num_instances, rng=rng,
                                               cameras=None if cams is None else cams[pos])
        batches = (pos[b] for b in sampler.batches(int(self.batch_size)))
        teacher = self.teacher_
        state: dict[str, Any] = {}

        def step(x: torch.Tensor, p: np.ndarray) -> torch.Tensor:
            pt = torch.as_tensor(p, device=dev)
            x = self.augment_(x, gen).contiguous(memory_format=torch.channels_last)
            with autocast(dev, self.amp):
                feats = self.net_.views(x)
                t = None
                if teacher is not None:
                    with torch.no_grad():
                        if teacher.training != bool(self.teacher_bn_train):  # once: train() rebuilds a fold
                            teacher.train(bool(self.teacher_bn_train))
                        t = teacher.views(x)
            state["f"], state["pos"] = [f.detach() for f in feats], pt
            return purification_loss(feats, memories, pt, lambda2=float(self.lambda2), teacher=t, mu=float(self.mu))

        def update() -> None:
            for f, mem in zip(state["f"], memories):
                mem.update(f, state["pos"])

        n_iters = self.iters_for(len(pos)) * (2 if warmup else 1)
        ep = self.run_steps(train_idx, batches, n_iters, step, update, desc=desc, modules=(self.head_,))
        return ep, stats, t_cluster

    def _fit(self, inp: CycleInput, n_epochs: int) -> dict[str, Any]:
        train_idx = np.asarray(inp.train_idx)
        gen = torch.Generator().manual_seed(int(inp.seed))
        rng = np.random.default_rng(int(inp.seed))
        cams = self.pool_cameras(train_idx)
        epochs, last, t_cluster = [], {}, 0.0
        extra: dict[str, Any] = {}
        if self.teacher_ is None:  # stage 1, inside the first cycle: the teacher, then the student's restart
            n_teacher = int(self.epochs if self.teacher_epochs is None else self.teacher_epochs)
            teacher_losses = []
            for e in range(n_teacher):
                ep, last, tc = self._epoch(inp, train_idx, rng, gen, cams, cluster_net=self.net_, warmup=False,
                                           desc=f"purification teacher epoch {e + 1}/{n_teacher}")
                t_cluster += tc
                if ep is not None:
                    teacher_losses.append(ep["loss"])
                self.scheduler_.step()
            self.teacher_ = copy.deepcopy(self.net_)
            for p in self.teacher_.parameters():
                p.requires_grad_(False)
            self.net_.load_state_dict(self.start_state_)
            self.rebuild_optimizer(self.head_)
            self.version_ += 1
            extra = {"teacher_epochs_run": n_teacher,
                     "teacher_loss": teacher_losses[-1] if teacher_losses else float("nan")}
        if not self.warmed_up_:  # the student's epoch -1: clustered on teacher features, 2x iterations
            ep, last, tc = self._epoch(inp, train_idx, rng, gen, cams, cluster_net=self.teacher_, warmup=True,
                                       desc="purification student warm-up")
            t_cluster += tc
            self.scheduler_.step()  # the reference steps its schedule after epoch -1 too
            self.warmed_up_ = True
            extra["warmup_loss"] = float("nan") if ep is None else ep["loss"]
        for _ in range(n_epochs):
            ep, last, tc = self._epoch(inp, train_idx, rng, gen, cams, cluster_net=self.net_, warmup=False,
                                       desc=f"purification epoch {self.epochs_done_ + 1}/{self.epochs}")
            t_cluster += tc
            if ep is not None:
                epochs.append(ep)
            self.end_epoch()
        return self.finish(epochs, {**last, **extra}, t_cluster)

    def extra_state(self) -> dict[str, Any]:
        return {"head": self.head_.state_dict(), "warmed_up": self.warmed_up_,
                "teacher": None if self.teacher_ is None else self.teacher_.state_dict()}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.head_.load_state_dict(state["head"])
        self.warmed_up_ = bool(state["warmed_up"])
        if state.get("teacher") is not None:
            self.teacher_ = copy.deepcopy(self.net_)
            self.teacher_.load_state_dict(state["teacher"])
            for p in self.teacher_.parameters():
                p.requires_grad_(False)
