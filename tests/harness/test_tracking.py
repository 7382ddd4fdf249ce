"""Driver-side MLflow tracking: one run per trial, reused on retry and resume, no duplicate steps."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pytest

pytest.importorskip("mlflow")
from mlflow import MlflowClient  # noqa: E402

from alreid.harness.tracking import Tracker, code_version, flatten_params, record_metrics  # noqa: E402

SPEC = {"key": "aas__d__seed0", "label": "aas", "dataset": "d", "seed": 0,
        "trial": {"dataset": "d", "method": "aas", "params": {"epsilon": 0.4}, "seed": 0,
                  "clustering": {"eps": 0.6}},
        "resources": {"cpu": 1, "gpu": 0}, "hyper": {"params": {"epsilon": 0.6, "k_max": 5}}}


def rec(cycle: int) -> dict:
    return {"dataset": "d", "method": "aas", "seed": 0, "cycle": cycle, "mAP": 0.1 * cycle, "pairs_cum": 10 * cycle,
            "pool_views_agree": True, "pool_mode": "text", "BAKS": float("nan")}


@pytest.fixture
def uri(tmp_path: Path, monkeypatch) -> str:
    monkeypatch.chdir(tmp_path)  # anything written to the CWD (./mlruns) would show up here
    return f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"


def children(client: MlflowClient, tracker: Tracker) -> list[tuple[str, str]]:
    """(run_id, status) of the parent's nested runs."""
    runs = client.search_runs([tracker.experiment_id], f"tags.mlflow.parentRunId = '{tracker.parent_id}'")
    return [(r.info.run_id, r.info.status) for r in runs]


def steps(client: MlflowClient, run_id: str, key: str = "mAP") -> list[int]:
    return sorted(m.step for m in client.get_metric_history(run_id, key))


def test_helpers():
    assert flatten_params({"a": 1, "b": {"c": [1, 2], "d": {}}}) == {"a": "1", "b.c": "[1, 2]", "b.d": "{}"}
    m = record_metrics(rec(2))
    assert m["mAP"] == pytest.approx(0.2) and m["pool_views_agree"] == 1.0
    assert "pool_mode" not in m and "seed" not in m and "cycle" not in m
    assert code_version()["alreid.version"]


def test_one_run_per_trial_reused_and_no_duplicate_steps(tmp_path, uri):
    tr = Tracker(uri, "exp", tmp_path / "res", flush_every_s=3600)
    tr.start(run_name="exp", params={"n_trials": 1}, resume=False)
    client = MlflowClient(uri)
    for c in range(3):
        tr.add_cycle(SPEC, rec(c))
    tr.flush(SPEC)
    # a retry from the checkpoint after cycle 1 re-reports cycle 2: it must not be logged twice
    tr.add_cycle(SPEC, rec(2))
    tr.add_cycle(SPEC, rec(3))
    tr.finish_trial(SPEC, status="FINISHED", records=pd.DataFrame([rec(c) for c in range(4)]),
                    pairs=pd.DataFrame({"cycle": [1], "image_id_u": [0], "image_id_v": [1], "same": [True]}))
    runs = children(client, tr)
    assert len(runs) == 1 and runs[0][1] == "FINISHED"
    run_id = runs[0][0]
    assert steps(client, run_id) == [0, 1, 2, 3]
    run = client.get_run(run_id)
    assert run.data.params["params.epsilon"] == "0.4" and run.data.params["params.k_max"] == "5"  # defaults too
    assert run.data.params["label"] == "aas" and run.data.tags["alreid.trial_key"] == SPEC["key"]
    assert {a.path for a in client.list_artifacts(run_id)} == {"records.parquet", "pairs.parquet"}
    art = Path(client.get_experiment(tr.experiment_id).artifact_location.removeprefix("file://"))
    assert art.parent == tmp_path / "store"
    assert not (tmp_path / "mlruns").exists()


def test_resume_reopens_parent_and_trial_runs(tmp_path, uri):
    first = Tracker(uri, "exp", tmp_path / "res", flush_every_s=3600)
    parent = first.start(run_name="exp", params={}, resume=False)
    first.add_cycle(SPEC, rec(0))
    first.add_cycle(SPEC, rec(1))
    first.interrupt([SPEC])  # Ctrl-C: buffered cycles flushed, runs KILLED
    client = MlflowClient(uri)
    assert client.get_run(parent).info.status == "KILLED"
    assert children(client, first)[0][1] == "KILLED"

    second = Tracker(uri, "exp", tmp_path / "res", flush_every_s=3600)
    assert second.start(run_name="exp", params={}, resume=True) == parent
    assert client.get_run(parent).info.status == "RUNNING"
    for c in (1, 2):  # resumed from the checkpoint after cycle 0: cycle 1 again, then 2
        second.add_cycle(SPEC, rec(c))
    second.finish_trial(SPEC, status="FINISHED")
    second.finish("FINISHED")
    runs = children(client, second)
    assert len(runs) == 1 and runs[0][1] == "FINISHED"
    assert steps(client, runs[0][0]) == [0, 1, 2]
    assert client.get_run(parent).info.status == "FINISHED"
    assert json.loads((tmp_path / "res" / "mlflow.json").read_text())["runs"] == {SPEC["key"]: runs[0][0]}


def test_cycles_lost_by_a_killed_driver_are_filled_from_the_final_records(tmp_path, uri):
    first = Tracker(uri, "exp", tmp_path / "res", flush_every_s=3600)
    first.start(run_name="exp", params={}, resume=False)
    first.add_cycle(SPEC, rec(0))
    first.add_cycle(SPEC, rec(1))
    first.flush(SPEC)
    first.add_cycle(SPEC, rec(2))  # buffered, then the driver dies (no interrupt, no flush)
    second = Tracker(uri, "exp", tmp_path / "res", flush_every_s=3600)
    second.start(run_name="exp", params={}, resume=True)
    second.add_cycle(SPEC, rec(3))
    second.finish_trial(SPEC, status="FINISHED", records=pd.DataFrame([rec(c) for c in range(4)]))
    client = MlflowClient(uri)
    (run_id, status), = children(client, second)
    assert status == "FINISHED" and steps(client, run_id) == [0, 1, 2, 3]


def test_new_run_without_resume_gets_a_new_parent(tmp_path, uri):
    a = Tracker(uri, "exp", tmp_path / "res").start(run_name="exp", params={}, resume=False)
    b = Tracker(uri, "exp", tmp_path / "res").start(run_name="exp", params={}, resume=False)
    assert a != b


@dataclass
class FakeReport:
    paths: dict = field(default_factory=dict)
    pvalues: dict = field(default_factory=dict)


def test_report_artifacts_and_pvalues_on_parent(tmp_path, uri):
    tr = Tracker(uri, "exp", tmp_path / "res")
    parent = tr.start(run_name="exp", params={}, resume=False)
    (tmp_path / "summary.md").write_text("| a |\n")
    tr.log_report(FakeReport({"summary.md": tmp_path / "summary.md"}, {"friedman_p": 0.03, "wilcoxon_p_random": 0.5}))
    tr.finish_trial(SPEC, status="FAILED", error="RuntimeError: boom")
    client = MlflowClient(uri)
    assert client.get_run(parent).data.metrics == {"friedman_p": 0.03, "wilcoxon_p_random": 0.5}
    assert [a.path for a in client.list_artifacts(parent, "report")] == ["report/summary.md"]
    assert [status for _, status in children(client, tr)] == ["FAILED"]


# ------------------------------------------------------------------------------ sync from records.parquet
def snapshot(client: MlflowClient, experiment_id: str) -> list:
    """Everything sync may touch, per run: status, params, every metric point, artifact paths."""
    out = []
    for r in client.search_runs([experiment_id]):
        hist = {k: sorted((m.step, "nan" if math.isnan(m.value) else m.value)
                          for m in client.get_metric_history(r.info.run_id, k)) for k in r.data.metrics}
        out.append((r.info.run_name, r.info.status, sorted(r.data.params.items()), sorted(hist.items()),
                    sorted(a.path for a in client.list_artifacts(r.info.run_id))))
    return sorted(out)


def spec_for(seed: int) -> dict:
    return {**SPEC, "key": f"aas__d__seed{seed}", "seed": seed, "trial": {**SPEC["trial"], "seed": seed}}


def write_results(res: Path, seeds: list[int], cycles: int) -> pd.DataFrame:
    """A results folder as the driver leaves it: records.parquet, pairs, plan.json and each trial's params.json."""
    from alreid.harness.records import RecordStore

    store = RecordStore(res, order=[spec_for(s)["key"] for s in seeds])
    for s in seeds:
        sp = spec_for(s)
        rows = [{**rec(c), "seed": s, "mAP": 0.1 * c + 0.01 * s} for c in range(cycles + 1)]
        store.add_trial(sp["key"], rows, trial_id=f"t{s}", label="aas")
        store.add_pairs(sp["key"], pd.DataFrame({"cycle": [1], "image_id_u": [s], "image_id_v": [9], "same": [False]}))
        (res / "tune" / sp["key"]).mkdir(parents=True)
        (res / "tune" / sp["key"] / "params.json").write_text(json.dumps({"trial": sp}))
    (res / "plan.json").write_text(json.dumps({"trials": [spec_for(s)["key"] for s in seeds]}))
    return store.frame


def test_sync_logs_exactly_what_mlflow_lacks_and_is_idempotent(tmp_path, uri, capsys):
    from alreid.harness.tracking import sync_results

    res = tmp_path / "res"
    records = write_results(res, [0, 1, 2], cycles=3)
    tr = Tracker(uri, "exp", res, flush_every_s=3600)
    parent = tr.start(run_name="exp", params={}, resume=False)
    # trial 0 fully logged; trial 1 got cycles 0-1 and stayed RUNNING (server went down); trial 2 never reached MLflow
    s0, s1 = spec_for(0), spec_for(1)
    for c in range(4):
        tr.add_cycle(s0, records[(records.seed == 0) & (records.cycle == c)].iloc[0].to_dict())
    tr.finish_trial(s0, status="FINISHED", records=records[records.seed == 0],
                    pairs=pd.read_parquet(res / "pairs" / f"{s0['key']}.parquet"))
    for c in range(2):
        tr.add_cycle(s1, records[(records.seed == 1) & (records.cycle == c)].iloc[0].to_dict())
    tr.flush(s1)
    client = MlflowClient(uri)
    before0 = [x for x in snapshot(client, tr.experiment_id) if x[0] == s0["key"]]

    first = sync_results(res)
    assert first.runs_created == 1 and first.statuses_set == 3  # trial 1 and 2 FINISHED, parent FINISHED
    n_metrics = len(record_metrics(rec(0)))  # metric keys per cycle (BAKS is NaN: never logged)
    n_metrics -= sum(math.isnan(v) for v in record_metrics(rec(0)).values())
    assert first.metrics_logged == n_metrics * (2 + 4)  # trial 1: cycles 2-3; trial 2: cycles 0-3
    assert first.artifacts_logged == 2 + 2  # records + pairs of trials 1 and 2 (no report folder here)
    assert client.get_run(parent).info.status == "FINISHED"
    runs = {r.data.tags["alreid.trial_key"]: r for r in client.search_runs(
        [tr.experiment_id], f"tags.mlflow.parentRunId = '{parent}'")}
    assert sorted(runs) == sorted(spec_for(s)["key"] for s in range(3))
    for s in range(3):
        run_id = runs[spec_for(s)["key"]].info.run_id
        assert runs[spec_for(s)["key"]].info.status == "FINISHED"
        want = records[records.seed == s].set_index("cycle")["mAP"].to_dict()
        assert {m.step: m.value for m in client.get_metric_history(run_id, "mAP")} == pytest.approx(want)
        assert len(client.get_metric_history(run_id, "mAP")) == 4  # no duplicated step
        assert {a.path for a in client.list_artifacts(run_id)} == {"records.parquet", "pairs.parquet"}
    assert runs[spec_for(2)["key"]].data.params["params.epsilon"] == "0.4"  # params from Tune's params.json
    # the fully logged trial was not touched; a second sync changes nothing at all
    assert [x for x in snapshot(client, tr.experiment_id) if x[0] == s0["key"]] == before0
    state = snapshot(client, tr.experiment_id)
    assert not sync_results(res).changed
    assert snapshot(client, tr.experiment_id) == state
    assert "nothing to log" in capsys.readouterr().out


def test_sync_to_a_new_server_and_cli_errors(tmp_path, uri, capsys):
    from alreid.cli import main as cli_main

    res = tmp_path / "res"
    records = write_results(res, [0, 1], cycles=2)
    assert cli_main(["table", str(res), "--sync-mlflow"]) == 2  # no mlflow.json, no URI: a one-line error
    assert "--sync-mlflow URI" in capsys.readouterr().err
    assert cli_main(["table", str(res), "--sync-mlflow", uri]) == 0
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("res")
    runs = client.search_runs([exp.experiment_id])
    assert sorted(r.info.status for r in runs) == ["FINISHED"] * 3  # parent + 2 trials
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    assert {a.path for a in client.list_artifacts(parent.info.run_id, "report")} >= {"report/summary.md"}
    state = snapshot(client, exp.experiment_id)
    assert cli_main(["table", str(res), "--sync-mlflow"]) == 0  # the URI is remembered in mlflow.json
    assert "nothing to log" in capsys.readouterr().out and snapshot(client, exp.experiment_id) == state
    assert len(records) == 6


def test_finish_logs_what_an_outage_kept_out_once_the_server_is_back(tmp_path, uri, capsys):
    res = tmp_path / "res"
    records = write_results(res, [0, 1], cycles=2)
    tr = Tracker(uri, "exp", res, flush_every_s=3600)
    parent = tr.start(run_name="exp", params={}, resume=False)
    s0 = spec_for(0)
    back = tr.client.log_batch

    def down(*args, **kwargs):
        raise ConnectionError("tracking server down")

    tr.client.log_batch = down  # the run is created, then its params and metrics cannot be sent
    tr.add_cycle(s0, records[(records.seed == 0) & (records.cycle == 0)].iloc[0].to_dict())
    with pytest.raises(ConnectionError):
        tr.finish_trial(s0, status="FINISHED", records=records[records.seed == 0])
    assert tr.failed  # the driver's sink switches tracking off here; trial 1 is never sent
    import alreid.harness.tracking as tracking

    real_sync = tracking.sync_results
    tracking.sync_results = down  # still down at the end: a warning naming the command, no exception
    try:
        tr.finish("FINISHED")
    finally:
        tracking.sync_results = real_sync
    assert "--sync-mlflow" in capsys.readouterr().out and tr.failed
    client = MlflowClient(uri)
    assert client.get_run(parent).info.status == "RUNNING"
    tr.client.log_batch = back  # the server is back by the end of the benchmark
    tr.finish("FINISHED")
    assert "synced from records.parquet" in capsys.readouterr().out and not tr.failed
    runs = {r.data.tags["alreid.trial_key"]: r for r in client.search_runs(
        [tr.experiment_id], f"tags.mlflow.parentRunId = '{parent}'")}
    assert sorted(runs) == [spec_for(0)["key"], spec_for(1)["key"]]
    for s, run in ((0, runs[s0["key"]]), (1, runs[spec_for(1)["key"]])):
        assert run.info.status == "FINISHED" and steps(client, run.info.run_id) == [0, 1, 2]
        assert run.data.params["params.epsilon"] == "0.4"  # the params the outage kept out, too
    assert client.get_run(parent).info.status == "FINISHED"


def test_resume_reuses_a_run_its_killed_predecessor_created_but_never_recorded(tmp_path, uri):
    first = Tracker(uri, "exp", tmp_path / "res", flush_every_s=3600)
    parent = first.start(run_name="exp", params={}, resume=False)
    client = MlflowClient(uri)
    # SIGKILL right after create_run: the run exists (tags come with creation), mlflow.json does not know it
    orphan = client.create_run(first.experiment_id, run_name=SPEC["key"],
                               tags={"mlflow.parentRunId": parent, "alreid.trial_key": SPEC["key"]}).info.run_id
    second = Tracker(uri, "exp", tmp_path / "res", flush_every_s=3600)
    assert second.start(run_name="exp", params={}, resume=True) == parent
    second.finish_trial(SPEC, status="FINISHED", records=pd.DataFrame([rec(c) for c in range(3)]))
    assert children(client, second) == [(orphan, "FINISHED")]
    assert steps(client, orphan) == [0, 1, 2]
    assert client.get_run(orphan).data.params["params.epsilon"] == "0.4"  # params it never got, logged now
