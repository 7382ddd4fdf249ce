"""A small projection head trained on frozen features: the embedding-level learner.

The head is residual with a zero-initialised output layer, so before any training it is the identity
map: cycle-0 embeddings are exactly the frozen features, and training moves away from them only as
far as the pseudo-labels justify.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Iterator

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
    """x -> normalise(x + W2 relu(W1 x)); W2 starts at zero."""

    def __init__(self, dim: int, hidden: int = 256) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        nn.init.zeros_(self.fc2.weight)
        nn.init.zeros_(self.fc2.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x + self.fc2(F.relu(self.fc1(x))), dim=1)


@dataclass
class HeadSettings:
    """Training settings; the defaults live in :class:`alreid.trainers.head.HeadTrainer` only."""

    hidden: int
    iters: int
    batch_size: int
    lr: float
    weight_decay: float
    temperature: float
    momentum: float
    threads: int | None


class HeadLearner:
    """Frozen features + trainable residual head; one instance per trial."""

    def __init__(self, features: np.ndarray, settings: HeadSettings, *, seed: int) -> None:
        self.settings = settings
        self.inputs = torch.as_tensor(np.asarray(features, dtype=np.float32))
        gen = torch.Generator().manual_seed(int(seed))
        with torch.random.fork_rng():
            torch.manual_seed(int(gen.initial_seed()))
            self.head = ResidualHead(self.inputs.shape[1], settings.hidden)

    @torch.no_grad()
    def embed(self) -> np.ndarray:
        """Current L2-normalised embeddings of every row (eval mode)."""
        self.head.eval()
        with torch_threads(self.settings.threads):
            out = [self.head(self.inputs[i:i + 65536]) for i in range(0, len(self.inputs), 65536)]
        return torch.cat(out).numpy()

    def fit_cycle(self, train_idx: np.ndarray, pseudo_labels: np.ndarray, *, seed: int) -> dict[str, Any]:
        """Train the head on the pseudo-labels of the training pool with the hybrid-memory loss."""
        with torch_threads(self.settings.threads):
            return self._fit_cycle(train_idx, pseudo_labels, seed=seed)

    def _fit_cycle(self, train_idx: np.ndarray, pseudo_labels: np.ndarray, *, seed: int) -> dict[str, Any]:
        s = self.settings
        if len(np.unique(pseudo_labels)) < 2 or s.iters == 0:
            return {"train_loss": float("nan"), "train_images_per_s": 0.0}
        import time

        gen = torch.Generator().manual_seed(int(seed))
        x = self.inputs[torch.as_tensor(train_idx)]
        with torch.no_grad():
            self.head.eval()
            memory = HybridMemory(self.head(x), pseudo_labels, temperature=s.temperature, momentum=s.momentum)
        opt = torch.optim.Adam(self.head.parameters(), lr=s.lr, weight_decay=s.weight_decay)
        self.head.train()
        n = len(train_idx)
        bs = min(s.batch_size, n)
        losses = []
        t0 = time.perf_counter()
        for _ in range(s.iters):
            idx = torch.randperm(n, generator=gen)[:bs]
            f = self.head(x[idx])
            loss = memory.loss(f, idx)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            memory.update(f, idx)
            losses.append(float(loss.detach()))
        dt = time.perf_counter() - t0
        return {"train_loss": float(np.mean(losses[-20:])), "train_images_per_s": s.iters * bs / max(dt, 1e-9)}

    def state_dict(self) -> dict[str, Any]:
        return {"head": self.head.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.head.load_state_dict(state["head"])
