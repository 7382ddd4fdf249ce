"""Embedding-level trainer: a residual projection head on frozen features, trained like SpCL (spec 4.4-4.5).

``head`` is the fast proxy of SpCL for frozen features (CPU, seconds per cycle): same hybrid memory,
same per-epoch re-clustering (Jaccard + DBSCAN at eps and eps -/+ gap, NP3 with the current
constraints, self-paced reliability), same identity-balanced batches, temperature and momentum.
``labels="ground_truth"`` trains the same head on the pool's true identities: the head's skyline row
(``{name: skyline, sampler: none, trainer: head, trainer_params: {labels: ground_truth}}``), the only
setting under which this trainer reads ground truth (see :attr:`HeadTrainer.needs_identities`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from alreid.datasets.base import ReidDataset
from alreid.errors import AlreidError, ConfigError, DatasetError
from alreid.trainers.base import CycleInput, Trainer
from alreid.plugin import check_range

LABEL_SOURCES = ("pseudo", "ground_truth")


class HeadTrainer(Trainer):
    """Residual head on frozen features with SpCL's loop; defaults chosen on the shared real sets (issue 14).

    Defaults, and why (README "Real-data benchmark" has the measurements):

    * ``eps=0.3`` (SpCL: 0.6): on ImageNet Lite0 features DBSCAN at 0.6 chains the pool into a few
      giant clusters (lion: 5 clusters hold 576 of 601 images; dogfacenet: one of 722 images; pair
      precision 0.7-2.8 %); at 0.3 dogfacenet's clusters are 63 % pair-precise and nyala/lion, whose
      features carry almost no identity, keep only a handful of small clusters.
    * ``instance_anchors=False``: un-clustered images stay negatives in the hybrid memory (as in SpCL)
      but are not drawn as anchors. SpCL learns augmentation invariance from them; a head on frozen
      features sees no augmentation, so instance anchors only spread the features apart (nyala: mAP
      5.35 -> 5.29 with them, 5.35 -> 5.6 without).
    * ``epochs_per_cycle=1``, ``iters=100``: SpCL runs 10 epochs x 400 iterations per cycle on a
      ResNet-50; a one-layer head converges much sooner, and each epoch re-clusters (the first epoch of
      a cycle reuses the trial's Jaccard matrix of the same memory).
    * ``self_paced=True``: SpCL's reliability criterion on DBSCAN at eps and eps -/+ ``eps_gap``.
    * ``eps_gap=0.02``, ``min_samples=4``, ``k1=30``, ``k2=6``, ``temperature=0.05``, ``momentum=0.2``,
      ``batch_size=64``, ``num_instances=4``, ``lr=3.5e-4``, ``weight_decay=5e-4``: SpCL's values (spec 4.2).
    * ``dropout``: dropout on the input features during training (off).
    * ``labels="ground_truth"``: the head's skyline; ``threads=1``: intra-op threads (parallel trials).
    """

    name = "head"
    description = "residual head on frozen features trained like SpCL (hybrid memory, self-paced DBSCAN + NP3; CPU)"

    def __init__(self, *, hidden: int = 256, epochs_per_cycle: int = 1, iters: int = 100, batch_size: int = 64,
                 num_instances: int = 4, lr: float = 3.5e-4, weight_decay: float = 5e-4, temperature: float = 0.05,
                 momentum: float = 0.2, eps: float = 0.3, eps_gap: float = 0.02, min_samples: int = 4, k1: int = 30,
                 k2: int = 6, self_paced: bool = True, instance_anchors: bool = False, dropout: float = 0.0,
                 labels: str = "pseudo", threads: int | None = 1) -> None:
        self.hidden, self.epochs_per_cycle, self.iters, self.batch_size = hidden, epochs_per_cycle, iters, batch_size
        self.num_instances, self.lr, self.weight_decay = num_instances, lr, weight_decay
        self.temperature, self.momentum = temperature, momentum
        self.eps, self.eps_gap, self.min_samples, self.k1, self.k2 = eps, eps_gap, min_samples, k1, k2
        self.self_paced, self.instance_anchors = self_paced, instance_anchors
        self.dropout, self.labels, self.threads = dropout, labels, threads

    @property
    def needs_identities(self) -> bool:
        """Only the skyline setting (``labels="ground_truth"``) may read the pool's identities."""
        return self.labels == "ground_truth"

    def validate_params(self) -> None:
        owner = f"trainer {self.name!r}"
        check_range(owner, "hidden", self.hidden, 1, integer=True)
        check_range(owner, "epochs_per_cycle", self.epochs_per_cycle, 0, integer=True)
        check_range(owner, "iters", self.iters, 0, integer=True)
        check_range(owner, "batch_size", self.batch_size, 2, integer=True)
        check_range(owner, "num_instances", self.num_instances, 1, integer=True)
        check_range(owner, "lr", self.lr, 0, lo_open=True)
        check_range(owner, "weight_decay", self.weight_decay, 0)
        check_range(owner, "temperature", self.temperature, 0, lo_open=True)
        check_range(owner, "momentum", self.momentum, 0, 1, hi_open=True)
        check_range(owner, "eps", self.eps, 0, 1, lo_open=True)
        check_range(owner, "eps_gap", self.eps_gap, 0, self.eps, hi_open=True)
        check_range(owner, "min_samples", self.min_samples, 1, integer=True)
        check_range(owner, "k1", self.k1, 2, integer=True)
        check_range(owner, "k2", self.k2, 1, integer=True)
        check_range(owner, "dropout", self.dropout, 0, 1, hi_open=True)
        for flag in ("self_paced", "instance_anchors"):
            if not isinstance(getattr(self, flag), bool):
                raise ConfigError(f"{owner}: {flag} must be true or false (got {getattr(self, flag)!r})")
        if self.labels not in LABEL_SOURCES:
            raise ConfigError(f"{owner}: labels must be one of {', '.join(LABEL_SOURCES)} (got {self.labels!r})")
        if self.threads is not None:
            check_range(owner, "threads", self.threads, 1, integer=True)

    def setup(self, dataset: ReidDataset, *, seed: int) -> None:
        from alreid.clustering.knn import l2_normalise
        from alreid.models.head import HeadLearner, HeadSettings

        if dataset.features is None:
            raise DatasetError(
                f"dataset {dataset.name!r} has no precomputed features; use an image trainer "
                "(--trainer spcl) or extract features first with 'alreid features'")
        settings = HeadSettings(**{k: getattr(self, k) for k in HeadSettings.__dataclass_fields__})
        self.learner_ = HeadLearner(l2_normalise(dataset.features), settings, seed=seed)

    def embed(self) -> np.ndarray:
        return self.learner_.embed()

    def sampling_features(self, train_idx: np.ndarray) -> np.ndarray:
        """The hybrid memory, what the head itself clusters (as SpCL: spec 1.11 ``aas_features="memory"``)."""
        return self.learner_.sampling_features(train_idx)

    def fit_cycle(self, inp: CycleInput) -> dict[str, Any]:
        identities = None
        if self.needs_identities:
            identities = inp.identities
            if identities is None:
                raise AlreidError("trainer 'head' with labels=ground_truth needs the pool's identities, "
                                  "which this trial did not pass")
        return self.learner_.fit_cycle(inp.train_idx, seed=inp.seed, refine=inp.refine, identities=identities,
                                       neighbours=inp.extras.get("neighbours"))

    def state_dict(self) -> dict[str, Any]:
        return self.learner_.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.learner_.load_state_dict(state)
