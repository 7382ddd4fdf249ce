"""The trainer plugin interface: what updates the embedding between active-learning cycles.

A trainer owns the model (a projection head on frozen features, or a whole backbone on images),
produces embeddings of every dataset row, and trains for one cycle on the training pool given the
constraint-refined pseudo-labels. Trainers that re-cluster every epoch (SpCL, ClusterContrast) use
``CycleInput.refine`` to apply the current constraints (NP3) to their own clusterings.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from alreid.constraints import ConstraintStore
from alreid.datasets.base import ReidDataset
from alreid.plugin import Configurable


@dataclass
class CycleInput:
    """What a trainer gets for one cycle; indices in ``pseudo_labels`` follow ``train_idx``."""

    cycle: int
    seed: int
    train_idx: np.ndarray
    pseudo_labels: np.ndarray
    constraints: ConstraintStore
    refine: Callable[[np.ndarray, np.ndarray], np.ndarray]  # (labels, features) -> labels honouring constraints
    identities: np.ndarray | None = None  # ground truth of the pool: only for trainers with needs_identities
    extras: dict[str, Any] = field(default_factory=dict)


class Trainer(Configurable, abc.ABC):
    """Base class of trainers; hyperparameters are keyword-only constructor arguments."""

    name: str = ""
    kind: str = "trainer"
    description: str = ""
    version: str = "1"
    #: True when the trainer reads images (it needs a dataset with a root and paths)
    needs_images: bool = False
    #: True only for trainers that train on ground truth (skyline rows): the trial then passes the pool's
    #: identities in ``CycleInput.identities`` and the dataset with its identity column; every other
    #: trainer gets ``identities=None`` and a dataset whose identities all read 'unknown'
    needs_identities: bool = False

    @abc.abstractmethod
    def setup(self, dataset: ReidDataset, *, seed: int) -> None:
        """Build the model for ``dataset``; called once per trial before :meth:`embed`."""

    @abc.abstractmethod
    def embed(self) -> np.ndarray:
        """L2-normalised embeddings of every dataset row, float32 (n, d)."""

    def planned_cycles(self) -> int | None:
        """Active-learning cycles this trainer's schedule implies (None: no opinion, the default 5 applies).
        Used by ``alreid run`` and ``alreid bench`` when cycles are not given."""
        return None

    def sampling_features(self, train_idx: np.ndarray) -> np.ndarray:
        """What the base clustering and the sampler see for the pool; SpCL overrides it with its memory."""
        return self.embed()[np.asarray(train_idx)]

    @abc.abstractmethod
    def fit_cycle(self, inp: CycleInput) -> dict[str, Any]:
        """Train between two cycles; returns numbers worth logging (loss, images/s, ...)."""

    @abc.abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume (weights, optimiser, schedule position)."""

    @abc.abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
