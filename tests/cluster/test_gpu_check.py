"""benchmarks/gpu_check.py where no GPU is: the one-line no-CUDA exit, and its comparison logic run on the CPU."""

from __future__ import annotations

import importlib.util
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
gc = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gc)


def test_without_cuda_it_says_so_in_one_line_and_exits_0():
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the full check is benchmarks/gpu_check.sh")
    res = subprocess.run([str(ROOT / "benchmarks" / "gpu_check.sh")], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert res.stdout.count("\n") == 1 and "no CUDA device" in res.stdout


def test_unknown_check_is_a_one_line_error():
    res = subprocess.run([str(ROOT / "benchmarks" / "gpu_check.sh"), "--only", "knn,warp"], capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 2 and "unknown check(s) warp" in res.stderr


def test_knn_comparison_accepts_the_same_neighbours_and_catches_wrong_ones():
    pytest.importorskip("faiss")
    from alreid.clustering.knn import knn_search, l2_normalise

    x = l2_normalise(np.random.default_rng(0).standard_normal((600, 32)).astype(np.float32))
    cpu = knn_search(x, 10)
    sims, idx, how = gc.gpu_knn(x, 10, device="cpu")  # the torch path, as on a GPU without faiss-gpu
    assert "torch" in how
    stats = gc.compare_knn(cpu, (sims, idx))
    assert stats["rows_differing_without_tie"] == 0 and stats["max_sim_diff"] < 1e-5
    # brute force, independently: the true 10 neighbours of row 5
    assert set(np.argsort(-(x @ x[5]))[:10]) == set(idx[5])
    wrong = idx.copy()
    wrong[7, 3] = next(j for j in range(600) if j not in set(idx[7]))  # a neighbour that is not one
    with pytest.raises(gc.Mismatch, match="different neighbour sets"):
        gc.compare_knn(cpu, (sims, wrong))
    with pytest.raises(gc.Mismatch, match="similarities differ"):
        gc.compare_knn(cpu, (sims + 1e-3, idx))


def test_trials_sharing_the_gpu_must_overlap_in_time(tmp_path):
    for name, (start, end) in {"a": (100.0, 160.0), "b": (150.0, 200.0)}.items():
        (tmp_path / name).mkdir()
        lines = [{"timestamp": start + 20, "time_total_s": 20}, {"timestamp": end, "time_total_s": end - start}]
        (tmp_path / name / "result.json").write_text("\n".join(json.dumps(r) for r in lines) + "\n")
    a, b = gc.trial_interval(tmp_path / "a"), gc.trial_interval(tmp_path / "b")
    assert a == (100.0, 160.0) and gc.overlap(a, b) == 10.0
    assert gc.overlap((0.0, 5.0), (6.0, 9.0)) == 0.0
