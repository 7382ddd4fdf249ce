"""Same-camera filtering end to end, on data where it changes the answer.

Every query q_i (camera 0) has in the gallery: its twin t_i (same identity, camera 0, similarity 0.995),
a distractor d_i of another identity (camera 0, similarity 0.894) and its true match m_i (camera 1,
similarity 0.707); everything else is orthogonal (similarity 0). By hand:

* filtered (Market-1501): t_i is removed -> ranking d_i, m_i -> AP = 1/2, mAP = 0.5, top1 = 0;
* unfiltered: t_i, d_i, m_i -> AP = (1/1 + 2/3) / 2 = 5/6.

Both Market-style tests before this one had mAP 1.0 either way, so dropping the filter passed them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from alreid.datasets.base import ReidDataset
from alreid.evaluation.metrics import rank_metrics
from alreid.evaluation.protocol import evaluate_protocol, standard_protocol
from alreid.harness.settings import make_trial_config
from alreid.harness.trial import Trial

N_IDS = 6


def scene() -> tuple[np.ndarray, pd.DataFrame]:
    """Rows per identity i: train x2, query q_i, twin t_i, distractor d_i (identity 'd<i>'), match m_i."""
    dim = 4 * N_IDS
    e = np.eye(dim)
    feats, rows = [], []

    def add(vec, identity, role, camera):
        feats.append(vec / np.linalg.norm(vec))
        rows.append({"image_id": len(rows), "identity": identity, "role": role, "camera": camera,
                     "split": "train" if role == "train" else "test"})

    for i in range(N_IDS):
        base, f, g, h = e[4 * i], e[4 * i + 1], e[4 * i + 2], e[4 * i + 3]
        add(base + 0.3 * g, f"id{i}", "train", 0)
        add(base + 0.3 * h, f"id{i}", "train", 1)
        add(base, f"id{i}", "query", 0)
        add(base + 0.1 * f, f"id{i}", "gallery", 0)   # twin: cos = 1/sqrt(1.01) = 0.995
        add(base + 0.5 * f, f"d{i}", "gallery", 0)    # distractor: cos = 1/sqrt(1.25) = 0.894
        add(base + 1.0 * f, f"id{i}", "gallery", 1)   # true match: cos = 1/sqrt(2) = 0.707
    return np.asarray(feats, dtype=np.float32), pd.DataFrame(rows)


def test_filtered_and_unfiltered_map_differ_by_hand():
    x, meta = scene()
    q = np.flatnonzero(meta.role == "query")
    g = np.flatnonzero(meta.role == "gallery")
    sim = x[q] @ x[g].T
    ids, cams = meta.identity.to_numpy(), meta.camera.to_numpy()
    filtered = rank_metrics(sim, ids[q], ids[g], cams[q], cams[g], topk=(1, 2))
    unfiltered = rank_metrics(sim, ids[q], ids[g], topk=(1, 2))
    assert filtered["mAP"] != pytest.approx(unfiltered["mAP"])  # the data can tell the two apart
    assert filtered["mAP"] == pytest.approx(0.5)
    assert (filtered["top1"], filtered["top2"]) == (0.0, 1.0)
    assert filtered["mINP"] == pytest.approx(0.5)  # the last (only) true match at kept rank 2
    assert unfiltered["mAP"] == pytest.approx(5 / 6)
    assert unfiltered["top1"] == 1.0


def test_evaluate_protocol_filters_same_camera_matches():
    x, meta = scene()
    proto = standard_protocol(meta)
    ids, cams = meta.identity.to_numpy(), meta.camera.to_numpy()
    with_cams = evaluate_protocol(proto, x, ids, cams)
    without = evaluate_protocol(proto, x, ids)
    assert without["mAP"] == pytest.approx(5 / 6)
    assert with_cams["mAP"] == pytest.approx(0.5)
    assert with_cams["n_valid_queries"] == N_IDS and with_cams["n_skipped_queries"] == 0


def test_trial_evaluates_with_the_datasets_camera_column():
    """The whole path: a dataset naming its camera column -> Trial -> cycle 0 record."""
    x, meta = scene()
    ds = ReidDataset("camera-trap", meta, x, info={"camera_column": "camera"})
    rec = Trial(make_trial_config({"cycles": 0}), ds).run()
    assert rec.mAP.iloc[0] == pytest.approx(0.5)
    assert rec.top1.iloc[0] == 0.0
    # the same data with the camera column given through the protocol settings
    ds2 = ReidDataset("camera-trap", meta, x, info={})
    rec2 = Trial(make_trial_config({"cycles": 0, "protocol": {"camera_column": "camera"}}), ds2).run()
    assert rec2.mAP.iloc[0] == pytest.approx(0.5)
    # and without any camera column nothing is removed
    rec3 = Trial(make_trial_config({"cycles": 0}), ReidDataset("camera-trap", meta, x, info={})).run()
    assert rec3.mAP.iloc[0] == pytest.approx(5 / 6)
