"""Bad input gives one line and exit code 2, never a traceback."""

import json

import numpy as np
import pandas as pd
import pytest

from alreid.cli import main


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _one_line_error(err):
    lines = [l for l in err.strip().splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("alreid: error:"), err
    assert "Traceback" not in err
    return lines[0]


def test_methods_lists_every_sampler_with_a_description(capsys):
    code, out, _ = run_cli(capsys, "methods")
    assert code == 0
    names = {line.split()[0] for line in out.strip().splitlines()}
    assert {"random", "none", "aas", "gbas", "lbas", "nis"} <= names
    assert "unavailable" not in out


def _dataset(tmp_path, meta=None, feats=None):
    meta = meta if meta is not None else pd.DataFrame(
        {"image_id": range(40), "identity": np.repeat(list("abcdefghij"), 4), "path": [f"{i}.jpg" for i in range(40)]})
    meta.to_csv(tmp_path / "metadata.csv", index=False)
    np.save(tmp_path / "f.npy", feats if feats is not None else np.random.default_rng(0).standard_normal((len(meta), 8)))
    return f"embeddings:{tmp_path}"


@pytest.mark.parametrize("argv, fragment", [
    (["--method", "nope"], "unknown sampler 'nope'"),
    (["--dataset", "embeddings:/no/such/dir"], "does not exist"),
    (["--dataset", "nosuchadapter:x"], "unknown dataset 'nosuchadapter'"),
    (["--budget-fraction", "2"], "budget_fraction"),
    (["--budget-fraction", "0"], "budget_fraction"),
    (["--method", "aas", "--param", "epsilon=1.5"], "epsilon"),
    (["--method", "random", "--param", "bogus=1"], "unknown parameter(s) bogus"),
    (["--param", "noequals"], "expects KEY=VALUE"),
    (["--oracle-error", "0.7"], "oracle_error_rate"),
])
def test_run_rejects_bad_input(capsys, argv, fragment):
    code, _, err = run_cli(capsys, "run", "--cycles", "1", *argv)
    assert code == 2
    assert fragment in _one_line_error(err)


def test_malformed_datasets(capsys, tmp_path):
    d1 = tmp_path / "a"; d1.mkdir()
    meta = pd.DataFrame({"image_id": range(4), "path": list("wxyz")})
    code, _, err = run_cli(capsys, "run", "--dataset", _dataset(d1, meta=meta))
    assert code == 2 and "identity" in _one_line_error(err)
    d2 = tmp_path / "b"; d2.mkdir()
    meta = pd.DataFrame({"image_id": [0, 0, 1, 2], "identity": list("aabb"), "path": list("wxyz")})
    code, _, err = run_cli(capsys, "run", "--dataset", _dataset(d2, meta=meta))
    assert code == 2 and "duplicate image_id" in _one_line_error(err)
    d3 = tmp_path / "c"; d3.mkdir()
    spec = _dataset(d3, feats=np.zeros((39, 8)))
    code, _, err = run_cli(capsys, "run", "--dataset", spec)
    assert code == 2 and "rows" in _one_line_error(err)
    d4 = tmp_path / "d"; d4.mkdir()
    (d4 / "metadata.csv").write_text('image_id,identity,path\n0,"a,b\n')
    np.save(d4 / "f.npy", np.zeros((1, 2)))
    code, _, err = run_cli(capsys, "run", "--dataset", f"embeddings:{d4}")
    assert code == 2 and "metadata.csv" in _one_line_error(err)


def test_run_prints_cycles_and_writes_json(capsys, tmp_path):
    out_json = tmp_path / "r.json"
    code, out, _ = run_cli(capsys, "run", "--dataset", "synthetic:n_images=300", "--method", "random",
                           "--cycles", "2", "--trainer-param", "iters=20", "--json", str(out_json))
    assert code == 0
    records = json.loads(out_json.read_text())
    assert [r["cycle"] for r in records] == [0, 1, 2]
    for key in ("pairs_asked", "pairs_cum", "budget_used_pct", "mAP", "mINP", "top1", "top3", "top5", "top10",
                "BAKS", "AUC", "seconds"):
        assert key in records[0]
    header = next(l for l in out.splitlines() if l.strip().startswith("cycle"))
    for col in ("pairs", "used%", "mAP", "mINP", "top1", "top3", "top5", "top10", "BAKS", "AUC", "sec"):
        assert col in header.split()
    # the printed mAP of the last cycle is the recorded one, in percent
    last = [l for l in out.splitlines() if l.strip().startswith("2 ")][0].split()
    assert float(last[4]) == pytest.approx(100 * records[-1]["mAP"], abs=0.006)


def test_run_takes_cycles_from_the_trainer_schedule_like_bench():
    import argparse

    from alreid.commands.run import add_trial_arguments, trial_config_from_args

    p = argparse.ArgumentParser()
    add_trial_arguments(p)
    cfg = trial_config_from_args(p.parse_args(["--dataset", "metadata:/data/zoo", "--trainer", "spcl",
                                               "--epochs", "30", "--al-every", "4"]))
    assert cfg.cycles == 8  # ceil(30 / 4), Trainer.planned_cycles
    cfg = trial_config_from_args(p.parse_args(["--dataset", "metadata:/data/zoo", "--trainer", "spcl", "--cycles", "2"]))
    assert cfg.cycles == 2
    cfg = trial_config_from_args(p.parse_args([]))
    assert (cfg.dataset, cfg.method, cfg.trainer, cfg.cycles, cfg.budget_fraction) == ("synthetic", "random", "head", 5,
                                                                                      2e-4)
