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
