"""Validated settings of one active-learning trial.

pydantic rejects unknown keys and out-of-range values with messages that name the field, so a typo
in a YAML config or a ``--param`` fails before any work starts.
"""

from __future__ import annotations

import math
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from alreid.errors import ConfigError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False, validate_assignment=True)


class ClusteringSettings(_Strict):
    """The base clustering every cycle starts from (SpCL's: DBSCAN on k-reciprocal Jaccard)."""

    method: Literal["jaccard", "cosine"] = "jaccard"
    k1: int = Field(30, ge=2)
    k2: int = Field(6, ge=1)
    eps: float = Field(0.6, gt=0.0, le=1.0)
    min_samples: int = Field(4, ge=1)
    knn_index: Literal["exact", "hnsw"] = "exact"


class Np3Settings(_Strict):
    """NP3's choices where the paper is silent (spec 1.10, ASSUMPTION register)."""

    exact_colouring_max: int = Field(12, ge=0)
    colouring: Literal["dsatur", "largest_first"] = "dsatur"
    cost: Literal["cosine", "euclidean"] = "cosine"
    unconstrained: Literal["nearest"] = "nearest"


class ProtocolSettings(_Strict):
    """Open-set evaluation protocol (spec 5.2), fixed per dataset and split seed."""

    split_seed: int = 0
    holdout_fraction: float = Field(0.2, ge=0.0, lt=1.0)
    exemplars: int = Field(5, ge=1)
    exemplar_rule: Literal["kmedoids", "central"] = "kmedoids"
    camera_column: Optional[str] = None
    baus_threshold: Optional[float] = None


class TrialConfig(_Strict):
    """One (dataset, method, seed) active-learning trial."""

    dataset: str = "synthetic"
    method: str = "random"
    params: dict[str, Any] = Field(default_factory=dict)
    trainer: str = "head"
    trainer_params: dict[str, Any] = Field(default_factory=dict)
    seed: int = 0
    cycles: int = Field(5, ge=0, le=1000)
    budget_fraction: float = Field(2e-4, gt=0.0, le=1.0)
    budget_pairs: Optional[int] = Field(None, ge=0)
    budget_rounding: Literal["ceil", "floor", "round"] = "ceil"
    refine: Literal["np3", "ml_merge", "none"] = "np3"
    np3: Np3Settings = Field(default_factory=Np3Settings)
    oracle_error_rate: float = Field(0.0, ge=0.0, lt=0.5)
    #: who answers: "simulated" (ground truth) or "replay:FILE[?missing=simulate]" (earlier, e.g. human, answers)
    oracle: str = "simulated"
    clustering: ClusteringSettings = Field(default_factory=ClusteringSettings)
    protocol: ProtocolSettings = Field(default_factory=ProtocolSettings)

    @field_validator("method", "dataset", "trainer")
    @classmethod
    def _non_empty(cls, v: str) -> str:
        if not v or not v.strip():
            raise ValueError("must not be empty")
        return v

    @field_validator("oracle")
    @classmethod
    def _oracle(cls, v: str) -> str:
        """Check the spec and make a replay file absolute, so Ray workers in other folders find it."""
        from pathlib import Path

        from alreid.oracle import parse_oracle_spec

        kind, path, missing = parse_oracle_spec(v)
        if kind == "simulated":
            return "simulated"
        file = Path(path).expanduser().resolve()
        if not file.is_file():
            raise ValueError(f"replay answers file {path} does not exist (write it with 'alreid annotate export')")
        return f"replay:{file}" + ("?missing=simulate" if missing == "simulate" else "")

    def cycle_budget(self, n: int) -> int:
        """Pairs allowed per cycle: a fraction of all n(n-1)/2 pairs (spec 1.9), or a fixed count."""
        if self.budget_pairs is not None:
            return int(self.budget_pairs)
        raw = self.budget_fraction * n * (n - 1) / 2
        if self.budget_rounding == "ceil":
            return int(math.ceil(raw - 1e-9))  # 1e-9: float error must not add a pair
        return int(math.floor(raw) if self.budget_rounding == "floor" else round(raw))


def make_trial_config(data: dict[str, Any]) -> TrialConfig:
    """Build a :class:`TrialConfig`, turning pydantic's report into one readable ConfigError."""
    try:
        return TrialConfig(**data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, "trial config")) from None


def format_validation_error(exc: ValidationError, where: str) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err["loc"]) or "(root)"
        if err["type"] == "extra_forbidden":
            parts.append(f"unknown key {loc!r}")
        else:
            parts.append(f"{loc}: {err['msg']} (got {err.get('input')!r})")
    return f"invalid {where}: " + "; ".join(parts)


def parse_param_value(raw: str) -> Any:
    """'0.6' -> 0.6, '5' -> 5, 'true' -> True, 'none' -> None, else the string (for --param k=v)."""
    low = raw.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    for conv in (int, float):
        try:
            return conv(raw)
        except ValueError:
            pass
    if raw.startswith("[") and raw.endswith("]"):
        return [parse_param_value(x) for x in raw[1:-1].split(",") if x.strip()]
    return raw
