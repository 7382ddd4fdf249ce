"""export + --oracle replay: reproduce the annotated trial; the simulated oracle agrees when answers are true."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.annotate.helpers import true_identity

COMPARED = ("cycle", "pairs_asked", "pairs_ml", "pairs_cum", "n_clusters", "n_outliers", "mAP", "mINP", "top1", "top5",
            "BAKS", "AUC")


def answer_batch(session, client, choose):
    while (out := client.get("/api/next", params={"annotator": "ann"}).json())["pair"] is not None:
        pair = out["pair"]
        u, v = (im["image_id"] for im in pair["images"])
        r = client.post("/api/answer", json={"pair_id": pair["pair_id"], "answer": choose(pair["pair_id"], u, v),
                                             "annotator": "ann"})
        assert r.status_code == 200, r.text
    assert session.state() == "batch_done"


def truth(_pid, u, v):
    return "same" if true_identity(u) == true_identity(v) else "different"


def records(recs):
    return [{k: r.get(k) for k in COMPARED} for r in recs]


def run_trial(settings, **extra):
    from alreid.harness.settings import make_trial_config
    from alreid.harness.trial import Trial

    trial = Trial(make_trial_config({**settings, **extra}))
    trial.run()
    return trial


@pytest.fixture
def annotated(make_session, known_photos, tmp_path):
    """Two cycles answered truthfully through the API, exported as Parquet and CSV."""
    from alreid.annotate.export import export_answers

    settings = {"dataset": known_photos, "method": "random", "cycles": 2, "budget_pairs": 6}
    s, c = make_session(known_photos, cycles=2, budget_pairs=6)
    for _ in range(2):
        answer_batch(s, c, truth)
        assert s.next_cycle(wait=True)["training"]["error"] is None
    assert s.state() == "finished"
    pq, csv = tmp_path / "answers.parquet", tmp_path / "answers.csv"
    export_answers(s.store.path, pq)
    export_answers(s.store.path, csv)
    return s, settings, pq, csv


def test_export_has_the_constraint_store_columns_and_every_batch_pair(annotated):
    s, _, pq, csv = annotated
    df = pd.read_parquet(pq)
    assert list(df.columns[:4]) == ["u", "v", "same", "cycle"]
    batch_pairs = [(p.u, p.v, p.cycle) for p in s.store.all_pairs()]
    assert list(zip(df.u, df.v, df.cycle)) == batch_pairs  # batch order, both cycles
    # answers agree with the trial's constraints (implied ones included), and with the identities
    cons = s.trial.constraints.answers
    assert list(zip(cons.u, cons.v, cons.same)) == list(zip(df.u, df.v, df.same.astype(bool)))
    ids = df[["image_id_u", "image_id_v"]].to_numpy()
    assert df.same.tolist() == [true_identity(a) == true_identity(b) for a, b in ids]
    assert set(df.source) <= {"annotator", "implied"} and (df.annotator[df.source == "annotator"] == "ann").all()
    back = pd.read_csv(csv)
    assert back[["u", "v", "cycle", "answer"]].equals(df[["u", "v", "cycle", "answer"]])


def test_replay_reproduces_the_annotated_records_and_the_simulated_ones(annotated):
    s, settings, pq, csv = annotated
    session_recs = records(s.trial.records)
    simulated = records(run_trial(settings).records)
    for f in (pq, csv):
        replayed = run_trial(settings, oracle=f"replay:{f}")
        assert records(replayed.records) == session_recs
    assert session_recs == simulated
    assert np.isfinite(session_recs[-1]["mAP"]) and session_recs[-1]["pairs_cum"] == 12


def test_replay_refuses_a_pair_it_has_no_answer_for_or_simulates_and_counts(annotated):
    from alreid.oracle import MissingAnswerError

    _, settings, pq, _ = annotated
    with pytest.raises(MissingAnswerError, match="no answer for 6 of the 6 pairs.*missing=simulate"):
        run_trial(settings, cycles=3, oracle=f"replay:{pq}")
    trial = run_trial(settings, cycles=3, oracle=f"replay:{pq}?missing=simulate")
    assert [r["oracle_simulated"] for r in trial.records[1:]] == [0, 0, 6]


def test_constraints_only_export_loads_in_the_constraint_store(annotated, tmp_path):
    from alreid.annotate.export import export_answers
    from alreid.constraints import ConstraintStore

    s, *_ = annotated
    out = tmp_path / "constraints.parquet"
    export_answers(s.store.path, out, constraints_only=True)
    loaded = ConstraintStore.from_parquet(out)
    assert loaded.n == s.trial.n
    assert loaded.answers.equals(s.trial.constraints.answers)


def test_unsure_and_wrong_answers_replay_exactly(make_session, known_photos, tmp_path):
    """A person who says 'not sure' and makes a mistake: the replay gives their records, not the simulator's."""
    from alreid.annotate.export import export_answers

    s, c = make_session(known_photos, cycles=1, budget_pairs=6)
    first = [p.pair_id for p in s.store.batch(1)]

    def person(pid, u, v):
        if pid == first[0]:
            return "unsure"
        if pid == first[1]:
            return "different" if truth(pid, u, v) == "same" else "same"  # a mistake
        return truth(pid, u, v)

    answer_batch(s, c, person)
    s.next_cycle(wait=True)
    out = tmp_path / "a.parquet"
    df = export_answers(s.store.path, out)
    assert df.same.isna().sum() == 1 and (df.answer == "unsure").sum() == 1
    settings = {"dataset": known_photos, "method": "random", "cycles": 1, "budget_pairs": 6}
    replayed = run_trial(settings, oracle=f"replay:{out}")
    assert records(replayed.records) == records(s.trial.records)
    assert replayed.records[-1]["pairs_asked"] == 5  # the 'not sure' pair is no constraint
    assert replayed.constraints.answers.equals(s.trial.constraints.answers)


def test_cli_run_with_replay_and_bad_oracle(annotated, tmp_path, capsys):
    from alreid.cli import main

    _, settings, pq, _ = annotated
    out = tmp_path / "rec.json"
    assert main(["run", "--dataset", settings["dataset"], "--method", "random", "--cycles", "2", "--budget-pairs", "6",
                 "--oracle", f"replay:{pq}", "--json", str(out)]) == 0
    assert main(["run", "--dataset", settings["dataset"], "--oracle", f"replay:{tmp_path / 'nope.parquet'}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nope.parquet does not exist" in err[0]
    assert main(["run", "--dataset", settings["dataset"], "--oracle", "human"]) == 2
    assert "replay:FILE" in capsys.readouterr().err


def test_cli_export(annotated, tmp_path, capsys):
    from alreid.cli import main

    s, _, pq, _ = annotated
    out = tmp_path / "cli.csv"
    assert main(["annotate", "export", "--store", str(s.store.path), "--out", str(out)]) == 0
    assert pd.read_csv(out)[["u", "v", "answer"]].equals(pd.read_parquet(pq)[["u", "v", "answer"]])
    assert main(["annotate", "export", "--store", str(s.store.path), "--out", str(tmp_path / "x.json")]) == 2
    assert main(["annotate", "export", "--store", str(tmp_path / "none.sqlite"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and ".parquet or .csv" in err[0] and "does not exist" in err[1]
