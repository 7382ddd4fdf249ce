"""The public Python API: what the command line does, importable from a notebook.

A handful of functions and one loop object, all built on the harness the CLI uses
(:class:`alreid.harness.trial.Trial` for one trial, the Ray Tune runner for a benchmark), so a
notebook and ``alreid run``/``alreid bench`` give the same records for the same seed. Mistakes raise
:class:`alreid.AlreidError` subclasses with one-line messages, exactly the errors the CLI prints.

Heavy dependencies (torch, ray, mlflow) are imported inside the functions that need them.

Examples
--------
>>> import alreid
>>> data = alreid.load_dataset("synthetic:n_images=300")
>>> records = alreid.run_trial(data, method="aas", params={"epsilon": 0.4}, seed=0, cycles=1,
...                            budget_pairs=20, trainer_params={"iters": 20}, progress=False)
>>> records[["cycle", "pairs_asked"]].to_dict("list")
{'cycle': [0, 1], 'pairs_asked': [0, 20]}
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from alreid.errors import AlreidError, ConfigError, DatasetError

if TYPE_CHECKING:  # pragma: no cover - typing only; importing these at run time would load torch
    import numpy as np
    import pandas as pd

    from alreid.datasets.base import ReidDataset
    from alreid.harness.settings import TrialConfig
    from alreid.harness.trial import Trial

__all__ = ["ActiveLearningLoop", "BenchmarkResult", "Results", "get_sampler", "get_trainer", "load_dataset",
           "load_results", "run_benchmark", "run_trial"]

# ------------------------------------------------------------------------------------------ plugins
def load_dataset(spec: "str | ReidDataset", *, subset: str | None = None, split_seed: int = 0) -> "ReidDataset":
    """Load a dataset from a ``NAME[:ARG]`` spec, the same strings ``alreid run --dataset`` takes.

    Parameters
    ----------
    spec : str or ReidDataset
        ``"synthetic"``, ``"synthetic:n_images=500"``, ``"embeddings:PATH"``, ``"metadata:ROOT"``, ...
        (``alreid methods --all`` lists every dataset adapter). A :class:`ReidDataset` is returned as is.
    subset : str, optional
        Keep the rows whose ``dataset`` column is ``subset`` (``metadata:`` and ``wildlife:`` only),
        like ``--subset``.
    split_seed : int, default 0
        Seed the adapter uses for anything random (a trial loads its dataset with its split seed).

    Returns
    -------
    ReidDataset
        ``metadata`` (one row per image: ``image_id``, ``identity``, ...) and, for embedding datasets,
        ``features``, an (n, d) float32 array in the same row order.

    Raises
    ------
    DatasetError, UnknownPluginError
        Missing files, malformed metadata or an unknown adapter name (with close matches).

    Examples
    --------
    >>> import alreid
    >>> data = alreid.load_dataset("synthetic:n_images=300")
    >>> data.n, data.features.shape
    (300, (300, 128))
    >>> {"image_id", "identity"} <= set(data.metadata.columns)
    True
    >>> alreid.load_dataset("synthetc")
    Traceback (most recent call last):
    ...
    alreid.errors.UnknownPluginError: unknown dataset 'synthetc' (did you mean synthetic?); known datasets: ...
    """
    from alreid.datasets.base import ReidDataset
    from alreid.datasets.base import load_dataset as _load

    if isinstance(spec, ReidDataset):
        if subset is not None:
            raise ConfigError("subset= applies to a dataset spec string, not to a loaded ReidDataset")
        return spec
    if not isinstance(spec, str):
        raise DatasetError(f"a dataset is a spec string such as 'synthetic' or 'embeddings:PATH', or a ReidDataset; "
                           f"got {type(spec).__name__}")
    from alreid.datasets.base import with_subset

    return _load(with_subset(spec, subset), seed=split_seed)


def get_sampler(name: "str | type", **params: Any) -> Any:
    """Build a registered sampler plugin, checking its hyperparameters as the CLI does.

    Parameters
    ----------
    name : str or type
        A registered name (``random``, ``none``, ``aas``, ``gbas``, ``lbas``, ``nis`` and any installed
        plugin; ``alreid methods``) or a :class:`alreid.samplers.base.Sampler` subclass.
    **params
        Keyword hyperparameters, e.g. ``epsilon=0.4`` for AAS; omitted ones take their defaults.

    Returns
    -------
    Sampler
        A ready sampler; pass it to :class:`ActiveLearningLoop` or :func:`run_trial` (``method=``).

    Raises
    ------
    UnknownPluginError
        Unknown name (close matches and all known names in the message).
    ConfigError
        Unknown parameter name (the valid ones are listed) or a value out of range.

    Examples
    --------
    >>> import alreid
    >>> sampler = alreid.get_sampler("aas", epsilon=0.4)
    >>> sampler.get_params()["epsilon"]
    0.4
    >>> alreid.get_sampler("aas", epsilon=2.0)
    Traceback (most recent call last):
    ...
    alreid.errors.ConfigError: ...'aas' parameter epsilon must be a number in [0.0, 1.0]; got 2.0
    >>> alreid.get_sampler("aas", eps=0.4)
    Traceback (most recent call last):
    ...
    alreid.errors.ConfigError: unknown parameter(s) eps for ... 'aas'; valid: epsilon, ...
    """
    from alreid.registry import SAMPLERS

    return SAMPLERS.get(name).from_params(params)


def get_trainer(name: "str | type" = "head", **params: Any) -> Any:
    """Build a registered trainer plugin (``head``, ``spcl``, ``clustercontrast``, ``baseline``, ``skyline``).

    Parameters
    ----------
    name : str or type, default "head"
        A registered trainer name or a :class:`alreid.trainers.base.Trainer` subclass.
    **params
        Keyword hyperparameters, e.g. ``iters=50`` for the projection head.

    Returns
    -------
    Trainer
        A ready trainer; pass it to :class:`ActiveLearningLoop` (``trainer=``) or :func:`run_trial`.

    Raises
    ------
    UnknownPluginError, ConfigError
        As :func:`get_sampler`.

    Examples
    --------
    >>> import alreid
    >>> trainer = alreid.get_trainer("head", iters=20)
    >>> trainer.name, trainer.get_params()["iters"]
    ('head', 20)
    >>> alreid.get_trainer("heads")
    Traceback (most recent call last):
    ...
    alreid.errors.UnknownPluginError: unknown trainer 'heads' (did you mean head?); known trainers: ...
    """
    from alreid.registry import TRAINERS

    return TRAINERS.get(name).from_params(params)


def _plugin(value: Any, params: Mapping[str, Any] | None, kind: str) -> tuple[str, dict[str, Any], Any]:
    """(name for the config, params for the config, object or None) from a name, a class or an object.

    An object is copied through ``from_params(get_params())`` (scikit-learn's ``clone``) so the caller's
    object stays a template: two loops never share a sampler's or trainer's state.
    """
    from alreid.registry import SAMPLERS, TRAINERS

    registry = SAMPLERS if kind == "sampler" else TRAINERS
    flag = "params" if kind == "sampler" else "trainer_params"
    if isinstance(value, str):
        registry.get(value)  # unknown names fail here, with close matches
        return value, dict(params or {}), None
    if isinstance(value, type):
        obj = registry.get(value).from_params(dict(params or {}))
    else:
        if params:
            raise ConfigError(f"{flag}= sets the parameters of a {kind} given by name; this {kind} is already an "
                              f"object, so build it with its parameters (alreid.get_{kind}(name, ...))")
        needed = ("select",) if kind == "sampler" else ("setup", "fit_cycle", "embed")
        missing = [m for m in needed if not callable(getattr(value, m, None))]
        if missing:
            raise ConfigError(f"{kind} must be a name, a {kind} class or a {kind} object (alreid.get_{kind}); "
                              f"got {type(value).__name__}, which lacks {', '.join(missing)}()")
        obj = value
        if callable(getattr(value, "get_params", None)) and callable(getattr(type(value), "from_params", None)):
            obj = type(value).from_params(value.get_params())
    name = getattr(obj, "name", "") or type(obj).__name__
    got = obj.get_params() if callable(getattr(obj, "get_params", None)) else {}
    return name, json.loads(json.dumps(got, default=str)), obj


# ------------------------------------------------------------------------------------------ the loop
class ActiveLearningLoop:
    """One active-learning trial, driven cycle by cycle: ask, answer, refine, train, evaluate.

    A thin wrapper over :class:`alreid.harness.trial.Trial`, the cycle ``alreid run`` and every
    benchmark trial run, so a loop driven by the simulated oracle reproduces their records exactly.
    Cycle 0 evaluates the starting model; :meth:`next_pairs` runs it first when it has not run yet.

    Parameters
    ----------
    data : str or ReidDataset
        A dataset spec (see :func:`load_dataset`) or a loaded dataset.
    sampler : str, Sampler class or Sampler, default "random"
        Which pairs to ask: a registered name, a class, or an object from :func:`get_sampler` (or your own
        :class:`alreid.samplers.base.Sampler`), which is copied, never modified.
    trainer : str, Trainer class or Trainer, default "head"
        How to train each cycle: a name or an object from :func:`get_trainer` (copied too).
    seed : int, default 0
        Seed of the trial: every random stream derives from (seed, cycle, component).
    params, trainer_params : dict, optional
        Hyperparameters when ``sampler``/``trainer`` is a name.
    cycles : int, default 5
        Active-learning cycles after cycle 0.
    budget_fraction : float, default 2e-4
        Pairs per cycle as a fraction of all pairs of the training pool (0.02 %).
    budget_pairs : int, optional
        A fixed number of pairs per cycle instead.
    refine : {"np3", "ml_merge", "none"}, default "np3"
        How the answers refine the pseudo-labels.
    oracle_error_rate : float, default 0.0
        Probability that the simulated annotator (:meth:`oracle_answers`) answers wrongly.
    **settings
        Any other :class:`alreid.harness.settings.TrialConfig` field: ``clustering`` (a dict, or a method
        name such as ``"cosine"``), ``protocol`` (``{"split_seed": 1, "camera_column": "encounter"}``),
        ``oracle`` (``"simulated"`` or ``"replay:FILE"``, answers exported by ``alreid annotate``), ``np3``,
        ``budget_rounding``. Unknown names are a :class:`ConfigError`.

    Attributes
    ----------
    trial : Trial
        The underlying harness trial (its ``constraints``, ``protocol``, ``train_idx``, ...).
    dataset : ReidDataset
        The loaded dataset.

    Examples
    --------
    >>> import alreid
    >>> loop = alreid.ActiveLearningLoop("synthetic:n_images=300", sampler=alreid.get_sampler("aas"),
    ...                                  trainer=alreid.get_trainer("head", iters=20), seed=0,
    ...                                  cycles=2, budget_pairs=20)
    >>> pairs = loop.next_pairs()          # cycle 0 (the starting model) is evaluated first
    >>> loop.cycle, len(pairs), list(pairs.columns[:4])
    (1, 20, ['u', 'v', 'image_id_u', 'image_id_v'])
    >>> answers = loop.oracle_answers(pairs)   # or a person's answers, or a file's
    >>> loop.answer(pairs, answers)
    >>> metrics = loop.train_and_evaluate()
    >>> metrics["cycle"], metrics["pairs_asked"], 0.0 <= metrics["mAP"] <= 1.0
    (1, 20, True)
    >>> loop.run(progress=False)["cycle"].tolist()   # the remaining cycle with the simulated oracle
    [0, 1, 2]
    """

    def __init__(self, data: "str | ReidDataset", sampler: Any = "random", trainer: Any = "head", seed: int = 0, *,
                 params: Mapping[str, Any] | None = None, trainer_params: Mapping[str, Any] | None = None,
                 cycles: int = 5, budget_fraction: float = 2e-4, budget_pairs: int | None = None,
                 refine: str = "np3", oracle_error_rate: float = 0.0, **settings: Any) -> None:
        from alreid.datasets.base import ReidDataset
        from alreid.harness.settings import make_trial_config

        method, method_params, sampler_obj = _plugin(sampler, params, "sampler")
        trainer_name, tparams, trainer_obj = _plugin(trainer, trainer_params, "trainer")
        if isinstance(settings.get("clustering"), str):
            settings["clustering"] = {"method": settings["clustering"]}
        if isinstance(data, ReidDataset):
            dataset, spec = data, data.name or "dataset"
        elif isinstance(data, str):
            dataset, spec = None, data
        else:
            raise DatasetError(f"data must be a dataset spec such as 'synthetic' or 'embeddings:PATH', or a "
                               f"ReidDataset from alreid.load_dataset; got {type(data).__name__}")
        cfg = make_trial_config({"dataset": spec, "method": method, "params": method_params, "trainer": trainer_name,
                                 "trainer_params": tparams, "seed": seed, "cycles": cycles,
                                 "budget_fraction": budget_fraction, "budget_pairs": budget_pairs, "refine": refine,
                                 "oracle_error_rate": oracle_error_rate, **settings})
        self._start(cfg, dataset, sampler_obj, trainer_obj)

    @classmethod
    def from_config(cls, cfg: "TrialConfig", dataset: "ReidDataset | None" = None) -> "ActiveLearningLoop":
        """A loop for a validated :class:`TrialConfig` (what ``alreid run`` builds from its flags).

        Examples
        --------
        >>> from alreid import ActiveLearningLoop
        >>> from alreid.harness.settings import make_trial_config
        >>> cfg = make_trial_config({"dataset": "synthetic:n_images=300", "cycles": 0})
        >>> ActiveLearningLoop.from_config(cfg).run(progress=False)["cycle"].tolist()
        [0]
        """
        loop = cls.__new__(cls)
        loop._start(cfg, dataset, None, None)
        return loop

    def _start(self, cfg: "TrialConfig", dataset: "ReidDataset | None", sampler: Any, trainer: Any) -> None:
        from alreid.harness.trial import Trial

        self.trial: Trial = Trial(cfg, dataset, sampler=sampler, trainer=trainer)
        self.dataset = self.trial.dataset

    # ---------------------------------------------------------------------------------- state
    @property
    def config(self) -> "TrialConfig":
        """The validated trial settings."""
        return self.trial.cfg

    @property
    def sampler(self) -> Any:
        """The loop's own sampler object (its ``stats_`` describe the last cycle's pool)."""
        return self.trial.sampler

    @property
    def trainer(self) -> Any:
        """The loop's own trainer object."""
        return self.trial.trainer

    @property
    def cycle(self) -> int:
        """The cycle the next :meth:`next_pairs`/:meth:`train_and_evaluate` works on (0 = start)."""
        return int(self.trial.next_cycle)

    @property
    def done(self) -> bool:
        """True once every cycle has been evaluated."""
        return self.trial.next_cycle > self.trial.cfg.cycles

    @property
    def budget(self) -> int:
        """Pairs the sampler may ask per cycle."""
        return int(self.trial.budget)

    @property
    def pool(self) -> "pd.DataFrame":
        """The training pool: one row per pool index ``u`` with its dataset row and metadata (no identity).

        The identity column is left out on purpose: the loop's annotator is the one who knows it.
        """
        meta = self.dataset.metadata.iloc[self.trial.train_idx]
        frame = meta.drop(columns=[c for c in ("identity",) if c in meta.columns]).reset_index(names="row")
        frame.index.name = "u"
        return frame

    @property
    def records(self) -> "pd.DataFrame":
        """One row per finished cycle (the columns ``alreid run --json`` writes)."""
        import pandas as pd

        return pd.DataFrame(self.trial.records)

    @property
    def answers(self) -> "pd.DataFrame":
        """Every answered pair so far: ``cycle``, ``image_id_u``, ``image_id_v``, ``same``."""
        return self.trial.pairs_frame()

    # ---------------------------------------------------------------------------------- one cycle
    def next_pairs(self) -> "pd.DataFrame":
        """The pairs the sampler asks about in the current cycle (the same ones until they are trained on).

        Cycle 0 asks nothing: when it has not been evaluated yet, this evaluates it first and returns the
        pairs of cycle 1.

        Returns
        -------
        pandas.DataFrame
            One row per pair: ``u``, ``v`` (training-pool indices, what :meth:`answer` needs),
            ``image_id_u``, ``image_id_v``, ``row_u``, ``row_v`` (dataset rows) and ``path_u``,
            ``path_v`` when the dataset has image paths.

        Raises
        ------
        AlreidError
            When every cycle has run.
        """
        if self.trial.next_cycle == 0:
            self.trial.train_and_evaluate()
        return self._frame(self.trial.next_pairs())

    def _frame(self, pairs: "np.ndarray") -> "pd.DataFrame":
        import numpy as np
        import pandas as pd

        pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
        rows = self.trial.train_idx[pairs] if len(pairs) else np.empty((0, 2), dtype=np.int64)
        meta = self.dataset.metadata
        out = pd.DataFrame({"u": pairs[:, 0], "v": pairs[:, 1]})
        image_id = meta["image_id"].to_numpy()
        out["image_id_u"], out["image_id_v"] = image_id[rows[:, 0]], image_id[rows[:, 1]]
        out["row_u"], out["row_v"] = rows[:, 0], rows[:, 1]
        if "path" in meta.columns:
            path = meta["path"].astype(str).to_numpy()
            out["path_u"], out["path_v"] = path[rows[:, 0]], path[rows[:, 1]]
        return out

    def _pairs_array(self, pairs: Any) -> "np.ndarray":
        import numpy as np
        import pandas as pd

        if isinstance(pairs, pd.DataFrame):
            if not {"u", "v"} <= set(pairs.columns):
                raise ConfigError("a pairs DataFrame needs the pool-index columns 'u' and 'v' (as next_pairs() "
                                  f"returns them); found: {', '.join(map(str, pairs.columns))}")
            pairs = pairs[["u", "v"]].to_numpy()
        arr = np.asarray(pairs)
        if arr.size and (arr.ndim != 2 or arr.shape[1] != 2 or not np.issubdtype(arr.dtype, np.integer)):
            raise ConfigError(f"pairs must be next_pairs()'s DataFrame or an [m, 2] array of integer pool indices; "
                              f"got shape {arr.shape} of {arr.dtype}")
        arr = arr.astype(np.int64).reshape(-1, 2)
        bad = (arr < 0) | (arr >= self.trial.n)
        if bad.any():
            raise ConfigError(f"pool index {int(arr[bad][0])} is out of range: the training pool has {self.trial.n} "
                              f"images (0..{self.trial.n - 1}); pass pool indices u, v, not dataset rows")
        return arr

    def answer(self, pairs: Any, answers: Sequence[Any] | Any) -> None:
        """Record answers (True = same individual) from any annotator: a person, a file, the simulator.

        May be called several times per cycle (answers accumulate); :meth:`train_and_evaluate` then
        trains on every answer so far.

        Parameters
        ----------
        pairs : DataFrame or array of shape (m, 2)
            :meth:`next_pairs`'s frame (its ``u``, ``v`` columns) or pool-index pairs.
        answers : sequence of bool, length m
            True/False, or 1/0.

        Raises
        ------
        ConfigError
            Lengths differ, answers are not booleans, or indices are out of range.
        ConstraintConflictError
            An answer contradicts what earlier answers imply.
        """
        import numpy as np
        import pandas as pd

        arr = self._pairs_array(pairs)
        values = answers.to_numpy() if isinstance(answers, (pd.Series, pd.Index)) else np.asarray(answers)
        values = values.reshape(-1)
        if values.dtype != bool:
            ok = values.dtype.kind in "iuf" and np.isin(values, (0, 1)).all()
            if not ok:
                shown = ", ".join(map(repr, values[:3].tolist()))
                raise ConfigError(f"answers must be True/False (same individual or not) or 1/0; got {shown}")
            values = values.astype(bool)
        if len(values) != len(arr):
            raise ConfigError(f"{len(arr)} pairs but {len(values)} answers; give one answer per pair")
        if self.trial.next_cycle == 0:
            self.trial.train_and_evaluate()  # cycle 0 asks nothing: answers belong to cycle 1
            self.trial.next_pairs()
        self.trial.answer(arr, values)

    def oracle_answers(self, pairs: Any) -> "np.ndarray":
        """The trial's oracle's answers to ``pairs``: the simulated annotator (ground-truth identities, with
        ``oracle_error_rate``), or the file of ``oracle="replay:FILE"``.

        Every pair counts as asked: the oracle refuses to answer a pair twice. (A replayed "not sure" comes
        back as an answer here; :meth:`ask_oracle` leaves such pairs out, as ``alreid run`` does.)

        Raises
        ------
        AlreidError
            The dataset has no identities to simulate answers from.
        """
        from alreid.oracle import SimulatedOracle

        arr = self._pairs_array(pairs)
        if len(arr) and not getattr(self.trial, "evaluates", True) and isinstance(self.trial.oracle, SimulatedOracle):
            raise AlreidError(f"dataset {self.dataset.name!r} has no identities to simulate answers from; give your "
                              f"own answers with loop.answer(pairs, answers), or pass oracle='replay:FILE'")
        return self.trial.oracle.query(arr)

    def ask_oracle(self) -> None:
        """Answer the current cycle's pairs with the simulated annotator."""
        self.trial.ask_oracle()

    def train_and_evaluate(self) -> dict[str, Any]:
        """Finish the current cycle: refine the pseudo-labels with all answers, train, evaluate.

        Returns
        -------
        dict
            The cycle's record: ``cycle``, ``pairs_asked``, ``pairs_cum``, ``mAP``, ``mINP``, ``top1``..
            ``top10``, ``BAKS``, ``AUC`` (fractions in [0, 1]), timings and the sampler's pool statistics.
        """
        return dict(self.trial.train_and_evaluate())

    def run_cycle(self) -> dict[str, Any]:
        """One whole cycle with the simulated annotator; returns its record."""
        return dict(self.trial.run_cycle())

    def run(self, *, on_cycle: Callable[[dict[str, Any], "ActiveLearningLoop"], None] | None = None,
            progress: bool = True) -> "pd.DataFrame":
        """Run the remaining cycles with the simulated annotator; returns every record so far.

        Parameters
        ----------
        on_cycle : callable, optional
            Called as ``on_cycle(record, loop)`` after each cycle (print, plot, checkpoint).
        progress : bool, default True
            Show a progress bar over the cycles (on stderr).
        """
        from tqdm.auto import tqdm

        total = self.trial.cfg.cycles + 1
        bar = tqdm(total=total, initial=min(self.cycle, total), desc=f"{self.config.method} on {self.dataset.name}",
                   unit="cycle", disable=not progress, leave=False)

        def step(rec: dict[str, Any], _trial: Any) -> None:
            bar.update(1)
            bar.set_postfix(mAP=f"{100 * rec.get('mAP', float('nan')):.1f}")
            if on_cycle is not None:
                on_cycle(rec, self)

        try:
            return self.trial.run(on_cycle=step)
        finally:
            bar.close()

    def __repr__(self) -> str:
        c = self.config
        return (f"ActiveLearningLoop(dataset={self.dataset.name!r}, sampler={c.method!r}, trainer={c.trainer!r}, "
                f"seed={c.seed}, cycle={self.cycle}/{c.cycles}, pool={self.trial.n}, budget={self.budget})")


def run_trial(data: "str | ReidDataset", method: Any = "random", params: Mapping[str, Any] | None = None, *,
              trainer: Any = "head", trainer_params: Mapping[str, Any] | None = None, seed: int = 0,
              cycles: int = 5, progress: bool = True,
              on_cycle: Callable[[dict[str, Any], ActiveLearningLoop], None] | None = None,
              **settings: Any) -> "pd.DataFrame":
    """Run one whole active-learning trial with the simulated annotator, like ``alreid run``.

    Parameters
    ----------
    data : str or ReidDataset
        A dataset spec or a loaded dataset (:func:`load_dataset`).
    method : str, Sampler class or Sampler, default "random"
        The sampler: a registered name or an object from :func:`get_sampler`.
    params : dict, optional
        Sampler hyperparameters when ``method`` is a name, e.g. ``{"epsilon": 0.4}``.
    trainer, trainer_params
        The trainer, as for :class:`ActiveLearningLoop`.
    seed : int, default 0
        Trial seed; the same seed gives the same records as ``alreid run --seed``.
    cycles : int, default 5
        Active-learning cycles after cycle 0.
    progress : bool, default True
        Progress bar over the cycles.
    on_cycle : callable, optional
        ``on_cycle(record, loop)`` after each cycle.
    **settings
        ``budget_fraction``, ``budget_pairs``, ``refine``, ``oracle_error_rate``, ``clustering``,
        ``protocol``, ... (see :class:`ActiveLearningLoop`).

    Returns
    -------
    pandas.DataFrame
        One row per cycle (0..cycles): ``cycle``, ``pairs_asked``, ``pairs_cum``, ``budget_used_pct``,
        ``mAP``, ``mINP``, ``top1``, ``top3``, ``top5``, ``top10``, ``BAKS``, ``AUC`` (fractions), timings.

    Examples
    --------
    >>> import alreid
    >>> records = alreid.run_trial("synthetic:n_images=300", method="random", seed=0, cycles=2,
    ...                            budget_pairs=20, trainer_params={"iters": 20}, progress=False)
    >>> records[["cycle", "pairs_asked", "pairs_cum"]].to_dict("list")
    {'cycle': [0, 1, 2], 'pairs_asked': [0, 20, 20], 'pairs_cum': [0, 20, 40]}
    >>> bool(records["mAP"].between(0, 1).all())
    True
    """
    loop = ActiveLearningLoop(data, sampler=method, trainer=trainer, seed=seed, params=params,
                              trainer_params=trainer_params, cycles=cycles, **settings)
    return loop.run(on_cycle=on_cycle, progress=progress)


# ------------------------------------------------------------------------------------------ benchmarks
@dataclass
class BenchmarkResult:
    """What :func:`run_benchmark` produced.

    Attributes
    ----------
    records : pandas.DataFrame
        Every finished trial's per-cycle records (``results_dir/records.parquet``); empty if none finished.
    results_dir : Path
        ``<storage>/<experiment name>``.
    report_paths : dict of str to Path
        The report files (``summary.md``, ``per_dataset.csv``, ``curves_mAP.png``, ...); empty when no
        trial finished or the run was interrupted.
    summary : pandas.DataFrame or None
        The summary table (rows = methods), as printed by ``alreid bench``.
    finished, unfinished : list of str
        Trial keys (``aas__synthetic__seed0``); unfinished ones continue with ``resume=True``.
    errors : dict of str to str
        Failed trial key -> the last line of its error.
    report : alreid.harness.tables.Report or None
        The written report (``summary``, ``pvalues``, ``notes``: tests or figures skipped and why).
    warnings : list of str
        What went wrong outside the results (the report could not be logged to MLflow).
    """

    records: "pd.DataFrame"
    results_dir: Path
    report_paths: dict[str, Path] = field(default_factory=dict)
    summary: "pd.DataFrame | None" = None
    finished: list[str] = field(default_factory=list)
    unfinished: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    n_trials: int = 0
    report: Any = None
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def interrupted(self) -> bool:
        """True when some trials did not finish (Ctrl-C, a stopped cluster): resume to finish them."""
        return bool(self.unfinished)

    @property
    def report_dir(self) -> Path:
        return self.results_dir / "report"


class BenchmarkInterrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`run_benchmark`: finished trials are kept; ``resume=True`` continues the others."""

    def __init__(self, results_dir: Path) -> None:
        super().__init__(f"interrupted; finished trials are saved in {results_dir}; "
                         f"run_benchmark(..., resume=True) continues the others from their last cycle")
        self.results_dir = results_dir


def _plan(config: Any, *, sweep: bool, smoke: bool, storage: Any, tracking_uri: str | None) -> Any:
    from alreid.harness.experiment import (ExperimentConfig, Plan, apply_overrides, load_plan, parse_experiment,
                                           plan_experiment)

    overrides = {"storage_path": None if storage is None else str(storage), "tracking_uri": tracking_uri}
    if isinstance(config, Plan):  # already expanded and validated (``alreid bench`` after --dry-run's checks)
        if storage is not None or tracking_uri is not None or sweep or smoke:
            raise ConfigError("storage, tracking_uri, sweep and smoke_test apply when a config is planned; "
                              "pass the YAML path or dict instead of a Plan to change them")
        return config
    if isinstance(config, (str, Path)):
        return load_plan(config, sweep=sweep, smoke=smoke, **overrides)
    if isinstance(config, Mapping):
        cfg = parse_experiment(dict(config), source="experiment dict")
    elif isinstance(config, ExperimentConfig):
        cfg = config
    else:
        raise ConfigError(f"an experiment is a YAML path, a dict of its settings or an ExperimentConfig; "
                          f"got {type(config).__name__}")
    return plan_experiment(apply_overrides(cfg, **overrides), source="experiment dict", sweep=sweep, smoke=smoke)


def run_benchmark(config: "str | Path | Mapping[str, Any]", *, sweep: bool = False, smoke_test: bool = False,
                  resume: bool = False, overwrite: bool = False, storage: "str | Path | None" = None,
                  tracking_uri: str | None = None, mlflow: bool = True, address: str | None = None,
                  max_concurrent: int | None = None, verbose: bool = True) -> BenchmarkResult:
    """Run an experiment (datasets x methods x seeds) on Ray Tune and write its report, like ``alreid bench``.

    Parameters
    ----------
    config : str, Path, dict or Plan
        An experiment YAML (``configs/default.yaml``), the same settings as a dict, or a Plan from
        :func:`alreid.harness.experiment.load_plan`.
    sweep : bool, default False
        Run the config's ``sweep`` grid (``alreid sweep``).
    smoke_test : bool, default False
        One seed, at most two cycles; results go to ``<name>-smoke``.
    resume, overwrite : bool, default False
        Continue an interrupted run of the same config / delete an earlier run and start again. Without
        either, an existing results folder is a :class:`ConfigError`.
    storage : str or Path, optional
        Results folder (default: the config's ``storage_path``).
    tracking_uri : str, optional
        MLflow tracking URI (default ``sqlite:///<storage>/mlflow.db``).
    mlflow : bool, default True
        Log to MLflow (``records.parquet`` is always written).
    address : str, optional
        A Ray cluster to join (default: a local Ray).
    max_concurrent : int, optional
        Run at most this many trials at a time.
    verbose : bool, default True
        Print one line per finished trial (the CLI's progress lines).

    Returns
    -------
    BenchmarkResult
        Records, report paths and summary table; ``errors``/``unfinished`` say what did not finish.

    Raises
    ------
    ConfigError
        Invalid config, missing local dataset paths, or an existing run without ``resume``/``overwrite``.
    AlreidError
        MLflow unreachable (pass ``mlflow=False``) or a Ray cluster that cannot be reached.
    BenchmarkInterrupted
        Ctrl-C (a ``KeyboardInterrupt``): finished trials are saved; ``resume=True`` continues the rest.

    Examples
    --------
    >>> import tempfile, alreid
    >>> experiment = {"name": "demo", "datasets": ["synthetic:n_images=300"], "methods": ["random", "aas"],
    ...               "seeds": 1, "cycles": 1, "budget_pairs": 20, "trainer_params": {"iters": 20}}
    >>> result = alreid.run_benchmark(experiment, storage=tempfile.mkdtemp(), mlflow=False, verbose=False)
    >>> result.finished, result.errors
    (['aas__synthetic_n_images_300__seed0', 'random__synthetic_n_images_300__seed0'], {})
    >>> result.records.groupby("method")["cycle"].max().to_dict()
    {'aas': 1, 'random': 1}
    >>> result.summary.index.tolist(), "summary.md" in result.report_paths
    (['random', 'aas'], True)
    """
    import pandas as pd

    if max_concurrent is not None and max_concurrent < 1:
        raise ConfigError(f"max_concurrent must be >= 1; got {max_concurrent}")
    plan = _plan(config, sweep=sweep, smoke=smoke_test, storage=storage, tracking_uri=tracking_uri)
    cfg = plan.config
    out: Callable[[str], None] = print if verbose else (lambda _line: None)
    if address is None:
        from alreid.harness.experiment import check_local_datasets

        check_local_datasets(plan)

    from alreid.harness import tune_runner

    resumed = tune_runner.prepare_results(plan, resume=resume, overwrite=overwrite, out=out)
    tracker = None
    if mlflow:
        from alreid.harness.tracking import Tracker

        uri = cfg.resolved_tracking_uri()
        try:
            tracker = Tracker(uri, cfg.mlflow_experiment or cfg.name, plan.results_dir)
            tracker.start(run_name=cfg.name, params=_parent_params(plan), resume=resumed)
        except Exception as exc:  # noqa: BLE001 - unreachable server, bad URI, locked database
            raise AlreidError(f"cannot use MLflow at {uri}: {type(exc).__name__}: {exc} "
                              f"(check tracking_uri / --tracking-uri, or pass mlflow=False / --no-mlflow)") from None
        out(f"MLflow: experiment {tracker.experiment_name!r} at {uri} (parent run {tracker.parent_id})")
    try:
        outcome = tune_runner.run_benchmark(plan, resume=resumed, tracker=tracker, address=address,
                                            max_concurrent=max_concurrent, out=out)
    except KeyboardInterrupt:
        raise BenchmarkInterrupted(plan.results_dir) from None
    result = BenchmarkResult(records=pd.DataFrame(), results_dir=plan.results_dir, finished=list(outcome.finished),
                             unfinished=list(outcome.unfinished), errors=dict(outcome.errors),
                             seconds=float(outcome.seconds), n_trials=len(plan.trials))
    if outcome.interrupted:  # the parent MLflow run stays open: a resumed run continues it
        return result
    if outcome.finished:
        from alreid.harness.tables import load_records, write_report

        result.records = load_records(plan.results_dir)
        report = write_report(result.records, plan.results_dir / "report", reference=cfg.reference, metric=cfg.metric)
        result.report, result.summary = report, report.summary
        result.report_paths, result.notes = dict(report.paths), list(report.notes)
        if tracker is not None:
            try:
                tracker.log_report(report)
            except Exception as exc:  # noqa: BLE001 - the report on disk is what matters
                result.warnings.append(f"could not log the report to MLflow: {exc}")
    if tracker is not None:
        tracker.finish("FAILED" if outcome.errors else "FINISHED")
    return result


def _parent_params(plan: Any) -> dict[str, Any]:
    """The experiment's settings as the parent MLflow run's parameters."""
    cfg = plan.config
    return {"config": plan.source, "name": cfg.name, "datasets": ",".join(cfg.datasets), "methods": ",".join(plan.labels),
            "seeds": ",".join(map(str, cfg.seed_list())), "cycles": cfg.cycles, "budget_fraction": cfg.budget_fraction,
            "budget_pairs": cfg.budget_pairs, "refine": cfg.refine, "oracle_error_rate": cfg.oracle_error_rate,
            "trainer": cfg.trainer, "n_trials": len(plan.trials), "sweep": plan.sweep, "smoke_test": plan.smoke}


# ------------------------------------------------------------------------------------------ results
@dataclass
class Results:
    """Records and summary tables of a results folder (what ``alreid table`` prints and writes).

    Attributes
    ----------
    records : pandas.DataFrame
        One row per (trial, cycle).
    summary : pandas.DataFrame
        Rows = methods; last-cycle means over datasets (percent) and ``<metric>_std``.
    per_dataset : pandas.DataFrame
        Rows = datasets; each method's seed mean of ``metric`` (percent) and ``<method>_std``.
    curves : pandas.DataFrame
        Per (method, cycle): mean and std of ``metric`` (percent), for learning-curve plots.
    significance : pandas.DataFrame
        Wilcoxon tests of ``reference`` against every other method and the Friedman test.
    report_paths : dict of str to Path
        Report files already written next to the records (``report/``), if any.
    """

    records: "pd.DataFrame"
    summary: "pd.DataFrame"
    per_dataset: "pd.DataFrame"
    curves: "pd.DataFrame"
    significance: "pd.DataFrame"
    reference: str
    metric: str
    report_paths: dict[str, Path] = field(default_factory=dict)


def load_results(path: "str | Path", *, reference: str | None = None, metric: str | None = None) -> Results:
    """Load a results folder (``results/<experiment>``) or a records ``.parquet``/``.csv`` file.

    Parameters
    ----------
    path : str or Path
        What :func:`run_benchmark` wrote, or any records file with ``dataset``, ``method``, ``seed``,
        ``cycle`` and metric columns (for instance :func:`run_trial` outputs saved with ``to_parquet``).
    reference : str, optional
        Method every other is tested against (default: the experiment's, else ``aas``).
    metric : str, optional
        Metric of the per-dataset table, curves and tests (default: the experiment's, else ``mAP``).

    Returns
    -------
    Results

    Raises
    ------
    AlreidError
        Missing folder or file, unreadable file, or records lacking the required columns.

    Examples
    --------
    >>> import pandas as pd, tempfile, alreid
    >>> from pathlib import Path
    >>> runs = [alreid.run_trial("synthetic:n_images=300", method=m, seed=s, cycles=1, budget_pairs=20,
    ...                          trainer_params={"iters": 20}, progress=False)
    ...         for m in ("random", "aas") for s in (0, 1)]
    >>> folder = Path(tempfile.mkdtemp())
    >>> pd.concat(runs, ignore_index=True).to_parquet(folder / "records.parquet")
    >>> results = alreid.load_results(folder)
    >>> results.summary.index.tolist(), int(results.summary.loc["aas", "n_trials"])
    (['random', 'aas'], 2)
    >>> results.curves.columns.tolist()[:3]
    ['method', 'cycle', 'mean']
    """
    from alreid.commands.table import _experiment_defaults
    from alreid.harness import stats
    from alreid.harness.tables import load_records, per_dataset_table, significance_frame, summary_table

    p = Path(path).expanduser()
    records = load_records(p).reset_index(drop=True)  # one row label per record, whatever the file stored
    saved_reference, saved_metric = _experiment_defaults(p)
    reference, metric = reference or saved_reference, metric or saved_metric
    if metric not in records.columns:
        raise AlreidError(f"metric {metric!r} is not in the records; columns: {', '.join(map(str, records.columns))}")
    wide = stats.per_dataset_scores(records, metric)
    wilcoxon = stats.wilcoxon_vs_reference(wide, reference) if reference in wide.columns and wide.shape[1] > 1 else None
    significance = significance_frame(reference, wilcoxon, stats.friedman_nemenyi(wide))
    report = (p if p.is_dir() else p.parent) / "report"
    paths = {f.name: f for f in sorted(report.iterdir()) if f.is_file()} if report.is_dir() else {}
    return Results(records=records, summary=summary_table(records), per_dataset=per_dataset_table(records, metric),
                   curves=stats.curve_summary(records, metric), significance=significance, reference=reference,
                   metric=metric, report_paths=paths)
