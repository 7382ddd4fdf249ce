"""scripts/local_cluster.py without Ray: it signals exactly the process groups it recorded, never a recycled pid,
and bad requests are one-line errors."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "local_cluster.sh"


def load_module():
    spec = importlib.util.spec_from_file_location("local_cluster", ROOT / "scripts" / "local_cluster.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


lc = load_module()


def run(*args: str, folder: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(SCRIPT), *args, "--dir", str(folder)], capture_output=True, text=True, timeout=60)


@pytest.fixture
def sleepers():
    """Processes standing in for cluster nodes: each leads its own group and has a child in it."""
    procs: list[subprocess.Popen] = []

    def _start() -> subprocess.Popen:
        p = subprocess.Popen(["bash", "-c", "sleep 300 & wait"], start_new_session=True)
        procs.append(p)
        time.sleep(0.3)
        return p

    yield _start
    for p in procs:  # whatever the test did, nothing is left behind
        if p.poll() is None or lc.group_alive(p.pid):
            try:
                import os
                import signal

                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        p.wait(timeout=10)


def write_state(folder: Path, comps: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "cluster.json").write_text(json.dumps({
        "ray_address": "127.0.0.1:1", "tracking_uri": "http://127.0.0.1:2", "storage": str(folder / "storage"),
        "mlflow_dir": str(folder / "mlflow"),
        "components": {n: {"kind": "ray", "cmd": ["true"], "log": str(folder / f"{n}.log"), **c} for n, c in comps.items()}}))


def test_down_stops_the_recorded_groups_and_spares_a_recycled_pid(tmp_path, sleepers):
    ours, stranger = sleepers(), sleepers()
    write_state(tmp_path, {
        "head": {"pid": ours.pid, "start_time": lc.start_time(ours.pid)},
        # same pid as a live process but another start time: a pid the kernel gave to someone else
        "worker1": {"pid": stranger.pid, "start_time": lc.start_time(stranger.pid) - 1},
    })
    assert lc.group_alive(ours.pid) and lc.group_alive(stranger.pid)
    res = run("down", folder=tmp_path)
    assert res.returncode == 0 and "stopped head" in res.stdout, res.stdout + res.stderr
    assert ours.wait(timeout=30) is not None and not lc.group_alive(ours.pid)  # the child sleep too
    assert stranger.poll() is None and lc.group_alive(stranger.pid)
    state = json.loads((tmp_path / "cluster.json").read_text())
    assert state["components"]["head"]["pid"] is None


def test_stop_one_component_and_status(tmp_path, sleepers):
    a, b = sleepers(), sleepers()
    write_state(tmp_path, {"worker1": {"pid": a.pid, "start_time": lc.start_time(a.pid)},
                           "worker2": {"pid": b.pid, "start_time": lc.start_time(b.pid)}})
    res = run("stop", "worker1", "--kill", folder=tmp_path)
    assert res.returncode == 0 and "killed worker1" in res.stdout
    assert a.wait(timeout=30) is not None and b.poll() is None
    res = run("status", "--no-nodes", folder=tmp_path)
    assert res.returncode == 1  # not every component runs
    assert "worker1  stopped" in res.stdout and f"worker2  running (pid {b.pid})" in res.stdout


def test_kill_takes_descendants_that_left_the_group(tmp_path, sleepers):
    """Ray may put each worker in its own process group; a killed node must still take its trials with it."""
    node = subprocess.Popen(["bash", "-c", f"setsid sleep 300 & echo $! > {tmp_path / 'child'}; wait"],
                            start_new_session=True)
    other = sleepers()
    try:
        deadline = time.monotonic() + 10
        while not (tmp_path / "child").exists() or not (tmp_path / "child").read_text().strip():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        child = int((tmp_path / "child").read_text())
        time.sleep(0.2)
        assert lc.process_table()[child][1] != node.pid  # its own group, as a Ray worker may have
        assert child in lc.group_tree(node.pid)
        write_state(tmp_path, {"worker1": {"pid": node.pid, "start_time": lc.start_time(node.pid)},
                               "worker2": {"pid": other.pid, "start_time": lc.start_time(other.pid)}})
        res = run("stop", "worker1", "--kill", folder=tmp_path)
        assert res.returncode == 0, res.stdout + res.stderr
        assert node.wait(timeout=30) is not None
        deadline = time.monotonic() + 10
        while lc.start_time(child) is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert lc.start_time(child) is None  # the detached descendant is gone too
        assert other.poll() is None  # and nothing outside the node's tree was touched
    finally:
        if node.poll() is None:
            node.kill()
        node.wait(timeout=10)


def test_one_line_errors(tmp_path):
    res = run("down", folder=tmp_path / "none")
    assert res.returncode == 0 and "nothing to stop" in res.stdout
    write_state(tmp_path, {"head": {"pid": None, "start_time": None}})
    res = run("stop", "worker9", folder=tmp_path)
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "known: head" in res.stderr
    res = run("up", "--workers", "0", folder=tmp_path)
    assert res.returncode == 2 and "--workers must be >= 1" in res.stderr
    res = run("start", "worker9", folder=tmp_path)
    assert res.returncode == 2


def test_commands_are_loopback_only_and_name_their_nodes():
    cmd = lc.ray_node_cmd("worker1", head=False, ray_port=6379, cpus=1, gpus=0.5, object_store_mb=128)
    assert "--block" in cmd and "--node-ip-address=127.0.0.1" in cmd and "--address=127.0.0.1:6379" in cmd
    assert '--resources={"node_worker1": 1}' in cmd and "--num-gpus=0.5" in cmd and "--node-name=worker1" in cmd
    head = lc.ray_node_cmd("head", head=True, ray_port=6379, cpus=0, gpus=0, object_store_mb=128)
    assert "--head" in head and "--num-cpus=0" in head and not any(a.startswith("--address") for a in head)
    assert sys.executable  # the wrapper runs the venv's Python
