"""Issue 17 / issue 10 item 5: the image trainers' training budget and the fixes found against official SpCL."""

from __future__ import annotations

import math

import torch

import numpy as np
import pytest

from alreid.cli import main as cli_main
from alreid.errors import ConfigError
from alreid.trainers.clustercontrast import ClusterContrastTrainer
from alreid.trainers.spcl import SpCLTrainer


# issue 10 item 5: official iterations per epoch by default, one pass only when asked ------------------
def test_default_iterations_are_the_official_ones_whatever_the_pool_size():
    # yxgeee/SpCL spcl_train_usl.py --iters 400; alibaba/cluster-contrast-reid --iters 400 (argparse default)
    for trainer, official in ((SpCLTrainer(), 400), (ClusterContrastTrainer(), 400)):
        for n in (50, 1_000, 6_650, 100_000):
            assert trainer.iters_for(n) == official, (trainer.name, n)


def test_one_pass_is_a_named_option_capped_at_the_official_value():
    t = SpCLTrainer(iters="one_pass")  # batch 64
    assert [t.iters_for(n) for n in (1, 64, 65, 6_650, 10 ** 6)] == [1, 1, 2, math.ceil(6_650 / 64), 400]
    cc = ClusterContrastTrainer(iters="one_pass")  # batch 256
    assert cc.iters_for(1_000) == 4 and cc.iters_for(10 ** 6) == 400
    assert SpCLTrainer(iters=7).iters_for(10 ** 6) == 7


@pytest.mark.parametrize("bad", ["onepass", "all", 0, -3, 2.5])
def test_bad_iters_value_names_the_choices(bad):
    with pytest.raises(ConfigError, match="iters"):
        SpCLTrainer(iters=bad).validate_params()


def test_run_command_has_an_iters_flag():
    import argparse

    from alreid.commands.run import add_trial_arguments

    p = argparse.ArgumentParser()
    add_trial_arguments(p)
    assert p.parse_args(["--iters", "one_pass"]).tp_iters == "one_pass"
    assert p.parse_args(["--iters", "120"]).tp_iters == 120
    assert p.parse_args([]).tp_iters is None  # not given: the trainer's official default


def test_run_command_rejects_a_bad_iters_value(capsys):
    with pytest.raises(SystemExit) as exc:
        cli_main(["run", "--trainer", "spcl", "--iters", "lots"])
    assert exc.value.code == 2
    assert "one_pass" in capsys.readouterr().err


# issue 17: eps from the start features (eps="auto"), an option; SpCL's 0.6 stays the default ---------------
def test_eps_from_density_is_the_mean_of_the_smallest_pair_distances():
    import scipy.sparse as sp

    from alreid.trainers.spcl import eps_from_density

    # 4 items, 6 pairs; stored upper distances 0.1 (0-1), 0.3 (2-3), 0.5 (0-2); the other 3 pairs absent = 1
    d = np.zeros((4, 4), np.float32)
    for (i, j), v in {(0, 1): 0.1, (2, 3): 0.3, (0, 2): 0.5}.items():
        d[i, j] = d[j, i] = v
    dist = sp.csr_matrix(d)
    assert eps_from_density(dist, 2 / 6) == pytest.approx((0.1 + 0.3) / 2)
    assert eps_from_density(dist, 3 / 6) == pytest.approx((0.1 + 0.3 + 0.5) / 3)
    assert eps_from_density(dist, 5 / 6) == pytest.approx((0.1 + 0.3 + 0.5 + 1 + 1) / 5)  # absent pairs = 1
    exact_zero = sp.csr_matrix(([0.0, 0.0, 0.4, 0.4], ([0, 1, 0, 2], [1, 0, 2, 0])), shape=(3, 3))
    assert eps_from_density(exact_zero, 1 / 3) == pytest.approx(0.0)  # an explicit 0 is a distance, not absence


def _chain(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Tight groups of 5 laid along a smooth path: a density-connected chain at a loose radius."""
    rng = np.random.default_rng(seed)
    centres = np.cumsum(rng.normal(0, 0.35, size=(40, 32)), axis=0)
    x = np.repeat(centres, 5, axis=0) + rng.normal(0, 0.08, size=(200, 32))
    return x.astype(np.float32), np.repeat(np.arange(40), 5)


def test_auto_eps_uses_and_reports_the_start_distances():
    from alreid.clustering.jaccard import jaccard_distance
    from alreid.trainers.spcl import eps_from_density, spcl_pseudo_labels

    x, _ = _chain()
    want = eps_from_density(jaccard_distance(x, 30, 6), 1.6e-3)
    _, _, stats = spcl_pseudo_labels(x, None, eps="auto")
    assert stats["eps"] == pytest.approx(max(want, 2 * 0.02)) and want < 0.6  # tight radius stays > 0
    _, _, fixed = spcl_pseudo_labels(x, None, eps=0.6)
    assert fixed["eps"] == 0.6


def test_auto_eps_is_fixed_at_the_first_epoch_and_checkpointed(tmp_path):
    from alreid.constraints import ConstraintStore
    from alreid.trainers.base import CycleInput

    x, _ = _chain()
    t = SpCLTrainer(eps="auto")
    t.validate_params()
    t.setup_extra()
    t.memory_ = torch.as_tensor(x)
    inp = CycleInput(cycle=1, seed=0, train_idx=np.arange(len(x)), pseudo_labels=np.arange(len(x)),
                     constraints=ConstraintStore(len(x)), refine=None)
    _, first = t.epoch_labels(inp)
    t.memory_ = torch.as_tensor(x + np.random.default_rng(1).normal(0, 0.3, x.shape).astype(np.float32))
    _, second = t.epoch_labels(inp)
    assert second["eps"] == first["eps"] == t.eps_
    assert t.extra_state()["eps"] == t.eps_


@pytest.mark.parametrize("bad", ["loose", -0.1, 1.5])
def test_bad_eps_names_auto(bad):
    with pytest.raises(ConfigError, match="eps"):
        SpCLTrainer(eps=bad).validate_params()


# issue 17 item 3: the real-image benchmark config ------------------------------------------------------
def test_real_images_config_is_the_cpu_dogfacenet_benchmark():
    from pathlib import Path

    from alreid.harness.experiment import load_plan

    path = Path(__file__).resolve().parents[2] / "configs" / "real_images.yaml"
    plan = load_plan(path)
    assert sorted(set(plan.labels)) == ["aas", "lbas", "none", "random", "skyline"]
    assert len(plan.trials) == 10  # 5 rows x 2 seeds
    for t in plan.trials:
        p = t.trial["trainer_params"]
        assert t.trial["dataset"].endswith("dogfacenet") and t.trial["cycles"] == 3
        assert (p["backbone"], p["image_size"], p["epochs"], p["al_every"], p["iters"]) == \
            ("efficientnet_lite0", 128, 6, 2, "one_pass")
    assert {t.trial["trainer"] for t in plan.trials if t.label == "skyline"} == {"skyline"}
