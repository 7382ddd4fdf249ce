"""Clustering views used by the samplers and trainers: k-NN, k-reciprocal Jaccard, DBSCAN, FINCH, NP3.

Submodules are imported lazily by their users (``from alreid.clustering.np3 import np3``) so that
importing the package stays cheap; the names below are re-exported for convenience.
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "knn_search": "alreid.clustering.knn",
    "l2_normalise": "alreid.clustering.knn",
    "jaccard_distance": "alreid.clustering.jaccard",
    "dbscan_labels": "alreid.clustering.views",
    "dbscan_cosine": "alreid.clustering.views",
    "singletonize": "alreid.clustering.views",
    "finch_labels": "alreid.clustering.views",
    "base_clustering": "alreid.clustering.views",
    "np3": "alreid.clustering.np3",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'alreid.clustering' has no attribute {name!r}")
