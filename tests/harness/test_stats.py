"""Significance tests against scipy/scikit-posthocs called directly, and Holm by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import scikit_posthocs as sp
from scipy.stats import friedmanchisquare, wilcoxon

from alreid.errors import AlreidError
from alreid.harness.stats import (friedman_nemenyi, min_attainable_p, nemenyi_cd, per_dataset_scores,
                                  wilcoxon_vs_reference)

# six datasets; aas beats random everywhere, beats none on four of six
WIDE = pd.DataFrame(
    {"aas": [0.60, 0.55, 0.70, 0.52, 0.66, 0.58],
     "random": [0.50, 0.51, 0.61, 0.49, 0.60, 0.40],
     "none": [0.50, 0.35, 0.75, 0.22, 0.51, 0.60]},
    index=pd.Index([f"d{i}" for i in range(6)], name="dataset"))


def test_wilcoxon_matches_scipy_and_holm_by_hand():
    res = wilcoxon_vs_reference(WIDE, "aas")
    assert list(res.index) == ["random", "none"]
    for m in ("random", "none"):
        direct = wilcoxon(np.round(WIDE["aas"] - WIDE[m], 10), zero_method="wilcox", alternative="two-sided")
        assert res.at[m, "p"] == pytest.approx(direct.pvalue)
        assert res.at[m, "statistic"] == pytest.approx(direct.statistic)
        assert res.at[m, "n_datasets"] == 6
    # all six differences positive: exact two-sided p = 2 / 2**6
    assert res.at["random", "p"] == pytest.approx(2 / 64)
    # Holm with two tests: the smaller p doubles, the larger is max(itself, that), capped at 1
    p_r, p_n = res.at["random", "p"], res.at["none", "p"]
    assert p_r < p_n
    assert res.at["random", "p_holm"] == pytest.approx(min(1.0, 2 * p_r))
    assert res.at["none", "p_holm"] == pytest.approx(min(1.0, max(2 * p_r, p_n)))
    assert res.at["random", "wins"] == 6 and res.at["none", "losses"] == 2
    assert res.at["random", "mean_diff"] == pytest.approx((WIDE["aas"] - WIDE["random"]).mean())
    assert res.at["random", "note"] == ""


def test_too_few_datasets_note_for_four():
    res = wilcoxon_vs_reference(WIDE.iloc[:4], "aas")
    assert res.at["random", "min_attainable_p"] == pytest.approx(0.125)
    assert res.at["random", "p"] == pytest.approx(0.125)
    assert "too few datasets for p < 0.05 (minimum attainable p = 0.125)" in res.at["random", "note"]
    assert min_attainable_p(6) == pytest.approx(0.03125)


def test_degenerate_wilcoxon_never_crashes():
    tied = pd.DataFrame({"aas": [0.5, 0.6, 0.7], "same": [0.5, 0.6, 0.7], "other": [0.4, 0.5, 0.6]})
    res = wilcoxon_vs_reference(tied, "aas")
    assert math.isnan(res.at["same", "p"]) and math.isnan(res.at["same", "p_holm"])
    assert "all differences are zero" in res.at["same", "note"]
    # Holm runs over the tests that produced a p-value only: one test, so unchanged
    assert res.at["other", "p_holm"] == pytest.approx(res.at["other", "p"])
    single = wilcoxon_vs_reference(tied.iloc[:1], "aas")
    assert math.isnan(single.at["other", "p"]) and "no test" in single.at["other", "note"]
    gaps = pd.DataFrame({"aas": [0.5, np.nan, 0.7], "x": [np.nan, 0.4, 0.6]})
    assert wilcoxon_vs_reference(gaps, "aas").at["x", "n_datasets"] == 1
    with pytest.raises(AlreidError, match="lbas"):
        wilcoxon_vs_reference(WIDE, "lbas")


def test_friedman_nemenyi_against_scipy_and_scikit_posthocs():
    res = friedman_nemenyi(WIDE)
    direct = friedmanchisquare(*(WIDE[c] for c in WIDE.columns))
    assert res["statistic"] == pytest.approx(direct.statistic)
    assert res["p"] == pytest.approx(direct.pvalue)
    # hand ranks (1 = highest): aas is best on d0-d4 and second on d5
    assert res["ranks"]["aas"] == pytest.approx((1 + 1 + 2 + 1 + 1 + 2) / 6)
    assert res["ranks"].index[0] == "aas"
    nem = sp.posthoc_nemenyi_friedman(WIDE.reset_index(drop=True))
    assert np.allclose(res["nemenyi"].to_numpy(), nem.to_numpy())
    assert res["cd"] == pytest.approx(nemenyi_cd(3, 6))
    assert res["note"] == ""


def test_nemenyi_cd_k5_n8():
    assert nemenyi_cd(5, 8) == pytest.approx(2.156, abs=1e-3)


def test_friedman_needs_three_methods_and_two_datasets():
    two = friedman_nemenyi(WIDE[["aas", "random"]])
    assert math.isnan(two["p"]) and two["nemenyi"] is None and "at least 3 methods" in two["note"]
    one = friedman_nemenyi(WIDE.iloc[:1])
    assert math.isnan(one["p"]) and "1 datasets" in one["note"]
    holes = WIDE.copy()
    holes.loc["d0", "none"] = np.nan
    partial = friedman_nemenyi(holes)
    assert partial["n_datasets"] == 5 and "d0" in partial["note"]
    assert partial["p"] == pytest.approx(friedmanchisquare(*(WIDE.iloc[1:][c] for c in WIDE.columns)).pvalue)


def test_per_dataset_scores_means_over_seeds_at_last_cycle():
    rows = []
    for ds, base in (("A", 0.5), ("B", 0.7)):
        for method, bonus in (("aas", 0.1), ("random", 0.0)):
            for seed in (0, 1):
                for cycle in (0, 1, 2):
                    rows.append({"dataset": ds, "method": method, "seed": seed, "cycle": cycle,
                                 "mAP": base + bonus * cycle / 2 + 0.02 * seed})
    recs = pd.DataFrame(rows)
    wide = per_dataset_scores(recs, "mAP")
    assert list(wide.columns) == ["aas", "random"] and list(wide.index) == ["A", "B"]
    assert wide.at["A", "aas"] == pytest.approx(0.5 + 0.1 + 0.01)
    assert wide.at["B", "random"] == pytest.approx(0.71)
    assert per_dataset_scores(recs, "mAP", cycle=1).at["A", "aas"] == pytest.approx(0.56)
    with pytest.raises(AlreidError, match="BAUS"):
        per_dataset_scores(recs, "BAUS")
