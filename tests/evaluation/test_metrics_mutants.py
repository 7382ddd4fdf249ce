"""Retrieval and open-set metric details pinned by the mutation review (tests/mutants/SURVIVORS.md)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from alreid.errors import AlreidError
from alreid.evaluation.metrics import auc_known_unknown, baks, baus, evaluate_retrieval, rank_metrics
from tests.evaluation.test_metrics import assert_same, brute_force


def test_mixed_type_identity_lists_compare_by_python_equality():
    # np.asarray([1, "a"]) would turn 1 into "1" and lose the match with the gallery's int 1
    sim = np.array([[0.9, 0.2, 0.5], [0.1, 0.3, 0.8]])
    q_ids, g_ids = [1, "a"], [1, "a", 2]
    got = rank_metrics(sim, q_ids, g_ids)
    assert_same(got, brute_force(sim, q_ids, g_ids))
    assert got["n_valid_queries"] == 2 and got["mAP"] == pytest.approx((1 + 1 / 2) / 2)
    got = rank_metrics(sim.T[:2, :2], g_ids[:2], q_ids)  # the other way round
    assert got["n_valid_queries"] == 2


@pytest.mark.parametrize("q_cams, g_cams", [(np.zeros(3), np.zeros(2)), (np.zeros(2), np.zeros(2)),
                                            (np.zeros(3), np.zeros(3))])
def test_camera_arrays_of_the_wrong_length_are_named(q_cams, g_cams):
    with pytest.raises(AlreidError) as err:
        rank_metrics(np.ones((2, 3)), np.array([1, 2]), np.array([1, 2, 3]), q_cams=q_cams, g_cams=g_cams)
    assert str(err.value) == f"camera arrays have {len(q_cams)} and {len(g_cams)} entries; expected 2 and 3"


def test_one_camera_array_alone_is_refused_with_the_fix():
    for kw in ({"q_cams": np.zeros(2)}, {"g_cams": np.zeros(2)}):
        with pytest.raises(AlreidError) as err:
            rank_metrics(np.ones((2, 2)), np.array([1, 2]), np.array([1, 2]), **kw)
        assert str(err.value) == "give both q_cams and g_cams, or neither"


@pytest.mark.parametrize("seed", range(6))
def test_missing_cameras_never_match_any_camera(seed):
    # three real cameras get codes 0, 1, 2; a missing one (None) on either side must match none of
    # them and no other missing one: brute force with every None replaced by a unique camera
    rng = np.random.default_rng(seed)
    nq, ng = 6, 12
    sim = rng.random((nq, ng))
    q_ids, g_ids = rng.integers(0, 3, nq), rng.integers(0, 3, ng)
    cams = np.array(["c0", "c1", "c2", None], dtype=object)
    q_cams, g_cams = cams[rng.integers(0, 4, nq)], cams[rng.integers(0, 4, ng)]
    q_cams[0], g_cams[0] = None, None
    q_cams[1:4], g_cams[1:4] = ["c0", "c1", "c2"], ["c0", "c1", "c2"]
    q_ref = [f"q-missing-{i}" if c is None else c for i, c in enumerate(q_cams)]
    g_ref = [f"g-missing-{j}" if c is None else c for j, c in enumerate(g_cams)]
    assert_same(rank_metrics(sim, q_ids, g_ids, q_cams, g_cams), brute_force(sim, q_ids, g_ids, q_ref, g_ref))


def test_query_identities_absent_from_the_gallery_are_skipped():
    # identities 7 and 9 appear only among the queries, after the gallery's only identity 5
    sim = np.array([[0.9, 0.1], [0.5, 0.4], [0.3, 0.8], [0.2, 0.6]])
    q_ids, g_ids = np.array([5, 7, 9, 5]), np.array([5, 5])
    got = rank_metrics(sim, q_ids, g_ids)
    assert_same(got, brute_force(sim, q_ids, g_ids))
    assert (got["n_valid_queries"], got["n_skipped_queries"]) == (2, 2)


def test_a_query_without_identity_matches_nothing():
    # pandas gives a missing identity the code -1, which must find no gallery rows at all
    sim = np.array([[0.9, 0.1, 0.3], [0.5, 0.8, 0.7]])
    q_ids, g_ids = np.array([None, 1], dtype=object), np.array([1, 2, 1], dtype=object)
    got = rank_metrics(sim, q_ids, g_ids)
    assert (got["n_valid_queries"], got["n_skipped_queries"]) == (1, 1)
    assert got["mAP"] == pytest.approx((1 / 2 + 2 / 3) / 2)  # query 1: matches at ranks 2 and 3


def test_rank_metrics_errors_name_the_problem():
    cases = [
        ((np.ones(3), [1], [1, 2, 3]), {}, "similarity matrix must be 2-D (queries x gallery), got shape (3,)"),
        ((np.ones((2, 3)), [1], [1, 2, 3]), {},
         "similarity matrix is 2 x 3 but there are 1 query and 3 gallery identities"),
        ((np.ones((2, 3)), [1, 2], [1, 2]), {},
         "similarity matrix is 2 x 3 but there are 2 query and 2 gallery identities"),
        ((np.ones((2, 3)), [1, 2], [1, 2, 3]), {"topk": (1, 0)}, "top-k values must be >= 1, got (1, 0)"),
        ((np.array([[1.0, np.inf]]), [1], [1, 2]), {}, "similarity matrix contains NaN or infinite values"),
        ((np.array([[1.0, 0.5], [0.2, np.nan]]), [1, 2], [1, 2]), {"chunk": 1},
         "similarity matrix contains NaN or infinite values"),
    ]
    for args, kw, message in cases:
        with pytest.raises(AlreidError) as err:
            rank_metrics(*args, **kw)
        assert str(err.value) == message


def test_topk_one_is_allowed_and_only_the_asked_ks_are_reported():
    sim = np.array([[0.2, 0.9, 0.5], [0.7, 0.1, 0.3]])
    got = rank_metrics(sim, [1, 1], [2, 1, 2], topk=[1, 2, 3.0])
    assert set(got) == {"mAP", "mINP", "top1", "top2", "top3", "n_valid_queries", "n_skipped_queries"}
    assert (got["top1"], got["top2"], got["top3"]) == (0.5, 0.5, 1.0)  # the match ranks 1 and 3


@pytest.mark.parametrize("chunk", [0, -3, 1, 2, 3, 100])
def test_any_chunk_size_gives_the_brute_force_answer(chunk):
    rng = np.random.default_rng(11)
    sim = rng.integers(0, 4, (7, 9))  # integer similarities: many ties, and no float dtype to keep
    q_ids, g_ids = rng.integers(0, 3, 7), rng.integers(0, 3, 9)
    q_cams, g_cams = rng.integers(0, 2, 7), rng.integers(0, 2, 9)
    assert_same(rank_metrics(sim, q_ids, g_ids, q_cams, g_cams, chunk=chunk),
                brute_force(sim.astype(float), q_ids, g_ids, q_cams, g_cams))
    assert_same(rank_metrics(sim, q_ids, g_ids, chunk=chunk), brute_force(sim.astype(float), q_ids, g_ids))


def test_evaluate_retrieval_errors_name_the_problem():
    g = np.eye(2)
    with pytest.raises(AlreidError) as err:
        evaluate_retrieval(np.ones((3, 2)), g, np.array([0, 1]), np.array([0, 1]), query_unknown=np.zeros(3, bool))
    assert str(err.value) == "3 query features, 2 query identities and 3 unknown flags; they must match"
    with pytest.raises(AlreidError) as err:
        evaluate_retrieval(np.ones((2, 2)), g, np.array([0, 1]), np.array([0, 1]), query_unknown=np.zeros(3, bool))
    assert str(err.value) == "2 query features, 2 query identities and 3 unknown flags; they must match"
    with pytest.raises(AlreidError) as err:
        evaluate_retrieval(np.ones((2, 2)), np.zeros((0, 2)), np.array([0, 1]), np.array([]),
                           query_unknown=np.zeros(2, bool))
    assert str(err.value) == "the gallery is empty; nothing to retrieve against"


def test_auc_errors_and_single_class():
    with pytest.raises(AlreidError) as err:
        auc_known_unknown(np.array([True, False]), np.array([0.1, 0.2, 0.3]))
    assert str(err.value) == "2 unknown flags but 3 scores"
    assert math.isnan(auc_known_unknown([True, True], [0.1, 0.2]))
    assert math.isnan(auc_known_unknown([0, 0], [0.1, 0.2]))
    assert auc_known_unknown([0, 1, 0], [3, 2, 1]) == pytest.approx(0.5)  # ints are flags and scores too


def test_zero_feature_rows_stay_zero_and_scale_does_not_matter():
    from alreid.evaluation.metrics import _l2_normalise

    out = _l2_normalise(np.array([[3, 4], [0, 0]]))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [[0.6, 0.8], [0.0, 0.0]])
    gallery = np.array([[2.0, 0.0], [0.0, 5.0], [1.0, 1.0]])
    queries = np.array([[0.0, 0.0], [3.0, 1.0]])
    got = evaluate_retrieval(queries, gallery, np.array([7, 8]), np.array([7, 8, 9]),
                             query_unknown=np.array([False, False]), baus_threshold=0.5)
    # the zero query scores 0 everywhere: its match (gallery 0) ranks first by index, 1-NN = gallery 0
    # the other query: cosines 0.949, 0.316, 0.894 -> 1-NN is gallery 0 (id 7), its match (8) ranks 3rd
    assert got["top1"] == pytest.approx(0.5) and got["mAP"] == pytest.approx((1 + 1 / 3) / 2)
    assert got["BAKS"] == pytest.approx(0.5)
    assert (got["n_queries"], got["n_known_queries"], got["n_unknown_queries"]) == (2, 2, 0)


def test_evaluate_retrieval_uses_cameras_and_the_new_class_name():
    rng = np.random.default_rng(3)
    q, g = rng.standard_normal((6, 4)), rng.standard_normal((10, 4))
    q_ids, g_ids = np.array([0, 1, 2, 9, 9, 1]), rng.integers(0, 3, 10)
    q_cams, g_cams = rng.integers(0, 2, 6), rng.integers(0, 2, 10)
    unknown = q_ids == 9
    got = evaluate_retrieval(q, g, q_ids, g_ids, query_unknown=unknown, q_cams=q_cams, g_cams=g_cams,
                             baus_threshold=2.0, new_class="NEW")
    sim = (q / np.linalg.norm(q, axis=1, keepdims=True)) @ (g / np.linalg.norm(g, axis=1, keepdims=True)).T
    ref = brute_force(sim, q_ids, g_ids, q_cams, g_cams)
    for key in ("mAP", "mINP", "top1", "n_valid_queries", "n_skipped_queries"):
        assert got[key] == pytest.approx(ref[key]), key
    assert got["BAUS"] == 1.0  # every top-1 cosine is below 2: all unknown queries predicted "NEW"
    pred = g_ids[sim.argmax(axis=1)]
    known = ~unknown
    per_id = [np.mean(pred[known & (q_ids == i)] == i) for i in (0, 1, 2)]
    assert got["BAKS"] == pytest.approx(np.mean(per_id))
    top1 = sim.max(axis=1)
    assert got["AUC"] == pytest.approx(np.mean([float(a > b) + 0.5 * (a == b) for a in top1[known]
                                                for b in top1[unknown]]))
    assert (got["n_queries"], got["n_known_queries"], got["n_unknown_queries"]) == (6, 4, 2)


def test_a_two_way_tie_ranks_the_earlier_gallery_item_first():
    sim = np.array([[0.5, 0.5, 0.1], [0.3, 0.9, 0.9]])
    # query 0 (id 1): its match (column 1) ties with column 0 -> rank 2; query 1 (id 2): its match
    # (column 2) ties with column 1 -> rank 2
    got = rank_metrics(sim, [1, 2], [3, 1, 2])
    assert (got["mAP"], got["top1"]) == (0.5, 0.0)


def test_queries_without_a_match_raise_no_warnings():
    import warnings

    sim = np.array([[0.5, 0.2], [0.3, 0.9], [0.1, 0.4]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = rank_metrics(sim, [1, 5, 6], [1, 2], chunk=2)  # 0/0 for the unmatched queries stays quiet
    assert (got["n_valid_queries"], got["mAP"]) == (1, 1.0)


def test_no_queries_or_an_empty_gallery_give_nan_metrics():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # NaN by rule, not a "mean of empty slice" warning
        got = rank_metrics(np.zeros((0, 3)), [], [1, 2, 3])
        assert (got["n_valid_queries"], got["n_skipped_queries"]) == (0, 0) and math.isnan(got["mAP"])
        got = rank_metrics(np.zeros((2, 0)), [1, 2], [])
        assert (got["n_valid_queries"], got["n_skipped_queries"]) == (0, 2) and math.isnan(got["top1"])
        got = rank_metrics(np.ones((2, 2)), [1, 2], [3, 4])
        assert all(math.isnan(got[k]) for k in ("mAP", "mINP", "top1", "top10"))


def test_open_set_rates_compare_mixed_type_labels_by_python_equality():
    # identities 1, "a", 2 (per-identity hits 1, 1, 0); np.asarray of these lists would turn 1 into "1"
    assert baks([1, "a", 2], [1, "a", 3], []) == pytest.approx(2 / 3)
    assert baks(["u", 1, 1], [1, 1, "u"], ["u"]) == pytest.approx(1 / 2)
    # unknown identities "u" (1 of 1 predicted new) and 7 (1 of 2); the new class is the int 0
    assert baus(["u", 7, 7], [0, "x", 0], ["u", 7], new_class=0) == pytest.approx(0.75)
    assert auc_known_unknown(np.array([0.0, 1.0, 0.0]), [3, 2, 1]) == pytest.approx(0.5)  # float flags


def test_single_class_auc_is_nan_without_asking_sklearn():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # sklearn would warn (or raise) on a single class
        assert math.isnan(auc_known_unknown([True, True], [0.1, 0.2]))
        assert math.isnan(auc_known_unknown([False, False, False], [0.1, 0.2, 0.3]))


def test_unknown_flags_given_as_integers_mean_the_same_as_booleans():
    rng = np.random.default_rng(4)
    q, g = rng.standard_normal((5, 3)), rng.standard_normal((6, 3))
    q_ids, g_ids = np.array([0, 1, 2, 8, 9]), np.array([0, 1, 2, 0, 1, 2])
    flags = [0, 0, 0, 1, 1]
    as_int = evaluate_retrieval(q, g, q_ids, g_ids, query_unknown=flags, baus_threshold=0.3)
    as_bool = evaluate_retrieval(q, g, q_ids, g_ids, query_unknown=np.array(flags, bool), baus_threshold=0.3)
    assert as_int == pytest.approx(as_bool, nan_ok=True)
    assert (as_int["n_known_queries"], as_int["n_unknown_queries"]) == (3, 2)


def test_baus_threshold_is_strict():
    # the unknown query's top-1 cosine is exactly 1.0: not below a threshold of 1.0, so not "new"
    got = evaluate_retrieval(np.array([[2.0, 0.0]]), np.array([[1.0, 0.0], [0.0, 1.0]]), np.array(["u"]),
                             np.array(["a", "b"]), query_unknown=np.array([True]), baus_threshold=1.0)
    assert got["BAUS"] == 0.0
