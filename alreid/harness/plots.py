"""Figures for the benchmark report: learning curves per cycle, label-efficiency curves and the
critical-difference diagram.

Records from several datasets are drawn one panel per dataset (:func:`plot_curve_panels`,
:func:`plot_label_efficiency`): datasets differ in scale (a 5 % and a 60 % mAP), so a mean over
datasets with a band spanning them says little about any method.

Figures are drawn on a bare ``matplotlib.figure.Figure`` with an Agg canvas, so nothing here touches
pyplot's global state or needs a display (workers and CI are headless), and matplotlib is imported only
when a figure is actually made.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from alreid.errors import AlreidError


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=120)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", bbox_inches="tight")
    return path


def plot_curves(curves: pd.DataFrame, path: str | Path, *, ylabel: str, title: str = "") -> Path:
    """One line per method over AL cycles with a shaded ±std band (Figure-3 style).

    ``curves`` is :func:`alreid.harness.stats.curve_summary` output: columns method, cycle, mean, std.
    """
    fig = _figure(6.0, 4.0)
    ax = fig.add_subplot(1, 1, 1)
    for method, part in curves.groupby("method", sort=False):
        part = part.sort_values("cycle")
        x, mean, std = part["cycle"].to_numpy(float), part["mean"].to_numpy(float), part["std"].fillna(0).to_numpy(float)
        (line,) = ax.plot(x, mean, marker="o", markersize=3, label=str(method))
        ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.15, linewidth=0)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("AL cycle")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    if len(curves):
        ax.legend(fontsize="small", frameon=False)
    return _save(fig, path)


def _cd_bar(fig: Any, ax: Any, start: float, cd: float) -> None:
    """The CD scale bar, drawn in points above the rank tick labels so the two never overlap."""
    from matplotlib.transforms import offset_copy

    bar = offset_copy(ax.transData, fig=fig, y=26, units="points")
    ax.plot([start, start + cd], [0, 0], color="k", linewidth=2, transform=bar, clip_on=False)
    text = offset_copy(ax.transData, fig=fig, y=30, units="points")
    ax.text(start + cd / 2, 0, f"CD = {cd:.2f}", ha="center", va="bottom", fontsize="small", transform=text,
            clip_on=False)


def plot_cd_diagram(ranks: pd.Series, nemenyi: pd.DataFrame, cd: float, path: str | Path, *,
                    alpha: float = 0.05) -> Path:
    """Critical-difference diagram: average ranks, with methods Nemenyi cannot separate joined by a bar."""
    import scikit_posthocs as sp

    fig = _figure(7.0, 1.2 + 0.35 * len(ranks))
    ax = fig.add_subplot(1, 1, 1)
    sp.critical_difference_diagram(ranks, nemenyi, alpha=alpha, ax=ax)
    if np.isfinite(cd):
        _cd_bar(fig, ax, float(ranks.min()), cd)
    fig.text(0.5, 0.0, f"average rank (1 = best); a bar joins methods Nemenyi cannot separate at alpha = {alpha:g}",
             ha="center", va="top", fontsize="small")
    return _save(fig, path)


# --------------------------------------------------------------------------------- per-dataset panels
def _panel_grid(fig: Any, n: int) -> list[Any]:
    cols = min(n, 3)
    rows = int(np.ceil(n / cols)) if n else 1
    return [fig.add_subplot(rows, cols, i + 1) for i in range(max(n, 1))]


def curves_by_dataset(records: pd.DataFrame, column: str) -> dict[str, pd.DataFrame]:
    """``{dataset: curve_summary of that dataset}``: per method and cycle, mean and std over seeds."""
    from alreid.harness import stats

    return {str(d): stats.curve_summary(part, column)
            for d, part in records.groupby(records["dataset"].astype(str), sort=False)}


def plot_curve_panels(panels: dict[str, pd.DataFrame], path: str | Path, *, ylabel: str, title: str = "") -> Path:
    """:func:`plot_curves` once per dataset, side by side (bands = std over seeds of that dataset)."""
    from matplotlib.ticker import MaxNLocator

    n = len(panels)
    cols = min(max(n, 1), 3)
    fig = _figure(4.2 * cols, 3.4 * int(np.ceil(max(n, 1) / cols)))
    axes = _panel_grid(fig, n)
    for ax, (dataset, curves) in zip(axes, panels.items()):
        for method, part in curves.groupby("method", sort=False):
            part = part.sort_values("cycle")
            x, mean = part["cycle"].to_numpy(float), part["mean"].to_numpy(float)
            std = part["std"].fillna(0).to_numpy(float)
            (line,) = ax.plot(x, mean, marker="o", markersize=3, label=str(method))
            ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.15, linewidth=0)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(dataset, fontsize="medium")
        ax.set_xlabel("AL cycle")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    if n:
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=min(len(labels), 6),
                   fontsize="small", frameon=False)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


_BUDGET_IN_LABEL = re.compile(r"budget_fraction=[^,\]]*,?")


def line_label(label: str) -> str:
    """A row label without its ``budget_fraction`` sweep coordinate: ``aas[budget_fraction=0.001]`` -> ``aas``."""
    out = _BUDGET_IN_LABEL.sub("", str(label)).replace(",]", "]")
    return out[:-2] if out.endswith("[]") else out


def label_efficiency_frame(records: pd.DataFrame, metric: str = "mAP") -> pd.DataFrame:
    """Final-cycle ``metric`` against the fraction of all pairs asked, per dataset, line and budget.

    Columns: dataset, line (row label without its budget coordinate), budget_fraction (the setting;
    NaN when the records have no such column), used_pct (pairs asked over all cycles, % of all
    pairs: what was spent, not what was offered), mean, std (over seeds, in display units), n.
    """
    from alreid.harness import stats

    df = stats.normalise(records)
    stats._check_metric(df, metric)
    if "budget_used_pct" not in df.columns:
        raise AlreidError("label-efficiency needs 'budget_used_pct' in the records (pairs asked / all pairs)")
    if "budget_fraction" not in df.columns:
        df["budget_fraction"] = np.nan
    last = df["cycle"] == df.groupby(["dataset", stats._LABEL, "seed", "budget_fraction"], dropna=False,
                                     sort=False)["cycle"].transform("max")
    final = df[last].copy()
    final["line"] = final[stats._LABEL].map(line_label)
    final["score"] = final[metric].astype(float) * stats.display_scale(metric)
    g = final.groupby(["dataset", "line", "budget_fraction"], sort=False, dropna=False)
    out = pd.DataFrame({"used_pct": g["budget_used_pct"].mean(), "mean": g["score"].mean(),
                        "std": g["score"].std(ddof=1), "n": g["score"].count()}).reset_index()
    # datasets and lines in the records' order, points by spend
    order = {"dataset": list(pd.unique(final["dataset"])), "line": list(pd.unique(final["line"]))}
    keys = [out[c].map({v: i for i, v in enumerate(order[c])}) for c in ("dataset", "line")]
    out = out.assign(_d=keys[0], _l=keys[1]).sort_values(["_d", "_l", "used_pct"], kind="stable")
    return out.drop(columns=["_d", "_l"]).reset_index(drop=True)


def plot_label_efficiency(frame: pd.DataFrame, path: str | Path, *, ylabel: str = "final mAP (%)",
                          title: str = "label efficiency") -> Path:
    """Write :func:`label_efficiency_figure` as a PNG."""
    return _save(label_efficiency_figure(frame, ylabel=ylabel, title=title), path)


def label_efficiency_figure(frame: pd.DataFrame, *, ylabel: str = "final mAP (%)", title: str = "") -> Any:
    """One panel per dataset: final metric (mean ± std over seeds) against % of pairs asked, one line per
    row. Rows that ask no pairs (``none``, a ground-truth skyline) are horizontal dashed references,
    since a log axis has no zero. ``frame`` is :func:`label_efficiency_frame` output."""
    datasets = list(pd.unique(frame["dataset"]))
    n = len(datasets)
    cols = min(max(n, 1), 3)
    fig = _figure(4.2 * cols, 3.4 * int(np.ceil(max(n, 1) / cols)))
    axes = _panel_grid(fig, n)
    lines = list(pd.unique(frame["line"]))
    colours = {ln: f"C{i % 10}" for i, ln in enumerate(lines)}
    for ax, dataset in zip(axes, datasets):
        part = frame[frame["dataset"] == dataset]
        positive = part.loc[part["used_pct"] > 0, "used_pct"]
        for ln in lines:
            rows = part[part["line"] == ln].sort_values("used_pct")
            if rows.empty:
                continue
            if (rows["used_pct"] > 0).any():
                rows = rows[rows["used_pct"] > 0]
                ax.errorbar(rows["used_pct"], rows["mean"], yerr=rows["std"].fillna(0), marker="o", markersize=3,
                            capsize=2, color=colours[ln], label=ln)
            else:
                y = float(rows["mean"].mean())
                ax.axhline(y, linestyle="--", linewidth=1, color=colours[ln], label=ln)
        if len(positive):
            from matplotlib.ticker import FuncFormatter

            ax.set_xscale("log")
            plain = FuncFormatter(lambda v, _pos: f"{v:g}")  # 0.02, not 2 x 10^-2
            ax.xaxis.set_major_formatter(plain)
            ax.xaxis.set_minor_formatter(plain)
        ax.set_title(str(dataset), fontsize="medium")
        ax.set_xlabel("pairs asked (% of all pairs)")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3, which="both")
    handles, labels = {}, {}
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    if handles:
        fig.legend(list(handles.values()), list(handles.keys()), loc="upper center", bbox_to_anchor=(0.5, 0.0),
                   ncol=min(len(handles), 6), fontsize="small", frameon=False)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
