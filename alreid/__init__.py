"""alreid: active learning for animal re-identification.

The public Python API (see :mod:`alreid.api`) is re-exported here lazily: heavy dependencies
(torch, ray, mlflow, faiss) are imported only when a function that needs them is called, so
``import alreid`` stays fast.

Examples
--------
>>> import alreid
>>> data = alreid.load_dataset("synthetic:n_images=300")
>>> sampler = alreid.get_sampler("aas", epsilon=0.4)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

from alreid.errors import AlreidError

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from alreid.api import (ActiveLearningLoop, BenchmarkResult, Results, get_sampler, get_trainer, load_dataset,
                            load_results, run_benchmark, run_trial)

#: public name -> module that defines it (imported on first use)
_LAZY = {name: "alreid.api" for name in ("ActiveLearningLoop", "BenchmarkResult", "Results", "get_sampler",
                                         "get_trainer", "load_dataset", "load_results", "run_benchmark", "run_trial")}

__all__ = ["AlreidError", "__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    """PEP 562: import the API module on first access to one of its names."""
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'alreid' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
