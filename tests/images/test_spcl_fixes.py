"""Issue 17 / issue 10 item 5: the image trainers' training budget and the fixes found against official SpCL."""

from __future__ import annotations

import math

import numpy as np
import pytest

from alreid.cli import main as cli_main
from alreid.commands.run import trial_config_from_args
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
    cfg = trial_config_from_args(p.parse_args(["--trainer", "spcl", "--iters", "one_pass", "--epochs", "4",
                                               "--al-every", "2"]))
    assert cfg.trainer_params["iters"] == "one_pass" and cfg.cycles == 2
    cfg = trial_config_from_args(p.parse_args(["--trainer", "spcl", "--iters", "120"]))
    assert cfg.trainer_params["iters"] == 120
    assert "iters" not in trial_config_from_args(p.parse_args(["--trainer", "spcl"])).trainer_params


def test_run_command_rejects_a_bad_iters_value(capsys):
    with pytest.raises(SystemExit) as exc:
        cli_main(["run", "--trainer", "spcl", "--iters", "lots"])
    assert exc.value.code == 2
    assert "one_pass" in capsys.readouterr().err
