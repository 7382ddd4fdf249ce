"""SpCL's hybrid memory (spec 4.5): one slot per training item, contrast against cluster centroids.

The class score of cluster c is the mean of ``f . M_j / tau`` over its members j, which equals
``f . mean(M_j) / tau``; so the loss is a softmax over centroids of the memory (clusters) and over
single slots (un-clustered instances), computed without any n x n matrix.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


class HybridMemory:
    """Memory of L2-normalised features with per-item pseudo-labels and momentum updates."""

    def __init__(self, features: torch.Tensor, labels: np.ndarray, *, temperature: float = 0.05,
                 momentum: float = 0.2) -> None:
        self.features = F.normalize(features.detach().float(), dim=1).clone()
        labels = np.asarray(labels)
        _, inv = np.unique(labels, return_inverse=True)
        self.labels = torch.as_tensor(inv, dtype=torch.long, device=self.features.device)
        self.n_classes = int(inv.max()) + 1 if len(inv) else 0
        self.counts = torch.bincount(self.labels, minlength=self.n_classes).float()
        self.temperature = temperature
        self.momentum = momentum

    def centroids(self) -> torch.Tensor:
        """Unnormalised mean memory vector of every class (the mean of member similarities)."""
        sums = torch.zeros(self.n_classes, self.features.shape[1], dtype=self.features.dtype,
                           device=self.features.device)
        sums.index_add_(0, self.labels, self.features)
        return sums / self.counts[:, None]

    def loss(self, f: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of each item's embedding against its own class among all classes."""
        logits = f @ self.centroids().T / self.temperature
        return F.cross_entropy(logits, self.labels[idx])

    @torch.no_grad()
    def update(self, f: torch.Tensor, idx: torch.Tensor) -> None:
        """M_i <- normalise(momentum * M_i + (1 - momentum) * f_i)."""
        mixed = self.momentum * self.features[idx] + (1.0 - self.momentum) * f.detach()
        self.features[idx] = F.normalize(mixed, dim=1)
