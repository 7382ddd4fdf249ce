"""Retrieval and open-set metrics against hand-worked cases and an independent brute-force loop."""

from __future__ import annotations

import math

import numpy as np
import pytest

from alreid.errors import AlreidError
from alreid.evaluation.metrics import auc_known_unknown, baks, baus, evaluate_retrieval, rank_metrics


# ------------------------------------------------------------------------------------------------
# brute-force reference: one query at a time, straight from the definitions in spec 7.1
# ------------------------------------------------------------------------------------------------
def brute_force(sim, q_ids, g_ids, q_cams=None, g_cams=None, topk=(1, 3, 5, 10)):
    aps, inps, firsts = [], [], []
    skipped = 0
    for i in range(sim.shape[0]):
        order = sorted(range(sim.shape[1]), key=lambda j: (-sim[i, j], j))
        rel = []
        for j in order:
            same_id = g_ids[j] == q_ids[i]
            if q_cams is not None and same_id and g_cams[j] == q_cams[i]:
                continue  # junk: same identity seen by the same camera
            rel.append(1 if same_id else 0)
        if sum(rel) == 0:
            skipped += 1
            continue
        hits, precisions, last = 0, [], 0
        for pos, r in enumerate(rel, start=1):
            if r:
                hits += 1
                precisions.append(hits / pos)
                last = pos
        aps.append(sum(precisions) / hits)
        inps.append(hits / last)
        firsts.append(rel.index(1) + 1)
    out = {"mAP": np.mean(aps) if aps else math.nan, "mINP": np.mean(inps) if inps else math.nan}
    for k in topk:
        out[f"top{k}"] = np.mean([f <= k for f in firsts]) if firsts else math.nan
    out["n_valid_queries"] = len(aps)
    out["n_skipped_queries"] = skipped
    return out


def assert_same(got, want):
    assert set(got) == set(want)
    for key, value in want.items():
        if isinstance(value, float) and math.isnan(value):
            assert math.isnan(got[key]), key
        else:
            assert got[key] == pytest.approx(value, abs=1e-12), key


# ------------------------------------------------------------------------------------------------
# rank_metrics
# ------------------------------------------------------------------------------------------------
def test_hand_worked_case_without_cameras():
    # gallery ids:          a    b    a    c    b    a
    sim = np.array([[0.9, 0.8, 0.7, 0.6, 0.5, 0.4],    # query a: ranking a b a c b a -> hits at 1, 3, 6
                    [0.1, 0.2, 0.3, 0.9, 0.8, 0.7],    # query b: ranking c b a a b a (desc: 3,4,5,2,1,0)
                    [0.5, 0.5, 0.5, 0.5, 0.5, 0.9]])   # query z: no such identity in the gallery -> skipped
    g = np.array(["a", "b", "a", "c", "b", "a"])
    q = np.array(["a", "b", "z"])
    # query a: AP = (1/1 + 2/3 + 3/6) / 3 = 13/18 ; INP = 3/6 = 1/2 ; first hit at rank 1
    # query b: order by sim 0.9(c) 0.8(b,j=4) 0.7(a) 0.3(a) 0.2(b,j=1) 0.1(a) -> hits at 2 and 5
    #          AP = (1/2 + 2/5) / 2 = 9/20 ; INP = 2/5 ; first hit at rank 2
    got = rank_metrics(sim, q, g, topk=(1, 2, 5))
    assert got["mAP"] == pytest.approx((13 / 18 + 9 / 20) / 2)
    assert got["mINP"] == pytest.approx((1 / 2 + 2 / 5) / 2)
    assert got["top1"] == pytest.approx(0.5)  # a hits at 1, b does not
    assert got["top2"] == pytest.approx(1.0)
    assert got["top5"] == pytest.approx(1.0)
    assert got["n_valid_queries"] == 2 and got["n_skipped_queries"] == 1


def test_hand_worked_case_with_camera_filtering():
    sim = np.array([[0.9, 0.8, 0.7, 0.6, 0.5]])
    g = np.array(["a", "x", "a", "y", "a"])
    g_cams = np.array([1, 1, 2, 1, 1])
    # query a from camera 1: gallery items 0 and 4 (a, cam 1) are removed.
    # kept ranking: x(0.8) a(0.7) y(0.6) -> one hit at rank 2: AP = 1/2, INP = 1/2, top1 = 0, top3 = 1
    got = rank_metrics(sim, np.array(["a"]), g, np.array([1]), g_cams, topk=(1, 3))
    assert got["mAP"] == pytest.approx(0.5)
    assert got["mINP"] == pytest.approx(0.5)
    assert got["top1"] == 0.0 and got["top3"] == 1.0
    # query a from camera 2: only item 2 is removed -> hits at kept ranks 1 and 4 (of a x y a)
    # AP = (1/1 + 2/4) / 2 = 3/4 ; INP = 2/4
    got = rank_metrics(sim, np.array(["a"]), g, np.array([2]), g_cams, topk=(1,))
    assert got["mAP"] == pytest.approx(0.75)
    assert got["mINP"] == pytest.approx(0.5)


def test_query_whose_only_matches_share_its_camera_is_skipped():
    sim = np.array([[0.9, 0.1], [0.2, 0.8]])
    got = rank_metrics(sim, np.array([7, 8]), np.array([7, 8]), np.array([0, 0]), np.array([0, 1]))
    # query 7 (cam 0): its only match is cam 0 -> removed -> skipped. query 8: match at rank 1.
    assert got["n_valid_queries"] == 1 and got["n_skipped_queries"] == 1
    assert got["mAP"] == 1.0 and got["top1"] == 1.0


def test_ties_rank_the_earlier_gallery_item_first():
    # all similarities equal: the ranking is the gallery order, so the single match at index 2 has rank 3
    sim = np.full((1, 4), 0.5)
    got = rank_metrics(sim, np.array(["a"]), np.array(["x", "y", "a", "z"]), topk=(1, 3))
    assert got["mAP"] == pytest.approx(1 / 3)
    assert got["top1"] == 0.0 and got["top3"] == 1.0


def test_missing_cameras_remove_nothing():
    sim = np.array([[0.9, 0.8]])
    got = rank_metrics(sim, np.array(["a"]), np.array(["a", "b"]), np.array([None], dtype=object),
                       np.array([None, None], dtype=object))
    assert got["n_valid_queries"] == 1 and got["mAP"] == 1.0


@pytest.mark.parametrize("with_cams", [False, True])
@pytest.mark.parametrize("chunk", [1, 7, 512])
def test_matches_brute_force_on_random_data(with_cams, chunk):
    rng = np.random.default_rng(3 + chunk)
    nq, ng = 60, 90
    sim = rng.random((nq, ng))  # float64 uniform: ties have probability ~0
    q_ids = rng.integers(0, 15, nq)  # some query ids never occur in the gallery
    g_ids = rng.integers(0, 12, ng)
    q_cams = rng.integers(0, 3, nq) if with_cams else None
    g_cams = rng.integers(0, 3, ng) if with_cams else None
    got = rank_metrics(sim, q_ids, g_ids, q_cams, g_cams, chunk=chunk)
    want = brute_force(sim, q_ids, g_ids, q_cams, g_cams)
    assert want["n_skipped_queries"] > 0 and want["n_valid_queries"] > 0  # the case is informative
    assert_same(got, want)


def test_matches_brute_force_with_string_ids_and_float32():
    rng = np.random.default_rng(11)
    sim = rng.standard_normal((25, 40)).astype(np.float32)
    q_ids = np.array([f"id{i}" for i in rng.integers(0, 6, 25)])
    g_ids = np.array([f"id{i}" for i in rng.integers(0, 6, 40)])
    cams_q, cams_g = rng.choice(["c1", "c2"], 25), rng.choice(["c1", "c2"], 40)
    assert_same(rank_metrics(sim, q_ids, g_ids, cams_q, cams_g), brute_force(sim, q_ids, g_ids, cams_q, cams_g))


def test_no_valid_query_gives_nan_metrics():
    got = rank_metrics(np.ones((2, 2)), np.array([1, 2]), np.array([3, 4]))
    assert math.isnan(got["mAP"]) and math.isnan(got["mINP"]) and math.isnan(got["top1"])
    assert got["n_valid_queries"] == 0 and got["n_skipped_queries"] == 2


def test_bad_inputs_are_rejected():
    with pytest.raises(AlreidError, match="2 query"):
        rank_metrics(np.ones((3, 2)), np.array([1, 2]), np.array([1, 2]))
    with pytest.raises(AlreidError, match="both"):
        rank_metrics(np.ones((2, 2)), np.array([1, 2]), np.array([1, 2]), q_cams=np.array([0, 0]))
    with pytest.raises(AlreidError, match="NaN"):
        rank_metrics(np.array([[np.nan, 1.0]]), np.array([1]), np.array([1, 2]))


# ------------------------------------------------------------------------------------------------
# BAKS / BAUS / AUC
# ------------------------------------------------------------------------------------------------
def test_baks_hand_case():
    y_true = ["a", "a", "a", "a", "b", "c", "u"]
    y_pred = ["a", "a", "a", "b", "a", "c", "a"]
    # known ids a (3/4 right), b (0/1), c (1/1); u is unknown and ignored: (0.75 + 0 + 1) / 3
    assert baks(y_true, y_pred, ["u"]) == pytest.approx(1.75 / 3)
    assert math.isnan(baks(["u"], ["a"], ["u"]))


def test_baus_hand_case():
    y_true = ["u", "u", "v", "a"]
    y_pred = ["new", "a", "new", "new"]
    # unknown ids u (1/2 predicted new), v (1/1): (0.5 + 1) / 2 ; the known a is ignored
    assert baus(y_true, y_pred, ["u", "v"], "new") == pytest.approx(0.75)
    assert math.isnan(baus(["a"], ["new"], ["u"], "new"))


def test_auc_hand_case():
    is_unknown = np.array([False, False, True, True])
    score = np.array([0.9, 0.4, 0.5, 0.1])
    # (known, unknown) pairs ranked correctly: (0.9,0.5) (0.9,0.1) (0.4,0.1) of 4 -> 3/4
    assert auc_known_unknown(is_unknown, score) == pytest.approx(0.75)
    assert math.isnan(auc_known_unknown(np.array([False, False]), np.array([0.1, 0.2])))


def test_baks_baus_auc_agree_with_wildlife_datasets():
    wm = pytest.importorskip("wildlife_datasets.metrics")
    rng = np.random.default_rng(5)
    y_true = rng.choice([f"id{i}" for i in range(8)], 200)
    y_pred = np.where(rng.random(200) < 0.3, "new_individual", rng.choice([f"id{i}" for i in range(8)], 200))
    unknown = ["id1", "id4", "id6"]
    assert baks(y_true, y_pred, unknown) == pytest.approx(wm.BAKS(y_true, y_pred, unknown))
    assert baus(y_true, y_pred, unknown, "new_individual") == pytest.approx(
        wm.BAUS(y_true, y_pred, unknown, "new_individual"))
    score = rng.random(200)
    labels = np.where(np.isin(y_true, unknown), "new_individual", y_true)
    assert auc_known_unknown(np.isin(y_true, unknown), score) == pytest.approx(
        wm.auc_roc_new_class(labels, score, "new_individual"))


# ------------------------------------------------------------------------------------------------
# evaluate_retrieval
# ------------------------------------------------------------------------------------------------
def test_evaluate_retrieval_hand_case():
    gallery = np.array([[1.0, 0.0], [0.0, 1.0]])  # ids a, b
    g_ids = np.array(["a", "b"])
    # q0 (a) points almost at a; q1 (b) points nearer a than b (wrong); q2 (u, unknown) sits in between
    queries = np.array([[10.0, 1.0], [0.8, 0.6], [0.6, 0.8]]) * np.array([[1.0], [3.0], [0.5]])
    q_ids = np.array(["a", "b", "u"])
    unknown = np.array([False, False, True])
    got = evaluate_retrieval(queries, gallery, q_ids, g_ids, query_unknown=unknown, baus_threshold=0.95)
    # retrieval: q0 hit at rank 1 (AP 1), q1 hit at rank 2 (AP 1/2); u skipped
    assert got["mAP"] == pytest.approx(0.75) and got["top1"] == pytest.approx(0.5)
    assert got["n_skipped_queries"] == 1
    # 1-NN: q0 -> a (right), q1 -> a (wrong): BAKS = (1 + 0) / 2
    assert got["BAKS"] == pytest.approx(0.5)
    # top-1 cosines: q0 0.995, q1 0.8, u 0.8 -> known above unknown in 1 pair, tied in 1: AUC = (1 + 0.5) / 2
    assert got["AUC"] == pytest.approx(0.75)
    # u's top-1 0.8 < 0.95 -> predicted new: BAUS = 1
    assert got["BAUS"] == pytest.approx(1.0)
    assert (got["n_queries"], got["n_known_queries"], got["n_unknown_queries"]) == (3, 2, 1)


def test_evaluate_retrieval_omits_baus_without_threshold():
    rng = np.random.default_rng(0)
    got = evaluate_retrieval(rng.random((4, 3)), rng.random((5, 3)), np.arange(4), np.array([0, 1, 2, 3, 3]),
                             query_unknown=np.zeros(4, bool))
    assert "BAUS" not in got and math.isnan(got["AUC"])
