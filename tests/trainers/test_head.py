"""The head trainer: identity at start, SpCL-style memory and relabelling, the ground-truth skyline,
no access to identities unless it trains on them, resumable state."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from alreid.constraints import ConstraintStore
from alreid.datasets.base import ReidDataset
from alreid.errors import AlreidError, ConfigError
from alreid.registry import TRAINERS
from alreid.trainers.base import CycleInput


def _dataset(n_ids: int = 12, per_id: int = 8, dim: int = 32, noise: float = 1.2, seed: int = 0,
             loners: int = 0) -> ReidDataset:
    """``n_ids`` identities of ``per_id`` images around random centres, plus ``loners`` one-image identities."""
    rng = np.random.default_rng(seed)
    ids = np.concatenate([np.repeat(np.arange(n_ids), per_id), n_ids + np.arange(loners)])
    x = rng.standard_normal((n_ids + loners, dim))[ids] + noise * rng.standard_normal((len(ids), dim))
    meta = pd.DataFrame({"image_id": [f"i{i}" for i in range(len(ids))], "identity": [f"id{i}" for i in ids],
                         "path": [f"p{i}.jpg" for i in range(len(ids))]})
    return ReidDataset(name="toy", metadata=meta, features=x.astype(np.float32))


class _NoPeeking:
    """Identities that fail the test when anything reads them."""

    def __array__(self, *args, **kwargs):
        raise AssertionError("a trainer that does not declare needs_identities read the identities")

    def __len__(self):
        raise AssertionError("a trainer that does not declare needs_identities read the identities")


def _trainer(**params):
    return TRAINERS.get("head").from_params({"iters": 30, **params})


def _inp(ds: ReidDataset, *, cycle: int = 1, identities=None, extras=None) -> CycleInput:
    n = ds.n
    return CycleInput(cycle=cycle, seed=cycle, train_idx=np.arange(n), pseudo_labels=np.arange(n),
                      constraints=ConstraintStore(n), refine=lambda lab, feats: lab,
                      identities=identities, extras=extras or {})


def _separation(emb: np.ndarray, ids: np.ndarray) -> float:
    """Mean cosine of same-identity pairs minus that of different-identity pairs."""
    s = emb @ emb.T
    same = ids[:, None] == ids[None, :]
    off = ~np.eye(len(ids), dtype=bool)
    return float(s[same & off].mean() - s[~same].mean())


def test_head_starts_as_the_identity_map():
    ds = _dataset()
    t = _trainer()
    t.setup(ds, seed=0)
    x = ds.features / np.linalg.norm(ds.features, axis=1, keepdims=True)
    np.testing.assert_allclose(t.embed(), x, atol=1e-6)
    np.testing.assert_allclose(t.sampling_features(np.arange(5)), x[:5], atol=1e-6)


def test_ground_truth_skyline_separates_identities_and_declares_it():
    ds = _dataset()
    ids = ds.identities
    t = _trainer(labels="ground_truth", iters=60, lr=1e-3)
    assert t.needs_identities
    t.setup(ds, seed=0)
    before = _separation(t.embed(), ids)
    for c in (1, 2):
        stats = t.fit_cycle(_inp(ds, cycle=c, identities=ids))
    assert stats["n_clusters"] == 12 and stats["n_unclustered"] == 0
    assert _separation(t.embed(), ids) > before + 0.05


def test_skyline_without_identities_is_a_clear_error():
    ds = _dataset()
    t = _trainer(labels="ground_truth")
    t.setup(ds, seed=0)
    with pytest.raises(AlreidError, match="labels=ground_truth needs the pool's identities"):
        t.fit_cycle(_inp(ds, identities=None))


def test_pseudo_label_head_never_reads_identities():
    ds = _dataset()
    t = _trainer(instance_anchors=True)
    assert not t.needs_identities
    t.setup(ds, seed=0)
    stats = t.fit_cycle(_inp(ds, identities=_NoPeeking()))
    assert stats["train_steps"] == 30


def test_memory_persists_across_cycles_and_is_what_samplers_see():
    ds = _dataset()
    t = _trainer(eps=0.6)
    t.setup(ds, seed=0)
    t.fit_cycle(_inp(ds, cycle=1))
    mem1 = t.sampling_features(np.arange(ds.n))
    np.testing.assert_allclose(mem1, t.learner_.memory.numpy())
    assert not np.allclose(mem1, t.embed())  # momentum-updated memory, not a fresh extraction
    t.fit_cycle(_inp(ds, cycle=2))
    assert not np.allclose(t.sampling_features(np.arange(ds.n)), mem1)
    np.testing.assert_allclose(np.linalg.norm(t.learner_.memory.numpy(), axis=1), 1.0, atol=1e-5)


def test_reuses_the_trials_jaccard_only_for_the_same_features():
    from alreid.samplers.base import NeighbourCache

    ds = _dataset()
    t = _trainer(epochs_per_cycle=2)
    t.setup(ds, seed=0)
    feats = t.sampling_features(np.arange(ds.n)).copy()
    calls = []

    class Spy(NeighbourCache):
        def jaccard(self, k1, k2):
            calls.append((k1, k2))
            return super().jaccard(k1, k2)

    t.fit_cycle(_inp(ds, extras={"neighbours": Spy(feats)}))
    assert calls == [(30, 6)]  # epoch 1 reuses it; epoch 2 clusters the updated memory itself
    calls.clear()
    t.fit_cycle(_inp(ds, cycle=2, extras={"neighbours": Spy(feats)}))  # stale features: not reused
    assert calls == []


def test_singletons_are_negatives_but_never_anchors_by_default(monkeypatch):
    """Default: batches hold only clustered images (every drawn index has a cluster-mate in the
    labels of that epoch); with instance_anchors=True singletons are drawn too."""
    import alreid.models.head as head_mod

    ds = _dataset(noise=0.6, loners=16)
    seen: list[tuple[np.ndarray, np.ndarray]] = []
    real = head_mod.HybridMemory

    class Spy(real):
        def loss(self, f, idx):
            seen.append((self.labels.numpy().copy(), idx.numpy().copy()))
            return super().loss(f, idx)

    monkeypatch.setattr(head_mod, "HybridMemory", Spy)
    for anchors in (False, True):
        seen.clear()
        t = _trainer(eps=0.6, self_paced=False, instance_anchors=anchors)
        t.setup(ds, seed=0)
        t.fit_cycle(_inp(ds))
        labels, _ = seen[0]
        sizes = np.bincount(labels)
        assert (sizes == 1).any() and (sizes > 1).any()  # both kinds exist in the memory
        drawn = np.concatenate([idx for _, idx in seen])
        singles = sizes[labels[drawn]] == 1
        assert singles.any() == anchors


def test_no_cluster_no_training_without_instance_anchors():
    ds = _dataset()
    t = _trainer(min_samples=1000)  # no core point: every image is DBSCAN noise, its own cluster
    t.setup(ds, seed=0)
    before = t.embed().copy()
    stats = t.fit_cycle(_inp(ds))
    assert stats["train_steps"] == 0
    np.testing.assert_array_equal(t.embed(), before)


def test_state_round_trip_resumes_identically():
    ds = _dataset()
    a = _trainer(instance_anchors=True)
    a.setup(ds, seed=3)
    a.fit_cycle(_inp(ds, cycle=1))
    state = {k: (v.clone() if isinstance(v, torch.Tensor) else v) for k, v in a.state_dict().items()}
    b = _trainer(instance_anchors=True)
    b.setup(ds, seed=99)
    b.load_state_dict(state)
    np.testing.assert_allclose(a.embed(), b.embed(), atol=1e-6)
    a.fit_cycle(_inp(ds, cycle=2))
    b.fit_cycle(_inp(ds, cycle=2))
    np.testing.assert_allclose(a.embed(), b.embed(), atol=1e-5)


@pytest.mark.parametrize("params, match", [
    ({"labels": "gt"}, "labels must be one of pseudo, ground_truth"),
    ({"eps": 0.4, "eps_gap": 0.5}, "eps_gap"),
    ({"self_paced": "yes"}, "self_paced must be true or false"),
    ({"dropout": 1.0}, "dropout"),
])
def test_bad_parameters_are_config_errors(params, match):
    with pytest.raises(ConfigError, match=match):
        TRAINERS.get("head").from_params(params)
