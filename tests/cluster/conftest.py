"""Fixtures of the cluster tests: a real multi-node Ray cluster and MLflow server from scripts/local_cluster.sh,
and `alreid bench` drivers as real processes. Everything started here is stopped here, by recorded pid, even
when a test fails (finalizers), and every wait has a deadline."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import pytest
import yaml

pytest.importorskip("ray")
pytest.importorskip("mlflow")

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "local_cluster.sh"
#: 2 methods x 2 seeds = 4 trials of 4 cycles (0-3) on a tiny synthetic set: two run at once, one per worker.
CONFIG: dict[str, Any] = {
    "datasets": ["synthetic:n_images=400"],
    "methods": ["random", "aas"],
    "seeds": 2,
    "cycles": 3,
    "budget_pairs": 20,
    "trainer_params": {"iters": 20},
    "max_failures": 3,
}
#: Columns that legitimately differ between two runs of the same trials (ids, placement, wall-clock time).
VOLATILE = ("trial_id", "node", "train_images_per_s")
UP_TIMEOUT = 300
BENCH_TIMEOUT = 420


def env() -> dict[str, str]:
    e = dict(os.environ)
    e.update(RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0", PYTHONUNBUFFERED="1")
    e.pop("RAY_ADDRESS", None)
    return e


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


class LocalCluster:
    """The cluster started by ``scripts/local_cluster.sh up`` in ``folder``."""

    def __init__(self, folder: Path) -> None:
        self.dir = folder

    @property
    def state(self) -> dict[str, Any]:
        return json.loads((self.dir / "cluster.json").read_text())

    @property
    def address(self) -> str:
        return self.state["ray_address"]

    @property
    def uri(self) -> str:
        return self.state["tracking_uri"]

    @property
    def storage(self) -> Path:
        return Path(self.state["storage"])

    def script(self, *args: str, timeout: float = UP_TIMEOUT) -> subprocess.CompletedProcess:
        return subprocess.run([str(SCRIPT), *args, "--dir", str(self.dir)], capture_output=True, text=True,
                              timeout=timeout, env=env())

    def kill_leftovers(self) -> None:
        """Last resort after ``down``: SIGKILL every process group the script recorded (never by name)."""
        try:
            comps = self.state["components"]
        except (OSError, ValueError, KeyError):
            return
        for comp in comps.values():
            if comp.get("pid"):
                stat = Path(f"/proc/{comp['pid']}/stat")
                if stat.exists():  # the recorded leader (or its group) may still be there
                    _kill_group(int(comp["pid"]))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    """Head (0 CPU) + worker1 + worker2 (1 CPU each) + an MLflow server, for the whole module."""
    cl = LocalCluster(tmp_path_factory.mktemp("cluster"))
    t0 = time.monotonic()
    try:
        res = cl.script("up", "--workers", "2", "--cpus-per-worker", "1", "--timeout", "240")
        assert res.returncode == 0, res.stdout + res.stderr
        assert "alreid bench" in res.stdout and f"--address {cl.address}" in res.stdout
        assert f"--tracking-uri {cl.uri}" in res.stdout
        print(f"[cluster up in {time.monotonic() - t0:.0f} s]")
        yield cl
    finally:
        t1 = time.monotonic()
        try:
            down = cl.script("down", timeout=180)
            print(f"[cluster down in {time.monotonic() - t1:.0f} s] {down.stdout.strip()}")
        finally:
            cl.kill_leftovers()


class Bench:
    """One ``alreid bench`` driver process (its own process group, so a test can SIGKILL it)."""

    def __init__(self, argv: list[str], log: Path, extra_env: dict[str, str]) -> None:
        self.log = log
        self._fh = open(log, "ab")
        self.proc = subprocess.Popen(argv, stdout=self._fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env={**env(), **extra_env}, cwd=ROOT, start_new_session=True)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait(self, timeout: float = BENCH_TIMEOUT) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"alreid bench did not finish in {timeout:.0f} s; its output:\n{self.output()[-4000:]}")

    def kill(self) -> None:
        """SIGKILL the driver (and anything in its process group), as a crash would."""
        if self.proc.poll() is None:
            _kill_group(self.proc.pid)
            self.proc.wait(timeout=60)

    def close(self) -> None:
        self.kill()
        self._fh.close()


@pytest.fixture
def bench(cluster: LocalCluster, tmp_path: Path):
    """Start ``alreid bench <config> --address ... --tracking-uri ... --storage ...`` on the cluster."""
    started: list[Bench] = []

    def _start(config: Path, *extra: str, hooks: dict[str, str] | None = None) -> Bench:
        argv = [str(Path(sys.executable).parent / "alreid"), "bench", str(config), "--address", cluster.address,
                "--tracking-uri", cluster.uri, "--storage", str(cluster.storage), *extra]
        b = Bench(argv, tmp_path / f"bench{len(started)}.log", hooks or {})
        started.append(b)
        return b

    yield _start
    for b in started:  # even when the test failed half-way
        b.close()


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[..., Path]:
    def _write(name: str, **settings: Any) -> Path:
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump({"name": name, **CONFIG, **settings}, sort_keys=False))
        return path

    return _write


def wait_for(what: str, check: Callable[[], Any], timeout: float, bench: Bench | None = None) -> Any:
    """Poll ``check`` until it returns something truthy; fail (with the driver's output) at the deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        if bench is not None and bench.proc.poll() is not None:
            pytest.fail(f"the driver exited ({bench.proc.returncode}) before {what}:\n{bench.output()[-4000:]}")
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}"
                + (f"; driver output:\n{bench.output()[-4000:]}" if bench else ""))


def comparable(records: pd.DataFrame) -> pd.DataFrame:
    """Records without the columns two identical runs may differ in, in a fixed order."""
    drop = [c for c in records.columns if c in VOLATILE or c.startswith("seconds")]
    return records.drop(columns=drop).sort_values(["trial_key", "cycle"]).reset_index(drop=True)
