"""cluster.yaml must pass Ray's own launcher checks, as shipped and with the on-premise block swapped in."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml

pytest.importorskip("ray")
from ray.autoscaler._private.util import prepare_config, validate_config  # noqa: E402

CLUSTER_YAML = Path(__file__).resolve().parents[2] / "cluster.yaml"


def _line(lines: list[str], prefix: str) -> int:
    found = [i for i, line in enumerate(lines) if line.startswith(prefix)]
    assert len(found) == 1, f"expected exactly one line starting with {prefix!r} in cluster.yaml"
    return found[0]


def on_premise_text() -> str:
    """What a user gets by deleting the AWS section and uncommenting the on-premise block."""
    lines = CLUSTER_YAML.read_text().splitlines()
    aws_start, aws_end = _line(lines, "# >>> AWS"), _line(lines, "# <<< AWS")
    op_start, op_end = _line(lines, "# >>> ON-PREMISE"), _line(lines, "# <<< ON-PREMISE")
    assert aws_end < op_start
    block = [re.sub(r"^# ?", "", line) for line in lines[op_start + 1:op_end]]
    return "\n".join(lines[:aws_start] + lines[aws_end + 1:op_start] + block + lines[op_end + 1:])


def check(config: dict) -> dict:
    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


def test_aws_layout_passes_ray_validation():
    config = yaml.safe_load(CLUSTER_YAML.read_text())
    prepared = check(config)
    assert config["provider"]["type"] == "aws"
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    assert head["resources"] == {"CPU": 0}
    workers = [t for name, t in types.items() if name != config["head_node_type"]]
    assert [w["node_config"]["InstanceType"] for w in workers] == ["g5.xlarge"]
    assert workers[0]["min_workers"] == 0 and workers[0]["max_workers"] >= 1
    assert prepared["available_node_types"][config["head_node_type"]]["max_workers"] == 0


def test_setup_installs_the_package_with_pinned_ray():
    config = yaml.safe_load(CLUSTER_YAML.read_text())
    assert config["file_mounts"]["~/alreid"] == "."
    setup = "\n".join(config["setup_commands"])
    assert '"ray[default,tune]==2.60.0"' in setup
    assert '"mlflow>=3.10,<3.18"' in setup
    assert setup.index("ray[default,tune]") < setup.index("pip install -e ~/alreid")


def test_on_premise_variant_passes_ray_validation():
    config = yaml.safe_load(on_premise_text())
    assert config["provider"]["type"] == "local"
    assert config["provider"]["head_ip"] and config["provider"]["worker_ips"]
    assert "available_node_types" not in config and "docker" not in config
    prepared = check(config)
    node = prepared["available_node_types"]["local.cluster.node"]
    assert node["max_workers"] == len(config["provider"]["worker_ips"])


def test_validation_is_not_vacuous():
    config = yaml.safe_load(CLUSTER_YAML.read_text())
    config["head_node_type"] = "missing"
    with pytest.raises(ValueError, match="head_node_type"):
        check(config)


def _local_cluster_module():
    import importlib.util

    path = CLUSTER_YAML.parent / "scripts" / "local_cluster.py"
    spec = importlib.util.spec_from_file_location("local_cluster", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_docs_match_what_the_cluster_tests_run():
    """The shared-storage, MLflow-server, token and layout notes in cluster.yaml describe what
    scripts/local_cluster.sh starts and tests/cluster/ exercises: same server flags, real CLI flags."""
    import argparse
    import shlex

    from alreid.commands import bench, table

    text = CLUSTER_YAML.read_text()
    comments = "\n".join(line[1:].strip() for line in text.splitlines() if line.startswith("#"))
    server = re.search(r"(mlflow server .*?)(?:\n\S|\n\n|$)", comments.replace("\\\n", " "), re.S).group(1)
    documented = {w.split("=")[0] for w in shlex.split(server) if w.startswith("--")}
    lc = _local_cluster_module()
    # the local cluster's server, built the way `up` builds it
    started = {"--host", "--port", "--backend-store-uri", "--artifacts-destination", "--serve-artifacts", "--workers"}
    assert {"--backend-store-uri", "--artifacts-destination", "--serve-artifacts", "--host", "--port"} <= documented
    assert documented <= started
    assert "sqlite:///" in server and "--serve-artifacts" in open(lc.__file__).read()
    # the flags the notes tell users to type exist
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    bench.register(sub)
    table.register(sub)
    assert parser.parse_args(["bench", "x.yaml", "--storage", "/s", "--address", "auto",
                              "--tracking-uri", "http://h:5000"]).storage == "/s"
    assert parser.parse_args(["table", "results/x", "--sync-mlflow"]).sync_mlflow == ""
    # tokens: documented for real clusters, disabled for the loopback one
    assert "RAY_AUTH_TOKEN" in comments and "RAY_AUTH_MODE=disabled" in comments
    import os

    saved = os.environ.pop("RAY_AUTH_MODE", None)
    try:
        assert lc.env_for_cluster()["RAY_AUTH_MODE"] == "disabled"
    finally:
        if saved is not None:
            os.environ["RAY_AUTH_MODE"] = saved
    # the head runs no trial, as the AWS layout's {"CPU": 0}
    assert yaml.safe_load(text)["available_node_types"]["head"]["resources"] == {"CPU": lc.HEAD_CPUS}
