"""Experiment configs: schema, expansion into trials, validation errors and the CLI exit code."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from alreid.cli import main as cli_main
from alreid.errors import ConfigError, UnknownPluginError
from alreid.harness.experiment import (dataset_short_name, load_experiment, load_plan, parse_experiment,
                                       plan_experiment, sweep_label)
from alreid.harness.records import RecordStore, arrow_safe, write_parquet_atomic

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def write(tmp_path: Path, data: dict, name: str = "exp.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


BASE = {"name": "t", "datasets": ["synthetic:n_images=300"], "methods": ["random", "aas"], "seeds": 2, "cycles": 2}


# ------------------------------------------------------------------------------------ shipped configs
def test_default_config_runs_every_sampler_with_head_trainer():
    from alreid.registry import SAMPLERS

    plan = load_plan(CONFIGS / "default.yaml")
    assert set(plan.labels) == set(SAMPLERS.names())
    assert len(plan.trials) == len(SAMPLERS.names()) * 3
    assert {t.trial["trainer"] for t in plan.trials} == {"head"}
    assert {t.trial["cycles"] for t in plan.trials} == {5}
    # every hyperparameter (defaults included) travels with the trial for MLflow
    aas = next(t for t in plan.trials if t.label == "aas")
    assert aas.hyper["params"]["epsilon"] == 0.6 and "iters" in aas.hyper["trainer_params"]


def test_aas_sweep_expands_into_labelled_rows():
    plan = load_plan(CONFIGS / "aas_sweep.yaml", sweep=True)
    sweep_rows = [lab for lab in plan.labels if lab.startswith("aas[")]
    assert len(sweep_rows) == 4 * 3 * 3
    assert "aas[epsilon=0.4,k_max=5,s_min=0.3]" in sweep_rows
    assert "random" in plan.labels
    t = next(t for t in plan.trials if t.label == "aas[epsilon=0.4,k_max=5,s_min=0.3]")
    assert t.trial["params"] == {"epsilon": 0.4, "k_max": 5, "s_min": 0.3}
    assert "[" not in t.key and "," not in t.key  # keys name folders and files
    assert len({t.key for t in plan.trials}) == len(plan.trials)


def test_paper_table1_config_parses():
    cfg = load_experiment(CONFIGS / "paper_table1.yaml")
    plan = plan_experiment(cfg, check_plugins=False)  # spcl/clustercontrast need torch image models
    assert len(cfg.datasets) == 13 and cfg.seed_list() == [0, 1, 2, 3] and cfg.cycles == 5
    assert set(plan.labels) == {"baseline", "skyline", "megadescriptor", "miewid", "ice", "pplr", "clustercontrast",
                                "rtmem", "purification", "spcl", "random", "gbas", "lbas", "nis", "aas"}
    cc = next(t for t in plan.trials if t.label == "clustercontrast")
    assert cc.trial["trainer"] == "clustercontrast" and cc.trial["method"] == "none"
    assert all(t.resources["gpu"] > 0 for t in plan.trials)
    assert {t.key.split("__")[1] for t in plan.trials} >= {"CowDataset", "ZakynthosTurtles"}


def test_smoke_test_shrinks_the_plan():
    plan = load_plan(CONFIGS / "aas_sweep.yaml", sweep=True, smoke=True)
    assert plan.config.name == "aas_sweep-smoke"
    assert {t.seed for t in plan.trials} == {0}
    assert {t.trial["cycles"] for t in plan.trials} == {2}
    assert len([lab for lab in plan.labels if lab.startswith("aas[")]) == 2 ** 3


# ------------------------------------------------------------------------------------ expansion
def test_trials_cover_dataset_method_seed_and_defaults_fill_in(tmp_path):
    plan = load_plan(write(tmp_path, {**BASE, "seeds": [3, 7], "resources": {"cpu": 2},
                                      "methods": ["random", {"name": "aas-gpu", "sampler": "aas",
                                                             "params": {"epsilon": 0.4},
                                                             "resources": {"cpu": 1, "gpu": 0.25}}]}))
    assert [(t.label, t.seed) for t in plan.trials] == [("random", 3), ("random", 7), ("aas-gpu", 3), ("aas-gpu", 7)]
    assert plan.trials[0].resources == {"cpu": 2.0, "gpu": 0.0}
    assert plan.trials[2].resources == {"cpu": 1.0, "gpu": 0.25}
    assert plan.trials[2].trial["params"] == {"epsilon": 0.4}
    assert plan.trials[0].key == "random__synthetic_n_images_300__seed3"
    assert plan.config.resolved_tracking_uri().startswith("sqlite:///") and "mlflow.db" in plan.config.resolved_tracking_uri()


def test_method_trainer_params_merge_with_experiment_ones(tmp_path):
    plan = load_plan(write(tmp_path, {**BASE, "trainer_params": {"iters": 10},
                                      "methods": [{"sampler": "random", "trainer_params": {"lr": 0.01}}]}))
    assert plan.trials[0].trial["trainer_params"] == {"iters": 10, "lr": 0.01}


def test_fingerprint_changes_with_settings(tmp_path):
    a = load_plan(write(tmp_path, BASE, "a.yaml"))
    b = load_plan(write(tmp_path, {**BASE, "cycles": 3}, "b.yaml"))
    assert a.fingerprint() == load_plan(write(tmp_path, BASE, "c.yaml")).fingerprint()
    assert a.fingerprint() != b.fingerprint()


def test_relative_dataset_paths_become_absolute(tmp_path, monkeypatch):
    (tmp_path / "data" / "zoo").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    cfg = parse_experiment({**BASE, "datasets": ["embeddings:data/zoo"]})
    plan = plan_experiment(cfg, check_plugins=False)
    assert plan.trials[0].dataset == f"embeddings:{tmp_path / 'data' / 'zoo'}"
    assert dataset_short_name("metadata:/data/W10k?subset=CowDataset&bad=skip") == "CowDataset"
    assert dataset_short_name("embeddings:../shared/data/nyala") == "nyala"
    assert sweep_label("aas", {"epsilon": 0.4, "k_max": 5}) == "aas[epsilon=0.4,k_max=5]"


# ------------------------------------------------------------------------------------ errors
def test_unknown_top_level_key_names_key_and_file(tmp_path):
    path = write(tmp_path, {**BASE, "cylces": 3})
    with pytest.raises(ConfigError, match=r"exp\.yaml.*unknown key 'cylces'"):
        load_experiment(path)


def test_unknown_nested_key_is_located(tmp_path):
    path = write(tmp_path, {**BASE, "methods": [{"sampler": "aas", "param": {"epsilon": 0.2}}]})
    with pytest.raises(ConfigError, match=r"unknown key 'methods\.0\.param'"):
        load_experiment(path)


def test_unknown_method_lists_known_ones(tmp_path):
    with pytest.raises(UnknownPluginError, match=r"exp\.yaml.*unknown sampler 'ass'.*did you mean aas.*known samplers: .*random"):
        load_plan(write(tmp_path, {**BASE, "methods": ["ass"]}))


def test_bad_sampler_parameter_is_rejected_before_ray(tmp_path):
    with pytest.raises(ConfigError, match=r"method 'aas'.*unknown parameter\(s\) epsilom"):
        load_plan(write(tmp_path, {**BASE, "methods": [{"sampler": "aas", "params": {"epsilom": 0.2}}]}))


@pytest.mark.parametrize("value", [0, 2.0, -1e-4])
def test_bad_budget(tmp_path, value):
    with pytest.raises(ConfigError, match=r"budget_fraction"):
        load_experiment(write(tmp_path, {**BASE, "budget_fraction": value}))


def test_duplicate_rows_need_names(tmp_path):
    data = {**BASE, "methods": ["none", {"sampler": "none", "trainer": "head", "trainer_params": {"iters": 5}}]}
    with pytest.raises(ConfigError, match=r"'none' appear more than once.*'name'"):
        load_plan(write(tmp_path, data))


def test_sweep_errors(tmp_path):
    with pytest.raises(ConfigError, match="no 'sweep' section"):
        load_plan(write(tmp_path, BASE), sweep=True)
    data = {**BASE, "sweep": {"params": {"epsilon": [0.2]}}}
    with pytest.raises(ConfigError, match="sweep.method is required"):
        load_plan(write(tmp_path, data), sweep=True)
    data = {**BASE, "sweep": {"method": "aas", "params": {"epsilon": []}}}
    with pytest.raises(ConfigError, match="no values"):
        load_experiment(write(tmp_path, data))
    data = {**BASE, "sweep": {"method": "aas", "params": {"k_max": [0]}}}
    with pytest.raises(ConfigError, match=r"method 'aas\[k_max=0\]'"):
        load_plan(write(tmp_path, data), sweep=True)


def test_bad_name_seeds_and_yaml(tmp_path):
    with pytest.raises(ConfigError, match="name"):
        load_experiment(write(tmp_path, {**BASE, "name": "../escape"}))
    with pytest.raises(ConfigError, match="seeds"):
        load_experiment(write(tmp_path, {**BASE, "seeds": [1, 1]}))
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_experiment(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        load_experiment(tmp_path / "missing.yaml")


def test_cli_reports_config_errors_with_exit_code_2(tmp_path, capsys):
    path = write(tmp_path, {**BASE, "methods": ["ass"]})
    assert cli_main(["bench", str(path), "--no-mlflow"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("alreid: error:") and "unknown sampler 'ass'" in err and len(err.strip().splitlines()) == 1
    path = write(tmp_path, {**BASE, "colour": "blue"}, "b.yaml")
    assert cli_main(["sweep", str(path)]) == 2
    assert "unknown key 'colour'" in capsys.readouterr().err
    assert cli_main(["bench", str(tmp_path / "nope.yaml")]) == 2
    # a file-backed dataset missing on this machine fails before Ray starts (local runs)
    path = write(tmp_path, {**BASE, "datasets": ["embeddings:/no/such/zoo"]}, "c.yaml")
    assert cli_main(["bench", str(path), "--no-mlflow"]) == 2
    assert "dataset path(s) not found on this machine: embeddings:/no/such/zoo" in capsys.readouterr().err


# ------------------------------------------------------------------------------------ records and table
def _records(keys=("random__d__seed0", "aas__d__seed0")) -> pd.DataFrame:
    rows = []
    for key in keys:
        label = key.split("__")[0]
        for cycle in range(3):
            rows.append({"dataset": "d", "method": label, "trainer": "head", "seed": 0, "cycle": cycle,
                         "mAP": 0.5 + 0.1 * cycle + (0.05 if label == "aas" else 0), "pairs_cum": 10 * cycle,
                         "budget_used_pct": 0.01 * cycle, "pool_flag": True if label == "aas" else "x"})
    return pd.DataFrame(rows)


def test_record_store_merges_dedups_and_orders(tmp_path):
    store = RecordStore(tmp_path, order=["random__d__seed0", "aas__d__seed0"])
    df = _records()
    store.add_trial("aas__d__seed0", df[df.method == "aas"], trial_id="t2", label="aas")
    store.add_trial("random__d__seed0", df[df.method == "random"], trial_id="t1", label="random")
    store.add_trial("aas__d__seed0", df[df.method == "aas"], trial_id="t2", label="aas")  # a re-run replaces
    back = pd.read_parquet(tmp_path / "records.parquet")
    assert list(back.columns[:3]) == ["trial_key", "trial_id", "label"]
    assert back.groupby("trial_key").size().to_dict() == {"aas__d__seed0": 3, "random__d__seed0": 3}
    assert list(back["trial_key"].iloc[[0, 3]]) == ["random__d__seed0", "aas__d__seed0"]
    assert RecordStore(tmp_path).finished_keys() == {"aas__d__seed0", "random__d__seed0"}
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_arrow_safe_keeps_numbers_and_stringifies_mixed_objects(tmp_path):
    df = pd.DataFrame({"a": [1.0, float("nan")], "mixed": [True, "x"], "s": ["u", None]})
    safe = arrow_safe(df)
    assert safe["mixed"].tolist() == ["True", "x"] and safe["a"].isna().tolist() == [False, True]
    write_parquet_atomic(df, tmp_path / "r.parquet")
    back = pd.read_parquet(tmp_path / "r.parquet")
    assert back["s"].iloc[0] == "u" and pd.isna(back["s"].iloc[1]) and back["mixed"].tolist() == ["True", "x"]


def test_table_command_works_from_records_alone(tmp_path, capsys):
    store = RecordStore(tmp_path / "exp")
    df = _records()
    for key, label in (("random__d__seed0", "random"), ("aas__d__seed0", "aas")):
        store.add_trial(key, df[df.method == label], trial_id=key, label=label)
    assert cli_main(["table", str(tmp_path / "exp")]) == 0
    out = capsys.readouterr().out
    assert "aas" in out and "random" in out
    for name in ("summary.md", "summary.csv", "summary.tex", "per_dataset.md", "significance.md"):
        assert (tmp_path / "exp" / "report" / name).is_file()
    assert cli_main(["table", str(tmp_path / "empty")]) == 2


# ------------------------------------------------------------------------------------ dataset specs (issue 9)
def test_wildlife_spec_with_existing_root_passes_the_local_check(tmp_path, monkeypatch):
    from alreid.harness.experiment import check_local_datasets

    (tmp_path / "zoo").mkdir()
    monkeypatch.chdir(tmp_path)
    plan = plan_experiment(parse_experiment({**BASE, "datasets": ["wildlife:NyalaData:zoo?subset=A"]}))
    check_local_datasets(plan)  # the bug: 'NyalaData:zoo' was taken for the path and refused
    missing = plan_experiment(parse_experiment({**BASE, "datasets": ["wildlife:NyalaData:nowhere"]}))
    with pytest.raises(ConfigError, match="not found on this machine: wildlife:NyalaData:nowhere"):
        check_local_datasets(missing)


def test_wildlife_root_is_made_absolute_for_ray_workers(tmp_path, monkeypatch):
    (tmp_path / "zoo").mkdir()
    monkeypatch.chdir(tmp_path)
    plan = plan_experiment(parse_experiment({**BASE, "datasets": ["wildlife:NyalaData:zoo?subset=A&bad=skip"]}))
    assert plan.trials[0].dataset == f"wildlife:NyalaData:{tmp_path / 'zoo'}?subset=A&bad=skip"
    assert plan.trials[0].key.split("__")[1] == "A"


def test_dataset_spec_parses_once_for_every_adapter():
    from alreid.datasets.base import parse_dataset
    from alreid.errors import DatasetError

    s = parse_dataset("metadata:/d/a?b/W10k?subset=Cow&bad=skip")  # the last '?' with key=value starts options
    assert (s.path, s.option_dict, s.short_name()) == ("/d/a?b/W10k", {"subset": "Cow", "bad": "skip"}, "Cow")
    assert str(s) == "metadata:/d/a?b/W10k?subset=Cow&bad=skip"
    w = parse_dataset("wildlife:Cls:/r")
    assert (w.qualifier, w.path, str(w.with_options(subset="B"))) == ("Cls", "/r", "wildlife:Cls:/r?subset=B")
    syn = parse_dataset("synthetic:n_images=300")
    assert (syn.path, syn.arg, syn.short_name(), syn.exists_here()) == (None, "n_images=300", "synthetic_n_images_300", True)
    with pytest.raises(DatasetError, match="unknown option.*colour"):
        parse_dataset("metadata:/d?colour=red")
    with pytest.raises(DatasetError, match="wildlife:ClassName:ROOT"):
        parse_dataset("wildlife:/only/a/root")


# ------------------------------------------------------------------------------------ checks before Ray (issue 9)
def test_image_trainer_on_features_only_dataset_exits_2_before_ray(tmp_path):
    import subprocess
    import sys
    import time

    path = write(tmp_path, {**BASE, "datasets": ["embeddings:/no/such/zoo"], "trainer": "spcl"})
    script = ("import sys; from alreid.cli import main; rc = main(['bench', sys.argv[1], '--no-mlflow']); "
              "assert 'ray' not in sys.modules, 'ray was imported'; sys.exit(rc)")
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "embeddings:/no/such/zoo" in lines[0] and "'spcl'" in lines[0]
    assert "use an image dataset" in lines[0] and "trainer: head" in lines[0]
    assert time.monotonic() - t0 < 60


def test_cycles_follow_the_trainer_schedule_unless_given(tmp_path):
    img = ["metadata:/data/zoo"]
    cfg = {k: v for k, v in BASE.items() if k != "cycles"}
    plan = load_plan(write(tmp_path, {**cfg, "datasets": img, "methods": ["random"], "trainer": "spcl",
                                      "trainer_params": {"epochs": 30, "al_every": 4}}, "b.yaml"))
    assert {t.trial["cycles"] for t in plan.trials} == {8}  # ceil(30 / 4)
    plan = load_plan(write(tmp_path, {**cfg, "datasets": img, "methods": ["random"], "trainer": "spcl",
                                      "trainer_params": {"epochs": 30, "al_every": 4}, "cycles": 2}, "c.yaml"))
    assert {t.trial["cycles"] for t in plan.trials} == {2}  # given: kept
    plan = load_plan(write(tmp_path, {**cfg, "methods": ["random"]}, "d.yaml"))
    assert {t.trial["cycles"] for t in plan.trials} == {5}  # head: no schedule, the default


def test_sampler_built_directly_is_validated_at_select():
    from alreid.samplers.aas import AASSampler
    from alreid.testing.sampler_checks import make_context

    ctx, _ = make_context()
    with pytest.raises(ConfigError, match="epsilon"):
        AASSampler(epsilon=7.0).select(ctx, 5, np.random.default_rng(0))


def test_overrides_are_validated_again(tmp_path):
    from alreid.harness.experiment import apply_overrides

    cfg = load_experiment(write(tmp_path, BASE))
    with pytest.raises(ConfigError, match="max_concurrent"):
        apply_overrides(cfg, max_concurrent=0)


def test_dry_run_prints_the_planned_trials_and_starts_nothing(tmp_path, capsys):
    path = write(tmp_path, {**BASE, "storage_path": str(tmp_path / "res"),
                            "sweep": {"params": {"budget_fraction": [0.001, 0.005]}}})
    assert cli_main(["sweep", str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    lines = out.strip().splitlines()
    assert lines[0].startswith("t: 8 trials") and lines[1].split() == ["dataset", "row", "trainer", "seed", "cycles",
                                                                       "budget_fraction"]
    assert sum("random[budget_fraction=0.005]" in ln and ln.split()[-1] == "0.005" for ln in lines) == 2
    assert not (tmp_path / "res").exists()  # no results folder, no Ray, no MLflow
