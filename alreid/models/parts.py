"""Horizontal-stripe branches on a backbone's feature map (PPLR's parts, PurificationReID's upper/lower views).

Each branch pools one horizontal stripe of the map (average or GeM, like the global branch) and has its
own BatchNorm neck with a frozen bias, as the reference models do (spec table1_rows 2.1, 4.1).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from alreid.models.backbones import GeM


def stripe_bounds(height: int, n_parts: int) -> list[tuple[int, int]]:
    """Row ranges of ``n_parts`` stripes with adaptive pooling's rule: [floor(i h / n), ceil((i + 1) h / n))."""
    return [(math.floor(i * height / n_parts), math.ceil((i + 1) * height / n_parts)) for i in range(n_parts)]


class StripeHead(nn.Module):
    """``n_parts`` stripe embeddings (B, d) each: pool the stripe, then its BatchNorm neck."""

    def __init__(self, dim: int, n_parts: int, pooling: str = "avg") -> None:
        super().__init__()
        self.n_parts = int(n_parts)
        self.pooling = pooling
        self.pools = nn.ModuleList([GeM() for _ in range(self.n_parts)]) if pooling == "gem" else None
        self.necks = nn.ModuleList([nn.BatchNorm1d(dim) for _ in range(self.n_parts)])
        for neck in self.necks:
            neck.bias.requires_grad_(False)

    def forward(self, fmap: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for i, (lo, hi) in enumerate(stripe_bounds(fmap.shape[-2], self.n_parts)):
            stripe = fmap[:, :, lo:hi, :]
            pooled = self.pools[i](stripe) if self.pools is not None else F.adaptive_avg_pool2d(stripe, 1).flatten(1)
            out.append(self.necks[i](pooled))
        return out


class GlobalAndStripes(nn.Module):
    """Backbone + stripe head as one module: returns the global embedding and the stripes concatenated,
    so one extraction pass (:func:`alreid.models.features.extract_features`) yields every view."""

    def __init__(self, backbone: nn.Module, head: StripeHead) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fmap = self.backbone.features(x)
        glob = self.backbone.neck(self.backbone.pool(fmap))
        return torch.cat([F.normalize(v.float(), dim=1) for v in [glob, *self.head(fmap)]], dim=1)
