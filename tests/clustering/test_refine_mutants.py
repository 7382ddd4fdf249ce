"""refine_labels details pinned by the mutation review (tests/mutants/SURVIVORS.md)."""

from __future__ import annotations

import numpy as np
import pytest

import alreid.clustering.refine as refine
from alreid.constraints import ConstraintStore


def test_np3_options_reach_np3(monkeypatch):
    seen = {}

    def spy(labels, ml, cl, features, **options):
        seen.update(options)
        return labels

    monkeypatch.setattr(refine, "np3", spy)
    store = ConstraintStore(3)
    store.add(0, 1, False)
    opts = {"cost": "euclidean", "unconstrained": "margin", "exact_colouring_max": 3, "colouring": "largest_first"}
    refine.refine_labels(np.zeros(3, np.int64), store, np.eye(3), "np3", opts)
    assert seen == opts
    seen.clear()
    refine.refine_labels(np.zeros(3, np.int64), store, np.eye(3), "np3")
    assert seen == {}  # no options: np3's own defaults


def test_unknown_np3_option_is_not_silently_dropped():
    store = ConstraintStore(3)
    store.add(0, 1, False)
    with pytest.raises(TypeError, match="no_such_option"):
        refine.refine_labels(np.zeros(3, np.int64), store, np.eye(3), "np3", {"no_such_option": 1})
