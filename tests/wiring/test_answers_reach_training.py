"""Answers reach training: for EVERY registered trainer, what fit_cycle receives honours every answer so far.

The trial is driven through its three steps (``next_pairs`` / ``answer`` / ``train_and_evaluate``) and
answered by hand with pairs the current clustering gets wrong (cannot-links inside a cluster, must-links
across clusters, truthful to the pool's identities), so an unrefined labelling violates them. A
recording wrapper around ``fit_cycle`` keeps the :class:`CycleInput` and every label vector the
trainer's ``refine`` callback hands back; the test asserts:

1. ``inp.pseudo_labels`` honours every must-link (same label) and cannot-link (different labels);
2. every output of ``inp.refine`` honours them too (the callback the re-clustering trainers use);
3. a trainer that trains on pseudo-labels calls ``refine`` at least once per cycle (a trainer that
   re-clusters and forgets the callback ignores the annotators); the reference rows are the only
   exceptions, each with its reason in :data:`NOT_ON_PSEUDO_LABELS`;
4. ``head``: the labels handed to its hybrid memory (what it trains on) honour every cannot-link and
   every must-link whose two ends both stay clustered (SpCL's self-paced step may only split).

Generic over :data:`alreid.registry.TRAINERS`: a trainer added later is picked up with no edit here.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from alreid.clustering.refine import refine_labels
from alreid.constraints import ConstraintStore
from alreid.harness.settings import make_trial_config
from alreid.harness.trial import Trial
from alreid.registry import TRAINERS

from tests.images.helpers import write_identity_dataset

# trainers that do not train on pseudo-labels, and why (so they need not call refine)
NOT_ON_PSEUDO_LABELS = {
    "baseline": "trains nothing (the frozen-backbone reference row)",
    "skyline": "trains on the ground-truth identities (the upper reference row)",
}
FEATURE_SET = "synthetic:n_images=300"
IMAGE_PARAMS = {"backbone": "tiny", "image_size": 32, "progress": False, "epochs": 2, "al_every": 1, "iters": 2,
                "batch_size": 16, "num_instances": 4, "k1": 10, "k2": 3, "threads": 1, "min_samples": 2}
HEAD_PARAMS = {"iters": 5, "epochs_per_cycle": 2}


# ---------------------------------------------------------------------------------------------------
def violations(labels: np.ndarray, store) -> list[str]:
    """Answers a labelling breaks; -1 (noise / dropped) never shares a cluster with anything.
    ``store``: a ConstraintStore or a frozen copy of its answers (a DataFrame u, v, same)."""
    labels = np.asarray(labels)
    if isinstance(store, ConstraintStore):
        store = store.answers
    ml = store.loc[store.same, ["u", "v"]].to_numpy()
    cl = store.loc[~store.same, ["u", "v"]].to_numpy()
    bad = []
    for u, v in ml:
        if labels[u] < 0 or labels[u] != labels[v]:
            bad.append(f"must-link ({u}, {v}) has labels {labels[u]}, {labels[v]}")
    for u, v in cl:
        if labels[u] >= 0 and labels[u] == labels[v]:
            bad.append(f"cannot-link ({u}, {v}) shares label {labels[u]}")
    return bad


def wrong_pairs(labels: np.ndarray, ids: np.ndarray, rng: np.random.Generator, k: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """Up to k cannot-links inside clusters and k must-links across clusters (truthful to ``ids``),
    topped up with random truthful pairs so every cycle has some of each kind when possible."""
    n = len(labels)
    ids = np.unique(np.asarray(ids).astype(str), return_inverse=True)[1]  # oracle identities, coded 0..K-1
    u, v = np.triu_indices(n, 1)
    known = np.ones(len(u), dtype=bool)
    same_id = ids[u] == ids[v]
    same_cl = (labels[u] == labels[v]) & (labels[u] >= 0)
    picks = []
    for mask in (same_cl & ~same_id & known, ~same_cl & same_id & known, same_id & known, ~same_id & known):
        idx = np.flatnonzero(mask)
        picks.extend(rng.permutation(idx)[:k].tolist())
        if len(picks) >= 2 * k:
            break
    picks = np.unique(np.asarray(picks, dtype=np.int64))
    pairs = np.stack([u[picks], v[picks]], axis=1).reshape(-1, 2)
    return pairs, ids[pairs[:, 0]] == ids[pairs[:, 1]]


class Recorder:
    """Wraps ``trainer.fit_cycle``: keeps each CycleInput and every label vector ``refine`` returned."""

    def __init__(self, trainer: Any) -> None:
        self.inputs: list[Any] = []
        self.answers: list[Any] = []  # the answers as they stood when fit_cycle was called
        self.refined: list[list[np.ndarray]] = []
        original = trainer.fit_cycle

        def fit_cycle(inp):
            outs: list[np.ndarray] = []
            refine = inp.refine

            def recording_refine(labels, feats):
                out = refine(labels, feats)
                outs.append(np.asarray(out).copy())
                return out

            inp.refine = recording_refine
            self.inputs.append(inp)
            self.answers.append(inp.constraints.answers.copy())
            self.refined.append(outs)
            return original(inp)

        trainer.fit_cycle = fit_cycle


def drive(trial: Trial, cycles: int, seed: int = 0) -> Recorder:
    """Cycle 0, then ``cycles`` cycles answered with pairs the trial's clustering gets wrong."""
    rec = Recorder(trial.trainer)
    rng = np.random.default_rng(seed)
    trial.run_cycle()  # cycle 0: evaluation only
    for _ in range(cycles):
        trial.next_pairs()
        labels = np.asarray(trial._pending["labels"])
        pairs, same = wrong_pairs(labels, np.asarray(trial.pool_identities), rng)
        keep = ~trial.constraints.is_known(pairs)
        trial.answer(pairs[keep], same[keep])
        trial.train_and_evaluate()
    return rec


def check(trainer_name: str, trial: Trial, rec: Recorder, cycles: int) -> None:
    store = trial.constraints
    assert len(store.ml_pairs()) > 0 and len(store.cl_pairs()) > 0, "the test needs both kinds of answers"
    assert len(rec.inputs) == cycles
    for c, (inp, outs, answers) in enumerate(zip(rec.inputs, rec.refined, rec.answers), start=1):
        assert inp.constraints is store and inp.cycle == c
        # every answer given so far (this cycle's included) reached the trainer
        assert len(answers) == int((store.answers.cycle <= c).sum()) and set(answers.cycle) == set(range(1, c + 1))
        assert violations(inp.pseudo_labels, answers) == [], f"{trainer_name}: cycle {c} pseudo-labels"
        for k, out in enumerate(outs):
            assert violations(out, answers) == [], f"{trainer_name}: cycle {c}, refine call {k}"
        if trainer_name not in NOT_ON_PSEUDO_LABELS:
            assert outs, (f"trainer {trainer_name!r} never called CycleInput.refine in cycle {c}: its training "
                          "labels ignore the answers")


# ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def image_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("wiring_images")
    write_identity_dataset(root, n_ids=6, per_id=5, noise=40, seed=5)
    return root


@pytest.fixture(autouse=True)
def _private_feature_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ALREID_CACHE_DIR", str(tmp_path / "feature-cache"))


def make_trial(trainer_name: str, image_root, refine: str = "np3") -> Trial:
    cls = TRAINERS.get(trainer_name)
    if cls.needs_images:
        dataset = f"metadata:{image_root}"
        params = {k: v for k, v in IMAGE_PARAMS.items() if k in cls.param_names()}
    else:
        dataset = FEATURE_SET
        params = {k: v for k, v in HEAD_PARAMS.items() if k in cls.param_names()}
    cfg = make_trial_config({"dataset": dataset, "method": "none", "trainer": trainer_name, "cycles": 2,
                             "seed": 0, "refine": refine, "trainer_params": params})
    return Trial(cfg)


@pytest.mark.parametrize("trainer_name", TRAINERS.names())
def test_every_trainer_receives_labels_that_honour_the_answers(trainer_name, image_set):
    trial = make_trial(trainer_name, image_set)
    rec = drive(trial, cycles=2)
    check(trainer_name, trial, rec, cycles=2)


def test_the_trial_refines_with_np3_not_raw_clusters(image_set):
    """The hand-picked answers really contradict the raw clustering: without refinement they break."""
    trial = make_trial("head", image_set)
    trial.run_cycle()
    trial.next_pairs()
    raw = np.asarray(trial._pending["labels"]).copy()
    pairs, same = wrong_pairs(raw, np.asarray(trial.pool_identities), np.random.default_rng(0))
    trial.answer(pairs, same)
    assert violations(raw, trial.constraints), "raw labels should break some answers"
    assert trial.cfg.refine == "np3"


def test_head_trains_its_memory_on_the_refined_labels(monkeypatch, image_set):
    import alreid.models.head as head_mod

    seen: list[tuple[np.ndarray, Any]] = []  # (labels given to the hybrid memory, answers at that time)
    real = head_mod.HybridMemory
    holder: dict[str, Trial] = {}

    def recording(memory, labels, **kw):
        seen.append((np.asarray(labels).copy(), holder["trial"].constraints.answers.copy()))
        return real(memory, labels, **kw)

    monkeypatch.setattr(head_mod, "HybridMemory", recording)
    trial = holder["trial"] = make_trial("head", image_set)
    rec = drive(trial, cycles=2)
    assert len(seen) == 4, "2 cycles x 2 epochs of training expected"
    for labels, answers in seen:
        _, inv = np.unique(labels, return_inverse=True)
        clustered = np.bincount(inv)[inv] > 1
        for u, v in answers.loc[~answers.same, ["u", "v"]].to_numpy():
            assert labels[u] != labels[v], f"head trains cannot-link ({u}, {v}) as one identity"
        for u, v in answers.loc[answers.same, ["u", "v"]].to_numpy():
            if clustered[u] and clustered[v]:
                assert labels[u] == labels[v], f"head trains must-link ({u}, {v}) as two identities"
    # every trained cluster lies inside one cluster of that epoch's refined main labelling:
    # spcl_pseudo_labels refines main, tight and loose in that order, and self-paced only splits
    outs = [o for cycle in rec.refined for o in cycle]
    assert len(outs) == 3 * len(seen)
    for (labels, _), main in zip(seen, outs[0::3]):
        _, inv = np.unique(labels, return_inverse=True)
        for c in np.unique(inv):
            assert len(np.unique(main[inv == c])) == 1


# refine_labels ------------------------------------------------------------------------------------
def _store(n: int, ml=(), cl=()) -> ConstraintStore:
    s = ConstraintStore(n)
    for u, v in ml:
        s.add(u, v, True)
    for u, v in cl:
        s.add(u, v, False)
    return s


def same_partition(a, b) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    pairs = np.unique(np.stack([a, b], 1), axis=0)
    return len(pairs) == len(np.unique(a)) == len(np.unique(b))


def test_refine_labels_ml_merge_by_hand():
    """Clusters {0,1} {2,3} {4} {5,6} {7}; ML(1,2) joins the first two, ML(4,7)+ML(7,6) chains {4}, {7}
    and {5,6}; CL answers are ignored by ml_merge. Expected partition {0..3} {4..7}."""
    labels = np.array([0, 0, 1, 1, 2, 3, 3, 4])
    store = _store(8, ml=[(1, 2), (4, 7), (6, 7)], cl=[(0, 3)])
    out = refine_labels(labels, store, np.zeros((8, 2)), "ml_merge")
    assert same_partition(out, [0, 0, 0, 0, 1, 1, 1, 1])
    assert sorted(np.unique(out).tolist()) == [0, 1]  # renumbered 0..C-1


def test_refine_labels_ml_merge_through_a_depth_two_union_find():
    labels = np.arange(6)
    store = _store(6, ml=[(0, 1), (2, 3), (0, 2)])  # 3 sits two parent steps below its root
    out = refine_labels(labels, store, np.zeros((6, 2)), "ml_merge")
    assert same_partition(out, [0, 0, 0, 0, 1, 2])


def test_refine_labels_modes():
    labels = np.array([0, 0, 0, 1, 1])
    z = np.array([[1.0, 0], [0.9, 0.1], [0, 1], [0.1, 1], [0, 1]])
    store = _store(5, ml=[(2, 3)], cl=[(0, 2)])
    assert refine_labels(labels, store, z, "none") is labels
    assert refine_labels(labels, ConstraintStore(5), z, "np3") is labels  # no answers: untouched
    out = refine_labels(labels, store, z, "np3")
    assert violations(out, store) == []
    # NP3 by hand: ML(2,3) merges clusters 0 and 1 (id 0); CL(0,2) splits it into {0} and the ML
    # group {2,3}; free 1 (0.9, 0.1) is nearer {0}, free 4 (0, 1) nearer {2, 3}
    assert same_partition(out, [0, 0, 1, 1, 1])
    merged = refine_labels(labels, store, z, "ml_merge")
    assert same_partition(merged, [0, 0, 0, 0, 0])  # ml_merge never splits: the CL stays broken
    opts = {"cost": "euclidean", "unconstrained": "margin", "exact_colouring_max": 3, "colouring": "largest_first"}
    assert violations(refine_labels(labels, store, z, "np3", opts), store) == []
