"""The Ray Tune runner on a real local Ray: end to end, a crashed trial retried, an interrupted run resumed."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pandas as pd
import pytest

pytest.importorskip("ray")
pytest.importorskip("mlflow")
from mlflow import MlflowClient  # noqa: E402
from ray import tune  # noqa: E402

from alreid.cli import main as cli_main  # noqa: E402
from alreid.harness import tune_runner  # noqa: E402
from alreid.harness.experiment import load_plan  # noqa: E402
from alreid.harness.tracking import Tracker  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_session")]


def mlflow_children(uri: str, results: Path) -> tuple[str, list[tuple[str, str, str]]]:
    """(parent status, [(trial key, run id, status)]) of the experiment's parent run."""
    import json

    state = json.loads((results / "mlflow.json").read_text())
    client = MlflowClient(uri)
    runs = client.search_runs([state["experiment_id"]], f"tags.mlflow.parentRunId = '{state['parent_run_id']}'")
    return (client.get_run(state["parent_run_id"]).info.status,
            sorted((r.data.tags["alreid.trial_key"], r.info.run_id, r.info.status) for r in runs))


def metric_steps(uri: str, run_id: str) -> list[int]:
    return sorted(m.step for m in MlflowClient(uri).get_metric_history(run_id, "mAP"))


def markers(folder: Path) -> dict[str, list[int]]:
    """Trial key -> the cycle each attempt started from (written by the test-only hook)."""
    return {p.stem: [int(line.split()[1]) for line in p.read_text().splitlines()] for p in sorted(folder.glob("*.txt"))}


def check_records(results: Path, keys: set[str], cycles: int) -> pd.DataFrame:
    df = pd.read_parquet(results / "records.parquet")
    assert set(df["trial_key"]) == keys
    assert not df.duplicated(["trial_key", "cycle"]).any()
    per_trial = df.groupby("trial_key")["cycle"].apply(lambda c: sorted(c.tolist())).to_dict()
    assert all(v == list(range(cycles + 1)) for v in per_trial.values()), per_trial
    assert df["trial_id"].notna().all() and df["label"].notna().all()
    return df


def test_tiny_grid_end_to_end(write_config, tracking_uri, tmp_path, capsys):
    path = write_config("tiny", methods=["random", {"name": "aas-gpu", "sampler": "aas",
                                                     "resources": {"cpu": 1, "gpu": 0.5}}])
    assert cli_main(["bench", str(path), "--tracking-uri", tracking_uri]) == 0
    out = capsys.readouterr().out
    results = tmp_path / "results" / "tiny"
    plan = load_plan(path)
    keys = {t.key for t in plan.trials}
    df = check_records(results, keys, cycles=2)
    assert set(df["label"]) == {"random", "aas-gpu"} and (df[df.cycle == 2]["pairs_cum"] == 40).all()
    assert out.count("/4] ") == 4 and "aas-gpu" in out and "mAP" in out  # one line per trial, then the table
    for name in ("summary.md", "summary.csv", "summary.tex", "per_dataset.md", "significance.md", "curves_mAP.png"):
        assert (results / "report" / name).is_file()
    assert {p.stem for p in (results / "pairs").glob("*.parquet")} == keys
    parent, runs = mlflow_children(tracking_uri, results)
    assert parent == "FINISHED" and [r[0] for r in runs] == sorted(keys) and {r[2] for r in runs} == {"FINISHED"}
    assert all(metric_steps(tracking_uri, r[1]) == [0, 1, 2] for r in runs)
    # a second plain run refuses to mix with the first; the table command needs only records.parquet
    assert cli_main(["bench", str(path), "--no-mlflow"]) == 2
    assert "--resume" in capsys.readouterr().err
    assert cli_main(["table", str(results)]) == 0


def test_crashed_trial_is_retried_from_its_checkpoint(write_config, tracking_uri, tmp_path, monkeypatch):
    monkeypatch.setenv(tune_runner.TEST_CRASH_ENV, str(tmp_path / "crashed"))
    monkeypatch.setenv(tune_runner.TEST_MARKERS_ENV, str(tmp_path / "markers"))
    path = write_config("crash", cycles=3)
    assert cli_main(["bench", str(path), "--tracking-uri", tracking_uri]) == 0
    assert (tmp_path / "crashed").exists()
    starts = markers(tmp_path / "markers")
    # exactly one trial crashed after cycle 1 and its retry started at cycle 2, not from scratch
    assert sorted(starts.values()) == [[0], [0, 2]]
    results = tmp_path / "results" / "crash"
    check_records(results, set(starts), cycles=3)
    parent, runs = mlflow_children(tracking_uri, results)
    assert parent == "FINISHED" and len(runs) == 2 and {r[2] for r in runs} == {"FINISHED"}
    assert all(metric_steps(tracking_uri, r[1]) == [0, 1, 2, 3] for r in runs)


class InterruptOnce(tune.Callback):
    """Test-only Ctrl-C: once a trial has finished and another has reported cycle 1, SIGINT the driver.

    Tune pickles callbacks with the experiment, so on resume this comes back: the armed file keeps
    it from firing twice.
    """

    def __init__(self, armed: str) -> None:
        self.armed = armed

    def on_trial_result(self, iteration, trials, trial, result, **info):
        done = sum(t.status == "TERMINATED" for t in trials)
        if os.path.exists(self.armed) and done >= 1 and result.get("cycle", 0) >= 1:
            os.unlink(self.armed)
            os.kill(os.getpid(), signal.SIGINT)


def test_resume_after_interrupt_runs_only_unfinished_trials(write_config, tracking_uri, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(tune_runner.TEST_MARKERS_ENV, str(tmp_path / "markers"))
    path = write_config("resume", seeds=3, cycles=3, max_concurrent=1)
    plan = load_plan(path, tracking_uri=tracking_uri)
    assert tune_runner.prepare_results(plan, resume=False, overwrite=False) is False
    tracker = Tracker(tracking_uri, plan.config.name, plan.results_dir)
    parent = tracker.start(run_name="resume", params={}, resume=False)
    (tmp_path / "armed").touch()
    outcome = tune_runner.run_benchmark(plan, tracker=tracker, callbacks=[InterruptOnce(str(tmp_path / "armed"))])
    assert outcome.interrupted and len(outcome.finished) == 1
    first_done = outcome.finished[0]
    before = markers(tmp_path / "markers")
    assert before[first_done] == [0] and len(before) == 2  # the third trial never started
    status, runs = mlflow_children(tracking_uri, plan.results_dir)
    assert status == "KILLED"
    assert {k: s for k, _, s in runs}[first_done] == "FINISHED"

    assert cli_main(["bench", str(path), "--resume", "--tracking-uri", tracking_uri]) == 0
    assert "resuming resume: 1 of 3 trials already finished" in capsys.readouterr().out
    after = markers(tmp_path / "markers")
    assert after[first_done] == [0]  # not re-run
    interrupted = next(k for k in before if k != first_done)
    assert after[interrupted][0] == 0 and len(after[interrupted]) == 2 and after[interrupted][1] >= 1
    assert sorted(len(v) for v in after.values()) == [1, 1, 2]
    check_records(plan.results_dir, {t.key for t in plan.trials}, cycles=3)
    status, runs = mlflow_children(tracking_uri, plan.results_dir)
    assert status == "FINISHED" and len(runs) == 3 and {r[2] for r in runs} == {"FINISHED"}
    assert all(metric_steps(tracking_uri, r[1]) == [0, 1, 2, 3] for r in runs)
    import json

    assert json.loads((plan.results_dir / "mlflow.json").read_text())["parent_run_id"] == parent
