"""Make pseudo-labels honour the annotators' answers: NP3 (default), must-link merge only, or nothing."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from alreid.clustering.np3 import np3
from alreid.constraints import ConstraintStore

REFINE_MODES = ("np3", "ml_merge", "none")


def refine_labels(labels: np.ndarray, constraints: ConstraintStore, features: np.ndarray, mode: str,
                  np3_options: dict[str, Any] | None = None) -> np.ndarray:
    """``labels`` changed as little as possible so the constraints hold (``mode`` in :data:`REFINE_MODES`)."""
    if mode == "none" or len(constraints) == 0:
        return labels
    if mode == "ml_merge":
        # relabel each cluster by the smallest must-link root touching it, transitively
        roots = constraints.roots()
        k = int(labels.max()) + 1
        n = len(labels)
        g = coo_matrix((np.ones(n), (labels, k + roots)), shape=(k + n, k + n))
        _, comp = connected_components(g, directed=False)
        _, out = np.unique(comp[labels], return_inverse=True)
        return out
    return np3(labels, constraints.ml_pairs(), constraints.cl_pairs(), features, **(np3_options or {}))
