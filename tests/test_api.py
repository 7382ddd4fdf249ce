"""The public Python API: the loop is the CLI's cycle (same records), pairs carry the right image ids,
bad input raises the CLI's AlreidError subclasses, and the CLI commands give the API's records."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import alreid
from alreid.errors import AlreidError, ConfigError, ConstraintConflictError, DatasetError, UnknownPluginError

SMALL = "synthetic:n_images=300"
FAST = {"budget_pairs": 20, "trainer_params": {"iters": 20}}


def timing(columns) -> list[str]:
    """Columns that measure time (seconds*, *_per_s): they differ between two runs of the same trial."""
    return [c for c in columns if str(c).startswith("seconds") or str(c).endswith("_per_s")]


def strip(df: pd.DataFrame) -> pd.DataFrame:
    return df.drop(columns=timing(df.columns)).reset_index(drop=True)


def as_json(df: pd.DataFrame) -> pd.DataFrame:
    """The records as ``--json`` writes them: one representation of a missing value (parquet keeps None)."""
    return pd.DataFrame(json.loads(df.to_json(orient="records")))


@pytest.fixture(scope="module")
def data():
    return alreid.load_dataset(SMALL)


# ------------------------------------------------------------------------------------------ lazy names
def test_public_names_load_lazily_without_heavy_imports():
    code = ("import sys, alreid; names = [getattr(alreid, n) for n in alreid.__all__]; "
            "print(','.join(m for m in ('torch', 'ray', 'mlflow', 'faiss', 'sklearn') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
    assert set(alreid.__all__) <= set(dir(alreid))
    with pytest.raises(AttributeError, match="no attribute 'run_trail'"):
        alreid.run_trail  # noqa: B018


# ------------------------------------------------------------------------------------------ the loop
def test_loop_by_hand_with_the_simulator_equals_run_trial_and_the_harness(data):
    """No second cycle: three ways of running the same trial give the same records."""
    from alreid.harness.settings import make_trial_config
    from alreid.harness.trial import run_trial as harness_run

    whole = strip(alreid.run_trial(data, method="aas", params={"epsilon": 0.4}, seed=3, cycles=2, progress=False,
                                   **FAST))
    loop = alreid.ActiveLearningLoop(data, sampler=alreid.get_sampler("aas", epsilon=0.4),
                                     trainer=alreid.get_trainer("head", iters=20), seed=3, cycles=2, budget_pairs=20)
    while not loop.done:
        pairs = loop.next_pairs()
        loop.answer(pairs, loop.oracle_answers(pairs))
        loop.train_and_evaluate()
    pd.testing.assert_frame_equal(strip(loop.records), whole)
    cfg = make_trial_config({"dataset": SMALL, "method": "aas", "params": {"epsilon": 0.4}, "seed": 3, "cycles": 2,
                             **FAST})
    harness = strip(harness_run(cfg, dataset=data))
    pd.testing.assert_frame_equal(harness, whole[harness.columns])
    assert whole["cycle"].tolist() == [0, 1, 2] and {"cycle", "mAP"} <= set(whole.columns)


def test_pairs_frame_names_the_right_images_and_answers_are_stored_as_given(data):
    loop = alreid.ActiveLearningLoop(data, sampler="random", seed=1, cycles=1, **FAST)
    pairs = loop.next_pairs()
    assert loop.cycle == 1 and len(loop.records) == 1  # cycle 0 was evaluated first
    assert 0 < len(pairs) <= loop.budget == 20
    rows = loop.trial.train_idx  # independent lookup: pool index -> dataset row -> image id
    ids = data.metadata["image_id"].to_numpy()
    assert (pairs.row_u.to_numpy() == rows[pairs.u]).all() and (pairs.row_v.to_numpy() == rows[pairs.v]).all()
    assert (pairs.image_id_u.to_numpy() == ids[rows[pairs.u]]).all()
    assert (pairs.image_id_v.to_numpy() == ids[rows[pairs.v]]).all()
    assert len({tuple(sorted(p)) for p in pairs[["u", "v"]].to_numpy().tolist()}) == len(pairs)
    pd.testing.assert_frame_equal(loop.next_pairs(), pairs)  # pending pairs stay the same until trained on
    # a person's answers (here: the opposite of the truth for the first pair) are stored as given
    truth = data.identities[rows[pairs.u]] == data.identities[rows[pairs.v]]
    given = truth.copy()
    given[0] = not given[0]
    loop.answer(pairs.iloc[:5], given[:5].astype(int))  # 1/0 work too, and answers may come in parts
    loop.answer(pairs.iloc[5:], given[5:].tolist())
    rec = loop.train_and_evaluate()
    assert rec["cycle"] == 1 and rec["pairs_asked"] == len(pairs) and rec["pairs_ml"] == int(given.sum())
    got = loop.answers
    assert got["same"].tolist() == given.tolist()
    assert got["image_id_u"].tolist() == pairs.image_id_u.tolist()
    assert "identity" not in loop.pool.columns and (loop.pool["row"].to_numpy() == rows).all()
    assert loop.done
    with pytest.raises(AlreidError, match="run all its 1 cycles"):
        loop.next_pairs()


def test_a_sampler_object_is_copied_and_gives_the_records_of_its_name(data):
    sampler = alreid.get_sampler("random")
    by_object = strip(alreid.run_trial(data, method=sampler, seed=2, cycles=1, progress=False, **FAST))
    by_name = strip(alreid.run_trial(data, method="random", seed=2, cycles=1, progress=False, **FAST))
    pd.testing.assert_frame_equal(by_object, by_name)
    loop = alreid.ActiveLearningLoop(data, sampler=sampler, seed=2, cycles=1, **FAST)
    assert loop.sampler is not sampler and loop.sampler.get_params() == sampler.get_params()


def test_a_custom_sampler_class_runs_in_the_loop(data):
    """A researcher's own sampler, defined in a notebook and never registered."""
    from alreid.samplers.base import Sampler

    class FirstPairs(Sampler):
        name = "first_pairs"

        def __init__(self, *, stride: int = 1) -> None:
            self.stride = stride

        def _select(self, ctx, budget, rng):
            u = np.arange(0, 2 * budget * self.stride, 2 * self.stride)[:budget]
            return np.stack([u, u + 1], axis=1)

    loop = alreid.ActiveLearningLoop(data, sampler=FirstPairs(stride=2), seed=0, cycles=1, budget_pairs=5,
                                     trainer_params={"iters": 20})
    pairs = loop.next_pairs()
    assert pairs[["u", "v"]].to_numpy().tolist() == [[0, 1], [4, 5], [8, 9], [12, 13], [16, 17]]
    loop.ask_oracle()
    assert loop.train_and_evaluate()["method"] == "first_pairs"


@pytest.mark.parametrize("call,error,fragment", [
    (lambda d: alreid.get_sampler("ass"), UnknownPluginError, "did you mean aas"),
    (lambda d: alreid.get_sampler("aas", epsilon=-1), ConfigError, "epsilon"),
    (lambda d: alreid.get_trainer("head", iterz=3), ConfigError, "iterz"),
    (lambda d: alreid.run_trial(d, method="aas", params={"eps": 1}, progress=False), ConfigError, "eps"),
    (lambda d: alreid.run_trial(d, cycles=-1, progress=False), ConfigError, "cycles"),
    (lambda d: alreid.run_trial(d, budgett=3, progress=False), ConfigError, "unknown key 'budgett'"),
    (lambda d: alreid.run_trial(42), DatasetError, "got int"),
    (lambda d: alreid.load_dataset("embeddings:/no/such/folder"), DatasetError, "/no/such/folder"),
    (lambda d: alreid.ActiveLearningLoop(d, sampler=alreid.get_sampler("aas"), params={"epsilon": 0.3}),
     ConfigError, "already an object"),
    (lambda d: alreid.ActiveLearningLoop(d, sampler=object()), ConfigError, "lacks select()"),
    (lambda d: alreid.run_benchmark({"name": "x", "datasets": ["synthetic"], "methods": ["aas"], "sedes": 2}),
     ConfigError, "sedes"),
    (lambda d: alreid.load_results("/no/such/results"), AlreidError, "does not exist"),
])
def test_bad_input_raises_the_clis_one_line_errors(data, call, error, fragment):
    with pytest.raises(error, match=fragment) as info:
        call(data)
    assert "\n" not in str(info.value)


def test_bad_answers_are_refused_before_anything_is_stored(data):
    loop = alreid.ActiveLearningLoop(data, sampler="random", seed=0, cycles=1, **FAST)
    pairs = loop.next_pairs()
    with pytest.raises(ConfigError, match=f"{len(pairs)} pairs but 3 answers"):
        loop.answer(pairs, [True, False, True])
    with pytest.raises(ConfigError, match="True/False"):
        loop.answer(pairs, ["yes"] * len(pairs))
    with pytest.raises(ConfigError, match="out of range"):
        loop.answer([[0, loop.trial.n]], [True])
    with pytest.raises(ConfigError, match="'u' and 'v'"):
        loop.answer(pairs.rename(columns={"u": "a"}), [True] * len(pairs))
    assert len(loop.trial.constraints) == 0
    # an answer that contradicts earlier ones: a = b and b = c, then a != c
    loop.answer([[0, 1], [1, 2]], [True, True])
    with pytest.raises(ConstraintConflictError):
        loop.answer([[0, 2]], [False])


# ------------------------------------------------------------------------------------------ results
def test_load_results_tables_match_a_hand_computed_mean(tmp_path, data):
    runs = [alreid.run_trial(data, method=m, seed=s, cycles=1, progress=False, **FAST)
            for m in ("random", "none") for s in (0, 1)]
    records = pd.concat(runs, ignore_index=True)
    pd.concat(runs).to_parquet(tmp_path / "records.parquet")  # as a notebook writes it: index 0, 1, 0, 1, ...
    res = alreid.load_results(tmp_path, reference="random")
    pd.testing.assert_frame_equal(res.records, records, check_dtype=False)
    last = records[records.cycle == 1]
    for method in ("random", "none"):
        expected = 100 * last[last.method == method]["mAP"].mean()  # one dataset: mean over seeds
        assert res.summary.loc[method, "mAP"] == pytest.approx(expected)
        assert res.per_dataset.loc[data.name, method] == pytest.approx(expected)
    assert set(res.curves["method"]) == {"random", "none"} and res.metric == "mAP"
    assert res.report_paths == {}


# ------------------------------------------------------------------------------------------ CLI parity
def test_alreid_run_gives_the_records_of_run_trial(tmp_path, data):
    from alreid.cli import main as cli_main

    out = tmp_path / "run.json"
    argv = ["run", "--dataset", SMALL, "--method", "aas", "--param", "epsilon=0.4", "--seed", "1", "--cycles", "2",
            "--budget-pairs", "20", "--trainer-param", "iters=20", "--json", str(out)]
    assert cli_main(argv) == 0
    cli = strip(pd.DataFrame(json.loads(out.read_text())))
    api = strip(alreid.run_trial(SMALL, method="aas", params={"epsilon": 0.4}, seed=1, cycles=2, progress=False,
                                 **FAST))
    pd.testing.assert_frame_equal(cli[api.columns], as_json(api))  # the same JSON round trip as --json


@pytest.mark.ray
def test_alreid_bench_gives_the_records_of_run_benchmark_and_of_run_trial(tmp_path, monkeypatch):
    import yaml

    from alreid.cli import main as cli_main

    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    monkeypatch.setenv("RAY_ADDRESS", "local")  # never join a Ray instance another run left behind
    experiment = {"name": "parity", "datasets": [SMALL], "methods": ["random", "aas"], "seeds": [1], "cycles": 1,
                  **FAST}
    path = tmp_path / "parity.yaml"
    path.write_text(yaml.safe_dump(experiment))
    assert cli_main(["bench", str(path), "--no-mlflow", "--storage", str(tmp_path / "cli")]) == 0
    cli = pd.read_parquet(tmp_path / "cli" / "parity" / "records.parquet")
    result = alreid.run_benchmark(path, storage=tmp_path / "api", mlflow=False, verbose=False)
    assert sorted(result.finished) == sorted(cli.trial_key.unique()) and not result.errors
    keys = ["trial_key", "cycle"]
    api = result.records.sort_values(keys).reset_index(drop=True)
    cli = cli.sort_values(keys).reset_index(drop=True)
    drop = timing(api.columns) + ["trial_id"]  # Ray's trial ids differ between runs
    assert sorted(api.columns) == sorted(cli.columns)  # their order follows which trial finished first
    columns = sorted(set(api.columns) - set(drop))
    pd.testing.assert_frame_equal(api[columns], cli[columns])
    assert (result.results_dir / "report" / "summary.md") == result.report_paths["summary.md"]
    assert result.report_paths["summary.md"].is_file()
    # and each benchmark trial is the trial run_trial gives for its method and seed
    for (method, seed), rows in cli.groupby(["method", "seed"]):
        alone = strip(alreid.run_trial(SMALL, method=method, seed=int(seed), cycles=1, progress=False, **FAST))
        pd.testing.assert_frame_equal(as_json(strip(rows)[alone.columns]), as_json(alone))


def test_without_identities_the_loop_takes_a_persons_answers_only():
    """Unlabelled data (every identity 'unknown'): no simulator to ask, but a person's answers train the model."""
    from alreid.datasets.base import ReidDataset

    rng = np.random.default_rng(0)
    meta = pd.DataFrame({"image_id": range(120), "identity": "unknown", "path": [f"img{i}.jpg" for i in range(120)]})
    ds = ReidDataset("unlabelled", meta, rng.standard_normal((120, 16)).astype(np.float32))
    loop = alreid.ActiveLearningLoop(ds, sampler="random", cycles=1, budget_pairs=5, trainer_params={"iters": 5})
    pairs = loop.next_pairs()
    assert len(pairs) == 5 and pairs.path_u.tolist() == [f"img{r}.jpg" for r in pairs.row_u]
    with pytest.raises(AlreidError, match="no identities to simulate"):
        loop.oracle_answers(pairs)
    loop.answer(pairs, [True, False, False, False, False])
    rec = loop.train_and_evaluate()
    assert rec["cycle"] == 1 and rec["pairs_asked"] == 5 and loop.answers["same"].tolist() == [True] + [False] * 4
