"""The cluster path with real processes: a head and two worker nodes (separate `ray start` processes), a real
`mlflow server`, and `alreid bench` drivers, all from scripts/local_cluster.sh on 127.0.0.1.

One undisturbed benchmark is the reference; each fault (a worker node killed, the tracking server stopped and
restarted, the driver SIGKILLed) must end with the same records and a complete, closed MLflow experiment.
The test that kills a worker comes last: the module shares one cluster.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient

from alreid.harness import tune_runner

from .conftest import BENCH_TIMEOUT, CONFIG, Bench, LocalCluster, comparable, wait_for

pytestmark = [pytest.mark.ray, pytest.mark.slow]
CYCLES = CONFIG["cycles"]
N_TRIALS = len(CONFIG["methods"]) * CONFIG["seeds"]


def records_of(results: Path) -> pd.DataFrame:
    return pd.read_parquet(results / "records.parquet")


def finished_keys(results: Path) -> set[str]:
    try:
        return set(records_of(results)["trial_key"])
    except (OSError, ValueError, KeyError):
        return set()


def checkpoints(results: Path) -> dict[str, tuple[int, str]]:
    """Trial key -> (last checkpointed cycle, node that ran it), read from Tune's trial folders."""
    out = {}
    for folder in (results / "tune").glob("*/checkpoint_*"):
        try:
            recs = pd.read_parquet(folder / "records.parquet")
        except (OSError, ValueError):  # being written or rotated away
            continue
        if len(recs):
            out[folder.parent.name] = (int(recs["cycle"].max()), str(recs["node"].iloc[-1]))
    return out


def markers(folder: Path) -> dict[str, list[int]]:
    """Trial key -> the cycle each attempt started from (test-only hook of the trainable)."""
    return {p.stem: [int(line.split()[1]) for line in p.read_text().splitlines()] for p in sorted(folder.glob("*.txt"))}


def experiment_runs(uri: str, name: str) -> tuple[MlflowClient, object, dict[str, object]]:
    """(client, parent run, {trial key: nested run}) of the experiment ``name`` on the server."""
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(name)
    assert exp is not None, f"no MLflow experiment {name!r} at {uri}"
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1, [r.info.run_name for r in parents]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    keys = [r.data.tags["alreid.trial_key"] for r in children]
    assert len(keys) == len(set(keys)), f"duplicate runs for a trial: {sorted(keys)}"
    assert len(children) == len(runs) - 1, "a run outside the parent"
    return client, parents[0], {r.data.tags["alreid.trial_key"]: r for r in children}


def check_mlflow_complete(uri: str, name: str, records: pd.DataFrame) -> None:
    """One FINISHED nested run per trial with one metric point per cycle equal to records.parquet, artifacts in."""
    client, parent, runs = experiment_runs(uri, name)
    assert parent.info.status == "FINISHED"
    assert sorted(runs) == sorted(set(records["trial_key"]))
    for key, run in runs.items():
        assert run.info.status == "FINISHED", (key, run.info.status)
        want = records[records.trial_key == key].set_index("cycle")["mAP"].to_dict()
        hist = client.get_metric_history(run.info.run_id, "mAP")
        assert sorted(m.step for m in hist) == list(range(CYCLES + 1)), (key, [m.step for m in hist])
        assert {m.step: m.value for m in hist} == pytest.approx(want)
        assert {"records.parquet", "pairs.parquet"} <= {a.path for a in client.list_artifacts(run.info.run_id)}


def check_records(results: Path) -> pd.DataFrame:
    df = records_of(results)
    assert df["trial_key"].nunique() == N_TRIALS and len(df) == N_TRIALS * (CYCLES + 1)
    assert not df.duplicated(["trial_key", "cycle"]).any()
    assert set(df["node"]) <= {"worker1", "worker2"}  # the head has no CPU for trials
    return df


def same_records(a: pd.DataFrame, b: pd.DataFrame) -> None:
    extra = sorted(set(a.columns) ^ set(b.columns))
    assert not extra, f"columns in one run only: {extra}"
    pd.testing.assert_frame_equal(comparable(a), comparable(b), check_dtype=False, check_like=True)


@pytest.fixture(scope="module")
def reference(cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    """The undisturbed benchmark (experiment 'ref') and how long it took."""
    folder = tmp_path_factory.mktemp("ref")
    config = folder / "ref.yaml"
    config.write_text(yaml.safe_dump({"name": "ref", **CONFIG}, sort_keys=False))
    import sys

    argv = [str(Path(sys.executable).parent / "alreid"), "bench", str(config), "--address", cluster.address,
            "--tracking-uri", cluster.uri, "--storage", str(cluster.storage)]
    t0 = time.monotonic()
    b = Bench(argv, folder / "bench.log", {})
    try:
        rc = b.wait(BENCH_TIMEOUT)
        assert rc == 0, b.output()[-4000:]
    finally:
        b.close()
    print(f"[reference benchmark: {time.monotonic() - t0:.0f} s]")
    return records_of(cluster.storage / "ref")


def test_multinode_benchmark_through_the_tracking_server(cluster, reference, tmp_path):
    df = check_records(cluster.storage / "ref")
    # undisturbed: two trials at a time, one per 1-CPU worker, so both workers ran trials; a trial never moved
    assert set(df["node"]) == {"worker1", "worker2"}
    assert (df.groupby("trial_key")["node"].nunique() == 1).all()
    check_mlflow_complete(cluster.uri, "ref", df)
    client, parent, runs = experiment_runs(cluster.uri, "ref")
    # artifacts go through the server (--serve-artifacts) into the folder it owns, and download intact
    exp = client.get_experiment(parent.info.experiment_id)
    assert exp.artifact_location.startswith("mlflow-artifacts:")
    key = sorted(runs)[0]
    got = pd.read_parquet(client.download_artifacts(runs[key].info.run_id, "records.parquet", str(tmp_path)))
    same_records(got.assign(trial_key=key), df[df.trial_key == key])
    assert len(list(Path(cluster.state["mlflow_dir"], "artifacts").rglob("records.parquet"))) == N_TRIALS
    assert "report/summary.md" in {a.path for a in client.list_artifacts(parent.info.run_id, "report")}
    status = cluster.script("status", timeout=180)
    assert status.returncode == 0, status.stdout + status.stderr
    for name in ("worker1", "worker2"):
        assert f"{name}: CPU=1 GPU=0 node_{name}=1" in status.stdout


def test_tracking_server_down_mid_run_then_synced(cluster, reference, bench, write_config, tmp_path, capsys):
    """Down from the first finished trial to the end of the run (when it is back before the end, the driver
    catches up by itself: tests/harness/test_tracking.py); then --sync-mlflow, twice."""
    results = cluster.storage / "outage"
    b = bench(write_config("outage"))
    wait_for("the first finished trial", lambda: finished_keys(results), BENCH_TIMEOUT, b)
    assert cluster.script("stop", "mlflow").returncode == 0
    # the next finished trial cannot be logged: the driver says so once and carries on to the end
    assert b.wait() == 0, b.output()[-4000:]
    assert "MLflow logging is off" in b.output() and "MLflow is still not up to date" in b.output()
    df = check_records(results)
    same_records(df, reference)  # records.parquet is complete whatever MLflow went through
    started = cluster.script("start", "mlflow")  # same port, same SQLite store and artifact folder
    assert started.returncode == 0, started.stdout + started.stderr
    client, parent, runs = experiment_runs(cluster.uri, "outage")
    incomplete = [k for k in set(df.trial_key) if k not in runs or runs[k].info.status != "FINISHED"]
    assert incomplete and parent.info.status == "RUNNING", "the outage should have kept trials out of MLflow"

    from alreid.cli import main as cli_main

    capsys.readouterr()
    assert cli_main(["table", str(results), "--sync-mlflow"]) == 0
    assert "synced from records.parquet" in capsys.readouterr().out
    check_mlflow_complete(cluster.uri, "outage", df)
    before = snapshot(cluster.uri, "outage")
    assert cli_main(["table", str(results), "--sync-mlflow", cluster.uri]) == 0  # idempotent
    assert "nothing to log" in capsys.readouterr().out
    assert snapshot(cluster.uri, "outage") == before


def snapshot(uri: str, name: str) -> list:
    client, parent, runs = experiment_runs(uri, name)
    out = []
    for run in [parent, *runs.values()]:
        hist = sorted((k, m.step, repr(m.value)) for k in run.data.metrics
                      for m in client.get_metric_history(run.info.run_id, k))
        out.append((run.info.run_name, run.info.status, sorted(run.data.params.items()), hist,
                    sorted(a.path for a in client.list_artifacts(run.info.run_id))))
    return sorted(out)


def test_driver_sigkill_then_resume(cluster, reference, bench, write_config):
    results = cluster.storage / "sigkill"
    config = write_config("sigkill")
    b = bench(config)

    def one_done_one_midway() -> bool:
        done = finished_keys(results)
        return bool(done) and any(k not in done and c >= 1 for k, (c, _) in checkpoints(results).items())

    wait_for("a finished trial and another one mid-way", one_done_one_midway, BENCH_TIMEOUT, b)
    b.kill()  # SIGKILL: no handler runs, nothing is flushed or closed
    _, parent, _ = experiment_runs(cluster.uri, "sigkill")
    assert parent.info.status == "RUNNING"
    r = bench(config, "--resume")
    assert r.wait() == 0, r.output()[-4000:]
    assert "resuming sigkill" in r.output()
    df = check_records(results)
    same_records(df, reference)
    check_mlflow_complete(cluster.uri, "sigkill", df)
    client, _, _ = experiment_runs(cluster.uri, "sigkill")
    exp = client.get_experiment_by_name("sigkill")
    assert not client.search_runs([exp.experiment_id], "attributes.status = 'RUNNING'")


def test_worker_node_killed_mid_benchmark(cluster, reference, bench, write_config, tmp_path):
    results = cluster.storage / "nodeloss"
    hold = tmp_path / "hold"  # every trial waits here after checkpointing cycle 0 until `release` appears
    b = bench(write_config("nodeloss"), hooks={tune_runner.TEST_MARKERS_ENV: str(tmp_path / "markers"),
                                               tune_runner.TEST_HOLD_ENV: str(hold)})

    def victim() -> tuple[str, str] | None:
        """A trial held after its cycle-0 checkpoint on a worker node, and that node."""
        for held in sorted(hold.glob("*.held")):
            node = held.read_text()
            if node in ("worker1", "worker2"):
                return held.stem, node
        return None

    try:
        key, node = wait_for("a trial held mid-way", victim, BENCH_TIMEOUT, b)
        wait_for("its cycle-0 checkpoint on shared storage", lambda: checkpoints(results).get(key, (None,))[0] == 0,
                 30, b)
        killed = cluster.script("stop", node, "--kill")  # SIGKILL the node's whole process group at once
        assert killed.returncode == 0, killed.stdout + killed.stderr
    finally:
        hold.mkdir(parents=True, exist_ok=True)
        (hold / "release").touch()
    assert b.wait() == 0, b.output()[-4000:]
    df = check_records(results)
    same_records(df, reference)  # no lost, duplicated or different rows
    other = "worker2" if node == "worker1" else "worker1"
    starts = markers(tmp_path / "markers")
    assert len(starts[key]) >= 2 and starts[key][0] == 0 and starts[key][-1] >= 1, starts[key]  # from its checkpoint
    rows = df[df.trial_key == key].set_index("cycle")["node"]
    resumed_at = starts[key][-1]
    assert (rows.loc[resumed_at:] == other).all(), rows.to_dict()  # finished on the remaining node
    assert (rows.loc[:resumed_at - 1] == node).all(), rows.to_dict()
    assert "failed" in b.output() and "retry" in b.output()
    check_mlflow_complete(cluster.uri, "nodeloss", df)
    status = json.loads((cluster.dir / "cluster.json").read_text())["components"][node]
    assert status["pid"] is None
