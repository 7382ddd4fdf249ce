"""configs/paper_table1.yaml plans every row of the paper's Table 1, in its order and blocks, with the settings
the spec lists (algorithms.md 1.13 / 4.2, table1_rows.md 1-8); tables show the blocks as separators."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from alreid.cli import main as cli_main
from alreid.harness.experiment import load_plan
from alreid.harness.tables import summary_latex, summary_markdown, summary_table
from alreid.registry import TRAINERS

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "paper_table1.yaml"

#: Table 1 of the paper, top to bottom: (row, block, trainer)
PAPER_ROWS = [
    ("baseline", "reference", "baseline"), ("skyline", "reference", "skyline"),
    ("megadescriptor", "foundation", "baseline"), ("miewid", "foundation", "baseline"),
    ("ice", "USL", "ice"), ("pplr", "USL", "pplr"), ("clustercontrast", "USL", "clustercontrast"),
    ("rtmem", "USL", "rtmem"), ("purification", "USL", "purification"),
    ("spcl", "AL on SpCL", "spcl"), ("random", "AL on SpCL", "spcl"), ("gbas", "AL on SpCL", "spcl"),
    ("lbas", "AL on SpCL", "spcl"), ("nis", "AL on SpCL", "spcl"), ("aas", "AL on SpCL", "spcl"),
]
#: the official configuration of each trained row (spec): epochs, iterations per epoch, DBSCAN eps, batch, K
OFFICIAL = {
    "spcl": (50, 400, 0.6, 64, 4),            # algorithms.md 4.2
    "skyline": (50, 400, None, 64, 4),        # SpCL's network and loss on true identities (no clustering)
    "ice": (40, 400, 0.55, 32, 4),            # table1_rows 1.1
    "pplr": (50, 400, 0.5, 64, 4),            # table1_rows 2.1
    "clustercontrast": (50, 400, 0.6, 256, 16),  # algorithms.md 4.7 (argparse --iters 400; README 200 Market)
    "rtmem": (50, 200, 0.5, 256, 16),         # table1_rows 3.1 (README command)
    "purification": (50, 200, 0.6, 256, 16),  # table1_rows 4.1 (Market)
}


@pytest.fixture(scope="module")
def plan():
    return load_plan(CONFIG)


def test_every_row_in_the_papers_order_and_blocks(plan):
    assert plan.labels == [r[0] for r in PAPER_ROWS]
    by_label = {m.name: m for m in plan.config.methods}
    for label, block, trainer in PAPER_ROWS:
        assert by_label[label].block == block
        assert {t.trial["trainer"] for t in plan.trials if t.label == label} == {trainer}
    assert {t.block for t in plan.trials if t.label == "aas"} == {"AL on SpCL"}
    assert len(plan.config.datasets) == 13 and plan.config.seed_list() == [0, 1, 2, 3]
    assert len(plan.trials) == 15 * 13 * 4


def test_resolved_trial_settings_equal_the_spec(plan):
    seen = set()
    for t in plan.trials:
        trainer = TRAINERS.get(t.trial["trainer"]).from_params(t.trial["trainer_params"])
        p = trainer.get_params()
        assert t.trial["budget_fraction"] == pytest.approx(2e-4) and t.trial["refine"] == "np3"
        if t.label == "megadescriptor":
            assert (p["backbone"], p["image_size"], p["pooling"]) == ("megadescriptor:L-384", "auto", "auto")
            continue
        if t.label == "miewid":
            assert (p["backbone"], p["image_size"], p["pooling"]) == ("miewid:msv2", "auto", "auto")
            continue
        assert p["backbone"] == "resnet50", t.label  # every other row: ResNet-50 (issue 10 item 6)
        if t.label == "baseline":
            continue
        epochs, iters, eps, batch, k = OFFICIAL[t.trial["trainer"]]
        assert p["epochs"] == epochs and trainer.iters_for(10 ** 6) == iters, t.label
        assert (p["batch_size"], p["num_instances"]) == (batch, k), t.label
        assert p["al_every"] == 10 and t.trial["cycles"] == -(-epochs // 10), t.label
        if eps is not None:
            assert p["eps"] == pytest.approx(eps) and (p["k1"], p["k2"]) == (30, 6), t.label
        seen.add(t.label)
    assert seen == {r[0] for r in PAPER_ROWS} - {"baseline", "megadescriptor", "miewid"}
    aas = next(t for t in plan.trials if t.label == "aas")
    assert (aas.trial["params"].get("epsilon", 0.6), aas.trial["params"].get("k_max", 5)) == (0.6, 5)


def test_dry_run_prints_every_planned_trial_without_starting_anything(capsys, monkeypatch):
    import ray

    def no_ray(*args, **kwargs):
        raise AssertionError("--dry-run started Ray")

    monkeypatch.setattr(ray, "init", no_ray)
    rc = cli_main(["bench", str(CONFIG), "--dry-run"])  # the wildlife data are not on this machine: a warning
    out = capsys.readouterr().out
    assert rc == 0
    assert out.startswith("warning: ") and "dataset path(s) not found" in out.splitlines()[0]
    lines = [ln for ln in out.splitlines() if ln.startswith("metadata:")]
    assert len(lines) == 780
    assert [ln.split()[1] for ln in lines[:15 * 4:4]] == [r[0] for r in PAPER_ROWS]


def _records_with_blocks() -> pd.DataFrame:
    rows = []
    for label, block, base in (("baseline", "reference", 0.30), ("megadescriptor", "foundation", 0.40),
                               ("ice", "USL", 0.45), ("spcl", "AL on SpCL", 0.44), ("aas", "AL on SpCL", 0.5)):
        for seed in (0, 1):
            rows.append({"dataset": "d", "label": label, "method": "none", "block": block, "seed": seed,
                         "cycle": 1, "mAP": base + 0.01 * seed, "pairs_asked": 0, "pairs_cum": 0,
                         "pairs_total": 100, "budget_used_pct": 0.0})
    return pd.DataFrame(rows)


def test_tables_show_blocks_as_separators():
    summary = summary_table(_records_with_blocks())
    assert summary["block"].tolist() == ["reference", "foundation", "USL", "AL on SpCL", "AL on SpCL"]
    md = summary_markdown(summary).splitlines()
    firsts = [ln.split("|")[1].strip() for ln in md if ln.startswith("| ")][1:]
    assert firsts == ["*reference*", "baseline", "*foundation*", "megadescriptor", "*USL*", "ice",
                      "*AL on SpCL*", "spcl", "aas"]
    tex = summary_latex(summary)
    assert tex.count("\\multicolumn") == 4 and "\\textit{AL on SpCL}" in tex
    assert tex.index("\\textit{USL}") < tex.index("ice") < tex.index("\\textit{AL on SpCL}") < tex.index("spcl")
    plain = summary_table(_records_with_blocks().drop(columns="block"))  # no blocks: no separators
    assert "block" not in plain.columns and "*" not in summary_markdown(plain).split("\n\n")[0].replace("**", "")
