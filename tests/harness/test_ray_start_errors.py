"""A Ray instance that cannot start (an overloaded machine: "The current node timed out during startup") or a
cluster that cannot be joined is a one-line error from `alreid bench` (exit 2), not Ray's traceback, and a plain
rerun is not blocked by the failed start."""

from __future__ import annotations

import pytest

from alreid.cli import main as cli_main
from alreid.errors import AlreidError
from alreid.harness import tune_runner

RAY_TEXT = ("The current node timed out during startup. This could happen because some of the raylet failed to "
            "startup or the GCS has become overloaded.")


@pytest.fixture
def failing_ray(monkeypatch):
    """ray.init raises what Ray 2.60 raises when its node does not come up in time; records ray.shutdown calls."""
    calls = {"init": [], "shutdown": 0}

    def init(**kwargs):
        calls["init"].append(kwargs)
        raise Exception(RAY_TEXT + "\nsecond line of Ray's text")

    def shutdown():
        calls["shutdown"] += 1

    monkeypatch.setattr(tune_runner.ray, "is_initialized", lambda: False)
    monkeypatch.setattr(tune_runner.ray, "init", init)
    monkeypatch.setattr(tune_runner.ray, "shutdown", shutdown)
    return calls


def test_a_local_ray_that_does_not_start_is_one_line(failing_ray):
    with pytest.raises(AlreidError) as err:
        tune_runner.init_ray(None)
    assert str(err.value) == (
        "could not start a local Ray instance: The current node timed out during startup. This could happen because "
        "some of the raylet failed to startup or the GCS has become overloaded; retry when the machine is less busy, "
        "or start Ray yourself (`ray start --head`) and pass --address auto")
    assert failing_ray["init"][0]["address"] == "local" and failing_ray["shutdown"] == 1  # what did start is stopped


def test_a_cluster_that_cannot_be_joined_is_one_line(failing_ray):
    with pytest.raises(AlreidError) as err:
        tune_runner.init_ray("127.0.0.1:6379")
    assert str(err.value) == (
        "could not join the Ray cluster at '127.0.0.1:6379': The current node timed out during startup. This could "
        "happen because some of the raylet failed to startup or the GCS has become overloaded; check that the "
        "cluster is up (`ray status`) and reachable from here")
    assert failing_ray["init"][0]["address"] == "127.0.0.1:6379" and failing_ray["shutdown"] == 1


def test_bench_exits_2_and_a_plain_rerun_meets_the_same_error(failing_ray, write_config, capsys):
    path = write_config("nostart")
    for _ in range(2):  # the failed start leaves nothing that makes the rerun ask for --resume or --overwrite
        assert cli_main(["bench", str(path), "--no-mlflow"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("alreid: error: could not start a local Ray instance: The current node timed out")
        assert "\n" not in err and "Traceback" not in err
    assert len(failing_ray["init"]) == 2
