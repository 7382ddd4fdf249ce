"""PPLR (Cho et al., CVPR 2022; ``yoonkicho/PPLR``; spec table1_rows 2) with NP3-refined pseudo-labels.

The backbone's map also feeds 3 horizontal stripes (average pooling, own BatchNorm necks). Every
epoch: eval features (global and parts) of the pool, Jaccard on the global ones, DBSCAN (eps 0.5),
the refinement hook, outliers dropped; the cross-agreement score A[i, p] = Jaccard overlap of i's
k = 20 nearest neighbours in the global and in part p's space; bias-free classifiers (global + each
part) initialised with the normalised cluster centroids. Loss = part-guided label refinement of the
global classifier (soft target beta onehot + (1 - beta) sum_p softmax_p(A) x part predictions) + soft
triplet on the global BN features + the part classifiers' loss (label-smoothed CE before epoch 5,
agreement-aware label smoothing afterwards).
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from alreid.plugin import check_range
from alreid.trainers.base import CycleInput
from alreid.trainers.image_training import RandomMultipleGallerySampler
from alreid.trainers.usl_common import USLTrainer, cluster_means


# pure functions ------------------------------------------------------------------------------------
def knn_sets(features: np.ndarray, k: int, chunk: int = 1024) -> np.ndarray:
    """(n, k) indices of each row's k nearest neighbours by cosine similarity, itself excluded; rows in chunks,
    so 10,000 images never hold an n x n matrix."""
    x = np.asarray(features, dtype=np.float32)
    out = np.empty((len(x), k), dtype=np.int64)
    for lo in range(0, len(x), chunk):
        sims = x[lo:lo + chunk] @ x.T
        rows = np.arange(len(sims))
        sims[rows, lo + rows] = -np.inf
        part = np.argpartition(-sims, k - 1, axis=1)[:, :k] if k < len(x) else np.tile(np.arange(len(x)), (len(sims), 1))
        order = np.argsort(-np.take_along_axis(sims, part, 1), axis=1, kind="stable")
        out[lo:lo + chunk] = np.take_along_axis(part, order, 1)[:, :k]
    return out


def cross_agreement(global_feats: np.ndarray, part_feats: list[np.ndarray], k: int = 20) -> np.ndarray:
    """A[i, p] = |G_i & Q_i^p| / |G_i | Q_i^p|: overlap of i's k-NN in the global and in part p's space."""
    k = max(1, min(int(k), len(global_feats) - 1))
    g = knn_sets(global_feats, k)
    out = np.zeros((len(global_feats), len(part_feats)))
    for p, feats in enumerate(part_feats):
        q = knn_sets(feats, k)
        for i in range(len(g)):
            inter = len(np.intersect1d(g[i], q[i], assume_unique=True))
            out[i, p] = inter / (2 * k - inter)
    return out


def pglr_loss(global_logits: torch.Tensor, part_logits: list[torch.Tensor], y: torch.Tensor,
              agreement: torch.Tensor, *, beta: float = 0.5) -> torch.Tensor:
    """Part-guided label refinement: CE of the global logits against beta onehot(y) + (1 - beta) x the
    agreement-weighted (softmax over parts, no temperature) ensemble of part predictions (detached)."""
    w = torch.softmax(agreement, dim=1)
    ens = sum(w[:, p:p + 1] * torch.softmax(lp.detach(), dim=1) for p, lp in enumerate(part_logits))
    target = beta * F.one_hot(y, global_logits.shape[1]).to(global_logits.dtype) + (1 - beta) * ens
    return -(target * torch.log_softmax(global_logits, dim=1)).sum(1).mean()


def soft_triplet_loss(f: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Batch-hard soft-margin triplet on Euclidean distances of un-normalised features: log(1 + e^(d+ - d-))."""
    d = torch.cdist(f, f)
    same = y[:, None] == y[None, :]
    d_pos = d.masked_fill(~same, -float("inf")).max(dim=1).values
    d_neg = d.masked_fill(same, float("inf")).min(dim=1).values
    return F.softplus(d_pos - d_neg).mean()


def aals_loss(part_logits: torch.Tensor, y: torch.Tensor, agreement: torch.Tensor) -> torch.Tensor:
    """Agreement-aware label smoothing of one part: mean_i [A_i CE(l_i, y_i) + (1 - A_i) KL(U || softmax(l_i))]."""
    log_p = torch.log_softmax(part_logits, dim=1)
    c = part_logits.shape[1]
    ce = -log_p.gather(1, y[:, None]).squeeze(1)
    kl_uniform = -math.log(c) - log_p.mean(dim=1)  # sum_c (1/C) (log(1/C) - log p_c)
    return (agreement * ce + (1 - agreement) * kl_uniform).mean()


class PPLRTrainer(USLTrainer):
    """PPLR on images: global + 3 stripe branches, centroid-initialised classifiers, PGLR and AALS."""

    name = "pplr"
    description = "PPLR: part features, cross-agreement, part-guided label refinement, AALS (DBSCAN, NP3-refined)"
    spec_iters = 400
    param_defaults = {**USLTrainer.param_defaults, "image_size": "384x128", "eps": 0.5, "parts": 3, "k": 20,
                      "beta": 0.5, "aals_epoch": 5, "label_smoothing": 0.1}

    def validate_params(self) -> None:
        super().validate_params()
        owner = f"trainer {self.name!r}"
        check_range(owner, "parts", self.parts, 1, integer=True)
        check_range(owner, "k", self.k, 1, integer=True)
        check_range(owner, "beta", self.beta, 0, 1)
        check_range(owner, "aals_epoch", self.aals_epoch, 0, integer=True)
        check_range(owner, "label_smoothing", self.label_smoothing, 0, 1)

    def setup_extra(self) -> None:
        from alreid.models.parts import GlobalAndStripes, StripeHead

        self.head_ = StripeHead(self.model_.feature_dim, int(self.parts), "avg").to(self.device_)
        self.views_net_ = GlobalAndStripes(self.model_, self.head_)
        self.rebuild_optimizer(self.head_)

    def _fit(self, inp: CycleInput, n_epochs: int) -> dict[str, Any]:
        from alreid.models.features import autocast

        train_idx = np.asarray(inp.train_idx)
        gen = torch.Generator().manual_seed(int(inp.seed))
        rng = np.random.default_rng(int(inp.seed))
        cams = self.pool_cameras(train_idx)
        dev = self.device_
        epochs, last, t_cluster = [], {}, 0.0
        for _ in range(n_epochs):
            t0 = time.perf_counter()
            views = self.extract_views(self.views_net_, train_idx, 1 + int(self.parts), desc="pplr: features")
            glob, parts = views[0], views[1:]
            labels, last = self.cluster(self.jaccard(glob), glob, inp.refine)
            agree = cross_agreement(glob, parts, int(self.k))
            t_cluster += time.perf_counter() - t0
            pos = np.flatnonzero(labels >= 0)
            if len(pos) < 2:
                self.end_epoch()
                continue
            n_cls = int(labels.max()) + 1
            lab = torch.as_tensor(labels, device=dev)
            # classifiers sized to this epoch's clusters, rows = normalised centroids (spec 2.2 step 5)
            weights = [torch.nn.Parameter(F.normalize(cluster_means(torch.as_tensor(v, device=dev), lab, n_cls), dim=1))
                       for v in views]
            # trained by the main Adam for this epoch only (fresh moments each epoch; the reference keeps one
            # 3000-row classifier and its moments: a departure listed in README)
            self.optimizer_.add_param_group({"params": weights, "lr": self.optimizer_.param_groups[0]["lr"]})
            agree_t = torch.as_tensor(agree, dtype=torch.float32, device=dev)
            aals = self.epochs_done_ >= int(self.aals_epoch)
            sampler = RandomMultipleGallerySampler(labels[pos], num_instances=self.num_instances, rng=rng,
                                                   cameras=None if cams is None else cams[pos])
            batches = (pos[b] for b in sampler.batches(int(self.batch_size)))

            def step(x: torch.Tensor, p: np.ndarray) -> torch.Tensor:
                pt = torch.as_tensor(p, device=dev)
                y, a = lab[pt], agree_t[pt]
                x = self.augment_(x, gen).contiguous(memory_format=torch.channels_last)
                with autocast(dev, self.amp):
                    fmap = self.model_.features(x)
                    g = self.model_.neck(self.model_.pool(fmap)).float()
                    ps = [v.float() for v in self.head_(fmap)]
                logits_g = g @ weights[0].T
                logits_p = [v @ w.T for v, w in zip(ps, weights[1:])]
                loss = pglr_loss(logits_g, logits_p, y, a, beta=self.beta) + soft_triplet_loss(g, y)
                if aals:
                    part = sum(aals_loss(lp, y, a[:, i]) for i, lp in enumerate(logits_p))
                else:
                    part = sum(F.cross_entropy(lp, y, label_smoothing=self.label_smoothing) for lp in logits_p)
                return loss + part / len(logits_p)

            try:
                epochs.append(self.run_steps(train_idx, batches, self.iters_for(len(pos)), step, None,
                                             desc=f"pplr epoch {self.epochs_done_ + 1}/{self.epochs}",
                                             modules=(self.head_,)))
            finally:
                self.optimizer_.param_groups.pop()
                for w in weights:
                    self.optimizer_.state.pop(w, None)
            self.end_epoch()
        return self.finish(epochs, last, t_cluster)

    def extra_state(self) -> dict[str, Any]:
        return {"head": self.head_.state_dict()}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.head_.load_state_dict(state["head"])
