"""Validated settings of one active-learning trial.

pydantic rejects unknown keys and out-of-range values with messages that name the field, so a typo
in a YAML config or a ``--param`` fails before any work starts.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal, Optional, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from alreid.clustering.settings import ClusteringSettings, Np3Settings
from alreid.errors import ConfigError
from alreid.oracle import parse_oracle_spec

M = TypeVar("M", bound=BaseModel)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False, validate_assignment=True)


class ProtocolSettings(_Strict):
    """Open-set evaluation protocol (spec 5.2), fixed per (dataset, split seed, reference embedding)
    and shared by every row of a table, whatever its trainer (issue 10)."""

    split_seed: int = 0
    holdout_fraction: float = Field(0.2, ge=0.0, lt=1.0)
    exemplars: int = Field(5, ge=1)
    exemplar_rule: Literal["kmedoids", "central"] = "kmedoids"
    camera_column: Optional[str] = None
    baus_threshold: Optional[float] = None
    #: the embedding gallery exemplars are chosen on: auto (the dataset's own features, else frozen
    #: efficientnet_lite0 ImageNet features), features, embeddings:PATH, or a backbone name
    reference: str = "auto"
    #: set by ``alreid bench``: the protocol saved as results/<experiment>/protocols/<dataset>.parquet
    file: Optional[str] = None
    #: set by ``alreid bench``: that file's ``protocol_id`` (a trial refuses a file that changed)
    id: Optional[str] = None


class TrialSettings(_Strict):
    """The settings every trial has, with their one set of defaults: an experiment YAML sets them for
    all its trials (:class:`~alreid.harness.experiment.ExperimentConfig`), a :class:`TrialConfig`
    holds them for one, ``alreid run`` flags override them."""

    trainer: str = "head"
    trainer_params: dict[str, Any] = Field(default_factory=dict)
    #: cycles after cycle 0; when not given, the trainer's schedule decides (image trainers:
    #: ceil(epochs / al_every), see ``Trainer.planned_cycles``), else 5
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

    @field_validator("trainer")
    @classmethod
    def _non_empty_trainer(cls, v: str) -> str:
        if not v or not v.strip():
            raise ValueError("must not be empty")
        return v

    @field_validator("oracle")
    @classmethod
    def _oracle(cls, v: str) -> str:
        """Check the spec and make a replay file absolute, so Ray workers in other folders find it."""
        kind, path, missing = parse_oracle_spec(v)
        if kind == "simulated":
            return "simulated"
        file = Path(path).expanduser().resolve()
        if not file.is_file():
            raise ValueError(f"replay answers file {path} does not exist (write it with 'alreid annotate export')")
        return f"replay:{file}" + ("?missing=simulate" if missing == "simulate" else "")


#: the fields a trial takes from its experiment (everything of :class:`TrialSettings`)
TRIAL_SETTING_FIELDS = tuple(TrialSettings.model_fields)


class TrialConfig(TrialSettings):
    """One (dataset, method, seed) active-learning trial."""

    dataset: str = "synthetic"
    method: str = "random"
    params: dict[str, Any] = Field(default_factory=dict)
    seed: int = 0

    @field_validator("method", "dataset")
    @classmethod
    def _non_empty(cls, v: str) -> str:
        if not v or not v.strip():
            raise ValueError("must not be empty")
        return v

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


def revalidate(model: M, *, where: str, **changes: Any) -> M:
    """A copy of ``model`` with ``changes``, validated again (``model_copy(update=...)`` checks nothing);
    fields the user never set stay unset, so defaults that depend on them still apply."""
    data = {**model.model_dump(exclude_unset=True), **changes}
    try:
        return type(model).model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, where)) from None


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
