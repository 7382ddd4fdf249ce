"""Label-efficiency and per-dataset panel plots on hand-built records (no benchmark run needed)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from alreid.errors import AlreidError
from alreid.harness import plots


def _records() -> pd.DataFrame:
    """2 datasets x (none, random, aas, skyline) x 3 budget fractions x 2 seeds x cycles 0..2.

    Final mAP = base[dataset] + gain[method] * 100 * fraction + 0.01 * seed; the pairs used are
    ``fraction * 2`` of all pairs (two cycles) for samplers that ask, 0 for none and skyline.
    """
    base = {"lion": 0.05, "dogs": 0.60}
    gain = {"none": 0.0, "random": 0.5, "aas": 1.0, "skyline": 0.0}
    fractions = [0.0002, 0.001, 0.005]
    rows = []
    for ds in base:
        for method in gain:
            for f in fractions:
                for seed in (0, 1):
                    for cycle in (0, 1, 2):
                        asks = method in ("random", "aas")
                        final = base[ds] + gain[method] * 100 * f + 0.01 * seed + (0.2 if method == "skyline" else 0)
                        rows.append({"dataset": ds, "method": "none" if method == "skyline" else method,
                                     "label": f"{method}[budget_fraction={f}]", "seed": seed, "cycle": cycle,
                                     "budget_fraction": f,
                                     "mAP": final if cycle == 2 else base[ds],
                                     "budget_used_pct": (100 * f * cycle if asks else 0.0)})
    return pd.DataFrame(rows)


def test_line_label_strips_only_the_budget_coordinate() -> None:
    assert plots.line_label("aas[budget_fraction=0.001]") == "aas"
    assert plots.line_label("aas[budget_fraction=0.001,epsilon=0.4]") == "aas[epsilon=0.4]"
    assert plots.line_label("aas[epsilon=0.4,budget_fraction=0.001]") == "aas[epsilon=0.4]"
    assert plots.line_label("skyline") == "skyline"


def test_label_efficiency_frame_matches_hand_computed_values() -> None:
    frame = plots.label_efficiency_frame(_records(), "mAP")
    assert len(frame) == 2 * 4 * 3
    row = frame[(frame.dataset == "dogs") & (frame.line == "aas") & (frame.budget_fraction == 0.001)].iloc[0]
    # final = 0.60 + 1.0 * 0.1 + 0.01 * seed -> mean over seeds 0.705 = 70.5 %, std of (70, 71) = 0.7071
    assert row["mean"] == pytest.approx(70.5)
    assert row["std"] == pytest.approx(math.sqrt(0.5))
    assert row["used_pct"] == pytest.approx(0.2)  # cycle 2: 100 * 0.001 * 2
    assert row["n"] == 2
    none = frame[(frame.dataset == "lion") & (frame.line == "none")]
    assert (none["used_pct"] == 0).all() and none["mean"].to_numpy() == pytest.approx([5.5] * 3)


def test_label_efficiency_figure_has_one_panel_per_dataset_and_reference_lines() -> None:
    fig = plots.label_efficiency_figure(plots.label_efficiency_frame(_records(), "mAP"))
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["lion", "dogs"]
    for ax in fig.axes:
        assert ax.get_xscale() == "log"
        labels = ax.get_legend_handles_labels()[1]
        assert sorted(labels) == ["aas", "none", "random", "skyline"]
        # none and skyline ask nothing: drawn as horizontal references (2-point Line2D at one y)
        flat = [ln for ln in ax.get_lines() if ln.get_label() in ("none", "skyline")]
        assert len(flat) == 2 and all(np.ptp(ln.get_ydata()) == 0 for ln in flat)


def test_plot_label_efficiency_writes_png(tmp_path) -> None:
    path = plots.plot_label_efficiency(plots.label_efficiency_frame(_records()), tmp_path / "le.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_label_efficiency_needs_budget_column() -> None:
    with pytest.raises(AlreidError, match="budget_used_pct"):
        plots.label_efficiency_frame(_records().drop(columns="budget_used_pct"))


def test_curve_panels_one_axis_per_dataset(tmp_path) -> None:
    panels = plots.curves_by_dataset(_records(), "mAP")
    assert list(panels) == ["lion", "dogs"]
    # the band of one panel is the spread over seeds of that dataset only (0.01 between seeds -> 1 point)
    lion = panels["lion"]
    final = lion[(lion.method == "aas[budget_fraction=0.001]") & (lion.cycle == 2)].iloc[0]
    assert final["std"] == pytest.approx(math.sqrt(0.5))
    path = plots.plot_curve_panels(panels, tmp_path / "c.png", ylabel="mAP (%)")
    assert path.stat().st_size > 0


def _gap_records() -> pd.DataFrame:
    """Final mAP per (dataset, row, seed): A: none .09/.11, skyline .30/.30, aas .19/.21;
    B: none .50/.50, skyline .60/.60, aas .58/.58 -> gap closed by aas: A 50 %, B 80 %."""
    final = {("A", "none"): (0.09, 0.11), ("A", "skyline"): (0.30, 0.30), ("A", "aas"): (0.19, 0.21),
             ("B", "none"): (0.50, 0.50), ("B", "skyline"): (0.60, 0.60), ("B", "aas"): (0.58, 0.58)}
    rows = []
    for (ds, label), vals in final.items():
        for seed, v in enumerate(vals):
            for cycle in (0, 1):
                rows.append({"dataset": ds, "method": "none" if label != "aas" else "aas", "label": label,
                             "seed": seed, "cycle": cycle, "mAP": v if cycle == 1 else 0.05,
                             "budget_used_pct": 0.02 * cycle if label == "aas" else 0.0})
    return pd.DataFrame(rows)


def test_gap_closed_column_by_hand():
    from alreid.harness.tables import summary_table

    s = summary_table(_gap_records())
    assert s.at["aas", "gap_closed"] == pytest.approx(65.0)  # mean over datasets of 50 and 80
    assert s.at["aas", "gap_closed_std"] == pytest.approx(float(np.std([50, 80], ddof=1)))
    assert s.at["none", "gap_closed"] == pytest.approx(0.0)
    assert s.at["skyline", "gap_closed"] == pytest.approx(100.0)


def test_no_gap_column_without_both_reference_rows():
    from alreid.harness.tables import summary_table

    recs = _gap_records()
    s = summary_table(recs[recs["label"] != "skyline"])
    assert s["gap_closed"].isna().all()


def test_report_draws_panels_and_the_label_efficiency_figure(tmp_path, monkeypatch):
    from alreid.harness.tables import write_report

    drawn = []
    real = plots.plot_curve_panels
    monkeypatch.setattr(plots, "plot_curve_panels", lambda panels, path, **kw: drawn.append(list(panels)) or real(
        panels, path, **kw))
    report = write_report(_records(), tmp_path, reference="aas")
    assert drawn == [["lion", "dogs"], ["lion", "dogs"]]  # mAP and budget curves: one panel per dataset
    assert "label_efficiency.png" in report.paths and "label_efficiency.csv" in report.paths
    eff = pd.read_csv(tmp_path / "label_efficiency.csv")
    assert set(eff["dataset"]) == {"lion", "dogs"} and set(eff["line"]) == {"none", "random", "aas", "skyline"}
    assert "gap closed (%)" in (tmp_path / "summary.md").read_text()
