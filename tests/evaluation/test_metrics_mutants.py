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
