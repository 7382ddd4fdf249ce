"""Image trainers end to end on CPU: purity improves, skyline beats baseline, state round-trips, CLI."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from alreid.cli import main as cli_main
from alreid.constraints import ConstraintStore
from alreid.datasets import load_dataset
from alreid.datasets.base import ReidDataset
from alreid.harness.settings import make_trial_config
from alreid.harness.trial import Trial, TrialState, run_trial
from alreid.trainers.spcl import SpCLTrainer
from alreid.trainers.base import CycleInput

from .helpers import SHARED, write_identity_dataset

TINY = {"backbone": "tiny", "image_size": 32, "progress": False}
TIMING = ["seconds", "seconds_clustering", "seconds_sampling", "seconds_training", "seconds_eval",
          "train_images_per_s"]


@pytest.fixture(autouse=True)
def _private_feature_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ALREID_CACHE_DIR", str(tmp_path / "feature-cache"))


def _cycle(n: int, seed: int = 1, identities=None) -> CycleInput:
    return CycleInput(cycle=1, seed=seed, train_idx=np.arange(n), pseudo_labels=np.arange(n),
                      constraints=ConstraintStore(n), refine=lambda labels, feats: labels, identities=identities)


def _pseudo_label_ari(z: np.ndarray, ids: np.ndarray) -> float:
    """Agreement of SpCL's pseudo-labels (DBSCAN on Jaccard, noise as singletons) with the identities."""
    from sklearn.metrics import adjusted_rand_score

    from alreid.clustering.jaccard import jaccard_distance
    from alreid.clustering.views import dbscan_labels, singletonize

    labels, _ = singletonize(dbscan_labels(jaccard_distance(z, 10, 3), eps=0.6, min_samples=4))
    return adjusted_rand_score(ids, labels)


def test_two_spcl_epochs_improve_training_pseudo_label_purity(tmp_path):
    """Identities are noisy colour patterns; a random CNN clusters them poorly, two SpCL epochs better."""
    gains = []
    for seed in range(3):
        write_identity_dataset(tmp_path / str(seed), n_ids=12, per_id=8, noise=40, seed=seed)
        ds = load_dataset(f"metadata:{tmp_path / str(seed)}")
        trainer = SpCLTrainer(**TINY, epochs=2, al_every=2, iters=20, lr=1e-3, k1=10, k2=3, threads=1)
        trainer.setup(ds, seed=seed)
        start = _pseudo_label_ari(trainer.embed(), ds.identities)
        stats = trainer.fit_cycle(_cycle(ds.n, seed=seed))
        gains.append(_pseudo_label_ari(trainer.embed(), ds.identities) - start)
        assert stats["epochs_run"] == 2 and stats["train_images_per_s"] > 0
    assert min(gains) > 0.02 and np.mean(gains) > 0.08, gains


def test_skyline_beats_baseline_on_nyala():
    root = SHARED / "nyala"
    if not (root / "metadata.csv").is_file():
        pytest.skip(f"{root} is absent (shared real data not checked out)")
    full = load_dataset(f"metadata:{root}")
    top = full.metadata.identity.value_counts().index[:20]  # a 493-image subset keeps the test short
    meta = full.metadata[full.metadata.identity.isin(top)].reset_index(drop=True)
    ds = ReidDataset(name="nyala-top20", metadata=meta, root=full.root)
    common = {"image_size": 48, "progress": False}
    base = Trial(make_trial_config({"dataset": "x", "method": "none", "trainer": "baseline", "cycles": 0,
                                    "trainer_params": common}), dataset=ds).run()
    sky = Trial(make_trial_config({"dataset": "x", "method": "none", "trainer": "skyline", "cycles": 1,
                                   "trainer_params": {**common, "epochs": 2, "al_every": 2, "iters": 6,
                                                      "batch_size": 32, "lr": 1e-3}}), dataset=ds).run()
    assert sky.mAP.iloc[0] == pytest.approx(base.mAP.iloc[0], abs=1e-6)  # same pretrained start
    assert sky.mAP.iloc[-1] > base.mAP.iloc[0] + 0.01, (base.mAP.iloc[0], sky.mAP.iloc[-1])
    assert sky.frozen_stages.iloc[-1] == 4  # the CPU default trains the low-resolution stages only


@pytest.fixture(scope="module")
def small_images(tmp_path_factory):
    root = tmp_path_factory.mktemp("small")
    write_identity_dataset(root, n_ids=10, per_id=6, noise=40, seed=3)
    return root


@pytest.mark.parametrize("trainer", ["spcl", "clustercontrast", "skyline", "baseline"])
def test_trainers_run_the_al_schedule(small_images, trainer):
    params = dict(TINY) if trainer == "baseline" else {**TINY, "epochs": 2, "al_every": 1, "iters": 2,
                                                        "batch_size": 16, "num_instances": 4, "k1": 10, "k2": 3}
    if trainer == "skyline":
        params = {k: v for k, v in params.items() if k not in ("k1", "k2")}
    cfg = make_trial_config({"dataset": f"metadata:{small_images}", "method": "random", "trainer": trainer,
                             "cycles": 3, "budget_pairs": 5, "trainer_params": params})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rec = run_trial(cfg)
    assert rec.cycle.tolist() == [0, 1, 2, 3]
    assert rec.mAP.notna().all()
    if trainer == "baseline":
        assert (rec.epochs_run.iloc[1:] == 0).all() and rec.mAP.nunique() == 1
        return
    assert rec.epochs_run.iloc[1:].tolist() == [1, 1, 0]  # 2 epochs, 1 per cycle: the third cycle is idle
    assert rec.epochs_total.iloc[-1] == 2
    assert (rec.train_images_per_s.iloc[1:3] > 0).all()
    assert any("epochs are used up" in str(w.message) for w in caught)


def test_resume_from_checkpoint_equals_uninterrupted(small_images, tmp_path):
    def cfg(cycles):
        return make_trial_config({"dataset": f"metadata:{small_images}", "method": "random", "trainer": "spcl",
                                  "cycles": cycles, "budget_pairs": 5,
                                  "trainer_params": {**TINY, "epochs": 2, "al_every": 1, "iters": 2, "threads": 1,
                                                     "batch_size": 16, "k1": 10, "k2": 3}})

    def strip(df):
        return df.drop(columns=[c for c in TIMING if c in df.columns]).reset_index(drop=True)

    full = strip(run_trial(cfg(2)))
    first = Trial(cfg(1))
    first.run()
    first.state().save(tmp_path / "ck")
    state = TrialState.load(tmp_path / "ck")
    assert {"model", "optimizer", "scheduler", "memory", "indep_thres", "epochs_done"} <= set(state.trainer_state)
    resumed = strip(run_trial(cfg(2), resume=state))
    pd.testing.assert_frame_equal(full, resumed)


def test_pretrained_embeddings_are_cached_on_disk(small_images, tmp_path):
    ds = load_dataset(f"metadata:{small_images}")
    a = SpCLTrainer(image_size=32, progress=False)
    a.setup(ds, seed=0)
    first = a.embed()
    cached = list((tmp_path / "feature-cache" / "features").glob("*.npy"))
    assert len(cached) == 1
    np.save(cached[0], np.zeros_like(first))  # prove the second trainer reads the file
    b = SpCLTrainer(image_size=32, progress=False)
    b.setup(ds, seed=1)
    assert np.array_equal(b.embed(), np.zeros_like(first))
    c = SpCLTrainer(image_size=40, progress=False)  # another transform: another key
    c.setup(ds, seed=0)
    assert not np.array_equal(c.embed()[:, :5], np.zeros((ds.n, 5)))


def test_features_command_writes_the_embeddings_format(small_images, tmp_path, capsys):
    out = tmp_path / "emb"
    rc = cli_main(["features", "--dataset", f"metadata:{small_images}", "--backbone", "efficientnet_lite0",
                   "--image-size", "32", "--out", str(out)])
    assert rc == 0
    assert f"embeddings:{out}" in capsys.readouterr().out
    with np.load(out / "features.npz") as z:
        feats, paths = z["features"], z["path"]
    meta = pd.read_csv(out / "metadata.csv")
    assert feats.shape == (60, 1280) and np.allclose(np.linalg.norm(feats, axis=1), 1, atol=1e-4)
    assert paths.tolist() == meta.path.tolist()
    info = json.loads((out / "features.json").read_text())
    assert info["backbone"] == "efficientnet_lite0" and info["weights"] == "imagenet"
    # the same features as the trainer's starting embedding
    ds = load_dataset(f"metadata:{small_images}")
    t = SpCLTrainer(image_size=32, progress=False, cache_features=False)
    t.setup(ds, seed=0)
    assert np.allclose(t.embed(), feats, atol=1e-4)
    # and a frozen-feature trial reads them
    rc = cli_main(["run", "--dataset", f"embeddings:{out}", "--trainer", "head", "--cycles", "1",
                   "--trainer-param", "iters=5"])
    assert rc == 0
    assert "dataset" in capsys.readouterr().out


def test_features_command_subset_flag(tmp_path, capsys):
    write_identity_dataset(tmp_path / "d", n_ids=4, per_id=3, extra={"dataset": ["A"] * 6 + ["B"] * 6})
    out = tmp_path / "emb"
    assert cli_main(["features", "--dataset", f"metadata:{tmp_path / 'd'}", "--subset", "B", "--backbone", "tiny",
                     "--weights", "none", "--out", str(out)]) == 0
    assert pd.read_csv(out / "metadata.csv").dataset.unique().tolist() == ["B"]


def test_image_trainer_on_a_features_only_dataset_says_what_to_do():
    trainer = SpCLTrainer(**TINY)
    with pytest.raises(Exception, match="reads images"):
        trainer.setup(load_dataset("synthetic:n_images=50"), seed=0)


def test_resnet50_trainer_without_weights_fails_clearly(small_images, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    rc = cli_main(["run", "--dataset", f"metadata:{small_images}", "--trainer", "spcl", "--cycles", "0",
                   "--trainer-param", "backbone=resnet50"])
    assert rc == 2  # a one-line error, not a traceback


def test_spcl_offers_its_memory_as_sampling_features(small_images):
    ds = load_dataset(f"metadata:{small_images}")
    t = SpCLTrainer(**TINY, epochs=1, al_every=1, iters=2, batch_size=16, k1=10, k2=3, threads=1)
    t.setup(ds, seed=0)
    idx = np.arange(0, ds.n, 2)
    assert np.allclose(t.sampling_features(idx), t.embed()[idx])  # before any training: the eval features
    t.fit_cycle(CycleInput(cycle=1, seed=0, train_idx=idx, pseudo_labels=np.arange(len(idx)),
                           constraints=ConstraintStore(len(idx)), refine=lambda labels, feats: labels))
    mem = t.sampling_features(idx)
    assert mem.shape == (len(idx), 64) and np.allclose(np.linalg.norm(mem, axis=1), 1, atol=1e-5)
    assert not np.allclose(mem, t.embed()[idx], atol=1e-3)  # the momentum memory, not a re-extraction
