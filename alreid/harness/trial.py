"""One active-learning trial, in memory: the cycle loop every benchmark trial runs.

Cycle 0 evaluates the starting embeddings (no annotation, no training). Each later cycle clusters
the current embeddings of the training pool, lets the sampler pick pairs within the cycle budget,
asks the oracle, refines the pseudo-labels with all constraints so far, trains, and evaluates.
Every random stream is derived from (seed, cycle, component), so a trial resumed from the state
saved after cycle c continues exactly as the uninterrupted trial would have.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch

from alreid.constraints import ConstraintStore
from alreid.datasets.base import UNKNOWN_IDENTITY, ReidDataset, load_dataset
from alreid.errors import AlreidError
from alreid.harness.settings import TrialConfig
from alreid.clustering.refine import refine_labels
from alreid.evaluation.protocol import evaluate_protocol, load_pinned, pinned_protocol, protocol_hash
from alreid.oracle import SimulatedOracle, make_oracle, oracle_identities
from alreid.registry import SAMPLERS, TRAINERS
from alreid.samplers.base import SamplingContext, build_context
from alreid.trainers.base import CycleInput

_STREAMS = {"sampler": 1, "trainer": 2}


def stream(seed: int, cycle: int, component: str) -> np.random.Generator:
    """An independent generator for one component of one cycle."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(cycle), _STREAMS[component]]))


def stream_seed(seed: int, cycle: int, component: str) -> int:
    return int(stream(seed, cycle, component).integers(0, 2**31 - 1))


@dataclass
class TrialState:
    """What a checkpoint holds: the last finished cycle, the annotations, the model and the records."""

    cycle: int
    constraints: ConstraintStore
    trainer_state: dict[str, Any]
    records: list[dict[str, Any]] = field(default_factory=list)

    def save(self, folder: str | Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.constraints.to_parquet(folder / "constraints.parquet")
        torch.save(self.trainer_state, folder / "trainer.pt")
        pd.DataFrame(self.records).to_parquet(folder / "records.parquet", index=False)
        (folder / "state.json").write_text(json.dumps({"cycle": self.cycle, "n": self.constraints.n}))

    @classmethod
    def load(cls, folder: str | Path) -> "TrialState":
        folder = Path(folder)
        meta = json.loads((folder / "state.json").read_text())
        constraints = ConstraintStore.from_parquet(folder / "constraints.parquet", n=meta["n"])
        trainer_state = torch.load(folder / "trainer.pt", weights_only=False)
        records = pd.read_parquet(folder / "records.parquet").to_dict("records")
        return cls(cycle=int(meta["cycle"]), constraints=constraints, trainer_state=trainer_state, records=records)


def without_identities(dataset: ReidDataset) -> ReidDataset:
    """The dataset as a trainer that must not see ground truth gets it: every identity 'unknown'."""
    meta = dataset.metadata.copy()
    meta["identity"] = UNKNOWN_IDENTITY
    return ReidDataset(name=dataset.name, metadata=meta, features=dataset.features, root=dataset.root,
                       info=dict(dataset.info))


class Trial:
    """Holds the objects of one trial; :meth:`run` executes the remaining cycles."""

    def __init__(self, cfg: TrialConfig, dataset: ReidDataset | None = None, *, sampler: Any = None,
                 trainer: Any = None) -> None:
        """``sampler``/``trainer``: ready plugin objects (the Python API's) instead of building them
        from ``cfg.method``/``cfg.params`` and ``cfg.trainer``/``cfg.trainer_params``."""
        self.cfg = cfg
        self.sampler = sampler if sampler is not None else SAMPLERS.get(cfg.method).from_params(cfg.params)
        self.trainer = trainer if trainer is not None else TRAINERS.get(cfg.trainer).from_params(cfg.trainer_params)
        self.trainer.validate_params()  # ready objects (the Python API's) get the CLI's checks too
        self.dataset = dataset if dataset is not None else load_dataset(cfg.dataset, seed=cfg.protocol.split_seed)
        #: ground truth reaches a trainer only when it declares it needs it (the skyline rows)
        self.trainer_sees_identities = bool(getattr(self.trainer, "needs_identities", False))
        seen = self.dataset if self.trainer_sees_identities else without_identities(self.dataset)
        self.trainer.setup(seen, seed=stream_seed(cfg.seed, 0, "trainer"))
        self.identities = self.dataset.identities
        p = cfg.protocol
        #: False when no image has a known identity (a user's own photos): every image is trained on, no metrics
        self.evaluates = bool((self.identities != UNKNOWN_IDENTITY).any())
        #: the protocol of (dataset, split seed, reference embedding), the same for every row (issue 10)
        self.protocol = None
        if self.evaluates and p.file is not None and Path(p.file).is_file():
            self.protocol = load_pinned(p.file, self.dataset, p.id)
        elif self.evaluates:
            self.protocol = pinned_protocol(self.dataset, p, progress=False)
        self.protocol_id = protocol_hash(self.protocol) if self.protocol is not None else None
        camera_column = p.camera_column or self.dataset.info.get("camera_column")
        self.cameras = None
        if camera_column is not None:
            self.cameras = self.dataset.column(camera_column)
            if self.cameras is None:
                raise AlreidError(f"camera column {camera_column!r} is not in the metadata of {self.dataset.name!r}")
        self.train_idx = np.asarray(self.protocol.train_idx) if self.protocol is not None else np.arange(self.dataset.n)
        self.n = len(self.train_idx)
        if self.n < 2:
            raise AlreidError(f"dataset {self.dataset.name!r} has fewer than 2 training images")
        self.pairs_total = self.n * (self.n - 1) // 2
        self.budget = cfg.cycle_budget(self.n)
        self.pool_identities = oracle_identities(self.identities[self.train_idx])
        self.oracle = make_oracle(cfg.oracle, self.pool_identities, error_rate=cfg.oracle_error_rate, seed=cfg.seed,
                                  keys=self.dataset.metadata["image_id"].to_numpy()[self.train_idx],
                                  truth_known=self.evaluates)
        self.constraints = ConstraintStore(self.n)
        self.records: list[dict[str, Any]] = []
        self.next_cycle = 0
        self._pending: dict[str, Any] | None = None

    # state ------------------------------------------------------------------------------------------
    def state(self) -> TrialState:
        return TrialState(cycle=self.next_cycle - 1, constraints=self.constraints,
                          trainer_state=self.trainer.state_dict(), records=list(self.records))

    def restore(self, state: TrialState) -> None:
        if state.constraints.n != self.n:
            raise AlreidError(f"checkpoint holds constraints over {state.constraints.n} images, this trial has {self.n}")
        self.constraints = state.constraints
        self.oracle.mark_asked(self.constraints.answers[["u", "v"]].to_numpy())
        self.trainer.load_state_dict(state.trainer_state)
        self.records = list(state.records)
        self.next_cycle = state.cycle + 1
        self._pending = None

    # the loop ---------------------------------------------------------------------------------------
    def sampling_context(self, cycle: int) -> SamplingContext:
        """The cycle's context for the sampler, from the trainer's sampling features (one builder for all):
        every sampler gets the base clustering's labels refined with the answers so far (``cfg.refine``,
        NP3 by default), as the paper refines the pseudo-labels of every AL baseline (issue 10)."""
        z = self.trainer.sampling_features(self.train_idx)
        return build_context(z, self.constraints, self.cfg.clustering, cycle=cycle, refine=self.cfg.refine,
                             np3_options=self.cfg.np3.model_dump())

    # one cycle in three steps: ask, answer, train and evaluate -------------------------------------
    def next_pairs(self) -> np.ndarray:
        """Start cycle ``self.next_cycle``: cluster, let the sampler choose, return the pairs to ask.

        Returns an ``[m, 2]`` array of training-pool indices (positions in :attr:`train_idx`); empty at
        cycle 0 and for samplers that ask nothing. Call :meth:`answer` with the answers (any oracle: the
        simulator, a person, a file), then :meth:`train_and_evaluate`. Calling it again before
        :meth:`train_and_evaluate` returns the same pending pairs.
        """
        if self._pending is not None:
            return self._pending["pairs"]
        cfg = self.cfg
        cycle = self.next_cycle
        if cycle > cfg.cycles:
            raise AlreidError(f"the trial has run all its {cfg.cycles} cycles")
        t0 = time.perf_counter()
        rec: dict[str, Any] = {"dataset": self.dataset.name, "method": cfg.method, "trainer": cfg.trainer,
                               "seed": cfg.seed, "cycle": cycle, "n_train": self.n, "pairs_total": self.pairs_total,
                               "budget_pairs": 0 if cycle == 0 else self.budget, "pairs_asked": 0,
                               "budget_fraction": cfg.budget_fraction, "protocol_id": self.protocol_id}
        pending: dict[str, Any] = {"cycle": cycle, "rec": rec, "t0": t0, "pairs": np.empty((0, 2), dtype=np.int64),
                                   "answered": False}
        if cycle > 0:
            t_c = time.perf_counter()
            ctx = self.sampling_context(cycle)
            rec["seconds_clustering"] = time.perf_counter() - t_c
            labels, outliers = ctx.base_labels, ctx.outliers
            rec["n_clusters"] = int(len(np.unique(labels[~outliers]))) if (~outliers).any() else 0
            rec["n_outliers"] = int(outliers.sum())
            t_s = time.perf_counter()
            pairs = self.sampler.select(ctx, self.budget if self.sampler.queries else 0,
                                        stream(cfg.seed, cycle, "sampler"))
            rec["seconds_sampling"] = time.perf_counter() - t_s
            for key, value in getattr(self.sampler, "stats_", {}).items():
                rec[f"pool_{key}"] = value
            pending.update(z=ctx.features, labels=labels, pairs=np.asarray(pairs, dtype=np.int64).reshape(-1, 2),
                           neighbours=ctx.neighbours)  # trainers may reuse its Jaccard distance (head)
        self._pending = pending
        return pending["pairs"]

    def answer(self, pairs: np.ndarray, answers: np.ndarray) -> None:
        """Store the answers (True = same individual) to the pending pairs as constraints."""
        if self._pending is None:
            raise AlreidError("no pairs are pending: call next_pairs() first")
        pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
        answers = np.asarray(answers, dtype=bool).reshape(-1)
        if len(pairs) != len(answers):
            raise AlreidError(f"{len(pairs)} pairs but {len(answers)} answers")
        if len(pairs):
            self.constraints.add_many(pairs, answers, cycle=self._pending["cycle"])
            rec = self._pending["rec"]
            rec["pairs_asked"] = int(rec["pairs_asked"] + len(pairs))
            rec["pairs_ml"] = int(rec.get("pairs_ml", 0) + answers.sum())
        self._pending["answered"] = True

    def ask_oracle(self) -> None:
        """Answer the pending pairs with the trial's oracle (simulated, or replayed from a file)."""
        pairs = self.next_pairs()
        if len(pairs) and not self.evaluates and isinstance(self.oracle, SimulatedOracle):
            raise AlreidError(f"dataset {self.dataset.name!r} has no identities to simulate answers from; "
                              "answer the pairs with 'alreid annotate' or pass --oracle replay:FILE")
        answers = self.oracle.query(pairs) if len(pairs) else np.empty(0, dtype=bool)
        answered = getattr(self.oracle, "answered_", None)  # a replayed 'not sure' is asked but no constraint
        if len(pairs) and answered is not None:
            pairs, answers = pairs[answered], answers[answered]
        self.answer(pairs, answers)
        if hasattr(self.oracle, "n_simulated_"):
            self._pending["rec"]["oracle_simulated"] = int(self.oracle.n_simulated_)

    def train_and_evaluate(self) -> dict[str, Any]:
        """Finish the pending cycle: refine the pseudo-labels, train, evaluate; returns its record."""
        if self._pending is None:
            self.next_pairs()
        pending, self._pending = self._pending, None
        cycle, rec = pending["cycle"], pending["rec"]
        if cycle > 0:
            t_t = time.perf_counter()
            stats = self.train(pending)
            rec["seconds_training"] = time.perf_counter() - t_t
            rec.update({k: v for k, v in stats.items() if np.isscalar(v)})
        t_e = time.perf_counter()
        metrics = self.evaluate()
        rec["seconds_eval"] = time.perf_counter() - t_e
        rec.update({k: float(v) if isinstance(v, (float, np.floating)) else v for k, v in metrics.items()})
        prev = self.records[-1]["pairs_cum"] if self.records else 0
        rec["pairs_cum"] = int(prev + rec["pairs_asked"])
        rec["budget_used_pct"] = 100.0 * rec["pairs_cum"] / self.pairs_total
        rec["seconds"] = time.perf_counter() - pending["t0"]
        self.records.append(rec)
        self.next_cycle = cycle + 1
        return rec

    def train(self, pending: dict[str, Any]) -> dict[str, Any]:
        """The trainer's cycle on the pseudo-labels refined with every answer so far (this cycle's too)."""
        cfg = self.cfg
        cycle = pending["cycle"]
        np3_options = cfg.np3.model_dump()
        refined = refine_labels(pending["labels"], self.constraints, pending["z"], cfg.refine, np3_options)
        return self.trainer.fit_cycle(CycleInput(
            cycle=cycle, seed=stream_seed(cfg.seed, cycle, "trainer"), train_idx=self.train_idx,
            pseudo_labels=refined, constraints=self.constraints,
            refine=lambda lab, feats: refine_labels(lab, self.constraints, feats, cfg.refine, np3_options),
            identities=self.pool_identities if self.trainer_sees_identities else None,
            extras={"neighbours": pending.get("neighbours")}))

    def evaluate(self) -> dict[str, Any]:
        """Metrics of the trainer's current embedding on the pinned protocol ({} without identities)."""
        if self.protocol is None:
            return {}
        return evaluate_protocol(self.protocol, self.trainer.embed(), self.identities, self.cameras,
                                 baus_threshold=self.cfg.protocol.baus_threshold)

    def run_cycle(self) -> dict[str, Any]:
        """One whole cycle with the simulated oracle."""
        self.next_pairs()
        self.ask_oracle()
        return self.train_and_evaluate()

    def run(self, *, on_cycle: Callable[[dict[str, Any], "Trial"], None] | None = None) -> pd.DataFrame:
        while self.next_cycle <= self.cfg.cycles:
            rec = self.run_cycle()
            if on_cycle is not None:
                on_cycle(rec, self)
        return pd.DataFrame(self.records)

    def pairs_frame(self) -> pd.DataFrame:
        """Every answered pair with dataset image ids, for the queried-pairs artifact."""
        a = self.constraints.answers
        image_id = self.dataset.metadata["image_id"].to_numpy()
        return pd.DataFrame({"cycle": a.cycle, "image_id_u": image_id[self.train_idx[a.u]],
                             "image_id_v": image_id[self.train_idx[a.v]], "same": a.same})


def run_trial(cfg: TrialConfig, *, dataset: ReidDataset | None = None, resume: TrialState | None = None,
              on_cycle: Callable[[dict[str, Any], Trial], None] | None = None) -> pd.DataFrame:
    """Run (or finish) one trial and return its per-cycle records."""
    trial = Trial(cfg, dataset)
    if resume is not None:
        trial.restore(resume)
    return trial.run(on_cycle=on_cycle)
