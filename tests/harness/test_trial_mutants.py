"""The trial loop's contract, pinned by the mutation review of alreid/harness/trial.py (tests/mutants/trial.md).

Every test drives a real :class:`~alreid.harness.trial.Trial` on a tiny hand-built dataset (8 identities x 4
training images, a Market-1501 style ``role`` column, so the protocol is known without any computation) with
a recording trainer and a scripted sampler, so each check is against values worked out here: the record of
each cycle, the answers and their cycles, what the trainer and the sampler receive, the streams, the
checkpoint, the replay oracle and the exact error messages.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import alreid.harness.trial as trial_mod
from alreid.constraints import ConstraintStore
from alreid.datasets.base import DatasetAdapter, ReidDataset
from alreid.errors import AlreidError
from alreid.evaluation.protocol import evaluate_protocol, pinned_protocol, protocol_frame, protocol_hash
from alreid.harness.settings import ProtocolSettings, make_trial_config
from alreid.harness.trial import Trial, TrialState, run_trial, stream, stream_seed
from alreid.oracle import RepeatedQueryError, SimulatedOracle
from alreid.registry import DATASETS, TRAINERS
from alreid.trainers.base import Trainer

N_IDS, PER_ID = 8, 6  # per identity: 4 train, 1 query, 1 gallery image
N_TRAIN = N_IDS * (PER_ID - 2)
TIMING = ("seconds", "seconds_clustering", "seconds_sampling", "seconds_training", "seconds_eval")


def toy(*, name: str = "toy", unknown: bool = False, role: bool = True, n_ids: int = N_IDS, seed: int = 0,
        root: Path | None = None) -> ReidDataset:
    """Well separated identities; ``unknown``: every identity 'unknown' (a user's own photos)."""
    rng = np.random.default_rng(seed)
    ids = np.repeat(np.arange(n_ids), PER_ID)
    x = rng.standard_normal((n_ids, 16))[ids] + 0.2 * rng.standard_normal((len(ids), 16))
    meta = pd.DataFrame({"image_id": [f"img{i:03d}" for i in range(len(ids))],
                         "identity": ["unknown" if unknown else f"id{i}" for i in ids],
                         "cam": np.tile(np.arange(PER_ID) % 2, n_ids), "extra": np.arange(len(ids))})
    if role:
        meta["role"] = np.tile(["train"] * (PER_ID - 2) + ["query", "gallery"], n_ids)
    return ReidDataset(name, meta, x.astype(np.float32), root=root, info={"note": "kept"})


class RecTrainer(Trainer):
    """Trains nothing; keeps what the trial hands it (setup's dataset and seed, every CycleInput)."""

    name = "rec-test"

    def __init__(self, *, tag: str = "default") -> None:
        self.tag = tag
        self.setups: list[tuple[Any, Any]] = []
        self.inputs: list[Any] = []
        self.loaded: list[Any] = []
        self.refined: list[np.ndarray] = []

    def setup(self, dataset: ReidDataset, *, seed: int) -> None:
        self.setups.append((dataset, seed))
        f = np.asarray(dataset.features, dtype=np.float32)
        self.x = f / np.linalg.norm(f, axis=1, keepdims=True)

    def embed(self) -> np.ndarray:
        return self.x

    def fit_cycle(self, inp: Any) -> dict[str, Any]:
        self.inputs.append(inp)
        self.refined.append(np.asarray(inp.refine(inp.pseudo_labels, self.x[inp.train_idx])))
        return {"loss": 0.25 * inp.cycle, "steps": 3, "curve": np.zeros(2), "note": "ok"}

    def state_dict(self) -> dict[str, Any]:
        # numpy and plain Python objects, as real trainers keep (optimiser state, rng state, labels)
        return {"fits": [i.cycle for i in self.inputs], "labels": np.arange(4), "rng": {"kind": "pcg", "pos": 7}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.loaded.append(state)


class SkylineTrainer(RecTrainer):
    name = "rec-skyline"
    needs_identities = True


class DuckTrainer:
    """A trainer object that does not derive from Trainer (no ``needs_identities`` attribute)."""

    def __init__(self) -> None:
        self.inner = RecTrainer()

    def __getattr__(self, key: str) -> Any:
        if key == "needs_identities":
            raise AttributeError(key)
        return getattr(self.inner, key)


class Scripted:
    """A duck-typed sampler: the scripted pairs of a cycle, else ``budget`` unknown pairs drawn with its rng.

    Records every call (context, budget, four draws of the rng before it is used). ``stats``: what it
    leaves in ``stats_`` (no ``stats_`` attribute at all when None)."""

    queries = True

    def __init__(self, script: dict[int, list[tuple[int, int]]] | None = None,
                 stats: dict[str, Any] | None = None) -> None:
        self.script = script or {}
        self.stats = stats
        self.calls: list[dict[str, Any]] = []

    def select(self, ctx: Any, budget: int, rng: np.random.Generator) -> np.ndarray:
        draws = rng.integers(0, 2**62, size=4)
        self.calls.append({"ctx": ctx, "budget": budget, "draws": draws})
        if self.stats is not None:
            self.stats_ = dict(self.stats)
        if ctx.cycle in self.script:
            return np.asarray(self.script[ctx.cycle], dtype=np.int64).reshape(-1, 2)
        u, v = np.triu_indices(ctx.n, 1)
        pairs = np.stack([u, v], 1)[rng.permutation(len(u))]
        return pairs[~ctx.constraints.is_known(pairs)][:budget]


class Silent(Scripted):
    queries = False


def cfg_of(**kw: Any):
    base = {"method": "random", "cycles": 2, "seed": 3, "budget_pairs": 5}
    base.update(kw)
    return make_trial_config(base)


def strip(df: pd.DataFrame) -> pd.DataFrame:
    return df.drop(columns=[c for c in df.columns if c.startswith("seconds")])


@pytest.fixture
def registered():
    """The recording trainer and a dataset adapter that keeps the seed it is given, by name."""
    seen: list[int] = []

    class SeedAdapter(DatasetAdapter):
        name = "seedrec"

        def load(self, arg: str | None, *, seed: int = 0) -> ReidDataset:
            seen.append(seed)
            return toy(name="seedrec")

    TRAINERS.register("rec-test", RecTrainer)
    DATASETS.register("seedrec", SeedAdapter)
    yield seen
    TRAINERS.unregister("rec-test")
    DATASETS.unregister("seedrec")


# ------------------------------------------------------------------------------------------ streams
def test_streams_are_reproducible_distinct_and_fit_a_signed_32_bit_seed():
    seeds = [stream_seed(s, c, comp) for s in (0, 1, 2) for c in range(20) for comp in ("sampler", "trainer")]
    assert seeds == [stream_seed(s, c, comp) for s in (0, 1, 2) for c in range(20) for comp in ("sampler", "trainer")]
    assert len(set(seeds)) == len(seeds)  # per seed, per cycle, per purpose
    assert all(isinstance(s, int) and 0 <= s < 2**31 - 1 for s in seeds)
    a, b = stream(5, 2, "sampler").integers(0, 2**62, 8), stream(5, 2, "sampler").integers(0, 2**62, 8)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, stream(5, 2, "trainer").integers(0, 2**62, 8))


def test_sampler_and_trainer_streams_per_cycle():
    """The sampler's rng of cycle c is stream(seed, c, 'sampler'); setup gets the trainer seed of cycle 0 and
    cycle c's fit gets that of cycle c: all distinct, all reproducible."""
    sampler, trainer = Scripted(), RecTrainer()
    Trial(cfg_of(cycles=3), toy(), sampler=sampler, trainer=trainer).run()
    for c, call in enumerate(sampler.calls, start=1):
        assert np.array_equal(call["draws"], stream(3, c, "sampler").integers(0, 2**62, size=4))
    assert [s for _, s in trainer.setups] == [stream_seed(3, 0, "trainer")]
    assert [i.seed for i in trainer.inputs] == [stream_seed(3, c, "trainer") for c in (1, 2, 3)]
    assert len({trainer.setups[0][1], *(i.seed for i in trainer.inputs)}) == 4


# --------------------------------------------------------------------------------- the records
def test_each_cycle_record_by_hand():
    ds = toy()
    sampler = Scripted(stats={"candidates": 11, "kind": "x"})
    cfg = cfg_of(budget_fraction=0.01)
    trial = Trial(cfg, ds, sampler=sampler, trainer=RecTrainer())
    t0 = time.perf_counter()
    df = trial.run()
    wall = time.perf_counter() - t0
    recs = trial.records
    n = N_TRAIN
    assert trial.n == n and list(trial.train_idx) == list(np.flatnonzero(ds.metadata.role == "train"))
    ids = ds.identities[trial.train_idx]
    answers = trial.constraints.answers
    pid = protocol_hash(trial.protocol)
    cum = 0
    for c, rec in enumerate(recs):
        mine = answers[answers.cycle == c]
        cum += len(mine)
        want = {"dataset": "toy", "method": "random", "trainer": "head", "seed": 3, "cycle": c, "n_train": n,
                "pairs_total": n * (n - 1) // 2, "budget_pairs": 0 if c == 0 else 5, "pairs_asked": len(mine),
                "budget_fraction": 0.01, "protocol_id": pid, "pairs_cum": cum,
                "budget_used_pct": 100.0 * cum / (n * (n - 1) / 2)}
        assert {k: rec[k] for k in want} == want
        assert type(rec["pairs_total"]) is int and type(rec["n_gallery"]) is int and rec["n_gallery"] == N_IDS
        if c == 0:
            assert "pairs_ml" not in rec and "loss" not in rec and "pool_candidates" not in rec
            continue
        same = ids[mine.u.to_numpy()] == ids[mine.v.to_numpy()]
        assert rec["pairs_ml"] == int(same.sum()) == int(mine.same.sum())
        assert (rec["pool_candidates"], rec["pool_kind"]) == (11, "x")
        assert (rec["loss"], rec["steps"], rec["note"]) == (0.25 * c, 3, "ok") and "curve" not in rec
    assert recs[2]["pairs_asked"] == 5 and len(df) == 3
    for rec in recs:  # every timing is a real duration inside the run, and the cycle's total covers its parts
        parts = [rec[k] for k in TIMING[1:] if k in rec]
        assert len(parts) == (1 if rec["cycle"] == 0 else 4)
        assert all(isinstance(rec[k], float) and 0 <= rec[k] <= wall for k in TIMING if k in rec)
        assert rec["seconds"] >= sum(parts)


def test_baus_threshold_and_cameras_reach_the_evaluation():
    ds = toy()
    cfg = cfg_of(cycles=0, protocol={"baus_threshold": 0.5, "camera_column": "cam"})
    trial = Trial(cfg, ds, trainer=RecTrainer())
    rec = trial.run().iloc[0]
    want = evaluate_protocol(trial.protocol, trial.trainer.embed(), ds.identities, ds.metadata.cam.to_numpy(),
                             baus_threshold=0.5)
    for k, v in want.items():
        assert rec[k] == pytest.approx(v, nan_ok=True), k
    assert "BAUS" in want
    without = Trial(cfg_of(cycles=0), ds, trainer=RecTrainer()).run().iloc[0]
    assert "BAUS" not in without


def test_cluster_counts_of_the_base_clustering():
    """n_clusters / n_outliers describe the base clustering the sampler saw (noise = its outliers): with
    strays, with everything noise (0 clusters) and with no noise at all (min_samples 1)."""
    counts = []
    for eps, min_samples in ((0.6, 3), (1e-6, 3), (0.6, 1)):
        ds = toy(n_ids=10)
        x = ds.features.copy()
        x[:2] = np.random.default_rng(1).standard_normal((2, 16)) * 5  # two strays of the first identity
        ds = ReidDataset("toy", ds.metadata, x)
        sampler = Scripted()
        clustering = {"k1": 6, "k2": 2, "min_samples": min_samples, "eps": eps}
        trial = Trial(cfg_of(cycles=1, clustering=clustering), ds, sampler=sampler, trainer=RecTrainer())
        rec = trial.run().iloc[1]
        ctx = sampler.calls[0]["ctx"]
        noise = np.asarray(ctx.outliers, bool)
        assert rec["n_outliers"] == int(noise.sum())
        assert rec["n_clusters"] == len({int(label) for label, o in zip(ctx.base_labels, noise) if not o})
        counts.append((int(rec["n_clusters"]), int(rec["n_outliers"])))
    (clusters, strays), everything_noise, (all_clustered, no_noise) = counts
    assert clusters >= 2 and 0 < strays < trial.n and everything_noise == (0, trial.n)
    assert all_clustered >= 2 and no_noise == 0


def test_metrics_keep_their_types():
    trial = Trial(cfg_of(cycles=0), toy(), trainer=RecTrainer())
    trial.run()
    assert all(type(trial.records[0][k]) is int for k in ("n_queries", "n_gallery", "n_valid_queries"))
    assert all(type(trial.records[0][k]) is float for k in ("mAP", "top1", "BAKS"))


# ------------------------------------------------------------------------------- answers and cycles
def test_answers_recorded_with_their_cycle_and_accumulated():
    trial = Trial(cfg_of(cycles=2), toy(), sampler=Scripted(), trainer=RecTrainer())
    first = trial.next_pairs()
    assert first.shape == (0, 2) and first.dtype == np.int64
    trial.answer(first, [])
    trial.train_and_evaluate()
    pairs = trial.next_pairs()
    assert pairs.shape == (5, 2) and pairs.dtype == np.int64
    assert trial.next_pairs() is pairs  # asked again before training: the same pending pairs
    trial.answer([(0, 1), (2, 3)], [True, False])
    trial.answer(np.array([[4, 5], [6, 7], [8, 9]]), np.array([True, True, False]))
    rec = trial.train_and_evaluate()
    assert (rec["pairs_asked"], rec["pairs_ml"], rec["pairs_cum"]) == (5, 3, 5)
    trial.next_pairs()
    trial.answer([10, 11, 12, 13], [[False, True]])  # any shapes: flattened to pairs and answers
    rec = trial.train_and_evaluate()
    assert (rec["pairs_asked"], rec["pairs_ml"], rec["pairs_cum"]) == (2, 1, 7)
    a = trial.constraints.answers
    assert a[["u", "v"]].to_numpy().tolist() == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9], [10, 11], [12, 13]]
    assert a.same.tolist() == [True, False, True, True, False, False, True]
    assert a.cycle.tolist() == [1, 1, 1, 1, 1, 2, 2]
    frame = trial.pairs_frame()
    image_id = toy().metadata.image_id.to_numpy()
    assert list(frame.columns) == ["cycle", "image_id_u", "image_id_v", "same"]
    assert frame.image_id_u.tolist() == [image_id[trial.train_idx[u]] for u in (0, 2, 4, 6, 8, 10, 12)]
    assert frame.image_id_v.tolist() == [image_id[trial.train_idx[v]] for v in (1, 3, 5, 7, 9, 11, 13)]
    assert frame.cycle.tolist() == [1, 1, 1, 1, 1, 2, 2] and frame.same.tolist() == a.same.tolist()


def test_train_and_evaluate_alone_starts_the_cycle():
    trainer = RecTrainer()
    trial = Trial(cfg_of(cycles=1), toy(), sampler=Scripted(), trainer=trainer)
    assert trial.train_and_evaluate()["cycle"] == 0
    rec = trial.train_and_evaluate()  # sampled, nothing answered, trained all the same
    assert (rec["cycle"], rec["pairs_asked"], len(trial.constraints)) == (1, 0, 0)
    assert [i.cycle for i in trainer.inputs] == [1]


def test_a_sampler_that_asks_nothing_gets_a_zero_budget():
    sampler = Silent()
    df = Trial(cfg_of(cycles=2), toy(), sampler=sampler, trainer=RecTrainer()).run()
    assert [c["budget"] for c in sampler.calls] == [0, 0]
    assert df.pairs_asked.tolist() == [0, 0, 0]


def test_on_cycle_gets_each_record_and_the_trial(registered):
    seen: list[tuple[int, Any]] = []
    trial = Trial(cfg_of(cycles=2), toy(), sampler=Scripted(), trainer=RecTrainer())
    out = trial.run(on_cycle=lambda rec, t: seen.append((rec["cycle"], t)))
    assert seen == [(0, trial), (1, trial), (2, trial)] and out.cycle.tolist() == [0, 1, 2]
    got: list[int] = []
    df = run_trial(cfg_of(cycles=1, trainer="rec-test"), dataset=toy(name="mine"),
                   on_cycle=lambda rec, t: got.append(rec["cycle"]))
    assert got == [0, 1] and df.dataset.tolist() == ["mine", "mine"]


# ------------------------------------------------------------------------- what the trainer receives
def test_trainer_sees_no_identities_unless_it_needs_them():
    ds = toy(root=Path("/tmp/alreid-toy-root"))
    for trainer, sees in ((RecTrainer(), False), (SkylineTrainer(), True), (DuckTrainer(), False)):
        rec = trainer.inner if isinstance(trainer, DuckTrainer) else trainer
        trial = Trial(cfg_of(cycles=1), ds, sampler=Scripted(), trainer=trainer)
        trial.run()
        (seen, _), = rec.setups
        assert seen.name == "toy" and seen.root == ds.root and seen.info == {"note": "kept"}
        assert seen.features is ds.features
        assert list(seen.metadata.columns) == list(ds.metadata.columns)
        assert seen.metadata.drop(columns="identity").equals(ds.metadata.drop(columns="identity"))
        if sees:
            assert list(seen.identities) == list(ds.identities)
            assert list(rec.inputs[0].identities) == list(ds.identities[trial.train_idx])
        else:
            assert set(seen.identities) == {"unknown"} and rec.inputs[0].identities is None
        assert ds.metadata.identity.iloc[0] == "id0"  # the caller's dataset is untouched


def test_cycle_input_by_hand(monkeypatch):
    """The trainer gets the pool's base labels refined with every answer so far (the trial's refine mode and
    NP3 options), the live constraint store, its own refine callback and the cycle's neighbour cache."""
    calls: list[tuple[Any, ...]] = []
    real = trial_mod.refine_labels

    def spy(labels, store, z, mode, options=None):
        calls.append((labels, store, z, mode, options))
        return real(labels, store, z, mode, options)

    monkeypatch.setattr(trial_mod, "refine_labels", spy)
    np3 = {"cost": "euclidean", "colouring": "largest_first", "exact_colouring_max": 3}
    sampler, trainer = Scripted(), RecTrainer()
    cfg = cfg_of(cycles=2, refine="ml_merge", np3=np3, clustering={"k1": 6, "k2": 2, "min_samples": 3})
    trial = Trial(cfg, toy(), sampler=sampler, trainer=trainer)
    trial.run()
    options = cfg.np3.model_dump()
    assert options["cost"] == "euclidean"
    for c, (inp, call) in enumerate(zip(trainer.inputs, sampler.calls), start=1):
        ctx = call["ctx"]
        assert inp.cycle == c and inp.constraints is trial.constraints
        assert np.array_equal(inp.train_idx, trial.train_idx)
        assert inp.extras == {"neighbours": ctx.neighbours} and ctx.neighbours is not None
    # per cycle: the trial's own refinement, then the trainer's callback
    assert len(calls) == 4
    for k, inp in enumerate(trainer.inputs):
        (labels, store, z, mode, opts), cb = calls[2 * k], calls[2 * k + 1]
        ctx = sampler.calls[k]["ctx"]
        assert labels is ctx.base_labels and store is trial.constraints and z is ctx.features
        assert (mode, opts) == ("ml_merge", options)
        assert np.array_equal(inp.pseudo_labels, real(ctx.base_labels, trial.constraints, ctx.features, "ml_merge",
                                                      options))
        assert cb[1] is trial.constraints and cb[3:] == ("ml_merge", options)
        assert np.array_equal(cb[2], trainer.x[trial.train_idx]) and cb[0] is inp.pseudo_labels
        assert np.array_equal(trainer.refined[k], real(inp.pseudo_labels, trial.constraints,
                                                       trainer.x[trial.train_idx], "ml_merge", options))


def test_sampling_context_by_hand(monkeypatch):
    seen: list[dict[str, Any]] = []
    real = trial_mod.build_context

    def spy(z, constraints, clustering=None, **kw):
        seen.append({"z": z, "constraints": constraints, "clustering": clustering, **kw})
        return real(z, constraints, clustering, **kw)

    monkeypatch.setattr(trial_mod, "build_context", spy)
    np3 = {"cost": "euclidean", "colouring": "largest_first"}
    clustering = {"k1": 6, "k2": 2, "min_samples": 3}
    sampler, trainer = Scripted(), RecTrainer()
    cfg = cfg_of(cycles=2, refine="ml_merge", np3=np3, clustering=clustering)
    trial = Trial(cfg, toy(), sampler=sampler, trainer=trainer)
    trial.run()
    assert [s["cycle"] for s in seen] == [1, 2] == [c["ctx"].cycle for c in sampler.calls]
    for s in seen:
        assert np.array_equal(s["z"], trainer.x[trial.train_idx]) and s["constraints"] is trial.constraints
        assert s["clustering"] == cfg.clustering and s["refine"] == "ml_merge"
        assert s["np3_options"] == cfg.np3.model_dump()
    assert sampler.calls[1]["ctx"].refined_with == "ml_merge"


# ------------------------------------------------------------------------------ the objects it builds
def test_objects_come_from_the_config_unless_given(registered):
    cfg = cfg_of(cycles=0, params={"max_rounds": 7}, trainer="rec-test", trainer_params={"tag": "x"},
                 dataset="seedrec", protocol={"split_seed": 4})
    trial = Trial(cfg)
    assert type(trial.sampler).__name__ == "RandomSampler" and trial.sampler.max_rounds == 7
    assert isinstance(trial.trainer, RecTrainer) and trial.trainer.tag == "x"
    assert trial.dataset.name == "seedrec" and registered == [4]  # the adapter gets the split seed
    s, t, d = Scripted(), RecTrainer(), toy(name="given")
    given = Trial(cfg, d, sampler=s, trainer=t)
    assert (given.sampler, given.trainer, given.dataset) == (s, t, d) and registered == [4]


def test_a_protocol_file_is_used_and_checked(tmp_path):
    ds = toy(role=False)
    other = pinned_protocol(ds, ProtocolSettings(split_seed=1), progress=False)
    own = pinned_protocol(ds, ProtocolSettings(split_seed=0), progress=False)
    assert protocol_hash(other) != protocol_hash(own)
    path = tmp_path / "protocol.parquet"
    protocol_frame(other, ds.identities, ds.metadata.image_id.to_numpy()).to_parquet(path)
    trial = Trial(cfg_of(cycles=0, protocol={"file": str(path)}), ds, trainer=RecTrainer())
    assert trial.protocol_id == protocol_hash(other) and np.array_equal(trial.train_idx, other.train_idx)
    assert trial.run().protocol_id.tolist() == [protocol_hash(other)]
    with pytest.raises(AlreidError) as err:
        Trial(cfg_of(cycles=0, protocol={"file": str(path), "id": "0123456789abcdef"}), ds, trainer=RecTrainer())
    assert str(err.value) == (f"protocol file {path} changed since the run was planned (id {protocol_hash(other)}, "
                              "expected 0123456789abcdef); rerun with --overwrite")
    # without identities there is no protocol, whatever file is named
    anon = Trial(cfg_of(cycles=0, protocol={"file": str(path)}), toy(unknown=True, name="anon", n_ids=3),
                 trainer=RecTrainer())
    assert anon.protocol is None


def test_without_identities_every_image_is_trained_on_and_nothing_is_measured():
    ds = toy(unknown=True, name="anon", role=False, n_ids=3)
    trial = Trial(cfg_of(cycles=0), ds, trainer=RecTrainer())
    assert (trial.evaluates, trial.protocol, trial.protocol_id) == (False, None, None)
    assert np.array_equal(trial.train_idx, np.arange(ds.n))
    rec = trial.run().iloc[0].to_dict()
    assert rec["protocol_id"] is None and "mAP" not in rec
    two = ReidDataset("two", ds.metadata.iloc[:2].reset_index(drop=True), ds.features[:2])
    assert Trial(cfg_of(cycles=0), two, trainer=RecTrainer()).n == 2  # two images make one pair


# --------------------------------------------------------------------------------------- the oracle
def _answers_file(tmp_path: Path, ds: ReidDataset, rows: list[tuple[int, int, str]]) -> Path:
    ids = ds.metadata.image_id.to_numpy()
    train = np.flatnonzero(ds.metadata.role == "train")
    path = tmp_path / "answers.csv"
    pd.DataFrame({"image_id_u": [ids[train[u]] for u, _, _ in rows], "image_id_v": [ids[train[v]] for _, v, _ in rows],
                  "answer": [a for _, _, a in rows]}).to_csv(path, index=False)
    return path


def test_replayed_answers_unsure_is_no_constraint_and_missing_are_simulated(tmp_path):
    ds = toy()
    path = _answers_file(tmp_path, ds, [(0, 1, "different"), (0, 4, "unsure"), (4, 5, "same")])
    script = {1: [(0, 1), (0, 4), (4, 5)], 2: [], 3: [(8, 9), (0, 8)]}
    trial = Trial(cfg_of(cycles=3, oracle=f"replay:{path}?missing=simulate"), ds, sampler=Scripted(script),
                  trainer=RecTrainer())
    df = trial.run()
    a = trial.constraints.answers
    assert a[["u", "v"]].to_numpy().tolist() == [[0, 1], [4, 5], [8, 9], [0, 8]]
    assert a.same.tolist() == [False, True, True, False]  # file 'different' overrides the truth (same id)
    assert a.cycle.tolist() == [1, 1, 3, 3]
    assert df.oracle_simulated.tolist()[1:] == [0, 0, 2]
    assert df.pairs_asked.tolist() == [0, 2, 0, 2]


def test_simulated_answers_with_errors_use_the_trial_seed():
    ds = toy()
    cfg = cfg_of(cycles=2, oracle_error_rate=0.3, seed=11)
    trial = Trial(cfg, ds, sampler=Scripted(), trainer=RecTrainer())
    trial.run()
    a = trial.constraints.answers
    pairs = a[["u", "v"]].to_numpy()
    want = SimulatedOracle(ds.identities[trial.train_idx], error_rate=0.3, seed=11).query(pairs)
    assert a.same.tolist() == want.tolist()
    truth = ds.identities[trial.train_idx][pairs[:, 0]] == ds.identities[trial.train_idx][pairs[:, 1]]
    assert (want != truth).any()  # some answers really were flipped
    other_seed = SimulatedOracle(ds.identities[trial.train_idx], error_rate=0.3, seed=0).query(pairs)
    assert (want != other_seed).any()


def test_replay_with_simulated_misses_needs_identities(tmp_path):
    ds = toy(unknown=True, name="anon", role=False, n_ids=3)
    path = tmp_path / "a.csv"
    pd.DataFrame({"image_id_u": ["img000"], "image_id_v": ["img001"], "answer": ["same"]}).to_csv(path, index=False)
    with pytest.raises(AlreidError) as err:
        Trial(cfg_of(cycles=1, oracle=f"replay:{path}?missing=simulate"), ds, trainer=RecTrainer())
    assert "needs identities to simulate from" in str(err.value)


# ------------------------------------------------------------------------------------ exact errors
def test_exact_error_messages(tmp_path):
    trial = Trial(cfg_of(cycles=1), toy(), sampler=Scripted(), trainer=RecTrainer())
    with pytest.raises(AlreidError) as err:
        trial.answer([(0, 1)], [True])
    assert str(err.value) == "no pairs are pending: call next_pairs() first"
    trial.next_pairs()
    with pytest.raises(AlreidError) as err:
        trial.answer([(0, 1), (2, 3), (4, 5)], [True, False])
    assert str(err.value) == "3 pairs but 2 answers"
    trial.run()
    with pytest.raises(AlreidError) as err:
        trial.next_pairs()
    assert str(err.value) == "the trial has run all its 1 cycles"
    with pytest.raises(AlreidError) as err:
        Trial(cfg_of(protocol={"camera_column": "nocam"}), toy(), trainer=RecTrainer())
    assert str(err.value) == "camera column 'nocam' is not in the metadata of 'toy'"
    one = toy(unknown=True, name="one", role=False)
    one = ReidDataset("one", one.metadata.iloc[:1], one.features[:1])
    with pytest.raises(AlreidError) as err:
        Trial(cfg_of(), one, trainer=RecTrainer())
    assert str(err.value) == "dataset 'one' has fewer than 2 training images"
    anon = Trial(cfg_of(cycles=1), toy(unknown=True, name="anon", n_ids=3, role=False), sampler=Scripted(),
                 trainer=RecTrainer())
    anon.run_cycle()
    with pytest.raises(AlreidError) as err:
        anon.run_cycle()
    assert str(err.value) == ("dataset 'anon' has no identities to simulate answers from; answer the pairs with "
                              "'alreid annotate' or pass --oracle replay:FILE")
    with pytest.raises(AlreidError) as err:
        trial.restore(TrialState(cycle=0, constraints=ConstraintStore(5), trainer_state={}))
    assert str(err.value) == f"checkpoint holds constraints over 5 images, this trial has {N_TRAIN}"


# ------------------------------------------------------------------------------------- checkpoints
def test_checkpoint_round_trip_into_nested_folder_and_again_into_the_same(tmp_path):
    trial = Trial(cfg_of(cycles=1), toy(), sampler=Scripted(), trainer=RecTrainer())
    trial.run()
    state = trial.state()
    assert state.cycle == 1 and state.constraints is trial.constraints and state.records == trial.records
    folder = tmp_path / "a" / "b" / "ck"
    state.save(folder)
    state.save(folder)  # every cycle checkpoints into the same folder
    back = TrialState.load(folder)
    assert back.cycle == 1
    assert back.constraints.answers.equals(trial.constraints.answers) and back.constraints.n == N_TRAIN
    assert back.trainer_state["fits"] == [1] and back.trainer_state["rng"] == {"kind": "pcg", "pos": 7}
    assert np.array_equal(back.trainer_state["labels"], np.arange(4))
    assert pd.DataFrame(back.records).equals(pd.DataFrame(trial.records))


def test_resume_equals_uninterrupted_and_never_reasks(tmp_path):
    full = Trial(cfg_of(cycles=3), toy(), sampler=Scripted(), trainer=RecTrainer())
    full.run()
    first = Trial(cfg_of(cycles=1), toy(), sampler=Scripted(), trainer=RecTrainer())
    first.run()
    first.state().save(tmp_path / "ck")
    trainer = RecTrainer()
    resumed = Trial(cfg_of(cycles=3), toy(), sampler=Scripted(), trainer=trainer)
    state = TrialState.load(tmp_path / "ck")
    resumed.restore(state)
    assert resumed.next_cycle == 2 and trainer.loaded == [state.trainer_state]
    asked = resumed.constraints.answers[["u", "v"]].to_numpy()
    with pytest.raises(RepeatedQueryError):
        resumed.oracle.query(asked[:1])
    resumed.run()
    pd.testing.assert_frame_equal(strip(pd.DataFrame(full.records)), strip(pd.DataFrame(resumed.records)))
    assert full.constraints.answers.equals(resumed.constraints.answers)
    assert [i.cycle for i in trainer.inputs] == [2, 3]
