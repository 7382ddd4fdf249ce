"""A benchmark experiment read from YAML: which datasets x methods x seeds to run, and where results go.

Every (dataset, method, seed[, sweep point]) becomes one :class:`TrialConfig`, validated together with
its sampler, trainer and dataset names before Ray starts, so a typo fails in a second, not an hour in.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Union

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from alreid.datasets.base import UNKNOWN_IDENTITY, DatasetSpec, load_dataset, parse_dataset
from alreid.evaluation.protocol import pinned_protocol, protocol_frame, protocol_hash
from alreid.harness.records import write_parquet_atomic
from alreid.errors import AlreidError, ConfigError
from alreid.harness.settings import (TRIAL_SETTING_FIELDS, ProtocolSettings, TrialSettings, format_validation_error,
                                     make_trial_config, revalidate)
from alreid.registry import DATASETS, SAMPLERS, TRAINERS

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Resources(_Strict):
    """Logical resources of one trial; fractional GPUs let several trials share a card."""

    cpu: float = Field(1.0, gt=0)
    gpu: float = Field(0.0, ge=0)


class MethodSpec(_Strict):
    """One row of the comparison: a sampler with a trainer (``sampler: none`` = unsupervised baseline)."""

    name: Optional[str] = Field(None, validation_alias=AliasChoices("name", "label"))
    sampler: str
    params: dict[str, Any] = Field(default_factory=dict)
    trainer: Optional[str] = None
    trainer_params: Optional[dict[str, Any]] = None
    resources: Optional[Resources] = None
    #: the table block this row belongs to (e.g. foundation, USL, AL); tables show blocks as separators
    block: Optional[str] = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        """``- aas`` in YAML means ``- {sampler: aas}``."""
        return {"sampler": data} if isinstance(data, str) else data


class SweepSpec(_Strict):
    """A grid over hyperparameters of one method; each point becomes its own row label."""

    method: Optional[str] = None
    params: dict[str, list[Any]] = Field(min_length=1)

    @field_validator("params")
    @classmethod
    def _non_empty_axes(cls, v: dict[str, list[Any]]) -> dict[str, list[Any]]:
        empty = [k for k, vals in v.items() if not vals]
        if empty:
            raise ValueError(f"sweep axis {', '.join(empty)} has no values")
        return v


class ExperimentConfig(TrialSettings):
    """The YAML schema of ``alreid bench`` / ``alreid sweep`` (see configs/default.yaml): the trial
    settings shared by every trial (:class:`TrialSettings`) plus what to run and where results go."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str
    description: str = ""
    datasets: list[str] = Field(min_length=1)
    methods: list[MethodSpec] = Field(min_length=1)
    seeds: Union[int, list[int]] = 3
    resources: Resources = Field(default_factory=Resources)
    storage_path: str = "results"
    tracking_uri: Optional[str] = None
    mlflow_experiment: Optional[str] = None
    max_failures: int = Field(2, ge=-1)
    max_concurrent: Optional[int] = Field(None, ge=1)
    reference: str = "aas"
    metric: str = "mAP"
    sweep: Optional[SweepSpec] = None

    @field_validator("name")
    @classmethod
    def _safe_name(cls, v: str) -> str:
        if not _NAME_RE.match(v):
            raise ValueError("must be a folder name: letters, digits, '_', '-', '.' (it names results/<name>)")
        return v

    @field_validator("seeds")
    @classmethod
    def _seed_list(cls, v: Union[int, list[int]]) -> Union[int, list[int]]:
        if isinstance(v, int):
            if v < 1:
                raise ValueError("must be >= 1 (a count) or a list of seeds")
        elif not v or len(set(v)) != len(v):
            raise ValueError("must be a non-empty list of distinct seeds")
        return v

    def seed_list(self) -> list[int]:
        return list(range(self.seeds)) if isinstance(self.seeds, int) else list(self.seeds)

    def resolved_tracking_uri(self) -> str:
        """The MLflow URI: the configured one, else an sqlite file next to the results (never ./mlruns)."""
        if self.tracking_uri:
            return self.tracking_uri
        return f"sqlite:///{Path(self.storage_path).expanduser().resolve() / 'mlflow.db'}"

    def results_dir(self) -> Path:
        return Path(self.storage_path).expanduser().resolve() / self.name


@dataclass(frozen=True)
class TrialSpec:
    """What one Ray trial receives in its config: small, JSON-able, and enough to rebuild the trial."""

    key: str
    label: str
    dataset: str
    seed: int
    trial: dict[str, Any]
    resources: dict[str, float]
    #: every sampler/trainer hyperparameter including defaults, for the record (MLflow params)
    hyper: dict[str, Any] = field(default_factory=dict)
    #: the method row's table block (None: no separator)
    block: Optional[str] = None

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, "label": self.label, "dataset": self.dataset, "seed": self.seed,
                "trial": self.trial, "resources": self.resources, "hyper": self.hyper, "block": self.block}


@dataclass
class Plan:
    """The validated experiment and its expanded trials, in run order."""

    config: ExperimentConfig
    source: str
    trials: list[TrialSpec] = field(default_factory=list)
    sweep: bool = False
    smoke: bool = False
    #: dataset spec -> its short, file-safe name (trial keys, protocol files)
    shorts: dict[str, str] = field(default_factory=dict)

    @property
    def results_dir(self) -> Path:
        return self.config.results_dir()

    @property
    def labels(self) -> list[str]:
        return list(dict.fromkeys(t.label for t in self.trials))

    def fingerprint(self) -> str:
        """A hash of every trial's settings: resuming with a changed config must be refused."""
        blob = json.dumps([t.as_dict() for t in self.trials], sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


# ------------------------------------------------------------------------------------------ loading
def load_experiment(path: str | Path) -> ExperimentConfig:
    """Read and validate a YAML experiment file; every problem is one ConfigError naming the file."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"experiment config {p} does not exist")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {' '.join(str(exc).split())}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping of settings at the top level, got {type(data).__name__}")
    return parse_experiment(data, source=str(p))


def parse_experiment(data: dict[str, Any], *, source: str = "experiment config") -> ExperimentConfig:
    try:
        return ExperimentConfig(**data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {format_validation_error(exc, 'experiment config')}") from None
    except TypeError as exc:  # e.g. a non-string key
        raise ConfigError(f"{source}: invalid experiment config: {exc}") from None


def apply_overrides(cfg: ExperimentConfig, **overrides: Any) -> ExperimentConfig:
    """A copy with the CLI overrides that are not None (storage_path, tracking_uri, max_concurrent)."""
    changes = {k: v for k, v in overrides.items() if v is not None}
    return revalidate(cfg, where="experiment config", **changes) if changes else cfg


# ------------------------------------------------------------------------------------------ planning
def dataset_short_name(spec: str) -> str:
    """A readable, file-safe name for trial names: the ``subset`` option, else the last path part."""
    return parse_dataset(spec).short_name()


def _fmt_value(v: Any) -> str:
    return repr(v) if isinstance(v, str) else json.dumps(v)


def sweep_label(base: str, point: dict[str, Any]) -> str:
    """``aas[epsilon=0.4,k_max=5,s_min=0.3]``: the row label of one sweep point."""
    return f"{base}[{','.join(f'{k}={_fmt_value(v)}' for k, v in point.items())}]"


def trial_key(label: str, dataset_short: str, seed: int) -> str:
    """A unique, file-safe trial name: ``aas-epsilon=0.4-k_max=5__synthetic__seed0``."""
    safe = label.replace("[", "-").replace("]", "").replace(",", "-")
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", f"{safe}__{dataset_short}__seed{seed}")


@dataclass(frozen=True)
class Row:
    """One row of the comparison after sweep expansion: its label, its method, and the trial settings
    a sweep point changes (e.g. ``{"budget_fraction": 0.001}``; empty outside sweeps)."""

    label: str
    method: MethodSpec
    settings: dict[str, Any] = field(default_factory=dict)


def _method_rows(cfg: ExperimentConfig, *, sweep: bool, smoke: bool) -> list[Row]:
    """The rows to run: the methods, and with ``sweep`` every point of the sweep grid.

    A sweep axis named like a trial setting (``budget_fraction``, ``cycles``, ``oracle_error_rate``, ...)
    varies that setting for every method row; any other axis is a hyperparameter of ``sweep.method``.
    """
    rows = [Row(m.name or m.sampler, m) for m in cfg.methods]
    labels = [r.label for r in rows]
    dupes = sorted({x for x in labels if labels.count(x) > 1})
    if dupes:
        raise ConfigError(f"methods {', '.join(map(repr, dupes))} appear more than once; give each row a distinct "
                          f"'name' (e.g. name: clustercontrast for sampler none with trainer clustercontrast)")
    if not sweep:
        return rows
    if cfg.sweep is None:
        raise ConfigError("this config has no 'sweep' section; add sweep: {method: aas, params: {epsilon: [...]}} "
                          "or run it with 'alreid bench'")
    axes = {k: (v[:2] if smoke else v) for k, v in cfg.sweep.params.items()}
    setting_axes = {k: v for k, v in axes.items() if k in TRIAL_SETTING_FIELDS}
    param_axes = {k: v for k, v in axes.items() if k not in setting_axes}
    target = None
    if param_axes:
        target = cfg.sweep.method or (labels[0] if len(labels) == 1 else None)
        if target is None:
            raise ConfigError(f"sweep.method is required when the config lists several methods ({', '.join(labels)})")
        if target not in labels:
            raise ConfigError(f"sweep.method {target!r} is not one of the methods: {', '.join(labels)}")
    out = []
    for row in rows:
        params = param_axes if row.label == target else {}
        grid = {**params, **setting_axes}
        if not grid:
            out.append(row)
            continue
        for values in itertools.product(*grid.values()):
            point = dict(zip(grid, values))
            m = row.method.model_copy(update={"params": {**row.method.params, **{k: point[k] for k in params}}})
            out.append(Row(sweep_label(row.label, point), m, {k: point[k] for k in setting_axes}))
    return out


def _jsonable(params: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(params, default=str))


def _build_plugins(label: str, m: MethodSpec, trainer: str, trainer_params: dict[str, Any]) -> tuple[Any, Any]:
    """Build the sampler and trainer once (name and parameter checks, exactly as a trial will)."""
    try:
        return SAMPLERS.get(m.sampler).from_params(m.params), TRAINERS.get(trainer).from_params(trainer_params)
    except AlreidError as exc:
        raise type(exc)(f"method {label!r}: {exc}") from None


def check_trainer_fits_dataset(spec: DatasetSpec, trainer: str, label: str | None = None) -> None:
    """A trainer that reads images cannot run on a dataset of precomputed features: say so before Ray."""
    if getattr(TRAINERS.get(trainer), "needs_images", False) and not getattr(DATASETS.get(spec.name), "has_images", True):
        row = f"method {label!r}: " if label else ""
        raise ConfigError(f"{row}dataset {spec} holds only precomputed features, but trainer {trainer!r} reads images; "
                          f"use an image dataset (metadata:ROOT, folders:ROOT, market1501:ROOT, wildlife:Class:ROOT) "
                          f"or a trainer on features (trainer: head)")


def plan_experiment(cfg: ExperimentConfig, *, source: str = "experiment config", sweep: bool = False,
                    smoke: bool = False, check_plugins: bool = True) -> Plan:
    """Expand datasets x methods x seeds (x sweep points) into validated trials.

    Each trial's settings are the experiment's :class:`TrialSettings` (one dump, no field copied by
    hand) updated by its row: trainer, trainer parameters and any swept setting. ``cycles`` not set in
    the YAML comes from the trainer's schedule (``Trainer.planned_cycles``), else the default.
    ``smoke`` keeps one seed, at most two cycles and two values per sweep axis, and renames the
    experiment ``<name>-smoke`` so a CI run never mixes with real results.
    """
    try:
        if smoke:
            cfg = revalidate(cfg, where="experiment config", name=f"{cfg.name}-smoke", seeds=cfg.seed_list()[:1])
        rows = _method_rows(cfg, sweep=sweep, smoke=smoke)
        specs = [parse_dataset(d).absolute() for d in cfg.datasets]  # unknown names list the known ones
        datasets = [str(d) for d in specs]
        if len(set(datasets)) != len(datasets):
            raise ConfigError("datasets lists the same dataset twice")
        shorts = [d.short_name() for d in specs]
        shorts = [s if shorts.count(s) == 1 else f"{s}{i}" for i, s in enumerate(shorts)]
        plan = Plan(config=cfg, source=source, sweep=sweep, smoke=smoke, shorts=dict(zip(datasets, shorts)))
        shared = cfg.model_dump(include=set(TRIAL_SETTING_FIELDS))
        cycles_given = "cycles" in cfg.model_fields_set
        hyper: dict[str, dict[str, Any]] = {}
        cycles_of: dict[str, int] = {}
        for spec, d, short in zip(specs, datasets, shorts):
            for row in rows:
                m = row.method
                trainer = m.trainer or cfg.trainer
                tparams = {**(cfg.trainer_params if trainer == cfg.trainer else {}), **(m.trainer_params or {})}
                check_trainer_fits_dataset(spec, trainer, row.label)
                if row.label not in cycles_of:
                    sampler_obj, trainer_obj = _build_plugins(row.label, m, trainer, tparams) if check_plugins \
                        else (None, TRAINERS.get(trainer)(**tparams))
                    if check_plugins:
                        hyper[row.label] = {"params": _jsonable(sampler_obj.get_params()),
                                            "trainer_params": _jsonable(trainer_obj.get_params())}
                    planned = None if cycles_given else trainer_obj.planned_cycles()
                    cycles_of[row.label] = planned if planned is not None else cfg.cycles
                cycles = row.settings.get("cycles", cycles_of[row.label])
                res = (m.resources or cfg.resources).model_dump()
                for seed in cfg.seed_list():
                    tc = make_trial_config({**shared, **row.settings, "dataset": d, "method": m.sampler,
                                            "params": m.params, "trainer": trainer, "trainer_params": tparams,
                                            "seed": seed, "cycles": min(cycles, 2) if smoke else cycles})
                    key = trial_key(row.label, short, seed)
                    plan.trials.append(TrialSpec(key=key, label=row.label, dataset=d, seed=seed,
                                                 trial=tc.model_dump(mode="json"), resources=res,
                                                 hyper=hyper.get(row.label, {}), block=m.block))
        return plan
    except AlreidError as exc:
        raise type(exc)(f"{source}: {exc}") from None


def check_local_datasets(plan: Plan) -> None:
    """Fail before Ray starts when a dataset location is missing on this machine (local runs only:
    on a cluster the paths need to exist on the workers, not on the driver)."""
    missing = [spec for spec in plan.config.datasets if not parse_dataset(spec).exists_here()]
    if missing:
        raise ConfigError(f"{plan.source}: dataset path(s) not found on this machine: {', '.join(missing)} "
                          f"(paths are relative to the current directory; on a cluster pass --address)")


PROTOCOLS_DIR = "protocols"


def pin_protocols(plan: Plan, *, out: Any = print) -> dict[str, str]:
    """Compute every dataset's evaluation protocol once, on the driver and before Ray: save it as
    ``results/<experiment>/protocols/<dataset>.parquet`` and write its path and ``protocol_id`` into
    each of its trials, so every row of the table is evaluated on the same gallery. Datasets that are
    not on this machine (a cluster) or have no identities are left to the trials, which compute the
    same protocol by the same function. Returns {file: protocol_id}."""
    groups: dict[tuple[str, str], list[TrialSpec]] = {}
    for t in plan.trials:
        settings = {k: v for k, v in t.trial["protocol"].items() if k not in ("file", "id")}
        groups.setdefault((t.dataset, json.dumps(settings, sort_keys=True)), []).append(t)
    per_dataset = {}
    for d, _ in groups:
        per_dataset[d] = per_dataset.get(d, 0) + 1
    folder = plan.results_dir / PROTOCOLS_DIR
    pinned: dict[str, str] = {}
    for (d, settings_json), trials in groups.items():
        if not parse_dataset(d).exists_here():
            continue
        settings = ProtocolSettings(**json.loads(settings_json))
        dataset = load_dataset(d, seed=settings.split_seed)
        if not (dataset.identities != UNKNOWN_IDENTITY).any():
            continue
        protocol = pinned_protocol(dataset, settings)
        frame = protocol_frame(protocol, dataset.identities, dataset.metadata["image_id"].to_numpy())
        name = plan.shorts.get(d) or parse_dataset(d).short_name()
        if per_dataset[d] > 1:
            name += "-" + hashlib.sha256(settings_json.encode()).hexdigest()[:8]
        path = folder / f"{name}.parquet"
        folder.mkdir(parents=True, exist_ok=True)
        write_parquet_atomic(frame, path)
        pid = protocol_hash(protocol)
        pinned[str(path)] = pid
        for t in trials:
            t.trial["protocol"]["file"], t.trial["protocol"]["id"] = str(path), pid
        out(f"protocol of {dataset.name}: {len(protocol.query_idx)} queries, {len(protocol.gallery_idx)} gallery "
            f"exemplars (reference {settings.reference}), protocol_id {pid} -> {path}")
    return pinned


def load_plan(path: str | Path, *, sweep: bool = False, smoke: bool = False, **overrides: Any) -> Plan:
    """Read, override, expand and validate: what ``alreid bench/sweep`` do before touching Ray."""
    cfg = apply_overrides(load_experiment(path), **overrides)
    return plan_experiment(cfg, source=str(path), sweep=sweep, smoke=smoke)
