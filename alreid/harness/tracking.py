"""MLflow tracking of a benchmark, written from the Ray driver only.

One parent run per benchmark and one nested run per trial. Workers never talk to MLflow: the driver
creates the experiment once (no creation or schema-migration races on sqlite), reuses a trial's run
when Ray retries or resumes it (no duplicate or forever-RUNNING runs), and marks it FAILED only when
the trial has finally errored. Per-cycle metrics are buffered and sent with ``log_batch`` (one call
per trial, plus a periodic flush for long trials), because a write per result stalls Tune's loop.

records.parquet is the source of truth. When the tracking server is unreachable for a while, the driver
stops logging (the benchmark goes on) and :func:`sync_results` (``alreid table RESULTS --sync-mlflow``)
later logs exactly what MLflow lacks (runs, metric steps, artifacts, final statuses), idempotently.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import pandas as pd

STATE_FILE = "mlflow.json"
#: Identity columns of a record that are not metrics.
_NOT_METRICS = {"seed", "cycle", "trial_id", "trial_key", "label", "dataset", "method", "trainer"}
_BATCH = 1000  # MLflow's limit of metrics per log_batch call
#: MLflow's HTTP client retries a refused connection 7 times with exponential backoff (minutes); a driver
#: whose tracking server is down must give up in seconds and go on with the benchmark.
_HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                  "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
                  "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true"}  # one line per trial is ours to print


def code_version() -> dict[str, str]:
    """alreid's version plus the git commit of its source tree when it is a checkout."""
    from alreid import __version__

    tags = {"alreid.version": __version__}
    src = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "-C", str(src), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(src), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return tags
    if commit:
        tags.update({"alreid.git_commit": commit, "mlflow.source.git.commit": commit,
                     "alreid.git_dirty": str(bool(dirty)).lower()})
    return tags


def flatten_params(trial: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested trial settings as MLflow params: ``clustering.eps`` -> '0.6'."""
    out: dict[str, str] = {}
    for k, v in trial.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten_params(v, f"{name}."))
        else:
            out[name] = json.dumps(v) if isinstance(v, (list, dict)) else str(v)
    return out


def record_metrics(rec: dict[str, Any]) -> dict[str, float]:
    """The numeric, finite-or-NaN values of one cycle record (bools as 0/1); strings are skipped."""
    out = {}
    for k, v in rec.items():
        if k in _NOT_METRICS or isinstance(v, str) or v is None:
            continue
        if isinstance(v, bool):
            v = float(v)
        try:
            f = float(v)
        except (TypeError, ValueError):
            continue
        if math.isinf(f):
            continue
        out[k] = f
    return out


def _write_json(path: Path, data: dict[str, Any]) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=1)
    os.replace(tmp, path)


def _notes_failure(method: Callable[..., Any]) -> Callable[..., Any]:
    """Remember that a call to the server failed, so that :meth:`Tracker.finish` catches up."""

    @functools.wraps(method)
    def wrapper(self: "Tracker", *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except Exception:
            self.failed = True
            raise

    return wrapper


def trial_params(spec: dict[str, Any]) -> dict[str, str]:
    """A trial run's params: its label and every setting, defaults included, so each run says what it ran."""
    trial = dict(spec["trial"])
    for name, full in (spec.get("hyper") or {}).items():
        trial[name] = {**full, **trial.get(name, {})}
    return {"label": spec["label"], **flatten_params(trial)}


class Tracker:
    """Driver-side MLflow logger of one benchmark (see the module docstring)."""

    def __init__(self, tracking_uri: str, experiment_name: str, results_dir: str | Path, *,
                 flush_every_s: float = 60.0) -> None:
        from mlflow import MlflowClient

        for name in ("mlflow.store.db.utils", "alembic"):  # schema-migration chatter on a new database
            logging.getLogger(name).setLevel(logging.WARNING)
        if tracking_uri.startswith(("http://", "https://")):
            for var, value in _HTTP_DEFAULTS.items():
                os.environ.setdefault(var, value)
        self.uri = tracking_uri
        self.dir = Path(results_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.client = MlflowClient(tracking_uri=tracking_uri)
        self.experiment_name = experiment_name
        self.experiment_id = self._experiment(experiment_name)
        self.parent_id: str | None = None
        self.runs: dict[str, str] = {}
        self._buffer: dict[str, list[tuple[int, dict[str, float]]]] = {}
        self._logged: dict[str, set[int]] = {}
        self._last_flush: dict[str, float] = {}
        self._open: set[str] = set()
        self.flush_every_s = flush_every_s
        self.tags = code_version()
        self.failed = False  # a call to the server failed: finish() syncs from records.parquet

    # experiment and parent run -------------------------------------------------------------------
    def _artifact_location(self) -> str | None:
        """sqlite stores would default artifacts to ./mlruns in the CWD; keep them beside the database."""
        if not self.uri.startswith("sqlite:///"):
            return None
        db = Path(self.uri[len("sqlite:///"):])
        return (db.parent / "mlartifacts").resolve().as_uri()

    def _experiment(self, name: str) -> str:
        exp = self.client.get_experiment_by_name(name)
        if exp is not None:
            if exp.lifecycle_stage == "deleted":
                self.client.restore_experiment(exp.experiment_id)
            return exp.experiment_id
        if self.uri.startswith("sqlite:///"):
            Path(self.uri[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        return self.client.create_experiment(name, artifact_location=self._artifact_location())

    def _state_path(self) -> Path:
        return self.dir / STATE_FILE

    def _save_state(self) -> None:
        _write_json(self._state_path(), {"tracking_uri": self.uri, "experiment_id": self.experiment_id,
                                         "experiment_name": self.experiment_name,
                                         "parent_run_id": self.parent_id, "runs": self.runs})

    def _reopen(self, run_id: str) -> Any:
        """Set a terminated run back to RUNNING and return it; None when it no longer exists."""
        try:
            run = self.client.get_run(run_id)
        except Exception:  # deleted or from another store
            return None
        if run.info.lifecycle_stage == "deleted":
            return None
        if run.info.status != "RUNNING":
            self.client.update_run(run_id, status="RUNNING")
        return run

    def start(self, *, run_name: str, params: dict[str, Any], resume: bool) -> str:
        """Create (or, on resume, reopen) the parent run and remember the trial runs it already has."""
        state = {}
        if resume and self._state_path().is_file():
            state = json.loads(self._state_path().read_text())
            if state.get("tracking_uri") != self.uri or state.get("experiment_id") != self.experiment_id:
                state = {}
        parent = state.get("parent_run_id")
        if parent and self._reopen(parent):
            self.parent_id = parent
            self.runs = {k: r for k, r in state.get("runs", {}).items()}
            # a driver killed between creating a trial's run and saving its state left a run we must reuse
            for run in self.client.search_runs([self.experiment_id], f"tags.mlflow.parentRunId = '{parent}'"):
                key = run.data.tags.get("alreid.trial_key")
                if key and key not in self.runs:
                    self.runs[key] = run.info.run_id
        else:
            run = self.client.create_run(self.experiment_id, run_name=run_name, tags=self.tags)
            self.parent_id = run.info.run_id
            self.runs = {}
            self._log_params(self.parent_id, {k: str(v) for k, v in params.items()})
        self._save_state()
        return self.parent_id

    def _log_params(self, run_id: str, params: dict[str, str]) -> None:
        from mlflow.entities import Param

        items = [Param(k, v[:6000]) for k, v in params.items()]
        for i in range(0, len(items), 100):
            self.client.log_batch(run_id, params=items[i:i + 100])

    # trial runs ---------------------------------------------------------------------------------
    @_notes_failure
    def trial_run(self, spec: dict[str, Any], ray_trial_id: str = "") -> str:
        """The trial's run, created on first use and reused on retry or resume."""
        key = spec["key"]
        run_id = self.runs.get(key)
        if run_id is not None and run_id not in self._open:
            run = self._reopen(run_id)
            if run is not None:
                self._open.add(run_id)
                missing = {k: v for k, v in trial_params(spec).items() if k not in run.data.params}
                if missing:  # created by a driver killed before it could log them
                    self._log_params(run_id, missing)
            else:
                run_id = None
        if run_id is None:
            tags = {**self.tags, "mlflow.parentRunId": self.parent_id, "alreid.trial_key": key,
                    "alreid.label": spec["label"], "ray.trial_id": ray_trial_id}
            run = self.client.create_run(self.experiment_id, run_name=key, tags=tags)
            run_id = run.info.run_id
            self.runs[key] = run_id
            self._save_state()  # at once: a driver killed from here on leaves a run its successor reuses
            self._logged[run_id] = set()
            self._open.add(run_id)
            self._log_params(run_id, trial_params(spec))
        return run_id

    def _logged_steps(self, run_id: str) -> set[int]:
        if run_id not in self._logged:  # a run from an earlier driver: ask what it already has
            hist = self.client.get_metric_history(run_id, "pairs_cum")
            self._logged[run_id] = {int(m.step) for m in hist}
        return self._logged[run_id]

    def add_cycle(self, spec: dict[str, Any], record: dict[str, Any], ray_trial_id: str = "") -> None:
        """Buffer one cycle's metrics; flush when the trial's buffer is older than ``flush_every_s``."""
        key = spec["key"]
        self._buffer.setdefault(key, []).append((int(record["cycle"]), record_metrics(record)))
        self._last_flush.setdefault(key, time.monotonic())
        if time.monotonic() - self._last_flush[key] >= self.flush_every_s:
            self.flush(spec, ray_trial_id)

    @_notes_failure
    def flush(self, spec: dict[str, Any], ray_trial_id: str = "") -> None:
        from mlflow.entities import Metric

        key = spec["key"]
        pending = self._buffer.pop(key, [])
        self._last_flush[key] = time.monotonic()
        if not pending:
            return
        run_id = self.trial_run(spec, ray_trial_id)
        done = self._logged_steps(run_id)
        now = int(time.time() * 1000)
        metrics = []
        for step, values in pending:
            if step in done:
                continue  # a cycle re-reported after a resume from an older checkpoint
            done.add(step)
            metrics += [Metric(k, v, now, step) for k, v in values.items()]
        for i in range(0, len(metrics), _BATCH):
            self.client.log_batch(run_id, metrics=metrics[i:i + _BATCH])

    @_notes_failure
    def finish_trial(self, spec: dict[str, Any], *, status: str, ray_trial_id: str = "",
                     records: pd.DataFrame | None = None, pairs: pd.DataFrame | None = None,
                     error: str | None = None) -> None:
        """Flush, attach records/pairs as Parquet artifacts, and close the run (FINISHED or FAILED).

        The final records also fill any cycle whose metrics never reached MLflow (a driver killed
        with results still buffered), so every finished run has one value per cycle.
        """
        if records is not None and "cycle" in records:
            for rec in records.to_dict("records"):  # NaN here is mostly a column other cycles lack
                values = {k: v for k, v in record_metrics(rec).items() if not math.isnan(v)}
                self._buffer.setdefault(spec["key"], []).append((int(rec["cycle"]), values))
        self.flush(spec, ray_trial_id)
        run_id = self.trial_run(spec, ray_trial_id)
        with tempfile.TemporaryDirectory() as tmp:
            from alreid.harness.records import write_parquet_atomic

            for name, frame in (("records.parquet", records), ("pairs.parquet", pairs)):
                if frame is not None:
                    self.client.log_artifact(run_id, str(write_parquet_atomic(frame, Path(tmp) / name)))
            if error:
                (Path(tmp) / "error.txt").write_text(error)
                self.client.log_artifact(run_id, str(Path(tmp) / "error.txt"))
        self.client.set_terminated(run_id, status=status)
        self._open.discard(run_id)

    # benchmark end ------------------------------------------------------------------------------
    @_notes_failure
    def interrupt(self, specs: Iterable[dict[str, Any]]) -> None:
        """Flush what is buffered and mark open runs KILLED; ``--resume`` reopens them."""
        for spec in specs:
            if spec["key"] in self._buffer:
                self.flush(spec)
        for run_id in list(self._open):
            self.client.set_terminated(run_id, status="KILLED")
        self._open.clear()
        if self.parent_id:
            self.client.set_terminated(self.parent_id, status="KILLED")

    @_notes_failure
    def log_report(self, report: Any) -> None:
        """Tables and figures as artifacts of the parent run; each p-value as a parent metric."""
        from mlflow.entities import Metric

        for path in report.paths.values():
            self.client.log_artifact(self.parent_id, str(path), artifact_path="report")
        now = int(time.time() * 1000)
        metrics = [Metric(k, float(v), now, 0) for k, v in report.pvalues.items() if v is not None]
        if metrics:
            self.client.log_batch(self.parent_id, metrics=metrics)

    def log_parent_artifact(self, path: str | Path) -> None:
        self.client.log_artifact(self.parent_id, str(path))

    def finish(self, status: str = "FINISHED", out: Callable[[str], None] = print) -> None:
        """Close the parent run. After a failed call (the server was down for a while), first log what
        MLflow missed from records.parquet; if the server is still away, say which command catches up."""
        if not self.parent_id:
            return
        try:
            if self.failed:
                sync_results(self.dir, self.uri, out=out)
                self.failed = False
            self.client.set_terminated(self.parent_id, status=status)
        except Exception as exc:  # noqa: BLE001 - records.parquet is complete; MLflow can catch up later
            out(f"warning: MLflow is still not up to date ({type(exc).__name__}); when the server is back, "
                f"run: alreid table {self.dir} --sync-mlflow")


# ------------------------------------------------------------------------------------------ sync
@dataclass
class SyncSummary:
    """What :func:`sync_results` had to add to MLflow (all zero: already in sync)."""

    runs_created: int = 0
    params_logged: int = 0
    metrics_logged: int = 0
    artifacts_logged: int = 0
    statuses_set: int = 0

    @property
    def changed(self) -> bool:
        return bool(self.runs_created or self.params_logged or self.metrics_logged or self.artifacts_logged
                    or self.statuses_set)

    def line(self, uri: str) -> str:
        if not self.changed:
            return f"MLflow at {uri} already matches records.parquet; nothing to log"
        return (f"MLflow at {uri} synced from records.parquet: {self.runs_created} run(s) created, "
                f"{self.params_logged} param(s), {self.metrics_logged} metric value(s), "
                f"{self.artifacts_logged} artifact(s) logged, "
                f"{self.statuses_set} run status(es) set")


def _trial_spec(results: Path, key: str, rows: pd.DataFrame) -> dict[str, Any]:
    """The trial's spec as Ray Tune saved it (its params.json), else the identity columns of its records."""
    params = results / "tune" / key / "params.json"
    if params.is_file():
        try:
            spec = json.loads(params.read_text()).get("trial")
            if isinstance(spec, dict) and spec.get("key") == key:
                return spec
        except (OSError, ValueError):
            pass
    first = rows.iloc[0]
    label = str(first.get("label", first.get("method", key)))
    trial = {c: (first[c].item() if hasattr(first[c], "item") else first[c])
             for c in ("dataset", "method", "seed") if c in rows.columns}
    return {"key": key, "label": label, "trial": trial}


def _existing_run(tracker: Tracker, run_id: str | None) -> str | None:
    if not run_id:
        return None
    try:
        run = tracker.client.get_run(run_id)
    except Exception:  # noqa: BLE001 - deleted, or a run of another server
        return None
    if run.info.lifecycle_stage == "deleted" or run.info.experiment_id != tracker.experiment_id:
        return None
    return run_id


def sync_results(results_dir: str | Path, tracking_uri: str | None = None, *,
                 out: Callable[[str], None] = print) -> SyncSummary:
    """Log to MLflow whatever a finished or stopped benchmark's records.parquet has and MLflow lacks.

    For every trial in records.parquet: its nested run (created if missing, with its params), every
    (metric, cycle) value not yet logged, the records/pairs artifacts, and status FINISHED. Runs of
    trials that never finished and are still RUNNING become KILLED (``--resume`` reopens them); the
    parent becomes FINISHED once every planned trial has records. Running it again changes nothing.
    Run it when no driver is logging to the same results (after the benchmark ended or died).
    """
    from mlflow.entities import Metric

    from alreid.errors import AlreidError
    from alreid.harness.records import RECORDS_FILE, write_parquet_atomic

    results = Path(results_dir)
    if not (results / RECORDS_FILE).is_file():
        raise AlreidError(f"no {RECORDS_FILE} in {results}; --sync-mlflow needs a results/<experiment> folder")
    state_file = results / STATE_FILE
    state = json.loads(state_file.read_text()) if state_file.is_file() else {}
    uri = tracking_uri or state.get("tracking_uri")
    if not uri:
        raise AlreidError(f"{results} has no {STATE_FILE} naming its MLflow server; pass one: --sync-mlflow URI")
    name = state.get("experiment_name") or results.name
    try:
        tracker = Tracker(uri, name, results)
    except Exception as exc:  # noqa: BLE001 - unreachable server or bad URI
        raise AlreidError(f"cannot reach MLflow at {uri}: {type(exc).__name__}: {exc}") from None
    same = state.get("experiment_id") == tracker.experiment_id
    summary = SyncSummary()
    client = tracker.client

    parent = _existing_run(tracker, state.get("parent_run_id") if same else None)
    if parent is None:
        run = client.create_run(tracker.experiment_id, run_name=name, tags=tracker.tags)
        parent = run.info.run_id
        summary.runs_created += 1
    tracker.parent_id = parent
    known = {k: r for k, r in (state.get("runs") or {}).items()} if same else {}
    for run in client.search_runs([tracker.experiment_id], f"tags.mlflow.parentRunId = '{parent}'"):
        key = run.data.tags.get("alreid.trial_key")
        if key and _existing_run(tracker, known.get(key)) is None:
            known[key] = run.info.run_id  # created by a driver that died before saving its state
    tracker.runs = {k: r for k, r in known.items() if _existing_run(tracker, r)}
    tracker._save_state()

    records = pd.read_parquet(results / RECORDS_FILE)
    keys = list(dict.fromkeys(records["trial_key"].astype(str)))
    for key in keys:
        rows = records[records["trial_key"].astype(str) == key].sort_values("cycle")
        spec = _trial_spec(results, key, rows)
        run_id = tracker.runs.get(key)
        if run_id is None:  # trial_run would also reopen an existing run (RUNNING): only call it to create
            run_id = tracker.trial_run(spec, str(rows["trial_id"].iloc[0]) if "trial_id" in rows else "")
            summary.runs_created += 1
        have_params = client.get_run(run_id).data.params
        missing_params = {k: v for k, v in trial_params(spec).items() if k not in have_params}
        if missing_params:  # a run created just before the server went away
            tracker._log_params(run_id, missing_params)
            summary.params_logged += len(missing_params)
        wanted: dict[str, dict[int, float]] = {}
        for rec in rows.to_dict("records"):
            for k, v in record_metrics(rec).items():
                if not math.isnan(v):
                    wanted.setdefault(k, {})[int(rec["cycle"])] = v
        now = int(time.time() * 1000)
        missing = []
        for k, by_step in wanted.items():
            have = {int(m.step) for m in client.get_metric_history(run_id, k)}
            missing += [Metric(k, v, now, step) for step, v in sorted(by_step.items()) if step not in have]
        for i in range(0, len(missing), _BATCH):
            client.log_batch(run_id, metrics=missing[i:i + _BATCH])
        summary.metrics_logged += len(missing)
        have_art = {a.path for a in client.list_artifacts(run_id)}
        pairs_file = results / "pairs" / f"{key}.parquet"
        with tempfile.TemporaryDirectory() as tmp:
            if "records.parquet" not in have_art:
                client.log_artifact(run_id, str(write_parquet_atomic(rows.reset_index(drop=True),
                                                                     Path(tmp) / "records.parquet")))
                summary.artifacts_logged += 1
            if "pairs.parquet" not in have_art and pairs_file.is_file():
                client.log_artifact(run_id, str(shutil.copyfile(pairs_file, Path(tmp) / "pairs.parquet")))
                summary.artifacts_logged += 1
        if client.get_run(run_id).info.status != "FINISHED":
            client.set_terminated(run_id, status="FINISHED")
            summary.statuses_set += 1
    for key, run_id in tracker.runs.items():
        if key not in keys and client.get_run(run_id).info.status == "RUNNING":
            client.set_terminated(run_id, status="KILLED")
            summary.statuses_set += 1

    plan_file = results / "plan.json"
    planned = json.loads(plan_file.read_text()).get("trials", []) if plan_file.is_file() else keys
    complete = set(planned) <= set(keys)
    report = results / "report"
    if complete and report.is_dir() and not client.list_artifacts(parent, "report"):
        for path in sorted(p for p in report.iterdir() if p.is_file()):
            client.log_artifact(parent, str(path), artifact_path="report")
            summary.artifacts_logged += 1
    status = client.get_run(parent).info.status
    if complete and status in ("RUNNING", "KILLED"):
        client.set_terminated(parent, status="FINISHED")
        summary.statuses_set += 1
    elif not complete and status == "RUNNING":
        client.set_terminated(parent, status="KILLED")
        summary.statuses_set += 1
    tracker._save_state()
    out(summary.line(uri))
    return summary
