"""Comparison tables (the paper's Table 1 layout), significance report and figures from trial records.

Tables are pure functions of the records (one row per trial x AL cycle). Aggregation, decided once:
a method's score on a dataset is the mean over its seeds at the chosen cycle; the summary cell is the
mean over datasets of those per-dataset means, and the ± spread is the sample std (ddof=1) over datasets
of the per-dataset means, or over seeds when the records hold a single dataset. NaN scores (e.g. AUC
without unknown identities) are skipped, so a cell averages the datasets that have the metric.
Retrieval metrics are stored as fractions and shown as percentages; ``budget_used_pct`` is already one.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from alreid.errors import AlreidError
from alreid.harness import stats

#: the table's columns: the metrics (:data:`alreid.harness.stats.TABLE_METRICS`), then what each method spent:
#: pairs asked as a percent of all pairs, and pairs asked / budget offered (did it use the budget it was given?)
METRIC_COLUMNS = [*stats.TABLE_METRICS, "budget_used_pct", stats.SPENT_COLUMN, "gap_closed"]
#: the rows that bound "gap closed": 100 x (row - none) / (skyline - none) of the final mAP, per dataset
GAP_LOW, GAP_HIGH, GAP_METRIC = "none", "skyline", "mAP"
HEADERS = {"mAP": "mAP", "mINP": "mINP", "BAKS": "BAKS", "AUC": "AUC", "top1": "Top-1", "top3": "Top-3",
           "top5": "Top-5", "top10": "Top-10", "budget_used_pct": "budget (%)",
           stats.SPENT_COLUMN: "asked/budget (%)", "gap_closed": "gap closed (%)"}
#: Columns that are a cost, not a score: never marked best.
UNRANKED = frozenset({"budget_used_pct", stats.SPENT_COLUMN})


# --------------------------------------------------------------------------------------- numbers
def _scaled(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.apply(lambda col: col * stats.display_scale(str(col.name)))


def add_gap_closed(scores: pd.DataFrame) -> bool:
    """Add ``gap_closed`` to per-seed scores: 100 x (score - none) / (skyline - none) of :data:`GAP_METRIC`,
    where none and skyline are that dataset's seed means; NaN on a dataset where the skyline is not above
    none. False (nothing added) unless both reference rows and the metric are there."""
    if GAP_METRIC not in scores.columns or not {GAP_LOW, GAP_HIGH} <= set(scores["method"].astype(str)):
        return False
    ref = scores.groupby(["dataset", "method"], sort=False)[GAP_METRIC].mean()
    low = scores["dataset"].map(lambda d: ref.get((d, GAP_LOW), math.nan))
    high = scores["dataset"].map(lambda d: ref.get((d, GAP_HIGH), math.nan))
    span = (high - low).where(high - low > 1e-12)
    scores["gap_closed"] = 100.0 * (scores[GAP_METRIC] - low) / span
    return True


def summary_table(records: pd.DataFrame, cycle: str | int = "last") -> pd.DataFrame:
    """Rows = methods, columns = METRIC_COLUMNS (means, percent), ``<metric>_std``, n_datasets, n_trials.

    See the module docstring for how seeds and datasets are combined. Metrics absent from the records
    are NaN columns, so every summary has the same layout.
    """
    stats.check_records(records)
    available = set(stats.with_spent(records).columns) if "cycle" in records.columns else set(records.columns)
    present = [m for m in METRIC_COLUMNS if m in available]
    if not present:
        raise AlreidError(f"the records have none of the metric columns {', '.join(METRIC_COLUMNS)}")
    scores = stats.seed_scores(records, present, cycle)
    scores[present] = _scaled(scores[present])
    if add_gap_closed(scores):
        present = present + ["gap_closed"]
    methods = list(pd.unique(scores["method"]))
    per_ds = scores.groupby(["dataset", "method"], sort=False)[present].mean().reset_index()
    source = scores if scores["dataset"].nunique() == 1 else per_ds
    grouped = source.groupby("method", sort=False)[present]
    mean, std = grouped.mean(), grouped.std(ddof=1)
    out = pd.DataFrame(index=pd.Index(methods, name="method"))
    for m in METRIC_COLUMNS:
        out[m] = mean[m] if m in present else math.nan
    for m in METRIC_COLUMNS:
        out[f"{m}_std"] = std[m] if m in present else math.nan
    out["n_datasets"] = per_ds.groupby("method", sort=False)["dataset"].nunique()
    out["n_trials"] = scores.groupby("method", sort=False).size()
    blocks = method_blocks(records)
    if blocks:  # the paper's row groups (foundation, USL, AL), shown as separators in Markdown/LaTeX
        out["block"] = [blocks.get(str(m)) for m in out.index]
    return out


def method_blocks(records: pd.DataFrame) -> dict[str, str]:
    """Row label -> its ``block`` (the config's per-method field), when the records carry one."""
    if "block" not in records.columns:
        return {}
    label = records["label"] if "label" in records.columns else records["method"]
    if "label" in records.columns and "method" in records.columns:
        label = label.where(label.notna(), records["method"])
    frame = pd.DataFrame({"label": label.astype(str), "block": records["block"]}).dropna()
    return {k: str(v) for k, v in frame.groupby("label", sort=False)["block"].first().items() if str(v)}


def _with_blocks(summary: pd.DataFrame, rows: list[list[str]], style: str, width: int) -> list[list[str]]:
    """Insert a separator row wherever the ``block`` column changes (rows without a block get none)."""
    if "block" not in summary.columns:
        return rows
    out: list[list[str]] = []
    current = None
    for block, row in zip(summary["block"], rows):
        if isinstance(block, str) and block and block != current:
            if style == "tex":
                out.append([f"\\hline\\multicolumn{{{width}}}{{l}}{{\\textit{{{_escape(block)}}}}}"])
            else:
                out.append([f"*{block}*"] + [""] * (width - 1))
        current = block if isinstance(block, str) and block else current
        out.append(row)
    return out


def _per_dataset_frames(records: pd.DataFrame, metric: str, cycle: str | int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(mean, std over seeds) of ``metric`` in percent, rows = datasets, columns = methods."""
    scores = stats.seed_scores(records, [metric], cycle)
    scores[metric] = scores[metric] * stats.display_scale(metric)
    grouped = scores.groupby(["dataset", "method"], sort=False)[metric]
    order = {"index": list(pd.unique(scores["dataset"])), "columns": list(pd.unique(scores["method"]))}
    mean = grouped.mean().unstack("method").reindex(**order)
    std = grouped.std(ddof=1).unstack("method").reindex(**order)
    for f in (mean, std):
        f.index.name, f.columns.name = "dataset", "method"
    return mean, std


def per_dataset_table(records: pd.DataFrame, metric: str = "mAP", *, cycle: str | int = "last") -> pd.DataFrame:
    """Rows = datasets; columns = each method's seed mean of ``metric`` (percent), then ``<method>_std``."""
    mean, std = _per_dataset_frames(records, metric, cycle)
    return pd.concat([mean, std.add_suffix("_std")], axis=1)


# --------------------------------------------------------------------------------------- rendering
_STYLES = {"md": (" ± ", "**{}**", "n/a"), "tex": (" $\\pm$ ", "\\textbf{{{}}}", "n/a"), "txt": ("±", "{}*", "n/a")}


def _number(value: float, column: str) -> str:
    """Two decimals; the budget gets three, since AL budgets are fractions of a percent (0.033 %)."""
    return f"{value:.3f}" if column == "budget_used_pct" else f"{value:.2f}"


def _cell(mean: float, std: float, column: str, style: str, bold: bool) -> str:
    pm, strong, missing = _STYLES[style]
    if not np.isfinite(mean):
        return missing
    text = _number(mean, column)
    if np.isfinite(std):
        text += pm + _number(std, column)
    return strong.format(text) if bold else text


def best_mask(means: pd.DataFrame, axis: int = 0) -> pd.DataFrame:
    """True where a value equals the best (highest) at display precision along ``axis``.

    Ties at two decimals are all marked; nothing is marked where fewer than two values exist.
    """
    rounded = means.astype(float).round(2)
    best = rounded.max(axis=axis)
    counts = rounded.notna().sum(axis=axis)
    mask = rounded.eq(best, axis=1 - axis)
    enough = counts >= 2
    return mask & (enough.to_numpy()[None, :] if axis == 0 else enough.to_numpy()[:, None])


def _summary_cells(summary: pd.DataFrame, style: str, columns: list[str]) -> list[list[str]]:
    mask = best_mask(summary[columns], axis=0)
    rows = []
    for method in summary.index:
        row = [_escape(str(method)) if style == "tex" else str(method)]
        for m in columns:
            bold = bool(mask.at[method, m]) and m not in UNRANKED
            row.append(_cell(summary.at[method, m], summary.at[method, f"{m}_std"], m, style, bold))
        rows.append(row)
    return rows


def _spread_words(summary: pd.DataFrame) -> str:
    n = int(summary["n_datasets"].max()) if len(summary) else 0
    if n <= 1:
        return "mean ± std over seeds (one dataset)"
    return f"mean over {n} datasets of per-dataset seed means ± std over datasets"


def summary_markdown(summary: pd.DataFrame) -> str:
    """Markdown Table-1: percent, best per column in bold (budget is a cost and is not marked)."""
    header = ["method"] + [HEADERS[m] for m in METRIC_COLUMNS]
    body = _markdown(header, _with_blocks(summary, _summary_cells(summary, "md", METRIC_COLUMNS), "md", len(header)))
    return f"{body}\n\n{_spread_words(summary)}, in percent; best per column in bold.\n"


def summary_latex(summary: pd.DataFrame) -> str:
    header = ["method"] + [_escape(HEADERS[m]).replace("(%)", "(\\%)") for m in METRIC_COLUMNS]
    return _latex(header, _with_blocks(summary, _summary_cells(summary, "tex", METRIC_COLUMNS), "tex", len(header)))


def render_terminal_table(summary: pd.DataFrame) -> str:
    """Plain-text summary for a terminal: aligned columns, best per column marked with '*'.

    Metrics that are missing for every method are left out to keep the table narrow.
    """
    columns = [m for m in METRIC_COLUMNS if m in summary.columns and summary[m].notna().any()]
    header = ["method"] + [HEADERS[m] for m in columns]
    rows = [header] + _summary_cells(summary, "txt", columns)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = []
    for j, r in enumerate(rows):
        cells = [r[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(r[1:], widths[1:])]
        lines.append("  ".join(cells).rstrip())
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines.append(f"{_spread_words(summary)}, in percent; * = best per column.")
    return "\n".join(lines)


def _per_dataset_rows(mean: pd.DataFrame, std: pd.DataFrame, style: str) -> list[list[str]]:
    mask = best_mask(mean, axis=1)
    name = _escape if style == "tex" else str
    rows = [[name(str(d))] + [_cell(mean.at[d, m], std.at[d, m], "", style, bool(mask.at[d, m]))
                              for m in mean.columns] for d in mean.index]
    means = mean.mean(axis=0)
    spread = mean.std(axis=0, ddof=1)
    rows.append(["mean"] + [_cell(means[m], spread[m], "", style, False) for m in mean.columns])
    ranks = mean.rank(axis=1, ascending=False, method="average").mean()
    rows.append(["avg. rank"] + [f"{ranks[m]:.2f}" if np.isfinite(ranks[m]) else "n/a" for m in mean.columns])
    wins = mask.sum(axis=0) if len(mean.columns) > 1 else pd.Series(0, index=mean.columns)
    rows.append([name("#wins")] + [str(int(wins[m])) for m in mean.columns])
    return rows


def _method_header(methods: list[str], significant: set[str], style: str) -> list[str]:
    mark = "$^*$" if style == "tex" else " *"
    out = []
    for m in methods:
        label = _escape(m) if style == "tex" else m
        out.append(label + (mark if m in significant else ""))
    return out


def per_dataset_markdown(mean: pd.DataFrame, std: pd.DataFrame, metric: str, *, significant: set[str] = frozenset(),
                         reference: str | None = None) -> str:
    header = ["dataset"] + _method_header([str(m) for m in mean.columns], significant, "md")
    text = _markdown(header, _per_dataset_rows(mean, std, "md"))
    text += f"\n\n{metric} in percent, mean ± std over seeds; best per dataset in bold; mean row: ± std over datasets."
    if significant and reference:
        text += f"\n\\* Holm-corrected Wilcoxon signed-rank test against {reference}: p < {stats.ALPHA:g}."
    return text + "\n"


def per_dataset_latex(mean: pd.DataFrame, std: pd.DataFrame, *, significant: set[str] = frozenset()) -> str:
    header = ["dataset"] + _method_header([str(m) for m in mean.columns], significant, "tex")
    return _latex(header, _per_dataset_rows(mean, std, "tex"))


def _markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


_TEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def _escape(text: str) -> str:
    return "".join(_TEX_SPECIAL.get(ch, ch) for ch in text)


def _latex(header: list[str], rows: list[list[str]]) -> str:
    lines = ["\\begin{tabular}{l" + "r" * (len(header) - 1) + "}", "\\hline",
             " & ".join(header) + " \\\\", "\\hline"]
    lines += [" & ".join(r) + " \\\\" for r in rows]
    lines += ["\\hline", "\\end{tabular}", ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------- significance
def _fmt_p(p: float) -> str:
    return "n/a" if not np.isfinite(p) else (f"{p:.4f}" if p >= 1e-4 else f"{p:.2e}")


def significance_markdown(metric: str, reference: str | None, wilcoxon: pd.DataFrame | None,
                          friedman: dict[str, Any], skipped: str = "") -> str:
    """Both tests with every caveat written next to the numbers they qualify; ``skipped`` says why
    the Wilcoxon tests did not run."""
    out = [f"# Significance of {metric} differences across datasets", "",
           "Seeds are averaged per (dataset, method) first; each dataset is one paired observation.", ""]
    out += [f"## Wilcoxon signed-rank test against {reference} (two-sided, Holm-corrected)", ""]
    if wilcoxon is None or wilcoxon.empty:
        out.append("Not run: " + (skipped or "no other method to compare with") + ".")
    else:
        scale = stats.display_scale(metric)
        unit = "pp" if scale == 100 else "raw"
        header = ["method", "datasets", "wins/ties/losses", f"mean diff ({metric}, {unit})", "statistic", "p",
                  "p (Holm)", "min. attainable p", "note"]
        rows = [[str(m), str(int(r['n_datasets'])), f"{r['wins']}/{r['ties']}/{r['losses']}",
                 f"{scale * r['mean_diff']:+.2f}" if np.isfinite(r['mean_diff']) else "n/a",
                 f"{r['statistic']:g}" if np.isfinite(r['statistic']) else "n/a", _fmt_p(r['p']), _fmt_p(r['p_holm']),
                 f"{r['min_attainable_p']:.4g}", r['note'] or ""] for m, r in wilcoxon.iterrows()]
        out.append(_markdown(header, rows))
        out += ["", f"Differences are {reference} minus the other method; positive means {reference} is better."]
    out += ["", "## Friedman test and Nemenyi post-hoc", ""]
    out.append(f"- methods: {friedman['k']}, datasets (complete blocks): {friedman['n_datasets']}")
    out.append(f"- Friedman chi-square = {friedman['statistic']:.4g}, p = {_fmt_p(friedman['p'])}"
               if np.isfinite(friedman["p"]) else "- Friedman: not run")
    if np.isfinite(friedman["cd"]):
        out.append(f"- Nemenyi critical difference (alpha = {friedman['alpha']:g}): {friedman['cd']:.3f} ranks")
    if friedman["note"]:
        out.append(f"- note: {friedman['note']}")
    ranks = friedman["ranks"]
    if len(ranks):
        out += ["", "Average ranks (1 = best):", "",
                _markdown(["method", "avg. rank"], [[str(m), f"{r:.2f}"] for m, r in ranks.items()])]
    if friedman["nemenyi"] is not None:
        nem = friedman["nemenyi"]
        out += ["", "Nemenyi p-values:", "",
                _markdown(["method"] + [str(c) for c in nem.columns],
                          [[str(i)] + [_fmt_p(v) for v in nem.loc[i]] for i in nem.index])]
    return "\n".join(out) + "\n"


def significance_frame(reference: str | None, wilcoxon: pd.DataFrame | None, friedman: dict[str, Any]) -> pd.DataFrame:
    """Long form of every test: one row per comparison (Wilcoxon, Friedman, each Nemenyi pair)."""
    rows: list[dict[str, Any]] = []
    if wilcoxon is not None:
        for m, r in wilcoxon.iterrows():
            rows.append({"test": "wilcoxon", "comparison": f"{reference} vs {m}", "n_datasets": r["n_datasets"],
                         "statistic": r["statistic"], "p": r["p"], "p_holm": r["p_holm"],
                         "min_attainable_p": r["min_attainable_p"], "note": r["note"]})
    rows.append({"test": "friedman", "comparison": "all", "n_datasets": friedman["n_datasets"],
                 "statistic": friedman["statistic"], "p": friedman["p"], "note": friedman["note"],
                 "cd": friedman["cd"]})
    nem = friedman["nemenyi"]
    if nem is not None:
        cols = list(nem.columns)
        for i, a in enumerate(cols):
            for b in cols[i + 1:]:
                rows.append({"test": "nemenyi", "comparison": f"{a} vs {b}", "n_datasets": friedman["n_datasets"],
                             "p": nem.at[a, b]})
    columns = ["test", "comparison", "n_datasets", "statistic", "p", "p_holm", "min_attainable_p", "cd", "note"]
    return pd.DataFrame(rows).reindex(columns=columns)


def _metric_key(text: str) -> str:
    """MLflow metric names allow letters, digits, _ - . space : and /; replace anything else."""
    return re.sub(r"[^0-9A-Za-z_\-. :/]", "_", text)


def pvalue_dict(reference: str | None, wilcoxon: pd.DataFrame | None, friedman: dict[str, Any]) -> dict[str, float]:
    """Flat, MLflow-ready p-values; tests that did not run are left out rather than logged as NaN."""
    out: dict[str, float] = {}
    if wilcoxon is not None:
        for m, r in wilcoxon.iterrows():
            pair = _metric_key(f"{reference}_vs_{m}")
            if np.isfinite(r["p"]):
                out[f"wilcoxon_p/{pair}"] = float(r["p"])
            if np.isfinite(r["p_holm"]):
                out[f"wilcoxon_p_holm/{pair}"] = float(r["p_holm"])
    if np.isfinite(friedman["p"]):
        out["friedman_p"] = float(friedman["p"])
    return out


# --------------------------------------------------------------------------------------- report
@dataclass
class Report:
    """What :func:`write_report` produced.

    ``paths`` maps each written file name (e.g. ``"summary.md"``) to its path; ``pvalues`` is the flat
    dict for ``mlflow.log_metrics``; ``notes`` lists the tests or figures that were skipped and why.
    """

    out_dir: Path
    paths: dict[str, Path]
    summary: pd.DataFrame
    summary_markdown: str
    pvalues: dict[str, float]
    per_dataset: pd.DataFrame
    wilcoxon: pd.DataFrame | None
    friedman: dict[str, Any]
    notes: list[str] = field(default_factory=list)


def _write(paths: dict[str, Path], out_dir: Path, name: str, text: str) -> None:
    path = out_dir / name
    path.write_text(text, encoding="utf-8")
    paths[name] = path


def write_report(records: pd.DataFrame, out_dir: str | Path, *, reference: str = "aas", metric: str = "mAP") -> Report:
    """Write summary.{md,csv,tex}, per_dataset.{md,csv,tex}, significance.{md,csv} and the PNG figures.

    Tests that cannot run (reference absent, too few methods or datasets) are skipped with a note in
    significance.md and in ``Report.notes``; only unusable records raise AlreidError.
    """
    from alreid.harness import plots

    summary = summary_table(records)
    mean, std = _per_dataset_frames(records, metric, "last")
    wide = stats.per_dataset_scores(records, metric)
    notes: list[str] = []
    wilcoxon, skipped = None, ""
    if reference not in wide.columns:
        skipped = (f"reference method {reference!r} is not in the records "
                   f"(methods: {', '.join(map(str, wide.columns))}); Wilcoxon skipped")
    elif wide.shape[1] < 2:
        skipped = "only one method in the records; Wilcoxon skipped"
    else:
        wilcoxon = stats.wilcoxon_vs_reference(wide, reference)
    if skipped:
        notes.append(skipped)
    friedman = stats.friedman_nemenyi(wide)
    significant = set() if wilcoxon is None else set(wilcoxon.index[wilcoxon["p_holm"] < stats.ALPHA])

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    md = summary_markdown(summary)
    _write(paths, out, "summary.md", md)
    summary.to_csv(out / "summary.csv")
    paths["summary.csv"] = out / "summary.csv"
    _write(paths, out, "summary.tex", summary_latex(summary))
    ref = reference if wilcoxon is not None else None
    _write(paths, out, "per_dataset.md", per_dataset_markdown(mean, std, metric, significant=significant, reference=ref))
    per_dataset = pd.concat([mean, std.add_suffix("_std")], axis=1)
    per_dataset.to_csv(out / "per_dataset.csv")
    paths["per_dataset.csv"] = out / "per_dataset.csv"
    _write(paths, out, "per_dataset.tex", per_dataset_latex(mean, std, significant=significant))

    if friedman["nemenyi"] is not None:
        paths["cd_diagram.png"] = plots.plot_cd_diagram(friedman["ranks"], friedman["nemenyi"], friedman["cd"],
                                                        out / "cd_diagram.png", alpha=friedman["alpha"])
    else:
        notes.append(f"no critical-difference diagram: {friedman['note'] or 'Nemenyi test not run'}")
    _write(paths, out, "significance.md", significance_markdown(metric, reference, wilcoxon, friedman, skipped))
    significance_frame(reference, wilcoxon, friedman).to_csv(out / "significance.csv", index=False)
    paths["significance.csv"] = out / "significance.csv"

    curve_name = f"curves_{metric}.png"
    ylabel = metric + (" (%)" if stats.display_scale(metric) == 100 else "")
    several = records["dataset"].astype(str).nunique() > 1  # then one panel per dataset, never a cross-dataset band
    if several:
        paths[curve_name] = plots.plot_curve_panels(plots.curves_by_dataset(records, metric), out / curve_name,
                                                    ylabel=ylabel, title=f"{metric} per AL cycle")
    else:
        paths[curve_name] = plots.plot_curves(stats.curve_summary(records, metric), out / curve_name,
                                              ylabel=ylabel, title=f"{metric} per AL cycle")
    if "budget_used_pct" in records.columns:
        draw = plots.plot_curve_panels if several else plots.plot_curves
        curves = (plots.curves_by_dataset if several else stats.curve_summary)(records, "budget_used_pct")
        paths["curves_budget.png"] = draw(curves, out / "curves_budget.png", ylabel="budget used (% of all pairs)",
                                          title="annotation budget per AL cycle")
        if "budget_fraction" in records.columns and records["budget_fraction"].nunique() > 1:
            eff = plots.label_efficiency_frame(records, metric)
            eff.to_csv(out / "label_efficiency.csv", index=False)
            paths["label_efficiency.csv"] = out / "label_efficiency.csv"
            paths["label_efficiency.png"] = plots.plot_label_efficiency(eff, out / "label_efficiency.png",
                                                                        ylabel=f"final {ylabel}")
    else:
        notes.append("no budget curve: the records lack 'budget_used_pct'")
    return Report(out_dir=out, paths=paths, summary=summary, summary_markdown=md,
                  pvalues=pvalue_dict(reference, wilcoxon, friedman), per_dataset=per_dataset,
                  wilcoxon=wilcoxon, friedman=friedman, notes=notes)


# --------------------------------------------------------------------------------------- loading
def print_report(report: Report, out: Any = print) -> None:
    """What ``alreid bench`` and ``alreid table`` print: the summary table, its notes and the p-values."""
    out(render_terminal_table(report.summary))
    for note in report.notes:
        out(f"note: {note}")
    if report.pvalues:
        out("p-values: " + ", ".join(f"{k}={v:.3g}" for k, v in report.pvalues.items()))


def load_records(path: str | Path) -> pd.DataFrame:
    """Records from a results/<experiment> folder (its records.parquet or records.csv) or a .parquet/.csv file."""
    p = Path(path).expanduser()
    if p.is_dir():
        found = [p / n for n in ("records.parquet", "records.csv") if (p / n).is_file()]
        if not found:
            raise AlreidError(f"no records.parquet in {p}; pass a results/<experiment> folder written by the "
                              f"benchmark or a .parquet/.csv records file")
        p = found[0]
    elif not p.exists():
        raise AlreidError(f"records file {p} does not exist")
    if p.suffix.lower() not in (".parquet", ".csv"):
        raise AlreidError(f"cannot read records from {p}: expected a .parquet or .csv file")
    try:
        df = pd.read_parquet(p) if p.suffix.lower() == ".parquet" else pd.read_csv(p)
    except Exception as exc:  # corrupt or foreign file: report it as the user's input problem
        raise AlreidError(f"cannot read records from {p}: {exc}") from exc
    stats.check_records(df)
    if not any(m in df.columns for m in METRIC_COLUMNS):
        raise AlreidError(f"{p} has none of the metric columns {', '.join(METRIC_COLUMNS)}")
    return df
