"""Summary and per-dataset tables against numbers worked out by hand, plus the report files."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from alreid.errors import AlreidError
from alreid.harness.tables import (METRIC_COLUMNS, Report, load_records, per_dataset_table, render_terminal_table,
                                   summary_markdown, summary_table, write_report)

# mAP at the final cycle (cycle 1), per dataset -> method -> (seed 0, seed 1)
FINAL_MAP = {
    "A": {"aas": (0.50, 0.60), "random": (0.40, 0.44), "none": (0.30, 0.30)},
    "B": {"aas": (0.70, 0.74), "random": (0.50, 0.60), "none": (0.35, 0.45)},
}
BUDGET = {"aas": 0.5, "random": 1.0, "none": 0.0}  # budget_used_pct at cycle 1


def make_records() -> pd.DataFrame:
    rows = []
    for ds, methods in FINAL_MAP.items():
        for method, per_seed in methods.items():
            for seed, final in enumerate(per_seed):
                for cycle in (0, 1):
                    rows.append({
                        "dataset": ds, "method": method, "seed": seed, "cycle": cycle,
                        "mAP": 0.20 if cycle == 0 else final, "mINP": 0.10, "top1": 0.5, "top3": 0.6, "top5": 0.7,
                        "top10": 0.8, "BAKS": 0.4, "AUC": math.nan, "pairs_asked": 5 * cycle,
                        "pairs_cum": 5 * cycle, "pairs_total": 1000,
                        "budget_used_pct": BUDGET[method] * cycle, "seconds": 0.1,
                        "pool_size": 7, "trial_id": f"{ds}-{method}-{seed}", "variant": "default",
                    })
    return pd.DataFrame(rows)


SQRT2 = math.sqrt(2)


def test_summary_cells_by_hand():
    s = summary_table(make_records())
    assert list(s.index) == ["aas", "random", "none"]  # order of appearance, not alphabetical
    assert set(METRIC_COLUMNS) <= set(s.columns)
    # aas: per-dataset seed means .55 and .72 -> mean .635, std over datasets |.55-.72|/sqrt(2)
    assert s.at["aas", "mAP"] == pytest.approx(63.5)
    assert s.at["aas", "mAP_std"] == pytest.approx(17.0 / SQRT2)
    # random: .42 and .55
    assert s.at["random", "mAP"] == pytest.approx(48.5)
    assert s.at["random", "mAP_std"] == pytest.approx(13.0 / SQRT2)
    # none: .30 and .40
    assert s.at["none", "mAP"] == pytest.approx(35.0)
    assert s.at["none", "mAP_std"] == pytest.approx(10.0 / SQRT2)
    assert s.at["aas", "budget_used_pct"] == pytest.approx(0.5)  # already a percentage: not scaled
    assert s.at["aas", "top10"] == pytest.approx(80.0)
    assert math.isnan(s.at["aas", "AUC"])
    assert s.at["aas", "n_datasets"] == 2 and s.at["aas", "n_trials"] == 4


def test_summary_at_given_cycle_and_single_dataset_spread_over_seeds():
    recs = make_records()
    s0 = summary_table(recs, cycle=0)
    assert s0["mAP"].tolist() == pytest.approx([20.0, 20.0, 20.0])
    one = summary_table(recs[recs["dataset"] == "A"])
    # one dataset: std over the seeds, .50 and .60
    assert one.at["aas", "mAP"] == pytest.approx(55.0)
    assert one.at["aas", "mAP_std"] == pytest.approx(10.0 / SQRT2)
    with pytest.raises(AlreidError, match="cycle 7"):
        summary_table(recs, cycle=7)


def test_last_cycle_is_per_trial():
    """A trial that stopped early contributes its own final cycle, not a missing value."""
    recs = make_records()
    extra = recs[(recs["method"] == "aas") & (recs["cycle"] == 1)].copy()
    extra["cycle"], extra["mAP"] = 2, 1.0  # aas trials ran one more cycle
    s = summary_table(pd.concat([recs, extra], ignore_index=True))
    assert s.at["aas", "mAP"] == pytest.approx(100.0)
    assert s.at["random", "mAP"] == pytest.approx(48.5)


def test_label_column_names_the_rows():
    recs = make_records()
    recs["label"] = recs["method"].map({"aas": "AAS (k=5)", "random": "Random", "none": "SpCL"})
    assert list(summary_table(recs).index) == ["AAS (k=5)", "Random", "SpCL"]


def test_per_dataset_table_by_hand():
    t = per_dataset_table(make_records(), "mAP")
    assert list(t.index) == ["A", "B"]
    assert t.at["A", "aas"] == pytest.approx(55.0)
    assert t.at["B", "random"] == pytest.approx(55.0)
    assert t.at["B", "none"] == pytest.approx(40.0)
    assert t.at["A", "aas_std"] == pytest.approx(10.0 / SQRT2)
    assert t.at["A", "none_std"] == pytest.approx(0.0)


def test_best_marked_in_markdown_and_terminal():
    s = summary_table(make_records())
    md = summary_markdown(s)
    assert "**63.50 ± 12.02**" in md
    assert "48.50 ± 9.19" in md and "**48.50" not in md
    # ties at display precision are all best
    assert md.count("**80.00 ± 0.00**") == 3
    # budget is a cost: never bold, tiny budgets keep digits
    assert "**0.00" not in md and "**0.50" not in md and "**1.00" not in md
    term = render_terminal_table(s)
    assert "63.50±12.02*" in term and "48.50±9.19*" not in term
    assert "AUC" not in term  # a metric missing for every method is left out of the terminal table


def test_empty_and_missing_columns_are_user_errors(tmp_path):
    with pytest.raises(AlreidError, match="empty"):
        summary_table(make_records().iloc[0:0])
    with pytest.raises(AlreidError, match="seed"):
        summary_table(make_records().drop(columns=["seed"]))
    with pytest.raises(AlreidError, match="empty"):
        write_report(make_records().iloc[0:0], tmp_path)


def test_write_report_files(tmp_path):
    rep = write_report(make_records(), tmp_path / "report", reference="aas")
    assert isinstance(rep, Report)
    expected = ["summary.md", "summary.csv", "summary.tex", "per_dataset.md", "per_dataset.csv", "per_dataset.tex",
                "significance.md", "significance.csv", "curves_mAP.png", "curves_budget.png", "cd_diagram.png"]
    for name in expected:
        path = tmp_path / "report" / name
        assert path.is_file() and path.stat().st_size > 0, name
        assert rep.paths[name] == path
    for png in ("curves_mAP.png", "curves_budget.png", "cd_diagram.png"):
        assert (tmp_path / "report" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for tex in ("summary.tex", "per_dataset.tex"):
        assert "\\begin{tabular}" in (tmp_path / "report" / tex).read_text()
    assert "\\textbf{63.50 $\\pm$ 12.02}" in (tmp_path / "report" / "summary.tex").read_text()
    assert rep.summary_markdown == (tmp_path / "report" / "summary.md").read_text()
    assert rep.summary.at["aas", "mAP"] == pytest.approx(63.5)
    sig = (tmp_path / "report" / "significance.md").read_text()
    assert "too few datasets for p < 0.05 (minimum attainable p = 0.5)" in sig  # 2 datasets: 2 / 2**2
    assert "Friedman" in sig and "critical difference" in sig
    assert {"wilcoxon_p/aas_vs_random", "wilcoxon_p_holm/aas_vs_random", "friedman_p"} <= set(rep.pvalues)
    csv = pd.read_csv(tmp_path / "report" / "significance.csv")
    assert {"wilcoxon", "friedman", "nemenyi"} <= set(csv["test"])
    back = pd.read_csv(tmp_path / "report" / "summary.csv", index_col=0)
    assert back.at["none", "mAP"] == pytest.approx(35.0)


def test_report_without_reference_or_enough_methods(tmp_path):
    recs = make_records()
    rep = write_report(recs, tmp_path / "r1", reference="lbas")
    assert rep.wilcoxon is None and not any(k.startswith("wilcoxon") for k in rep.pvalues)
    assert any("'lbas' is not in the records" in n for n in rep.notes)
    assert "Wilcoxon skipped" in (tmp_path / "r1" / "significance.md").read_text()
    two = recs[recs["method"] != "none"]
    rep2 = write_report(two, tmp_path / "r2")
    assert "cd_diagram.png" not in rep2.paths and not (tmp_path / "r2" / "cd_diagram.png").exists()
    assert "friedman_p" not in rep2.pvalues
    assert "at least 3 methods" in (tmp_path / "r2" / "significance.md").read_text()


def test_load_records(tmp_path):
    recs = make_records()
    exp = tmp_path / "results" / "exp1"
    exp.mkdir(parents=True)
    recs.to_parquet(exp / "records.parquet", index=False)
    assert len(load_records(exp)) == len(recs)
    recs.to_csv(tmp_path / "r.csv", index=False)
    assert summary_table(load_records(tmp_path / "r.csv")).at["aas", "mAP"] == pytest.approx(63.5)
    with pytest.raises(AlreidError, match="no records.parquet"):
        load_records(tmp_path / "results")
    with pytest.raises(AlreidError, match="does not exist"):
        load_records(tmp_path / "nope.parquet")
    recs.drop(columns=["dataset", "cycle"]).to_parquet(tmp_path / "bad.parquet", index=False)
    with pytest.raises(AlreidError, match="dataset, cycle"):
        load_records(tmp_path / "bad.parquet")
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(AlreidError, match=".parquet or .csv"):
        load_records(tmp_path / "x.json")


def test_nan_metric_is_skipped_not_propagated():
    recs = make_records()
    recs["AUC"] = np.where(recs["dataset"] == "A", 0.9, np.nan)
    s = summary_table(recs)
    assert s.at["aas", "AUC"] == pytest.approx(90.0)


def test_latex_escapes_names(tmp_path):
    recs = make_records()
    recs["label"] = recs["method"].replace({"aas": "AAS_v2 & co"})
    write_report(recs, tmp_path, reference="AAS_v2 & co")
    tex = (tmp_path / "per_dataset.tex").read_text()
    assert "AAS\\_v2 \\& co" in tex and "\\#wins" in tex
    assert "AAS\\_v2 \\& co" in (tmp_path / "summary.tex").read_text()
