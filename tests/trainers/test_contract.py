"""The contract every registered trainer keeps (new plugins join automatically through the registry):
it runs a trial with an active sampler, a resumed trial equals an uninterrupted one, and it is seeded
(same seed, same records; another seed, other records)."""

from __future__ import annotations

import pandas as pd
import pytest

from alreid.harness.settings import make_trial_config
from alreid.harness.trial import Trial, TrialState, run_trial
from alreid.registry import TRAINERS

from ..images.helpers import write_identity_dataset

#: small, fast settings; each trainer receives the ones it declares
IMAGE_PARAMS = {"backbone": "tiny", "weights": "none", "image_size": 32, "progress": False, "threads": 1,
                "epochs": 2, "al_every": 1, "iters": 2, "batch_size": 16, "num_instances": 4, "k1": 10, "k2": 3,
                "teacher_epochs": 1, "aals_epoch": 1, "warmup_epochs": 1}
FEATURE_PARAMS = {"iters": 10, "k1": 10, "k2": 3}


@pytest.fixture(autouse=True)
def _private_feature_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ALREID_CACHE_DIR", str(tmp_path / "feature-cache"))


@pytest.fixture(scope="module")
def image_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("contract-images")
    write_identity_dataset(root, n_ids=8, per_id=6, noise=40, seed=5)
    return root


def config(name: str, image_root, *, cycles: int = 2, seed: int = 0):
    cls = TRAINERS.get(name)
    declared = set(cls.param_names())
    if cls.needs_images:
        dataset, wanted = f"metadata:{image_root}", IMAGE_PARAMS
    else:
        dataset, wanted = "synthetic:n_images=200", FEATURE_PARAMS
    params = {k: v for k, v in wanted.items() if k in declared}
    return make_trial_config({"dataset": dataset, "method": "random", "trainer": name, "cycles": cycles,
                              "seed": seed, "budget_pairs": 6, "trainer_params": params})


def strip(df: pd.DataFrame) -> pd.DataFrame:
    drop = [c for c in df.columns if c.startswith("seconds") or c.endswith("_per_s")]
    return df.drop(columns=drop).reset_index(drop=True)


@pytest.mark.parametrize("name", TRAINERS.names())
def test_trainer_runs_resumes_exactly_and_is_seeded(name, image_root, tmp_path):
    full = strip(run_trial(config(name, image_root)))
    assert full.cycle.tolist() == [0, 1, 2]
    assert full.mAP.notna().all() and full.pairs_asked.iloc[1:].gt(0).all()

    first = Trial(config(name, image_root, cycles=1))
    first.run()
    first.state().save(tmp_path / "ck")
    resumed = strip(run_trial(config(name, image_root), resume=TrialState.load(tmp_path / "ck")))
    pd.testing.assert_frame_equal(full, resumed)

    again = strip(run_trial(config(name, image_root)))
    pd.testing.assert_frame_equal(full, again)
    other = strip(run_trial(config(name, image_root, seed=1)))
    assert not full.equals(other)
