"""Shared fixtures of the harness tests: one local Ray instance per session, tiny experiment configs."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

#: A grid small enough for a 2-core CI machine: 300 synthetic images, 20 pairs and 20 head iterations per cycle.
TINY: dict[str, Any] = {
    "datasets": ["synthetic:n_images=300"],
    "methods": ["random"],
    "seeds": 2,
    "cycles": 2,
    "budget_pairs": 20,
    "trainer_params": {"iters": 20},
}


@pytest.fixture(scope="session")
def ray_session():
    """A real local Ray (2 CPUs and a fake GPU, to exercise GPU scheduling), started once."""
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray = pytest.importorskip("ray")
    started = not ray.is_initialized()
    if started:
        ray.init(address="local", num_cpus=2, num_gpus=1, include_dashboard=False, log_to_driver=False,
                 logging_level=logging.WARNING)
    yield ray
    if started:
        ray.shutdown()


@pytest.fixture
def write_config(tmp_path: Path):
    """Write an experiment YAML under tmp_path (storage inside tmp_path) and return its path."""

    def _write(name: str, **settings: Any) -> Path:
        data = {"name": name, **TINY, "storage_path": str(tmp_path / "results"), **settings}
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    return _write


@pytest.fixture
def tracking_uri(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'mlflow.db'}"
