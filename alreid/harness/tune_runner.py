"""Run a benchmark plan on Ray Tune (the only alreid module that imports ray).

Each trial is a function trainable that rebuilds its :class:`Trial` from the small spec in its config
(datasets are loaded inside the trial, never shipped through ``param_space``), checkpoints the
TrialState after every cycle and resumes from ``tune.get_checkpoint()`` when Ray retries it.
Everything the user sees or keeps (progress lines, records.parquet, MLflow runs) is written by a
driver-side callback, so retries and resumes can be deduplicated in one place.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import pandas as pd
import ray
from ray import tune

from alreid.errors import AlreidError, ConfigError
from alreid.harness.experiment import Plan, pin_protocols
from alreid.harness.records import RecordStore, write_parquet_atomic
from alreid.harness.settings import make_trial_config
from alreid.harness.trial import Trial, TrialState

TUNE_DIR = "tune"
PLAN_FILE = "plan.json"
#: Test-only hooks, read on the driver and passed to trials in their config (workers do not see the
#: driver's environment): a file path whose creation makes the first trial to finish cycle 1 crash
#: once, a folder where every trial attempt appends the cycle it starts from, and a folder that holds
#: every trial after its first checkpoint (``<key>.held`` names the node) until ``release`` appears in it,
#: so a test can kill a node while a trial on it is known to be mid-way.
TEST_CRASH_ENV = "ALREID_TEST_CRASH_ONCE"
TEST_MARKERS_ENV = "ALREID_TEST_MARKERS"
TEST_HOLD_ENV = "ALREID_TEST_HOLD"
_HOLD_AFTER_CYCLE = 0
_CRASH_AFTER_CYCLE = 1

logger = logging.getLogger(__name__)


class _DropTuneHints(logging.Filter):
    """Tune's own end-of-run hints (Tuner.restore code, metrics it could not fetch for trials that had
    not reported yet) contradict or duplicate what ``alreid bench`` says; drop just those records."""

    HINTS = ("Tuner.restore", "Failed to fetch metrics", "Trials did not complete")

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        return not any(h in msg for h in self.HINTS)


_HINT_FILTER = _DropTuneHints()
_HINT_LOGGERS = ("ray.tune.tune", "ray.tune.analysis.experiment_analysis")


# ------------------------------------------------------------------------------------ worker side
def _plain(value: Any) -> Any:
    """numpy scalars to Python, so results serialise cleanly to Tune's JSON logs."""
    return value.item() if isinstance(value, np.generic) else value


def _test_hooks(hooks: dict[str, str], key: str, start_cycle: int) -> None:
    markers = hooks.get("markers")
    if markers:
        Path(markers).mkdir(parents=True, exist_ok=True)
        with open(Path(markers) / f"{key}.txt", "a") as fh:
            fh.write(f"start {start_cycle}\n")


def _maybe_crash(hooks: dict[str, str], cycle: int) -> None:
    path = hooks.get("crash_once")
    if not path or cycle != _CRASH_AFTER_CYCLE:
        return
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return
    os.close(fd)
    raise RuntimeError(f"test-only crash injected after cycle {cycle} ({TEST_CRASH_ENV})")


def _maybe_hold(hooks: dict[str, str], key: str, node: str, cycle: int) -> None:
    folder = hooks.get("hold")
    if not folder or cycle != _HOLD_AFTER_CYCLE:
        return
    hold = Path(folder)
    hold.mkdir(parents=True, exist_ok=True)
    (hold / f"{key}.held").write_text(node)
    while not (hold / "release").exists():
        time.sleep(0.1)


def node_name() -> str:
    """The Ray node running this process: its ``--node-name`` (``scripts/local_cluster.sh`` names them
    head, worker1, ...; Ray's default is the node's IP), or '' outside Ray."""
    import ray

    if not ray.is_initialized():
        return ""
    node_id = ray.get_runtime_context().get_node_id()
    for info in ray.nodes():
        if info.get("NodeID") == node_id:
            return str(info.get("NodeName") or info.get("NodeManagerAddress") or node_id[:8])
    return node_id[:8]


def bench_trainable(config: dict[str, Any]) -> None:
    """One trial: restore from the latest checkpoint if any, then run and report every cycle."""
    spec = config["trial"]
    hooks = config.get("test_hooks") or {}
    trial = Trial(make_trial_config(spec["trial"]))
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            trial.restore(TrialState.load(folder))
    _test_hooks(hooks, spec["key"], trial.next_cycle)

    node = node_name()

    def on_cycle(rec: dict[str, Any], tr: Trial) -> None:
        rec["node"] = node  # kept in the checkpointed records too: which node ran each cycle
        record = {k: _plain(v) for k, v in rec.items()}
        with tempfile.TemporaryDirectory() as tmp:
            tr.state().save(tmp)
            write_parquet_atomic(tr.pairs_frame(), Path(tmp) / "pairs.parquet")
            tune.report({"cycle": record["cycle"], "mAP": record.get("mAP", float("nan")), "record": record},
                        checkpoint=tune.Checkpoint.from_directory(tmp))
        _maybe_crash(hooks, int(record["cycle"]))
        _maybe_hold(hooks, spec["key"], node, int(record["cycle"]))

    trial.run(on_cycle=on_cycle)


def trial_resources(config: dict[str, Any]) -> tune.PlacementGroupFactory:
    """Per-trial resources from the plan (a fractional GPU lets trials share a card)."""
    res = config["trial"]["resources"]
    bundle = {"CPU": float(res["cpu"])}
    if float(res.get("gpu", 0)) > 0:
        bundle["GPU"] = float(res["gpu"])
    return tune.PlacementGroupFactory([bundle])


def trial_name(trial: Any) -> str:
    """Readable trial names and folders: ``aas__synthetic__seed0``."""
    return trial.config["trial"]["key"]


def trainable() -> Any:
    """The wrapped trainable; the same object must be passed when restoring."""
    return tune.with_resources(bench_trainable, trial_resources)


# ------------------------------------------------------------------------------------ driver side
def _error_text(trial: Any) -> str:
    """The last line of the trial's traceback (``RuntimeError: ...``), for one-line reports."""
    try:
        err = trial.get_error()
        text = str(err) if err is not None else ""
    except Exception:
        text = ""
    if not text and trial.error_file and os.path.exists(trial.error_file):
        text = Path(trial.error_file).read_text(errors="replace")
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "unknown error"


def _pct(v: Any) -> str:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return "nan"
    return "nan" if f != f else f"{100 * f:.2f}"


class DriverSink:
    """What the driver does with trial events: progress lines, records.parquet and MLflow."""

    def __init__(self, plan: Plan, store: RecordStore, tracker: Any = None, *,
                 out: Callable[[str], None] = print) -> None:
        self.plan = plan
        self.store = store
        self.tracker = tracker
        self.out = out
        self.total = len(plan.trials)
        self.finished: set[str] = set(store.finished_keys())
        self.errors: dict[str, str] = {}
        self.partial: dict[str, dict[int, dict[str, Any]]] = {}
        self.started = time.monotonic()

    # tracking must never stop a benchmark: a broken MLflow is reported once and switched off
    def _track(self, what: str, fn: Callable[[], Any]) -> None:
        if self.tracker is None:
            return
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 - any MLflow/network failure
            self.out(f"warning: MLflow {what} failed ({type(exc).__name__}: {exc}); MLflow logging is off for "
                     f"the rest of this run, records.parquet is unaffected; when the server is back, run: "
                     f"alreid table {self.plan.results_dir} --sync-mlflow")
            self.tracker = None

    def _counter(self) -> str:
        n = len(self.finished) + len(self.errors)
        return f"[{n:>{len(str(self.total))}}/{self.total}]"

    def on_result(self, trial: Any, result: dict[str, Any]) -> None:
        rec = result.get("record")
        spec = trial.config["trial"]
        if not isinstance(rec, dict):
            return
        self.partial.setdefault(spec["key"], {})[int(rec["cycle"])] = rec
        self._track("logging", lambda: self.tracker.add_cycle(spec, rec, trial.trial_id))

    def _final_frames(self, trial: Any) -> tuple[pd.DataFrame, pd.DataFrame | None]:
        """The trial's records and pairs from its last checkpoint (exact across retries), else from results."""
        spec = trial.config["trial"]
        ckpt = trial.checkpoint
        if ckpt is not None:
            try:
                with ckpt.as_directory() as folder:
                    recs = pd.read_parquet(Path(folder) / "records.parquet")
                    pairs_file = Path(folder) / "pairs.parquet"
                    pairs = pd.read_parquet(pairs_file) if pairs_file.is_file() else None
                return recs, pairs
            except (OSError, ValueError) as exc:
                self.out(f"warning: could not read the last checkpoint of {spec['key']} ({exc}); "
                         f"using the reported results")
        cycles = self.partial.get(spec["key"], {})
        return pd.DataFrame([cycles[c] for c in sorted(cycles)]), None

    def on_complete(self, trial: Any) -> None:
        spec = trial.config["trial"]
        key = spec["key"]
        recs, pairs = self._final_frames(trial)
        if recs.empty or int(recs["cycle"].max()) < int(spec["trial"]["cycles"]):
            return  # stopped early (not by us): it stays unfinished and resumes later
        recs = recs.assign(label=spec["label"], block=spec.get("block"), trial_id=trial.trial_id)
        self.store.add_trial(key, recs, trial_id=trial.trial_id, label=spec["label"])
        if pairs is not None:
            self.store.add_pairs(key, pairs)
        self.finished.add(key)
        self.errors.pop(key, None)
        self.partial.pop(key, None)
        self._track("logging", lambda: self.tracker.finish_trial(spec, status="FINISHED", ray_trial_id=trial.trial_id,
                                                                 records=recs, pairs=pairs))
        last = recs.iloc[-1]
        retried = f"  (retried {trial.num_failures}x)" if trial.num_failures else ""
        seconds = float(pd.to_numeric(recs.get("seconds"), errors="coerce").sum()) if "seconds" in recs else 0.0
        self.out(f"{self._counter()} {spec['label']}  {recs['dataset'].iloc[0]}  seed {spec['seed']}: "
                 f"mAP {_pct(last.get('mAP'))}  BAKS {_pct(last.get('BAKS'))}  top1 {_pct(last.get('top1'))}  "
                 f"pairs {int(last.get('pairs_cum', 0))}  {seconds:.1f} s{retried}")

    def on_recover(self, trial: Any) -> None:
        spec = trial.config["trial"]
        done = max(self.partial.get(spec["key"], {}), default=-1)
        self.out(f"  ! {spec['key']} failed ({_error_text(trial)}); retry {trial.num_failures}"
                 f"/{self.plan.config.max_failures} from cycle {done + 1}")
        self._track("logging", lambda: self.tracker.flush(spec, trial.trial_id))

    def on_error(self, trial: Any) -> None:
        spec = trial.config["trial"]
        msg = _error_text(trial)
        self.errors[spec["key"]] = msg
        cycles = self.partial.get(spec["key"], {})
        recs = pd.DataFrame([cycles[c] for c in sorted(cycles)]) if cycles else None
        full = Path(trial.error_file).read_text(errors="replace") if trial.error_file and os.path.exists(trial.error_file) else msg
        self._track("logging", lambda: self.tracker.finish_trial(spec, status="FAILED", ray_trial_id=trial.trial_id,
                                                                 records=recs, error=full))
        name = trial.run_metadata.error_filename
        log = Path(trial.path, name) if name and trial.path else None  # in the results, not Ray's /tmp staging
        self.out(f"{self._counter()} FAILED {spec['label']}  {spec['dataset']}  seed {spec['seed']}: {msg}"
                 + (f"  (traceback: {log})" if log else ""))

    def unfinished(self) -> list[str]:
        return [t.key for t in self.plan.trials if t.key not in self.finished and t.key not in self.errors]

    def interrupt(self) -> None:
        specs = [t.as_dict() for t in self.plan.trials if t.key in set(self.unfinished())]
        self._track("logging", lambda: self.tracker.interrupt(specs))


_SINK: DriverSink | None = None


class _Relay(tune.Callback):
    """Stateless callback forwarding to the current driver's sink.

    Tune pickles callbacks with the experiment and restores them on resume, so the callback itself
    holds nothing: the live state (open files, MLflow client) belongs to the running driver.
    """

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        if _SINK is not None:
            _SINK.on_result(trial, result)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        if _SINK is not None:
            _SINK.on_complete(trial)

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        if _SINK is not None:
            _SINK.on_recover(trial)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        if _SINK is not None:
            _SINK.on_error(trial)


# ------------------------------------------------------------------------------------ orchestration
@dataclass
class Outcome:
    """How a benchmark run ended."""

    results_dir: Path
    finished: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    unfinished: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def interrupted(self) -> bool:
        return bool(self.unfinished)


def tune_path(plan: Plan) -> Path:
    return plan.results_dir / TUNE_DIR


def prepare_results(plan: Plan, *, resume: bool, overwrite: bool, out: Callable[[str], None] = print) -> bool:
    """Check the results folder against the request; returns whether this run resumes an earlier one.

    A new run never silently mixes with an old one: an existing folder needs ``--resume`` (same
    config) or ``--overwrite``.
    """
    root = plan.results_dir
    tpath = tune_path(plan)
    plan_file = root / PLAN_FILE
    existing = tune.Tuner.can_restore(str(tpath)) or (root / "records.parquet").is_file()
    if existing and overwrite:
        for name in (TUNE_DIR, "pairs", "report"):
            shutil.rmtree(root / name, ignore_errors=True)
        for name in ("records.parquet", PLAN_FILE, "mlflow.json"):
            (root / name).unlink(missing_ok=True)
        existing = False
    if existing and not resume:
        raise ConfigError(f"{root} already holds a run of experiment {plan.config.name!r}; pass --resume to "
                          f"continue it, --overwrite to start again, or change 'name' in {plan.source}")
    if resume and existing:
        if not tune.Tuner.can_restore(str(tpath)):
            raise ConfigError(f"{root} has records but no Ray Tune state to resume from; use --overwrite")
        old = json.loads(plan_file.read_text()) if plan_file.is_file() else {}
        if old.get("fingerprint") != plan.fingerprint():
            raise ConfigError(f"the experiment config changed since {root} was started (trials differ), so it "
                              f"cannot be resumed; restore the old settings, use --overwrite, or change 'name'")
        return True
    if resume:
        out(f"nothing to resume in {root}; starting a new run")
    root.mkdir(parents=True, exist_ok=True)
    plan_file.write_text(json.dumps({"fingerprint": plan.fingerprint(), "source": plan.source, "sweep": plan.sweep,
                                     "smoke": plan.smoke, "reference": plan.config.reference,
                                     "metric": plan.config.metric, "trials": [t.key for t in plan.trials]}, indent=1))
    return False


def init_ray(address: str | None) -> bool:
    """Start (or join, with ``address``) Ray; returns True when this call started it."""
    if ray.is_initialized():
        return False
    if address is None:
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # local single-user instance; a cluster keeps its own
    kwargs: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.WARNING, "log_to_driver": False}
    if address is None:  # "local": a fresh instance even when another Ray runs on this machine
        kwargs.update(address="local", num_cpus=os.cpu_count() or 1)
    else:
        kwargs["address"] = address
    try:
        ray.init(**kwargs)
    except ConnectionError as exc:
        raise AlreidError(f"cannot reach the Ray cluster at {address!r}: {exc}") from None
    except Exception as exc:  # e.g. "The current node timed out during startup" on an overloaded machine
        with contextlib.suppress(Exception):
            ray.shutdown()  # whatever part of the instance did start
        text = str(exc).strip()
        reason = (text.splitlines()[0] if text else type(exc).__name__).rstrip(".")
        if address is None:
            raise AlreidError(f"could not start a local Ray instance: {reason}; retry when the machine is less busy, "
                              "or start Ray yourself (`ray start --head`) and pass --address auto") from None
        raise AlreidError(f"could not join the Ray cluster at {address!r}: {reason}; check that the cluster is "
                          "up (`ray status`) and reachable from here") from None
    return True


@contextlib.contextmanager
def quiet_tune(sink: DriverSink) -> Iterator[None]:
    """Tune as ``alreid bench`` wants it: our sink receives the events, Tune's own hints and banners stay quiet."""
    global _SINK
    # we checkpoint every cycle on purpose (exact resume); Tune's advice against that is noise here
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    # the new output engine prints its banner even at verbose=0; our callback prints one line per trial
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # one line per failure from our callback (with the error file) instead of Tune's full tracebacks
    os.environ.setdefault("TUNE_PRINT_ALL_TRIAL_ERRORS", "0")
    _SINK = sink
    for name in _HINT_LOGGERS:
        logging.getLogger(name).addFilter(_HINT_FILTER)
    try:
        yield
    finally:
        _SINK = None
        for name in _HINT_LOGGERS:
            logging.getLogger(name).removeFilter(_HINT_FILTER)


def make_tuner(plan: Plan, *, resume: bool, max_concurrent: int | None, callbacks: Iterable[Any],
               out: Callable[[str], None], finished: int) -> tune.Tuner:
    """A new Tuner over the plan's trials, or the restored one of an interrupted run."""
    cfg = plan.config
    tpath = str(tune_path(plan))
    if resume and tune.Tuner.can_restore(tpath):
        out(f"resuming {cfg.name}: {finished} of {len(plan.trials)} trials already finished")
        if max_concurrent is not None:
            out("note: --max-concurrent is fixed when a run starts (Ray restores it); ignored on resume")
        return tune.Tuner.restore(tpath, trainable(), resume_unfinished=True, resume_errored=True)
    pin_protocols(plan, out=out)  # one evaluation protocol per dataset, for every row (issue 10)
    hooks = {name: os.environ[env] for name, env in (("crash_once", TEST_CRASH_ENV), ("markers", TEST_MARKERS_ENV),
                                                      ("hold", TEST_HOLD_ENV)) if os.environ.get(env)}
    cpus = ray.cluster_resources().get("CPU", 0)
    cycles = "/".join(str(c) for c in sorted({int(t.trial["cycles"]) for t in plan.trials}))
    out(f"{cfg.name}: {len(plan.trials)} trials ({len(plan.labels)} methods x {len(cfg.datasets)} datasets x "
        f"{len(cfg.seed_list())} seeds), {cycles} cycles each, on {cpus:g} CPUs; results in {plan.results_dir}")
    param_space: dict[str, Any] = {"trial": tune.grid_search([t.as_dict() for t in plan.trials])}
    if hooks:
        param_space["test_hooks"] = hooks
    return tune.Tuner(
        trainable(),
        param_space=param_space,
        tune_config=tune.TuneConfig(reuse_actors=True, max_concurrent_trials=max_concurrent or cfg.max_concurrent,
                                    trial_name_creator=trial_name, trial_dirname_creator=trial_name),
        run_config=tune.RunConfig(
            name=TUNE_DIR, storage_path=str(plan.results_dir), verbose=0,
            failure_config=tune.FailureConfig(max_failures=cfg.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            callbacks=[_Relay(), *callbacks]),
    )


def run_benchmark(plan: Plan, *, resume: bool = False, tracker: Any = None, address: str | None = None,
                  max_concurrent: int | None = None, callbacks: Iterable[Any] = (),
                  out: Callable[[str], None] = print) -> Outcome:
    """Run (or resume) every trial of ``plan`` and write records as they finish.

    Ctrl-C stops the trials cleanly (Tune saves its state); the returned Outcome lists the
    unfinished trials, which ``resume=True`` continues from their last checkpoint.
    """
    store = RecordStore(plan.results_dir, order=[t.key for t in plan.trials])
    sink = DriverSink(plan, store, tracker, out=out)
    remaining = len(sink.unfinished())
    started_ray = init_ray(address)
    t0 = time.monotonic()
    try:
        with quiet_tune(sink):
            tuner = make_tuner(plan, resume=resume, max_concurrent=max_concurrent, callbacks=callbacks, out=out,
                               finished=len(sink.finished))
            if remaining:
                tuner.fit()
    except KeyboardInterrupt:
        sink.interrupt()
        raise
    finally:
        if started_ray:
            ray.shutdown()
    outcome = Outcome(results_dir=plan.results_dir, finished=sorted(sink.finished), errors=dict(sink.errors),
                      unfinished=sink.unfinished(), seconds=time.monotonic() - t0)
    if outcome.interrupted:
        sink.interrupt()
    return outcome
