"""Figures for the benchmark report: learning curves per cycle and the critical-difference diagram.

Figures are drawn on a bare ``matplotlib.figure.Figure`` with an Agg canvas, so nothing here touches
pyplot's global state or needs a display (workers and CI are headless), and matplotlib is imported only
when a figure is actually made.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


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
