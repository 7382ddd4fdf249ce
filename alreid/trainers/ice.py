"""ICE (Chen, Lagadec, Bremond, ICCV 2021; ``chenhao2345/ICE``; spec table1_rows 1) with NP3-refined labels.

A mean teacher (EMA of the student, alpha 0.999 per step, parameters only) clusters and is evaluated.
Every epoch: teacher features of the pool, Jaccard, DBSCAN (eps 0.55), the refinement hook, outliers
dropped; cluster proxies = mean features (not re-normalised) and camera proxies = normalised means per
(cluster, camera), both fixed for the epoch. Each sampled image gives two strong views and one weak
view; the loss is proxy cross-entropy (tau 0.5, label smoothing 0.1) + hard-instance contrast against
the teacher's second view (tau 0.1) + the cross-camera proxy loss (beta 0.07, 50 hard negatives,
weight 0.5) + 10 x KL between the student's and the teacher's weak-view similarity distributions
(temperature 0.4). Learning rate: 10-epoch linear warm-up from 0.1 x, no decay.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from alreid.plugin import check_range
from alreid.trainers.base import CycleInput
from alreid.trainers.usl_common import KPerIdentitySampler, USLTrainer, cluster_means


# losses (pure functions; tests compare them with hand computations) --------------------------------
def proxy_loss(f: torch.Tensor, centroids: torch.Tensor, y: torch.Tensor, *, tau: float = 0.5,
               smoothing: float = 0.1) -> torch.Tensor:
    """Label-smoothed cross-entropy over logits f . mu_c / tau (f un-normalised, mu a plain mean)."""
    return F.cross_entropy(f @ centroids.T / tau, y, label_smoothing=smoothing)


def hard_instance_loss(f_n: torch.Tensor, t_n: torch.Tensor, y: torch.Tensor, *, tau: float = 0.1) -> torch.Tensor:
    """Per row: the least similar same-label teacher view (itself included) against every other-label one."""
    s = f_n @ t_n.T / tau
    same = y[:, None] == y[None, :]
    pos = s.masked_fill(~same, math.inf).min(dim=1).values
    neg = s.masked_fill(same, -math.inf)
    denom = torch.logsumexp(torch.cat([pos[:, None], neg], dim=1), dim=1)
    return (denom - pos).mean()


def camera_proxy_loss(f_n: torch.Tensor, proxies: torch.Tensor, proxy_labels: torch.Tensor, y: torch.Tensor,
                      cams: torch.Tensor, *, beta: float = 0.07, n_hard: int = 50, weight: float = 0.5
                      ) -> torch.Tensor:
    """Sum over the batch's cameras of ``weight`` x the camera's mean of: -mean over positive proxies (same
    cluster, any camera) of log softmax over positives + the ``n_hard`` most similar other-cluster proxies
    (capped at how many there are: ``hard_neg_cap``)."""
    a = f_n @ proxies.T / beta
    total = f_n.new_zeros(())
    for k in torch.unique(cams):
        rows = (cams == k).nonzero().flatten()
        per = []
        for i in rows.tolist():
            pos = proxy_labels == y[i]
            neg_scores = a[i].masked_fill(pos, -math.inf)
            n_neg = int((~pos).sum())
            hard = torch.topk(neg_scores, min(int(n_hard), n_neg)).indices if n_neg else neg_scores.new_zeros(0).long()
            logits = torch.cat([a[i][pos], a[i][hard]])
            per.append(-(torch.log_softmax(logits, 0)[: int(pos.sum())]).mean())
        total = total + weight * torch.stack(per).mean()
    return total


def kl_consistency(f_n: torch.Tensor, t_n: torch.Tensor, w_n: torch.Tensor, *, temp: float = 0.4) -> torch.Tensor:
    """(1/b) sum_i KL(Q_i || P_i); P_i = softmax_j(f_i . t_j / T) (student strong vs teacher strong),
    Q_i = softmax_j(w_i . w_j / T) (teacher weak vs teacher weak)."""
    log_p = torch.log_softmax(f_n @ t_n.T / temp, dim=1)
    q = torch.softmax(w_n @ w_n.T / temp, dim=1)
    return F.kl_div(log_p, q, reduction="batchmean")


def camera_proxies(features: torch.Tensor, labels: torch.Tensor, cams: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """n(mean) per (camera, cluster) present, stacked in camera order; returns (proxies, their cluster labels)."""
    out, lab = [], []
    for k in torch.unique(cams).tolist():
        sel = (cams == k) & (labels >= 0)
        for c in torch.unique(labels[sel]).tolist():
            out.append(F.normalize(features[sel & (labels == c)].mean(0), dim=0))
            lab.append(c)
    return torch.stack(out), torch.as_tensor(lab, dtype=torch.long, device=features.device)


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, alpha: float) -> None:
    """teacher <- alpha teacher + (1 - alpha) student, over parameters only (buffers keep their own stats)."""
    for t, s in zip(teacher.parameters(), student.parameters()):
        t.mul_(alpha).add_(s.detach(), alpha=1.0 - alpha)


def gaussian_blur_batch(x: torch.Tensor, gen: torch.Generator, *, p: float = 0.5,
                        sigma: tuple[float, float] = (0.1, 2.0)) -> torch.Tensor:
    """ICE's GaussianBlur augmentation on a batch: with probability p, blur with sigma ~ U(sigma)."""
    from torchvision.transforms.functional import gaussian_blur

    out = x.clone()
    for i in range(len(x)):
        if float(torch.rand(1, generator=gen)) >= p:
            continue
        s = sigma[0] + (sigma[1] - sigma[0]) * float(torch.rand(1, generator=gen))
        k = 2 * math.ceil(3 * s) + 1
        out[i] = gaussian_blur(x[i:i + 1], [k, k], [s, s])[0]
    return out


class ICETrainer(USLTrainer):
    """ICE on images: mean teacher, proxy + hard-instance + camera-proxy + KL consistency losses."""

    name = "ice"
    description = "ICE: EMA teacher clusters (DBSCAN, NP3-refined); proxy, hard-instance, camera and KL losses"
    spec_iters = 400
    param_defaults = {**USLTrainer.param_defaults, "epochs": 40, "batch_size": 32, "num_instances": 4,
                      "eps": 0.55, "tau_c": 0.5, "tau_v": 0.1, "label_smoothing": 0.1, "scale_kl": 0.4,
                      "kl_weight": 10.0, "cam_beta": 0.07, "cam_hard_negatives": 50, "cam_weight": 0.5,
                      "ema_alpha": 0.999, "warmup_epochs": 10, "warmup_factor": 0.1, "erasing": 0.6, "blur": 0.5}

    def validate_params(self) -> None:
        super().validate_params()
        owner = f"trainer {self.name!r}"
        for key in ("tau_c", "tau_v", "scale_kl", "cam_beta"):
            check_range(owner, key, getattr(self, key), 0, lo_open=True)
        for key in ("label_smoothing", "erasing", "blur", "warmup_factor"):
            check_range(owner, key, getattr(self, key), 0, 1)
        check_range(owner, "ema_alpha", self.ema_alpha, 0, 1)
        check_range(owner, "kl_weight", self.kl_weight, 0)
        check_range(owner, "cam_weight", self.cam_weight, 0)
        check_range(owner, "cam_hard_negatives", self.cam_hard_negatives, 1, integer=True)
        check_range(owner, "warmup_epochs", self.warmup_epochs, 0, integer=True)

    def setup_extra(self) -> None:
        from alreid.models.transforms import TrainAugment

        self.teacher_ = copy.deepcopy(self.model_)
        for p in self.teacher_.parameters():
            p.requires_grad_(False)
        self.strong_geom_ = TrainAugment(self.spec_, erasing=0.0)
        self.strong_erase_ = TrainAugment(self.spec_, flip=0.0, pad=0, erasing=float(self.erasing))
        w, f = int(self.warmup_epochs), float(self.warmup_factor)
        self.scheduler_ = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer_, lambda e: (f + (1 - f) * e / w) if e < w else 1.0)

    def _extract_all(self) -> np.ndarray:
        """The teacher is the evaluated (and clustered) model."""
        student = self.model_
        self.model_ = self.teacher_
        try:
            return super()._extract_all()
        finally:
            self.model_ = student

    def strong(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        y = gaussian_blur_batch(self.strong_geom_(x, gen), gen, p=float(self.blur))
        return self.strong_erase_(y, gen).contiguous(memory_format=torch.channels_last)

    def _fit(self, inp: CycleInput, n_epochs: int) -> dict[str, Any]:
        from alreid.models.features import autocast

        train_idx = np.asarray(inp.train_idx)
        gen = torch.Generator().manual_seed(int(inp.seed))
        rng = np.random.default_rng(int(inp.seed))
        cams_np = self.pool_cameras(train_idx)
        cams_all = torch.as_tensor(np.zeros(len(train_idx), np.int64) if cams_np is None else cams_np,
                                   device=self.device_)
        epochs, last, t_cluster = [], {}, 0.0
        dev = self.device_
        for _ in range(n_epochs):
            feats, labels, last, seconds = self.epoch_labels(train_idx, inp.refine)
            t_cluster += seconds
            pos = np.flatnonzero(labels >= 0)
            if len(pos) < 2:
                self.end_epoch()
                continue
            z = torch.as_tensor(feats, device=dev)
            lab = torch.as_tensor(labels, device=dev)
            centroids = cluster_means(z, lab, int(labels.max()) + 1)
            proxies, proxy_labels = camera_proxies(z, lab, cams_all)
            sampler = KPerIdentitySampler(labels[pos], num_instances=self.num_instances, rng=rng,
                                          cameras=None if cams_np is None else cams_np[pos])
            batches = (pos[b] for b in sampler.batches(int(self.batch_size)))

            def step(x: torch.Tensor, p: np.ndarray) -> torch.Tensor:
                y = lab[torch.as_tensor(p, device=dev)]
                v1, v2 = self.strong(x, gen), self.strong(x, gen)
                with autocast(dev, self.amp):
                    f1 = self.model_(v1).float()
                    with torch.no_grad():
                        if not self.teacher_.training:  # ICE's teacher forwards in train mode (BN statistics move);
                            self.teacher_.train()  # switched once: train() rebuilds the frozen-stage fold
                        t2 = F.normalize(self.teacher_(v2).float(), dim=1)
                        tw = F.normalize(self.teacher_(x).float(), dim=1)
                f1n = F.normalize(f1, dim=1)
                return (proxy_loss(f1, centroids, y, tau=self.tau_c, smoothing=self.label_smoothing)
                        + hard_instance_loss(f1n, t2, y, tau=self.tau_v)
                        + camera_proxy_loss(f1n, proxies, proxy_labels, y, cams_all[torch.as_tensor(p, device=dev)],
                                            beta=self.cam_beta, n_hard=self.cam_hard_negatives,
                                            weight=self.cam_weight)
                        + self.kl_weight * kl_consistency(f1n, t2, tw, temp=self.scale_kl))

            epochs.append(self.run_steps(train_idx, batches, self.iters_for(len(pos)), step,
                                         lambda: ema_update(self.teacher_, self.model_, float(self.ema_alpha)),
                                         desc=f"ice epoch {self.epochs_done_ + 1}/{self.epochs}"))
            self.end_epoch()
        return self.finish(epochs, last, t_cluster)

    def extra_state(self) -> dict[str, Any]:
        return {"teacher": self.teacher_.state_dict()}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.teacher_.load_state_dict(state["teacher"])
