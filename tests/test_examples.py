"""The user-facing examples run as written: the README's "From Python" snippet and the notebook walk-through."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
NYALA = "embeddings:../shared/data/nyala"
#: what `alreid.run_benchmark("configs/default.yaml")` runs inside the test: the default's shape, tiny
TINY_DEFAULT = {"name": "default", "datasets": ["synthetic:n_images=300"], "methods": ["none", "random", "aas"],
                "seeds": 1, "cycles": 1, "budget_pairs": 20, "trainer_params": {"iters": 20}, "storage_path": "results"}


def env() -> dict[str, str]:
    return {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_ADDRESS": "local", "MPLBACKEND": "Agg"}


def readme_snippet() -> str:
    """The first python block of the README's "From Python" section."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## From Python\n", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "the README's 'From Python' section has no python block"
    return match.group(1)


@pytest.mark.ray
@pytest.mark.parametrize("dataset", ["synthetic", "nyala"])
def test_readme_snippet_runs(dataset, tmp_path):
    """The snippet as printed; only the dataset (synthetic case) or the cycles (nyala, to keep CI short) change."""
    code = readme_snippet()
    assert NYALA in code and "cycles=5" in code and '"configs/default.yaml"' in code, "README snippet changed"
    if dataset == "synthetic":
        code = code.replace(NYALA, "synthetic:n_images=300")
    else:
        if not (SHARED / "nyala").exists():
            pytest.skip("../shared/data/nyala not present (shared real data not checked out)")
        code = code.replace(NYALA, f"embeddings:{SHARED / 'nyala'}").replace("cycles=5", "cycles=1")
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "default.yaml").write_text(yaml.safe_dump(TINY_DEFAULT))
    report = ('\nimport json\nprint("@@" + json.dumps({"n": data.n, "cycles": records["cycle"].tolist(), '
              '"map": records["mAP"].tolist(), "finished": result.finished, "errors": result.errors, '
              '"summary": table.summary.index.tolist(), "pairs": len(pairs), "budget": loop.budget, '
              '"asked": metrics["pairs_asked"], "cycle": metrics["cycle"], "metric_map": metrics["mAP"], '
              '"report": sorted(result.report_paths)}))\n')
    out = subprocess.run([sys.executable, "-c", code + report], cwd=tmp_path, env=env(), capture_output=True,
                         text=True, timeout=1200)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.split("@@", 1)[1])
    assert got["cycles"] == list(range(6 if dataset == "synthetic" else 2))
    assert got["errors"] == {} and len(got["finished"]) == 3 and set(got["summary"]) == {"none", "random", "aas"}
    assert "summary.md" in got["report"] and (tmp_path / "results" / "default" / "records.parquet").is_file()
    assert got["cycle"] == 1 and got["pairs"] == got["asked"] == got["budget"] > 0
    # the loop by hand (simulated answers) is cycle 1 of run_trial with the same sampler and seed
    assert got["metric_map"] == pytest.approx(got["map"][1], abs=1e-9)
    if dataset == "nyala":
        assert got["n"] == len(pd.read_csv(SHARED / "nyala" / "metadata.csv"))


def test_notebook_walkthrough_runs_and_saves_the_plot(tmp_path):
    out_dir = tmp_path / "walk"
    cmd = [sys.executable, str(ROOT / "examples" / "notebook_walkthrough.py"), "--dataset", "synthetic:n_images=300",
           "--cycles", "1", "--seeds", "1", "--out", str(out_dir)]
    out = subprocess.run(cmd, cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    import matplotlib.image

    png = matplotlib.image.imread(out_dir / "curves.png")
    assert png.ndim == 3 and png.shape[0] > 100 and png.shape[1] > 100 and png.std() > 0  # a drawn figure
    records = pd.read_csv(out_dir / "records.csv")
    assert sorted(records["label"].unique()) == ["aas (epsilon 0.4)", "none", "random"]
    assert records.groupby("label")["cycle"].apply(list).map(lambda c: c == [0, 1]).all()
    assert (records[records.label == "none"]["pairs_asked"] == 0).all()
    assert "cycle 1: " in out.stdout
