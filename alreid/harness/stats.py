"""Per-dataset aggregation and significance tests for comparing active-learning methods.

Seeds are first averaged within each (dataset, method): the dataset is the unit of replication, as in
Demšar (2006), so tests compare methods across datasets, never across seeds. Scores here stay in the
records' own units (fractions for retrieval metrics); the tables convert to percentages for display.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from alreid.errors import AlreidError

#: Columns a records frame must have (besides ``method`` or ``label`` and at least one metric).
KEY_COLUMNS = ("dataset", "seed", "cycle")
#: THE list of evaluation metrics a record can hold, in table order; all are fractions in [0, 1], shown
#: multiplied by 100. BAUS needs a threshold (``protocol.baus_threshold``), so tables leave it out.
METRICS = ("mAP", "mINP", "BAKS", "AUC", "top1", "top3", "top5", "top10", "BAUS")
TABLE_METRICS = tuple(m for m in METRICS if m != "BAUS")
FRACTION_METRICS = frozenset(METRICS)
#: the share of the offered budget a method spent, in percent (cumulative pairs asked / cumulative budget)
SPENT_COLUMN = "budget_spent_pct"
#: Differences are rounded to this many decimals before Wilcoxon, so float noise is not a difference.
ROUND_DECIMALS = 10
ALPHA = 0.05

_LABEL = "_label"


# --------------------------------------------------------------------------------------- records
def label_column(records: pd.DataFrame) -> str:
    """The column naming a row of the tables: ``label`` when present (sweeps), else ``method``."""
    return "label" if "label" in records.columns else "method"


def check_records(records: pd.DataFrame, metrics: tuple[str, ...] = ()) -> None:
    """Raise AlreidError naming what is missing, so a wrong file fails with one clear line."""
    if not isinstance(records, pd.DataFrame):
        raise AlreidError(f"records must be a pandas DataFrame; got {type(records).__name__}")
    if records.empty:
        raise AlreidError("the records are empty: no trial has reported a cycle yet, so there is nothing to "
                          "tabulate; run the benchmark first or point at the right results folder")
    missing = [c for c in KEY_COLUMNS if c not in records.columns]
    if "method" not in records.columns and "label" not in records.columns:
        missing.append("method (or label)")
    missing += [m for m in metrics if m not in records.columns]
    if missing:
        raise AlreidError(f"the records lack the required column(s) {', '.join(missing)}; "
                          f"columns present: {', '.join(map(str, records.columns))}")


def normalise(records: pd.DataFrame, metrics: tuple[str, ...] = ()) -> pd.DataFrame:
    """A checked copy with one string row label in ``_label`` and numeric metric columns."""
    check_records(records, metrics)
    df = records.copy()
    label = df["label"] if "label" in df.columns else df["method"]
    if "label" in df.columns and "method" in df.columns:
        label = label.where(label.notna(), df["method"])  # rows of a sweep without a label keep the method
    df[_LABEL] = label.astype(str)
    df["dataset"] = df["dataset"].astype(str)
    df["cycle"] = pd.to_numeric(df["cycle"], errors="coerce")
    if df["cycle"].isna().any():
        raise AlreidError("the records have non-numeric or missing values in column 'cycle'")
    for col in df.columns:
        if col in FRACTION_METRICS or col in ("budget_used_pct", "pairs_asked", "pairs_cum", "pairs_total",
                                              "budget_pairs"):
            df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
    return with_spent(df)


def with_spent(df: pd.DataFrame) -> pd.DataFrame:
    """Add :data:`SPENT_COLUMN`: per trial, 100 x pairs asked so far / budget offered so far (NaN before
    any budget was offered), from the records' per-cycle ``pairs_asked`` and ``budget_pairs``."""
    if "pairs_asked" not in df.columns or "budget_pairs" not in df.columns or SPENT_COLUMN in df.columns:
        return df
    keys = [k if k != _LABEL or _LABEL in df.columns else label_column(df) for k in _trial_keys(df)]
    order = df.sort_values("cycle", kind="stable")
    grouped = order.groupby(keys, sort=False, dropna=False)
    asked = grouped["pairs_asked"].cumsum()
    offered = grouped["budget_pairs"].cumsum()
    df = df.copy()
    df[SPENT_COLUMN] = (100.0 * asked / offered.where(offered > 0)).reindex(df.index)
    return df


def _trial_keys(df: pd.DataFrame) -> list[str]:
    keys = ["dataset", _LABEL, "seed"]
    return keys + ["trial_id"] if "trial_id" in df.columns else keys


def _order(values: pd.Series) -> list[str]:
    """Order of first appearance: the order methods were configured in, not alphabetical."""
    return list(pd.unique(values))


def _check_metric(df: pd.DataFrame, metric: str) -> None:
    if metric not in df.columns:
        known = [c for c in df.columns if c in FRACTION_METRICS or c == "budget_used_pct"]
        raise AlreidError(f"metric {metric!r} is not in the records; metrics present: {', '.join(known)}")


def at_cycle(df: pd.DataFrame, cycle: str | int = "last") -> pd.DataFrame:
    """Rows of each trial at its final cycle (``"last"``) or at the given cycle number."""
    if isinstance(cycle, str):
        if cycle != "last":
            raise AlreidError(f"cycle must be 'last' or a cycle number; got {cycle!r}")
        last = df.groupby(_trial_keys(df), sort=False, dropna=False)["cycle"].transform("max")
        return df[df["cycle"] == last]
    try:
        c = int(cycle)
    except (TypeError, ValueError):
        raise AlreidError(f"cycle must be 'last' or a cycle number; got {cycle!r}") from None
    out = df[df["cycle"] == c]
    if out.empty:
        present = sorted(int(x) for x in df["cycle"].unique())
        raise AlreidError(f"no records at cycle {c}; cycles present: {present}")
    return out


def seed_scores(records: pd.DataFrame, columns: list[str], cycle: str | int = "last") -> pd.DataFrame:
    """One row per (dataset, method, seed): the given columns at the chosen cycle of each trial."""
    df = normalise(records)
    for col in columns:
        _check_metric(df, col)
    rows = at_cycle(df, cycle)
    out = rows.groupby(["dataset", _LABEL, "seed"], sort=False, dropna=False)[columns].mean().reset_index()
    return out.rename(columns={_LABEL: "method"})


def per_dataset_scores(records: pd.DataFrame, metric: str = "mAP", cycle: str | int = "last") -> pd.DataFrame:
    """Wide table, rows = datasets and columns = methods: the seed mean of ``metric`` at ``cycle``."""
    scores = seed_scores(records, [metric], cycle)
    wide = scores.groupby(["dataset", "method"], sort=False)[metric].mean().unstack("method")
    wide = wide.reindex(index=_order(scores["dataset"]), columns=_order(scores["method"]))
    wide.index.name, wide.columns.name = "dataset", "method"
    return wide


# --------------------------------------------------------------------------------------- Wilcoxon
def min_attainable_p(n: int) -> float:
    """Smallest two-sided p of the exact signed-rank test with n non-zero differences: 2 / 2**n."""
    return float(min(1.0, 2.0 / 2.0 ** n)) if n > 0 else 1.0


def _one_wilcoxon(ref: pd.Series, other: pd.Series) -> dict[str, Any]:
    from scipy.stats import wilcoxon

    both = pd.concat([ref, other], axis=1).dropna()
    diff = np.round(both.iloc[:, 0].to_numpy(float) - both.iloc[:, 1].to_numpy(float), ROUND_DECIMALS)
    n, nonzero = len(diff), int(np.count_nonzero(diff))
    row: dict[str, Any] = {"n_datasets": n, "wins": int((diff > 0).sum()), "ties": int((diff == 0).sum()),
                           "losses": int((diff < 0).sum()), "mean_diff": float(diff.mean()) if n else math.nan,
                           "statistic": math.nan, "p": math.nan, "min_attainable_p": min_attainable_p(nonzero)}
    notes = []
    if n < 2:
        notes.append(f"only {n} dataset(s) with scores for both methods; no test")
    elif nonzero == 0:
        notes.append("all differences are zero; no test")
    else:
        res = wilcoxon(diff, zero_method="wilcox", alternative="two-sided")
        row["statistic"], row["p"] = float(res.statistic), float(res.pvalue)
    if n >= 2 and nonzero and row["min_attainable_p"] >= ALPHA:
        notes.append(f"too few datasets for p < {ALPHA:g} (minimum attainable p = {row['min_attainable_p']:.4g})")
    row["note"] = "; ".join(notes)
    return row


def wilcoxon_vs_reference(wide: pd.DataFrame, reference: str = "aas") -> pd.DataFrame:
    """Paired two-sided Wilcoxon signed-rank test of ``reference`` against every other method, over datasets.

    Holm's correction runs over the tests that produced a p-value. ``mean_diff`` and wins/ties/losses are
    reference minus other, so positive means the reference is better. ``min_attainable_p`` is the exact
    test's floor for the number of non-zero differences (zeros are dropped, ``zero_method='wilcox'``).
    """
    from statsmodels.stats.multitest import multipletests

    if reference not in wide.columns:
        raise AlreidError(f"reference method {reference!r} is not among the methods: "
                          f"{', '.join(map(str, wide.columns))}")
    others = [m for m in wide.columns if m != reference]
    cols = ["n_datasets", "wins", "ties", "losses", "mean_diff", "statistic", "p", "p_holm",
            "min_attainable_p", "note"]
    table = pd.DataFrame([_one_wilcoxon(wide[reference], wide[m]) for m in others], index=pd.Index(others, name="method"))
    if table.empty:
        return pd.DataFrame(columns=cols, index=pd.Index([], name="method"))
    table["p_holm"] = math.nan
    tested = table["p"].notna()
    if tested.any():
        table.loc[tested, "p_holm"] = multipletests(table.loc[tested, "p"].to_numpy(), method="holm")[1]
    table.attrs["reference"] = reference
    return table[cols]


# --------------------------------------------------------------------------------------- Friedman
def nemenyi_cd(k: int, n: int, alpha: float = ALPHA) -> float:
    """Nemenyi critical difference of average ranks for k methods over n datasets (Demšar 2006)."""
    from scipy.stats import studentized_range

    if k < 2 or n < 1:
        return math.nan
    q_alpha = studentized_range.ppf(1 - alpha, k, np.inf) / math.sqrt(2)
    return float(q_alpha * math.sqrt(k * (k + 1) / (6.0 * n)))


def average_ranks(wide: pd.DataFrame) -> pd.Series:
    """Mean rank per method over datasets; the highest score on a dataset gets rank 1, ties share."""
    return wide.rank(axis=1, ascending=False, method="average").mean().sort_values()


def friedman_nemenyi(wide: pd.DataFrame, alpha: float = ALPHA) -> dict[str, Any]:
    """Friedman test over complete datasets, average ranks, Nemenyi p-values and critical difference.

    Methods with no score at all are dropped, then datasets missing any remaining method (a Friedman
    block must rank every method). Returns keys ``statistic``, ``p``, ``k``, ``n_datasets``, ``ranks``
    (Series, best first), ``nemenyi`` (DataFrame of p-values or None), ``cd``, ``alpha``,
    ``dropped_methods``, ``dropped_datasets`` and ``note`` (empty when the test ran cleanly).
    """
    from scipy.stats import friedmanchisquare

    kept = wide.dropna(axis=1, how="all")
    complete = kept.dropna(axis=0, how="any")
    k, n = complete.shape[1], complete.shape[0]
    out: dict[str, Any] = {"statistic": math.nan, "p": math.nan, "k": k, "n_datasets": n,
                           "ranks": average_ranks(complete) if n else pd.Series(dtype=float),
                           "nemenyi": None, "cd": math.nan, "alpha": alpha,
                           "dropped_methods": [m for m in wide.columns if m not in kept.columns],
                           "dropped_datasets": [d for d in kept.index if d not in complete.index]}
    notes = []
    if out["dropped_methods"]:
        notes.append(f"methods without scores left out: {', '.join(map(str, out['dropped_methods']))}")
    if out["dropped_datasets"]:
        notes.append(f"datasets missing a method left out: {', '.join(map(str, out['dropped_datasets']))}")
    if k < 3 or n < 2:
        notes.append(f"Friedman/Nemenyi need at least 3 methods and 2 datasets with scores for every "
                     f"method (got {k} methods, {n} datasets)")
        out["note"] = "; ".join(notes)
        return out
    values = np.round(complete.to_numpy(float), ROUND_DECIMALS)
    if np.all(values == values[:, :1]):
        notes.append("all methods tie on every dataset; no test")
    else:
        res = friedmanchisquare(*values.T)
        out["statistic"], out["p"] = float(res.statistic), float(res.pvalue)
        out["nemenyi"] = _nemenyi(complete)
    out["cd"] = nemenyi_cd(k, n, alpha)
    out["note"] = "; ".join(notes)
    return out


def _nemenyi(complete: pd.DataFrame) -> pd.DataFrame:
    import scikit_posthocs as sp

    data = pd.DataFrame(np.round(complete.to_numpy(float), ROUND_DECIMALS), columns=list(complete.columns))
    pvals = sp.posthoc_nemenyi_friedman(data)
    pvals.index, pvals.columns = list(complete.columns), list(complete.columns)
    return pvals


# --------------------------------------------------------------------------------------- curves
def display_scale(column: str) -> float:
    """100 for metrics stored as fractions, 1 for everything else (already percent or a count)."""
    return 100.0 if column in FRACTION_METRICS else 1.0


def spread_over(n_datasets: int) -> str:
    """What the ± spread is taken over: datasets, or seeds when there is a single dataset."""
    return "seeds" if n_datasets == 1 else "datasets"


def curve_summary(records: pd.DataFrame, column: str) -> pd.DataFrame:
    """Per (method, cycle): mean and std of ``column`` in display units, seeds averaged per dataset first.

    The spread is over datasets of the per-dataset seed means, or over seeds when there is one dataset,
    the same rule as the summary table.
    """
    df = normalise(records)
    _check_metric(df, column)
    per_seed = df.groupby(["dataset", _LABEL, "seed", "cycle"], sort=False, dropna=False)[column].mean().reset_index()
    per_seed[column] = per_seed[column] * display_scale(column)
    if per_seed["dataset"].nunique() == 1:
        grouped = per_seed.groupby([_LABEL, "cycle"], sort=False)[column]
    else:
        per_ds = per_seed.groupby(["dataset", _LABEL, "cycle"], sort=False)[column].mean().reset_index()
        grouped = per_ds.groupby([_LABEL, "cycle"], sort=False)[column]
    out = pd.DataFrame({"mean": grouped.mean(), "std": grouped.std(ddof=1), "n": grouped.count()}).reset_index()
    out = out.rename(columns={_LABEL: "method"}).sort_values(["cycle"], kind="stable").reset_index(drop=True)
    out.attrs["spread_over"] = spread_over(per_seed["dataset"].nunique())
    return out
