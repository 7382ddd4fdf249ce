"""SpCL, unsupervised variant (Ge et al., NeurIPS 2020; spec 4.2-4.5), with NP3-refined pseudo-labels.

Every epoch: k-reciprocal Jaccard distance of the hybrid memory, DBSCAN at eps, eps - gap (tight)
and eps + gap (loose), noise -> singletons, NP3 with the current constraints on all three labelings
(spec 1.11 ASSUMPTION; ``refine_all=False``: main labeling only), the self-paced reliability
criterion (clusters whose independence is below the epoch-0 threshold keep only their most
compact members; the rest become un-clustered instances), then hybrid-memory training.
The memory is initialised once from the starting model and afterwards updated only by momentum.

``eps="auto"`` (issue 17, not SpCL's default): SpCL's eps 0.6 was tuned for ResNet-50 on persons; on
ImageNet EfficientNet-Lite0 features of DogFaceNet it chains two thirds of the pool into one cluster.
``auto`` takes the radius from the starting memory's own distances, as MMT/SSG do (the mean of the
``eps_rho`` fraction of smallest pairwise Jaccard distances), once at the first epoch, then keeps it.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np
import torch

from alreid.trainers.image_training import ImageTrainer, RandomMultipleGallerySampler
from alreid.clustering.jaccard import jaccard_distance
from alreid.clustering.views import dbscan_labels, singletonize
from alreid.trainers.base import CycleInput
from alreid.models.hybrid_memory import HybridMemory
from alreid.plugin import check_range


def own_cluster_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per point i: |A(i) & B(i)| / |A(i) | B(i)|, A(i), B(i) = the members of i's cluster in labelings a, b."""
    _, ia = np.unique(a, return_inverse=True)
    _, ib = np.unique(b, return_inverse=True)
    size_a = np.bincount(ia)[ia]
    size_b = np.bincount(ib)[ib]
    _, joint = np.unique(ia.astype(np.int64) * (int(ib.max()) + 1) + ib, return_inverse=True)
    inter = np.bincount(joint)[joint]
    return inter / (size_a + size_b - inter)


def independence_threshold(r_indep_cluster: np.ndarray, sizes: np.ndarray, ratio: float = 0.9) -> float | None:
    """SpCL's threshold: among clusters with > 1 member, the sorted R_indep at index min(m-1, round(ratio m))."""
    vals = np.sort(r_indep_cluster[sizes > 1])
    m = len(vals)
    if m == 0:
        return None
    return float(vals[min(m - 1, int(np.round(m * ratio)))])


def reliable_labels(main: np.ndarray, tight: np.ndarray, loose: np.ndarray, indep_thres: float | None, *,
                    ratio: float = 0.9, protect: np.ndarray | None = None) -> tuple[np.ndarray, float | None, dict]:
    """SpCL's self-paced criterion (spec 4.4 step 3). Returns (labels, threshold used, stats).

    R_comp(i) = 1 - IoU(own cluster, own tight cluster); R_indep(i) = 1 - IoU(own cluster, own loose
    cluster); lower is more reliable. A cluster's scores are the minimum over its members. Point i
    keeps its cluster iff R_indep(cluster) <= threshold and R_comp(i) <= R_comp(cluster); any other
    point becomes its own un-clustered instance. ``indep_thres=None`` computes the threshold from
    these labelings (SpCL does so at epoch 0 and keeps it). ``protect`` marks points never ejected.
    """
    main = np.asarray(main)
    _, cid = np.unique(main, return_inverse=True)
    k = int(cid.max()) + 1 if len(cid) else 0
    r_comp = 1.0 - own_cluster_iou(main, tight)
    r_indep = 1.0 - own_cluster_iou(main, loose)
    c_comp = np.full(k, np.inf)
    c_indep = np.full(k, np.inf)
    np.minimum.at(c_comp, cid, r_comp)
    np.minimum.at(c_indep, cid, r_indep)
    sizes = np.bincount(cid, minlength=k)
    if indep_thres is None:
        indep_thres = independence_threshold(c_indep, sizes, ratio)
    thres = np.inf if indep_thres is None else indep_thres
    keep = (c_indep[cid] <= thres) & (r_comp <= c_comp[cid] + 1e-12)
    if protect is not None:
        keep |= np.asarray(protect, bool)
    out = cid.copy()
    eject = np.flatnonzero(~keep)
    out[eject] = k + np.arange(len(eject))
    _, out = np.unique(out, return_inverse=True)
    final_sizes = np.bincount(out)
    stats = {"n_clusters": int((final_sizes > 1).sum()), "n_unclustered": int((final_sizes == 1).sum()),
             "n_ejected": int(sum(1 for i in eject if sizes[cid[i]] > 1))}
    return out.astype(np.int64), indep_thres, stats


def eps_from_density(dist: Any, rho: float) -> float:
    """MMT/SSG's data-driven DBSCAN radius: the mean of the ``rho`` fraction of smallest distances over
    all pairs i < j of a sparse Jaccard matrix (an absent entry is distance 1)."""
    import scipy.sparse as sp

    n = dist.shape[0]
    total = n * (n - 1) // 2
    if total == 0:
        return 0.6
    top = max(1, int(round(rho * total)))
    upper = sp.triu(sp.coo_matrix(dist), k=1)
    vals = np.sort(np.asarray(upper.data, dtype=np.float64))[:top]
    if len(vals) < top:
        vals = np.concatenate([vals, np.ones(top - len(vals))])
    return float(vals.mean())


def spcl_pseudo_labels(features: np.ndarray, refine: Callable[[np.ndarray, np.ndarray], np.ndarray] | None, *,
                       eps: float | str = 0.6, eps_gap: float = 0.02, min_samples: int = 4, k1: int = 30,
                       k2: int = 6, indep_thres: float | None = None, refine_all: bool = True,
                       protect: np.ndarray | None = None, eps_rho: float = 1.6e-3
                       ) -> tuple[np.ndarray, float | None, dict]:
    """One epoch's pseudo-labels from memory features (spec 4.4 steps 1-3 with NP3, spec 1.11 step 3);
    ``eps="auto"``: :func:`eps_from_density` of this Jaccard matrix (``stats["eps"]`` says which)."""
    t0 = time.perf_counter()
    dist = jaccard_distance(features, k1, k2)
    if eps == "auto":
        eps = max(eps_from_density(dist, eps_rho), 2 * eps_gap)
    labelings = {}
    for key, e in (("main", eps), ("tight", eps - eps_gap), ("loose", eps + eps_gap)):
        labels, _ = singletonize(dbscan_labels(dist, eps=e, min_samples=min_samples))
        if refine is not None and (refine_all or key == "main"):
            labels = np.asarray(refine(labels, features), dtype=np.int64)
        labelings[key] = labels
    out, thres, stats = reliable_labels(labelings["main"], labelings["tight"], labelings["loose"], indep_thres,
                                        protect=protect)
    stats["seconds_clustering"] = time.perf_counter() - t0
    stats["eps"] = float(eps)
    return out, thres, stats


class SpCLTrainer(ImageTrainer):
    """SpCL (hybrid memory, self-paced clusters) on images; AL constraints enter through NP3 every epoch."""

    name = "spcl"
    description = "SpCL: hybrid memory + self-paced DBSCAN pseudo-labels refined by NP3 (images; GPU or CPU)"

    param_defaults = {**ImageTrainer.param_defaults, "eps": 0.6, "eps_gap": 0.02, "min_samples": 4, "k1": 30,
                      "k2": 6, "refine_all": True, "protect_constrained": False, "eps_rho": 1.6e-3}

    def validate_params(self) -> None:
        super().validate_params()
        owner = f"trainer {self.name!r}"
        if self.eps != "auto":
            if isinstance(self.eps, str):
                from alreid.errors import ConfigError

                raise ConfigError(f"{owner} parameter eps must be a number in (0, 1] or 'auto' (from the start "
                                  f"features' pairwise distances, see eps_rho); got {self.eps!r}")
            check_range(owner, "eps", self.eps, 0, 1, lo_open=True)
        check_range(owner, "eps_gap", self.eps_gap, 0, 1 if self.eps == "auto" else self.eps, hi_open=True)
        check_range(owner, "eps_rho", self.eps_rho, 0, 1, lo_open=True)
        check_range(owner, "min_samples", self.min_samples, 1, integer=True)
        check_range(owner, "k1", self.k1, 2, integer=True)
        check_range(owner, "k2", self.k2, 1, integer=True)

    def setup_extra(self) -> None:
        self.memory_: torch.Tensor | None = None  # (n_train, d) features of the training pool
        self.indep_thres_: float | None = None
        self.eps_: float | None = None  # the DBSCAN radius in use ("auto": fixed at the first epoch)

    # labels -------------------------------------------------------------------------------------
    def epoch_labels(self, inp: CycleInput) -> tuple[np.ndarray, dict]:
        protect = None
        if self.protect_constrained and len(inp.constraints):
            ml = inp.constraints.ml_pairs()
            protect = np.zeros(len(inp.train_idx), bool)
            if len(ml):
                protect[np.asarray(ml).ravel()] = True
        feats = self.memory_.detach().cpu().numpy()
        labels, thres, stats = spcl_pseudo_labels(
            feats, inp.refine, eps=self.eps_ if self.eps_ is not None else self.eps, eps_gap=self.eps_gap,
            min_samples=self.min_samples, k1=self.k1, k2=self.k2, indep_thres=self.indep_thres_,
            refine_all=self.refine_all, protect=protect, eps_rho=self.eps_rho)
        if self.indep_thres_ is None:
            self.indep_thres_ = thres
        if self.eps_ is None:
            self.eps_ = stats["eps"]
        return labels, stats

    def sampling_features(self, train_idx: np.ndarray) -> np.ndarray:
        """SpCL's hybrid memory, what SpCL itself clusters (spec 1.11 ASSUMPTION ``aas_features="memory"``);
        the eval embeddings before the memory exists."""
        if self.memory_ is None or len(self.memory_) != len(train_idx):
            return self.pool_features(train_idx)
        return self.memory_.detach().cpu().numpy().copy()

    def init_memory(self, train_idx: np.ndarray) -> None:
        """The memory starts as the current model's eval features of the pool (SpCL: before epoch 0)."""
        self.memory_ = torch.as_tensor(self.pool_features(train_idx), device=self.device_)

    # training -----------------------------------------------------------------------------------
    def _fit(self, inp: CycleInput, n_epochs: int) -> dict[str, Any]:
        train_idx = np.asarray(inp.train_idx)
        if self.memory_ is None or len(self.memory_) != len(train_idx):
            self.init_memory(train_idx)
        gen = torch.Generator().manual_seed(int(inp.seed))
        rng = np.random.default_rng(int(inp.seed))
        cameras = self._pool_cameras(train_idx)
        epochs: list[dict[str, float]] = []
        last: dict[str, Any] = {}
        t_cluster = 0.0
        for _ in range(n_epochs):
            labels, last = self.epoch_labels(inp)
            t_cluster += last.pop("seconds_clustering", 0.0)
            memory = HybridMemory(self.memory_, labels, temperature=self.temperature, momentum=self.momentum)
            sampler = RandomMultipleGallerySampler(labels, num_instances=self.num_instances, cameras=cameras, rng=rng)
            n_iters = self.iters_for(len(train_idx))
            ep = self.train_epoch(train_idx, sampler.batches(int(self.batch_size)), n_iters, memory.loss,
                                  memory.update, gen, desc=f"spcl epoch {self.epochs_done_ + 1}/{self.epochs}")
            self.memory_ = memory.features
            epochs.append(ep)
            self.end_epoch()
        return self.summarise(epochs, {**last, "indep_thres": float(self.indep_thres_ or float("nan")),
                                       "seconds_clustering": t_cluster, "epochs_total": self.epochs_done_,
                                       "lr": float(self.optimizer_.param_groups[0]["lr"])})

    def _pool_cameras(self, train_idx: np.ndarray) -> np.ndarray | None:
        cams = self.dataset_.column("camera")
        return None if cams is None else np.asarray(cams)[train_idx]

    def extra_state(self) -> dict[str, Any]:
        return {"memory": None if self.memory_ is None else self.memory_.detach().cpu(),
                "indep_thres": self.indep_thres_, "eps": self.eps_}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        mem = state.get("memory")
        self.memory_ = None if mem is None else mem.to(self.device_)
        self.indep_thres_ = state.get("indep_thres")
        self.eps_ = state.get("eps")
