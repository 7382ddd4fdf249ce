"""A small projection head trained on frozen features: the embedding-level proxy of SpCL.

The head is residual with a zero-initialised output layer, so before any training it is the identity
map: cycle-0 embeddings are exactly the frozen features, and training moves away from them only as
far as the labels justify.

:class:`HeadLearner` follows SpCL's unsupervised loop (spec 4.4, 4.5) on these features: a hybrid
memory of the training pool initialised once and afterwards updated only by momentum; every epoch
the memory is re-clustered (k-reciprocal Jaccard, DBSCAN at eps and eps -/+ gap, NP3 with the current
constraints, SpCL's self-paced reliability criterion) and the head is trained for ``iters`` steps on
identity-balanced batches (16 labels x 4 instances). What differs from SpCL on images and why is
written next to each setting in :class:`alreid.trainers.head.HeadTrainer`.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from alreid.models.hybrid_memory import HybridMemory


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run with ``n`` intra-op threads, restoring the previous setting afterwards.

    Small matrices gain nothing from threads, and OpenMP workers spinning against other busy
    processes (parallel Ray trials) make each step tens of times slower.
    """
    if not n:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


class ResidualHead(nn.Module):
    """x -> normalise(x + W2 relu(W1 dropout(x))); W2 starts at zero, so the head starts as the identity."""

    def __init__(self, dim: int, hidden: int = 256, dropout: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(dropout)
        nn.init.zeros_(self.fc2.weight)
        nn.init.zeros_(self.fc2.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x + self.fc2(F.relu(self.fc1(self.drop(x)))), dim=1)


@dataclass
class HeadSettings:
    """Training settings; the defaults and their reasons live in :class:`alreid.trainers.head.HeadTrainer`."""

    hidden: int
    epochs_per_cycle: int
    iters: int
    batch_size: int
    num_instances: int
    lr: float
    weight_decay: float
    temperature: float
    momentum: float
    eps: float
    eps_gap: float
    min_samples: int
    k1: int
    k2: int
    self_paced: bool
    instance_anchors: bool
    dropout: float
    labels: str
    threads: int | None


def factorize(labels: np.ndarray) -> np.ndarray:
    """Labels of any type -> 0..k-1 codes."""
    arr = np.asarray(labels)
    return np.unique(arr.astype(str) if arr.dtype == object else arr, return_inverse=True)[1].astype(np.int64)


def balanced_batches(labels: np.ndarray, batch_size: int, num_instances: int,
                     rng: np.random.Generator, *, singletons: bool = True) -> Iterator[np.ndarray]:
    """SpCL's identity-balanced stream (spec 4.4 step 4), cut into batches of pool positions.

    Labels are visited in random order; each gives a random anchor plus up to ``num_instances - 1``
    other members (with replacement only when it has too few); a singleton gives itself, or, with
    ``singletons=False``, is never drawn (it stays a negative in the memory).
    """
    order = np.argsort(labels, kind="stable")
    _, start = np.unique(labels[order], return_index=True)
    members = np.split(order, start[1:])
    if not singletons:
        members = [m for m in members if len(m) > 1]
    if not members:
        return
    buf: list[int] = []
    while True:
        for c in rng.permutation(len(members)):
            m = members[c]
            anchor = int(rng.choice(m))
            buf.append(anchor)
            if len(m) > 1 and num_instances > 1:
                others = m[m != anchor]
                buf.extend(int(i) for i in rng.choice(others, size=num_instances - 1,
                                                      replace=len(others) < num_instances - 1))
            while len(buf) >= batch_size:
                yield np.asarray(buf[:batch_size], dtype=np.int64)
                buf = buf[batch_size:]


class HeadLearner:
    """Frozen features + trainable residual head + SpCL-style hybrid memory; one instance per trial."""

    def __init__(self, features: np.ndarray, settings: HeadSettings, *, seed: int) -> None:
        self.settings = settings
        self.inputs = torch.as_tensor(np.asarray(features, dtype=np.float32))
        with torch.random.fork_rng():
            torch.manual_seed(int(seed))
            self.head = ResidualHead(self.inputs.shape[1], settings.hidden, settings.dropout)
        self.optimizer = torch.optim.Adam(self.head.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
        self.memory: torch.Tensor | None = None  # (n_pool, d), created at the first cycle
        self.indep_thres: float | None = None  # SpCL fixes it at the first epoch
        self.epochs_done = 0
        #: the labels of the last epoch (pool order); diagnostics only
        self.last_labels_: np.ndarray | None = None

    @torch.no_grad()
    def embed(self) -> np.ndarray:
        """Current L2-normalised embeddings of every row (eval mode)."""
        self.head.eval()
        with torch_threads(self.settings.threads):
            out = [self.head(self.inputs[i:i + 65536]) for i in range(0, len(self.inputs), 65536)]
        return torch.cat(out).numpy()

    def sampling_features(self, train_idx: np.ndarray) -> np.ndarray:
        """The memory (what this learner clusters), or the current embeddings before it exists."""
        if self.memory is None or len(self.memory) != len(train_idx):
            return self.embed()[np.asarray(train_idx)]
        return self.memory.numpy().copy()

    def epoch_labels(self, refine: Callable[[np.ndarray, np.ndarray], np.ndarray] | None,
                     identities: np.ndarray | None, neighbours: Any = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Pseudo-labels of the memory (SpCL + NP3 + self-paced), or the ground truth (skyline).

        ``neighbours``: the trial's :class:`~alreid.samplers.base.NeighbourCache` of this cycle; when it
        holds exactly the current memory, its Jaccard distance is reused instead of recomputed (SpCL
        also samples and clusters from one distance matrix at the start of a sampling epoch).
        """
        s = self.settings
        if s.labels == "ground_truth":
            if identities is None:
                raise ValueError("ground-truth labels need the pool's identities")
            labels = factorize(identities)
            sizes = np.bincount(labels)
            return labels, {"n_clusters": int((sizes > 1).sum()), "n_unclustered": int((sizes == 1).sum())}
        from alreid.clustering.views import dbscan_labels, singletonize

        feats = self.memory.numpy()
        cached = getattr(neighbours, "features", None)
        if cached is not None and np.shape(cached) == feats.shape and np.array_equal(cached, feats):
            dist = neighbours.jaccard(s.k1, s.k2)
        else:
            from alreid.clustering.jaccard import jaccard_distance

            dist = jaccard_distance(feats, s.k1, s.k2)
        eps_list = [("main", s.eps)] + ([("tight", s.eps - s.eps_gap), ("loose", s.eps + s.eps_gap)]
                                        if s.self_paced else [])
        labelings = {}
        for key, e in eps_list:
            labels, _ = singletonize(dbscan_labels(dist, eps=e, min_samples=s.min_samples))
            if refine is not None:
                labels = np.asarray(refine(labels, feats), dtype=np.int64)
            labelings[key] = labels
        if not s.self_paced:
            sizes = np.bincount(factorize(labelings["main"]))
            return labelings["main"], {"n_clusters": int((sizes > 1).sum()),
                                       "n_unclustered": int((sizes == 1).sum())}
        from alreid.trainers.spcl import reliable_labels

        labels, thres, stats = reliable_labels(labelings["main"], labelings["tight"], labelings["loose"],
                                               self.indep_thres)
        if self.indep_thres is None:
            self.indep_thres = thres
        return labels, stats

    def fit_cycle(self, train_idx: np.ndarray, *, seed: int,
                  refine: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
                  identities: np.ndarray | None = None, neighbours: Any = None) -> dict[str, Any]:
        """Train ``epochs_per_cycle`` epochs; each re-clusters the memory and runs ``iters`` steps."""
        with torch_threads(self.settings.threads):
            return self._fit_cycle(np.asarray(train_idx), seed=seed, refine=refine, identities=identities,
                                   neighbours=neighbours)

    def _fit_cycle(self, train_idx: np.ndarray, *, seed: int, refine: Any, identities: Any,
                   neighbours: Any) -> dict[str, Any]:
        s = self.settings
        x = self.inputs[torch.as_tensor(train_idx)]
        if self.memory is None or len(self.memory) != len(train_idx):
            # exactly what sampling_features showed the trial before this cycle (so its Jaccard is reusable)
            self.memory = torch.as_tensor(self.embed()[train_idx]).clone()
        rng = np.random.default_rng(int(seed))
        losses: list[float] = []
        stats: dict[str, Any] = {}
        t_cluster = t_train = 0.0
        n_steps = 0
        for _ in range(s.epochs_per_cycle):
            t0 = time.perf_counter()
            labels, stats = self.epoch_labels(refine, identities, neighbours)
            stats.pop("seconds_clustering", None)
            self.last_labels_ = np.asarray(labels)
            t_cluster += time.perf_counter() - t0
            sizes = np.bincount(factorize(labels))
            if s.iters == 0 or len(sizes) < 2 or (not s.instance_anchors and not (sizes > 1).any()):
                continue
            t0 = time.perf_counter()
            memory = HybridMemory(self.memory, labels, temperature=s.temperature, momentum=s.momentum)
            batches = balanced_batches(np.asarray(labels), min(s.batch_size, len(train_idx)), s.num_instances, rng,
                                       singletons=s.instance_anchors)
            self.head.train()
            for _ in range(s.iters):
                idx = torch.as_tensor(next(batches))
                f = self.head(x[idx])
                loss = memory.loss(f, idx)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
                memory.update(f, idx)
                losses.append(float(loss.detach()))
                n_steps += 1
            self.memory = memory.features
            t_train += time.perf_counter() - t0
            self.epochs_done += 1
        out = {"train_loss": float(np.mean(losses[-20:])) if losses else float("nan"),
               "train_images_per_s": n_steps * s.batch_size / max(t_train, 1e-9), "train_steps": n_steps,
               "epochs_run": s.epochs_per_cycle, "epochs_total": self.epochs_done, "lr": s.lr, "iters": s.iters,
               "momentum": s.momentum, "temperature": s.temperature, "seconds_relabel": t_cluster,
               "indep_thres": float("nan") if self.indep_thres is None else float(self.indep_thres)}
        out.update({k: v for k, v in stats.items() if np.isscalar(v)})
        return out

    def state_dict(self) -> dict[str, Any]:
        import copy

        # deep copies: a state must not change when this learner trains on (Adam updates in place)
        return {"head": copy.deepcopy(self.head.state_dict()), "optimizer": copy.deepcopy(self.optimizer.state_dict()),
                "memory": None if self.memory is None else self.memory.clone(), "indep_thres": self.indep_thres,
                "epochs_done": self.epochs_done}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.head.load_state_dict(state["head"])
        if "optimizer" in state:
            self.optimizer.load_state_dict(state["optimizer"])
        self.memory = state.get("memory")
        self.indep_thres = state.get("indep_thres")
        self.epochs_done = int(state.get("epochs_done", 0))
