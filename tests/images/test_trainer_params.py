"""The image trainers' parameter set is declared once (ImageTrainer.param_defaults) and extended per trainer."""

from __future__ import annotations

import inspect

import pytest

from alreid.errors import ConfigError
from alreid.plugin import Configurable
from alreid.trainers.clustercontrast import ClusterContrastTrainer
from alreid.trainers.image_training import ImageTrainer
from alreid.trainers.reference_trainers import BaselineTrainer, SkylineTrainer
from alreid.trainers.spcl import SpCLTrainer

SHARED = set(ImageTrainer.param_defaults)


def test_every_image_trainer_takes_the_shared_set_plus_its_own():
    assert set(SpCLTrainer.param_names()) >= SHARED | {"eps", "eps_gap", "min_samples", "k1", "k2", "refine_all",
                                                      "protect_constrained"}
    assert set(ClusterContrastTrainer.param_names()) >= SHARED | {"use_hard", "eps", "min_samples", "k1", "k2"}
    assert set(SkylineTrainer.param_names()) == SHARED
    assert set(BaselineTrainer.param_names()) < SHARED


def test_overridden_defaults_and_fixed_settings_by_hand():
    cc = ClusterContrastTrainer.default_params()
    assert (cc["pooling"], cc["batch_size"], cc["num_instances"], cc["momentum"]) == ("gem", 256, 16, 0.1)
    assert SpCLTrainer.default_params()["pooling"] == "avg" and SpCLTrainer.default_params()["momentum"] == 0.2
    base = BaselineTrainer(pooling="gem")
    assert base.epochs == 50 and base.lr == 3.5e-4 and base.pooling == "gem"  # unlisted -> ImageTrainer default
    sky = SkylineTrainer(epochs=7)
    assert (sky.epochs, sky.eps, sky.k1, sky.refine_all) == (7, 0.6, 30, True)  # SpCL's clustering defaults


def test_generated_constructor_is_keyword_only_with_a_real_signature():
    sig = inspect.signature(SpCLTrainer)
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in sig.parameters.values())
    assert sig.parameters["eps"].default == 0.6
    with pytest.raises(TypeError, match="unexpected keyword"):
        SpCLTrainer(not_a_param=1)
    with pytest.raises(ConfigError, match="valid:"):
        SpCLTrainer.from_params({"not_a_param": 1})
    t = SpCLTrainer.from_params({"eps": 0.5, "k1": 20})
    assert t.get_params() == {**SpCLTrainer.default_params(), "eps": 0.5, "k1": 20}


def test_instances_do_not_share_state_and_class_defaults_stay():
    a, b = SpCLTrainer(eps=0.4), SpCLTrainer()
    assert (a.eps, b.eps, SpCLTrainer.eps) == (0.4, 0.6, 0.6)


def test_a_plugin_with_its_own_init_is_untouched():
    class Own(Configurable):
        param_defaults = {"x": 1}

        def __init__(self, *, x: int = 2) -> None:
            self.x = x

    assert Own.default_params() == {"x": 2} and Own().x == 2
