"""Embedding-level trainer: a residual projection head on frozen features (spec 4.5 loss)."""

from __future__ import annotations

from typing import Any

import numpy as np

from alreid.datasets.base import ReidDataset
from alreid.errors import DatasetError
from alreid.trainers.base import CycleInput, Trainer
from alreid.plugin import check_range


class HeadTrainer(Trainer):
    """Trains a small residual head on precomputed features with SpCL's hybrid-memory loss."""

    name = "head"
    description = "residual projection head on frozen features, hybrid-memory contrastive loss (fast, CPU)"

    def __init__(self, *, hidden: int = 256, iters: int = 100, batch_size: int = 128, lr: float = 3.5e-4,
                 weight_decay: float = 5e-4, temperature: float = 0.05, momentum: float = 0.2,
                 threads: int | None = 1) -> None:
        self.hidden = hidden
        self.iters = iters
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.temperature = temperature
        self.momentum = momentum
        self.threads = threads

    def validate_params(self) -> None:
        owner = "trainer 'head'"
        check_range(owner, "hidden", self.hidden, 1, integer=True)
        check_range(owner, "iters", self.iters, 0, integer=True)
        check_range(owner, "batch_size", self.batch_size, 2, integer=True)
        check_range(owner, "lr", self.lr, 0, lo_open=True)
        check_range(owner, "weight_decay", self.weight_decay, 0)
        check_range(owner, "temperature", self.temperature, 0, lo_open=True)
        check_range(owner, "momentum", self.momentum, 0, 1, hi_open=True)
        if self.threads is not None:
            check_range(owner, "threads", self.threads, 1, integer=True)

    def setup(self, dataset: ReidDataset, *, seed: int) -> None:
        from alreid.clustering.knn import l2_normalise
        from alreid.models.head import HeadLearner, HeadSettings

        if dataset.features is None:
            raise DatasetError(
                f"dataset {dataset.name!r} has no precomputed features; use an image trainer "
                "(--trainer spcl) or extract features first with 'alreid features'")
        settings = HeadSettings(hidden=self.hidden, iters=self.iters, batch_size=self.batch_size, lr=self.lr,
                                weight_decay=self.weight_decay, temperature=self.temperature,
                                momentum=self.momentum, threads=self.threads)
        self.learner_ = HeadLearner(l2_normalise(dataset.features), settings, seed=seed)

    def embed(self) -> np.ndarray:
        return self.learner_.embed()

    def fit_cycle(self, inp: CycleInput) -> dict[str, Any]:
        return self.learner_.fit_cycle(inp.train_idx, inp.pseudo_labels, seed=inp.seed)

    def state_dict(self) -> dict[str, Any]:
        return self.learner_.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.learner_.load_state_dict(state)
