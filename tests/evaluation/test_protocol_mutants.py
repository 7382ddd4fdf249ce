"""Open-set protocol details pinned by the mutation review (tests/mutants/protocol.md).

Every expected value is worked out by hand or by a plain-Python reference of spec 5.2 (k-medoids with
farthest-first start, the central rule, the per-identity exemplar choice), never read back from the code.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import alreid.evaluation.protocol as P
from alreid.datasets.base import ReidDataset
from alreid.errors import AlreidError, ConfigError
from alreid.evaluation.protocol import (OpenSetProtocol, build_protocol, central, evaluate_protocol, identity_keys,
                                        kmedoids, load_pinned, pinned_protocol, protocol_frame,
                                        protocol_from_frame, protocol_hash, reference_features, standard_protocol,
                                        usable_identity)


# ------------------------------------------------------------------------------------------------
# plain-Python references of spec 5.2 (exemplar rules)
# ------------------------------------------------------------------------------------------------
def cosine_distance(x) -> list[list[float]]:
    """1 - cosine similarity, clipped to [0, 2], as nested Python lists."""
    z = [np.asarray(r, np.float64) / math.sqrt(float(np.dot(r, r))) for r in np.asarray(x, np.float64)]
    return [[min(2.0, max(0.0, 1.0 - float(np.dot(a, b)))) for b in z] for a in z]


TIE = 1e-5  # choices closer than this may be decided by float32 rounding: the references allow each of them


def near_best(cands, score) -> list:
    """The candidates whose score is within TIE of the lowest one."""
    cands = list(cands)
    best = min(score(c) for c in cands)
    return [c for c in cands if score(c) - best < TIE]


def ref_farthest_first(d: list[list[float]], k: int) -> list[list[int]]:
    """Every farthest-first start: the item with the smallest distance sum, then repeatedly the item
    farthest from all chosen ones (one sequence per way of breaking near-ties)."""
    seqs = [[i] for i in near_best(range(len(d)), lambda i: sum(d[i]))]
    while len(seqs[0]) < k:
        seqs = [seq + [j] for seq in seqs
                for j in near_best([j for j in range(len(d)) if j not in seq], lambda j: -min(d[j][c] for c in seq))]
    return seqs


def ref_kmedoids(x, k: int) -> set[tuple[int, ...]]:
    """Every possible result of alternating k-medoids (assign each item to its nearest medoid, move each
    medoid to the member with the smallest summed distance to its cluster, until nothing moves), over all
    ways of breaking near-ties; a cluster of two images always ties, by symmetry."""
    d = cosine_distance(x)
    results: set[tuple[int, ...]] = set()
    seen: set[tuple[int, ...]] = set()
    todo = ref_farthest_first(d, k)
    while todo:
        med = todo.pop()
        if tuple(med) in seen:
            continue
        seen.add(tuple(med))
        assign = []
        for i in range(len(d)):
            nearest = near_best(range(k), lambda c: d[i][med[c]])
            assert len(nearest) == 1, "an item equally near two medoids: pick other test data"
            assign.append(nearest[0])
        choices = []
        for c in range(k):
            members = [i for i in range(len(d)) if assign[i] == c]
            choices.append(near_best(members, lambda m: sum(d[m][j] for j in members)) if members else [med[c]])
        for new in itertools.product(*choices):
            if list(new) == med:
                results.add(tuple(sorted(med)))
            else:
                todo.append(list(new))
    return results


def central_ok(x, k: int, got) -> bool:
    """Whether ``got`` (sorted positions) are k rows with the highest mean cosine similarity to all rows: every
    chosen row scores at least the best left-out one, up to rounding (TIE)."""
    d = cosine_distance(x)
    n = len(d)
    score = [sum(1.0 - v for v in d[i]) / n for i in range(n)]
    chosen = list(got)
    rest = [i for i in range(n) if i not in chosen]
    return (chosen == sorted(set(chosen)) and len(chosen) == min(k, n)
            and (not rest or min(score[i] for i in chosen) >= max(score[i] for i in rest) - TIE))


# ------------------------------------------------------------------------------------------------
# summary, usable identities, identity keys
# ------------------------------------------------------------------------------------------------
def small_protocol(**kw) -> OpenSetProtocol:
    fields = dict(train_idx=np.array([0, 1, 2, 3]), query_idx=np.array([4, 5, 6]), gallery_idx=np.array([0, 2]),
                  heldout_ids=np.array(["c"]), query_unknown=np.array([False, True, True]),
                  gallery_ids=np.array(["a", "b"]), seed=7, exemplar_rule="central", exemplars=3,
                  holdout_fraction=0.25)
    fields.update(kw)
    return OpenSetProtocol(**fields)


def test_summary_lists_every_count_and_setting():
    assert small_protocol().summary() == {
        "n_train": 4, "n_query": 3, "n_gallery": 2, "n_gallery_ids": 2, "n_heldout_ids": 1,
        "n_query_known": 1, "n_query_unknown": 2, "seed": 7, "exemplar_rule": "central", "exemplars": 3,
        "holdout_fraction": 0.25}


def test_usable_identity_drops_missing_and_the_placeholder():
    ids = np.array(["a", None, "unknown", np.nan, "UNKNOWN", 3], dtype=object)
    assert usable_identity(ids).tolist() == [True, False, False, False, True, True]  # default label "unknown"
    assert usable_identity(ids, unknown_label="a").tolist() == [False, False, True, False, True, True]
    # the label is compared as text: -1 marks the same rows whether it is given as int or str
    assert usable_identity(np.array([-1, 4, -1]), unknown_label=-1).tolist() == [False, True, False]
    assert usable_identity(np.array([-1, 4, -1]), unknown_label="-1").tolist() == [False, True, False]


def test_identity_keys_keep_numbers_and_text_and_turn_mixtures_into_text():
    for arr in (np.array([3, 1, 2]), np.array([1.5, 2.0]), np.array([True, False]), np.array(["b", "a"])):
        out = identity_keys(arr)
        assert out.dtype == arr.dtype and np.array_equal(out, arr)
    out = identity_keys(np.array([1, "a", 2.5], dtype=object))
    assert out.dtype.kind == "U" and out.tolist() == ["1", "a", "2.5"]
    # numbers stay numbers, so 10 sorts after 2 (as text "10" < "2")
    assert np.unique(identity_keys([10, 2])).tolist() == [2, 10]


# ------------------------------------------------------------------------------------------------
# farthest-first start, k-medoids and the central rule
# ------------------------------------------------------------------------------------------------
def test_farthest_first_on_a_line_worked_by_hand():
    # points 0, 1, 2, 3, 10 on a line: distance sums 16, 13, 12, 13, 34 -> start at 2; farthest from {2}
    # is 10 (row 4); then row 0 (2 from row 2); then rows 1 and 3 are both 1 away: the lower, row 1
    pos = np.array([0.0, 1.0, 2.0, 3.0, 10.0])
    d = np.abs(pos[:, None] - pos[None, :])
    assert P._farthest_first(d, 1).tolist() == [2]
    assert P._farthest_first(d, 4).tolist() == [2, 4, 0, 1]
    assert P._farthest_first(d, 5).tolist() == [2, 4, 0, 1, 3]


@pytest.mark.parametrize("seed", [0, 1, 2, 4, 6, 7, 10, 11, 13, 14, 15, 20])
def test_kmedoids_matches_the_plain_reference(seed):
    rng = np.random.default_rng(seed)
    n, dim = int(rng.integers(8, 17)), int(rng.integers(2, 6))
    k = int(rng.integers(1, 5))
    x = rng.standard_normal((n, dim))  # negative similarities too: distances above 1 matter
    if seed % 3 == 0:
        x = x + 2.0 * rng.standard_normal(dim)  # a shared offset: mostly positive similarities
    want = ref_kmedoids(x, k)
    assert len(want) <= 2 and tuple(kmedoids(x, k).tolist()) in want


def test_kmedoids_finds_the_global_optimum_of_separated_clusters():
    # three tight clusters far apart in angle: the best 3-subset (brute force over all 220) is one medoid
    # per cluster, each the cluster's own medoid
    rng = np.random.default_rng(5)
    centres = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]) * 10
    x = np.vstack([centres[c] + rng.standard_normal((4, 3)) for c in range(3)])
    d = np.array(cosine_distance(x))
    best = min(itertools.combinations(range(12), 3), key=lambda s: d[:, list(s)].min(axis=1).sum())
    assert kmedoids(x, 3).tolist() == list(best)


def test_kmedoids_with_k_equal_n_gives_every_row():
    x = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.2]])
    assert kmedoids(x, 4).tolist() == [0, 1, 2, 3]


def test_exact_ties_go_to_the_earliest_rows():
    # axis-aligned features make every similarity exact (0 or 1), so these ties are real, not rounding
    # noise: both rules keep the earliest rows (stable sorts), on any machine. (Ties between merely
    # identical images are decided by BLAS rounding: see tests/mutants/protocol.md.)
    x = np.tile([3.0, 0.0, 0.0], (40, 1))
    assert kmedoids(x, 5).tolist() == [0, 1, 2, 3, 4]
    assert central(x, 5).tolist() == [0, 1, 2, 3, 4]
    # two exact kinds of image, interleaved: the 12 of kind 1 score 12/20, the 8 of kind 0 score 8/20
    x = np.eye(3)[[0, 1, 0, 1, 1] * 4]
    assert central(x, 5).tolist() == [1, 3, 4, 6, 8]


@pytest.mark.parametrize("seed", range(4))
def test_central_matches_the_plain_reference(seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((int(rng.integers(5, 20)), 4))
    k = int(rng.integers(1, 6))
    assert central_ok(x, k, central(x, k).tolist())


# ------------------------------------------------------------------------------------------------
# build_protocol against a reference of spec 5.2
# ------------------------------------------------------------------------------------------------
def shuffled_case(seed: int, n_ids: int = 10, unknown: str = "unknown", max_count: int = 9):
    """Identities with 1..max_count images each, rows shuffled (identities interleaved), a few unlabelled rows."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(1, max_count + 1, n_ids)
    ids = np.repeat([f"id{i}" for i in range(n_ids)], counts).astype(object)
    feats = rng.standard_normal((n_ids, 4))[np.repeat(np.arange(n_ids), counts)] + rng.standard_normal((len(ids), 4))
    is_train = rng.random(len(ids)) < 0.75
    ids = np.concatenate([ids, [unknown, unknown, None, unknown]])
    feats = np.vstack([feats, rng.standard_normal((4, 4))])
    is_train = np.concatenate([is_train, [True, False, True, False]])
    perm = rng.permutation(len(ids))
    return ids[perm], is_train[perm], feats[perm]


def check_against_spec(p, ids, is_train, feats, *, holdout_fraction, exemplars, rule, unknown="unknown"):
    """Every part of the protocol from its definition; exemplars with the plain references."""
    usable = np.array([i is not None and i != unknown for i in ids])
    assert p.train_idx.tolist() == np.flatnonzero(is_train).tolist()
    assert p.query_idx.tolist() == np.flatnonzero(~is_train & usable).tolist()
    train_ids = sorted(set(ids[is_train & usable]))
    n_hold = min(round(holdout_fraction * len(train_ids)), len(train_ids) - 1)
    assert p.heldout_ids.tolist() == sorted(p.heldout_ids.tolist()) and len(p.heldout_ids) == n_hold
    assert set(p.heldout_ids) <= set(train_ids)
    kept = [i for i in train_ids if i not in set(p.heldout_ids)]
    assert p.gallery_ids.tolist() == kept
    want = []
    for identity in kept:
        rows = np.flatnonzero(is_train & (ids == identity))
        if len(rows) <= exemplars:
            want += rows.tolist()
        elif rule == "central":
            got = [r for r in p.gallery_idx if r in set(rows)]
            assert central_ok(feats[rows], exemplars, np.searchsorted(rows, got).tolist())
            want += got
        else:
            got = [r for r in p.gallery_idx if r in set(rows)]
            assert tuple(np.searchsorted(rows, got)) in ref_kmedoids(feats[rows], exemplars)
            want += got
    assert p.gallery_idx.tolist() == sorted(want) and p.gallery_idx.dtype == np.int64
    assert p.query_unknown.tolist() == [ids[q] not in set(kept) for q in p.query_idx]
    assert (p.seed, p.exemplar_rule, p.exemplars, p.holdout_fraction) == (p.seed, rule, exemplars, holdout_fraction)


@pytest.mark.parametrize("seed, holdout_fraction, exemplars, rule", [
    (0, 0.2, 5, "kmedoids"), (1, 0.5, 3, "kmedoids"), (2, 0.3, 2, "central"), (3, 0.0, 4, "central"),
    (4, 0.2, 1, "kmedoids")])
def test_build_protocol_follows_the_spec(seed, holdout_fraction, exemplars, rule):
    ids, is_train, feats = shuffled_case(seed)
    p = build_protocol(ids, is_train, feats, holdout_fraction=holdout_fraction, exemplars=exemplars,
                       exemplar_rule=rule, seed=seed + 10)
    check_against_spec(p, ids, is_train, feats, holdout_fraction=holdout_fraction, exemplars=exemplars, rule=rule)
    assert p.seed == seed + 10 and isinstance(p.seed, int)


def test_build_protocol_defaults_are_the_papers():
    # 20 % held out, 5 exemplars, k-medoids, seed 0, 'unknown' rows unlabelled
    ids, is_train, feats = shuffled_case(7)
    p = build_protocol(ids, is_train, feats)
    check_against_spec(p, ids, is_train, feats, holdout_fraction=0.2, exemplars=5, rule="kmedoids")
    assert (p.seed, p.exemplar_rule, p.exemplars, p.holdout_fraction) == (0, "kmedoids", 5, 0.2)
    q = build_protocol(ids, is_train, feats, seed=0, holdout_fraction=0.2, exemplars=5, exemplar_rule="kmedoids")
    assert np.array_equal(p.heldout_ids, q.heldout_ids) and np.array_equal(p.gallery_idx, q.gallery_idx)


def test_a_custom_unknown_label_and_a_numeric_train_flag():
    ids, is_train, feats = shuffled_case(8, unknown="-1")
    for flag in (is_train.astype(int).tolist(), is_train.astype(float)):  # e.g. a 0/1 column read from a CSV
        p = build_protocol(ids, flag, feats, unknown_label="-1", exemplars=2)
        check_against_spec(p, ids, is_train, feats, holdout_fraction=0.2, exemplars=2, rule="kmedoids", unknown="-1")


def test_numeric_identities_stay_numbers():
    ids = np.array([10, 2, 2, 10, 3, 3, 2, 10, 3])
    is_train = np.array([1, 1, 0, 1, 1, 0, 1, 0, 1], bool)
    p = build_protocol(ids, is_train, np.eye(9), holdout_fraction=0.0)
    assert p.gallery_ids.tolist() == [2, 3, 10] and p.gallery_ids.dtype.kind == "i"
    assert p.query_idx.tolist() == [2, 5, 7] and not p.query_unknown.any()


def test_holdout_always_leaves_one_gallery_identity():
    # 2 train identities: round(0.9 * 2) = 2 would hold out both, so only 1 is; 0.5 * 2 = 1 held out
    ids = np.array(["a", "a", "b", "b", "a"])
    is_train = np.array([True, True, True, True, False])
    for frac in (0.5, 0.9):
        p = build_protocol(ids, is_train, np.eye(5), holdout_fraction=frac)
        assert len(p.heldout_ids) == 1 and len(p.gallery_ids) == 1
        assert p.query_unknown.tolist() == [p.heldout_ids[0] == "a"]
    # one train identity: never held out, whatever the fraction
    p = build_protocol(ids[[0, 1, 4]], is_train[[0, 1, 4]], np.eye(3), holdout_fraction=0.9)
    assert p.heldout_ids.tolist() == [] and p.gallery_ids.tolist() == ["a"] and p.gallery_idx.tolist() == [0, 1]


def test_a_single_query_and_a_single_train_identity_are_enough():
    p = build_protocol(np.array(["a", "a"]), np.array([True, False]), np.eye(2))
    assert p.query_idx.tolist() == [1] and p.gallery_idx.tolist() == [0] and p.query_unknown.tolist() == [False]


def test_every_identity_is_considered_whatever_its_position():
    # the first and the last identity in key order, and one held out between others
    ids = np.array(["a", "b", "c", "d", "e", "a", "e"])
    is_train = np.array([True, True, True, True, True, False, False])
    for seed in range(6):
        p = build_protocol(ids, is_train, np.eye(7), holdout_fraction=0.4, seed=seed)
        assert len(p.heldout_ids) == 2
        kept = sorted(set("abcde") - set(p.heldout_ids))
        assert p.gallery_ids.tolist() == kept
        assert p.gallery_idx.tolist() == sorted("abcde".index(i) for i in kept)


def test_the_seed_draws_the_held_out_identities():
    ids, is_train, feats = shuffled_case(9, n_ids=12)
    draws = {tuple(build_protocol(ids, is_train, feats, seed=s, exemplars=1).heldout_ids) for s in range(6)}
    assert len(draws) > 1  # different seeds hold out different identities
    a = build_protocol(ids, is_train, feats, seed=4, exemplars=1)
    b = build_protocol(ids, is_train, feats, seed=4, exemplars=1)
    assert np.array_equal(a.heldout_ids, b.heldout_ids) and np.array_equal(a.gallery_idx, b.gallery_idx)


def test_identical_images_of_an_identity_give_its_first_rows_in_the_gallery():
    # 30 identical images of 'x' interleaved with 30 of 'y' (exact similarities): ties go to the lowest
    # rows (stable sorts of the identities and the scores), whatever the sort algorithm of the machine
    ids = np.array(["x", "y"] * 30 + ["x", "y"])
    is_train = np.array([True] * 60 + [False, False])
    feats = np.where(ids[:, None] == "x", np.array([[3.0, 0.0, 0.0]]), np.array([[0.0, 2.0, 0.0]]))
    for rule in ("kmedoids", "central"):
        p = build_protocol(ids, is_train, feats, holdout_fraction=0.0, exemplar_rule=rule)
        assert p.gallery_idx.tolist() == list(range(10))


def test_an_identity_above_the_candidate_cap_is_subsampled_without_repeats():
    # 4097 identical images of 'a' (central rule: every candidate ties); the exemplars come from a seeded
    # sample of 4096 distinct candidates, so they are 5 distinct rows of 'a', the same for a seed
    n = P.MAX_MEDOID_CANDIDATES + 1
    ids = np.array(["a"] * n + ["a", "b", "b"])
    is_train = np.array([True] * n + [False, True, False])
    feats = np.tile([3.0, 0.0, 0.0], (n + 3, 1))  # exact ties: the first candidates win
    p = build_protocol(ids, is_train, feats, exemplar_rule="central", holdout_fraction=0.0)
    g = p.gallery_idx.tolist()
    assert len(g) == 6 and len(set(g)) == 6 and g[-1] == n + 1  # 5 of 'a' and the one 'b'
    assert all(r < n for r in g[:5])
    q = build_protocol(ids, is_train, feats, exemplar_rule="central", holdout_fraction=0.0)
    assert q.gallery_idx.tolist() == g


def test_select_exemplars_takes_all_rows_up_to_k():
    rows = np.array([4, 9, 11])
    rng = np.random.default_rng(0)
    for rule in ("kmedoids", "central"):
        assert P.select_exemplars(np.eye(12), rows, 3, rule, rng).tolist() == [4, 9, 11]


# ------------------------------------------------------------------------------------------------
# errors: one line naming the problem
# ------------------------------------------------------------------------------------------------
def message(fn, *args, **kw) -> str:
    with pytest.raises(AlreidError) as err:
        fn(*args, **kw)
    return str(err.value)


def test_build_protocol_errors_name_the_problem():
    ids, feats = np.array(["a", "a", "b"]), np.eye(3)
    train = np.array([True, False, True])
    assert message(build_protocol, ids, train[:2], feats) == (
        "identities (3), is_train (2) and features (3) must describe the same rows")
    assert message(build_protocol, ids, train, feats[:2]) == (
        "identities (3), is_train (3) and features (2) must describe the same rows")
    for frac in (-0.1, 1.0, 1.5):
        assert message(build_protocol, ids, train, feats, holdout_fraction=frac) == (
            f"holdout_fraction must be in [0, 1), got {frac}")
    assert message(build_protocol, ids, train, feats, exemplars=0) == "exemplars must be >= 1, got 0"
    assert message(build_protocol, ids, train, feats, exemplar_rule="random") == (
        "unknown exemplar_rule 'random'; choose one of kmedoids, central")
    assert message(build_protocol, ids, np.ones(3, bool), feats) == (
        "no test image with a known identity: the split has no queries; check the split column or lower "
        "train_fraction")
    assert message(build_protocol, np.array(["unknown", "a", "b"]), np.array([True, False, False]), feats) == (
        "no train image with a known identity: the gallery would be empty")
    # the edges of the valid ranges are accepted
    p = build_protocol(ids, train, feats, holdout_fraction=0.0, exemplars=1, exemplar_rule="central")
    assert p.gallery_idx.tolist() == [0, 2]


# ------------------------------------------------------------------------------------------------
# the standard query/gallery of person Re-ID benchmarks
# ------------------------------------------------------------------------------------------------
def role_metadata(roles, identities):
    return pd.DataFrame({"image_id": range(len(roles)), "identity": identities, "role": roles})


def test_standard_protocol_reads_the_role_column():
    meta = role_metadata(["train", "query", "gallery", "query", "train", "gallery", "query"],
                         [1, 1, 1, 2, 3, 4, 4])
    p = standard_protocol(meta)
    assert p.train_idx.tolist() == [0, 4] and p.query_idx.tolist() == [1, 3, 6] and p.gallery_idx.tolist() == [2, 5]
    assert p.gallery_ids.tolist() == ["1", "4"]  # identities as text
    assert p.query_unknown.tolist() == [False, True, False]
    assert p.heldout_ids.tolist() == [] and p.summary() == {
        "n_train": 2, "n_query": 3, "n_gallery": 2, "n_gallery_ids": 2, "n_heldout_ids": 0, "n_query_known": 2,
        "n_query_unknown": 1, "seed": 0, "exemplar_rule": "standard", "exemplars": 0, "holdout_fraction": 0.0}


def test_standard_protocol_needs_one_row_of_each_role_and_nothing_else():
    p = standard_protocol(role_metadata(["gallery", "query", "train"], ["a", "a", "b"]))
    assert (p.train_idx.tolist(), p.query_idx.tolist(), p.gallery_idx.tolist()) == ([2], [1], [0])
    for roles in (["query", "gallery"], ["train", "gallery"], ["train", "query"], ["train"]):
        assert message(standard_protocol, role_metadata(roles, ["a"] * len(roles))) == (
            "a 'role' column needs train, query and gallery rows")
    assert message(standard_protocol, role_metadata(["train", "test", "query", "Gallery", "test"], list("abcde"))) == (
        "the 'role' column may hold train, query or gallery; found Gallery, test")


# ------------------------------------------------------------------------------------------------
# evaluation of every dataset row
# ------------------------------------------------------------------------------------------------
def test_evaluate_protocol_errors_and_options():
    p = small_protocol(query_idx=np.array([4, 5]), query_unknown=np.array([False, True]))
    x = np.eye(6)[[0, 1, 2, 3, 0, 3]]
    ids = np.array(["a", "b", "a", "c", "a", "c"])
    assert message(evaluate_protocol, p, x[:5], ids) == (
        "5 embeddings but 6 identities; pass embeddings of every dataset row")
    assert message(evaluate_protocol, p, x, ids, cameras=[0, 1]) == "2 camera values but 6 rows"
    out = evaluate_protocol(p, x, ids)
    # query 4 ('a', the vector of gallery row 0) ranks its matches (rows 0, 2) first and second: AP 1;
    # query 5 ('c') has no gallery match
    assert (out["mAP"], out["n_valid_queries"], out["n_unknown_queries"], out["n_gallery"]) == (1.0, 1, 1, 2)
    assert "BAUS" not in out
    # a threshold reaches the metrics: query 4 (similarity 1) stays known, query 5 (0) becomes 'new'
    out = evaluate_protocol(p, x, ids, baus_threshold=0.5)
    assert out["BAUS"] == 1.0
    # cameras: query 4 shares its camera with both its matches (rows 0 and 2), so it has none left
    cams = np.array(["c1", None, "c1", None, "c1", "c3"], dtype=object)
    assert evaluate_protocol(p, x, ids, cameras=cams)["n_valid_queries"] == 0
    assert evaluate_protocol(p, x, ids, cameras=[1, 2, 3, 4, 5, 6])["n_valid_queries"] == 1


# ------------------------------------------------------------------------------------------------
# protocol id, protocol file (frame) and its round trip
# ------------------------------------------------------------------------------------------------
def test_protocol_hash_is_16_hex_digits_and_ignores_array_types():
    p = small_protocol()
    h = protocol_hash(p)
    assert re.fullmatch(r"[0-9a-f]{16}", h)
    same = small_protocol(train_idx=np.array([0, 1, 2, 3], np.int32), query_idx=[4, 5, 6],
                          gallery_idx=np.array([0, 2], np.uint16), query_unknown=np.array([0, 1, 1]),
                          heldout_ids=["c"], gallery_ids=("a", "b"), exemplars=np.int64(3), seed=np.int32(7),
                          holdout_fraction=np.float32(0.25))
    assert protocol_hash(same) == h
    # identities are hashed as text: the number 3 and the text "3" are the same identity
    assert protocol_hash(small_protocol(heldout_ids=np.array([3]))) == protocol_hash(small_protocol(heldout_ids=["3"]))


def test_protocol_hash_changes_with_every_part():
    base = protocol_hash(small_protocol())
    changes = [dict(train_idx=np.array([0, 1, 2])), dict(query_idx=np.array([4, 5, 7])),
               dict(gallery_idx=np.array([0, 3])), dict(query_unknown=np.array([True, True, False])),
               dict(heldout_ids=np.array(["d"])), dict(heldout_ids=np.array(["c", "e"])),
               dict(gallery_ids=np.array(["a", "x"])), dict(seed=8), dict(exemplar_rule="kmedoids"),
               dict(exemplars=4), dict(holdout_fraction=0.3)]
    hashes = [protocol_hash(small_protocol(**c)) for c in changes]
    assert base not in hashes and len(set(hashes)) == len(hashes)
    # the same numbers cut differently between the index arrays are another protocol: T|Q|G|U = 0 1|5|0|1
    # and 0|1 5|-|0 1 concatenate to the same sequence
    a = small_protocol(train_idx=np.array([0, 1]), query_idx=np.array([5]), gallery_idx=np.array([0]),
                       query_unknown=np.array([True]))
    b = small_protocol(train_idx=np.array([0]), query_idx=np.array([1, 5]), gallery_idx=np.array([], np.int64),
                       query_unknown=np.array([False, True]))
    assert protocol_hash(a) != protocol_hash(b)


def test_protocol_id_recipe_is_stable():
    # saved protocol files and planned runs carry this id (load_pinned compares them), so the recipe must not
    # drift: sha256 over each index array's shape and int64 bytes, the held-out and gallery identities as
    # JSON text lists, then [rule, exemplars, fraction, seed] as JSON; the first 16 hex digits
    p = small_protocol()
    h = hashlib.sha256()
    for arr, n in (([0, 1, 2, 3], 4), ([4, 5, 6], 3), ([0, 2], 2), ([0, 1, 1], 3)):
        h.update(f"({n},)".encode() + np.array(arr, "<i8").tobytes())
    h.update(b'["c"]')
    h.update(b'["a", "b"]')
    h.update(b'["central", 3, 0.25, 7]')
    assert protocol_hash(p) == h.hexdigest()[:16]


FRAME_IDS = np.array(["a", "c", "b", "c", "a", "c", "d", "c"])


def test_protocol_frame_one_row_per_dataset_row():
    p = small_protocol()
    df = protocol_frame(p, FRAME_IDS, np.arange(10, 18))
    f, t = False, True
    want = pd.DataFrame({
        "row": np.arange(8), "image_id": [str(i) for i in range(10, 18)], "identity": list(FRAME_IDS),
        "train": [t, t, t, t, f, f, f, f], "query": [f, f, f, f, t, t, t, f], "gallery": [t, f, t, f, f, f, f, f],
        "query_unknown": [f, f, f, f, f, t, t, f],
        "heldout": [f, t, f, t, f, f, f, f],  # train rows of the held-out 'c' only (not its query row 5)
        "exemplar_rule": "central", "exemplars": 3, "holdout_fraction": 0.25, "split_seed": 7,
        "protocol_id": protocol_hash(p)})
    pd.testing.assert_frame_equal(df, want, check_dtype=False)
    for col in ("train", "query", "gallery", "query_unknown", "heldout"):
        assert df[col].dtype == bool, col
    # numeric identities are matched as numbers, and written as text
    df = protocol_frame(small_protocol(heldout_ids=np.array([3])), np.array([1, 3, 2, 3, 1, 3, 4, 3]), np.arange(8))
    assert df["heldout"].tolist() == [f, t, f, t, f, f, f, f] and df["identity"].tolist()[:2] == ["1", "3"]


def test_protocol_frame_round_trip_keeps_the_protocol_and_its_id():
    ids, is_train, feats = shuffled_case(11)
    ids = np.array([str(i) for i in ids])  # as datasets give them (ReidDataset.identities is text)
    for rule, seed in (("kmedoids", 3), ("central", 0)):
        p = build_protocol(ids, is_train, feats, exemplar_rule=rule, exemplars=2, holdout_fraction=0.4, seed=seed)
        df = protocol_frame(p, ids, np.array([f"img{i}" for i in range(len(ids))]))
        back = protocol_from_frame(df.sample(frac=1.0, random_state=1))  # row order of the file does not matter
        for field in ("train_idx", "query_idx", "gallery_idx", "heldout_ids", "query_unknown", "gallery_ids"):
            assert np.array_equal(getattr(back, field), getattr(p, field)), field
        assert (back.seed, back.exemplar_rule, back.exemplars, back.holdout_fraction) == (seed, rule, 2, 0.4)
        assert protocol_hash(back) == protocol_hash(p) == df["protocol_id"].iloc[0]
    std = standard_protocol(role_metadata(["train", "query", "gallery", "query"], ["a", "a", "a", "b"]))
    back = protocol_from_frame(protocol_frame(std, np.array(["a", "a", "a", "b"]), np.arange(4)))
    assert back.exemplar_rule == "standard" and back.heldout_ids.tolist() == []
    assert protocol_hash(back) == protocol_hash(std) and back.summary() == std.summary()


def test_numeric_identities_keep_their_protocol_id_through_a_file():
    # built from numbers the identities sort as numbers (2, 3, 10); a protocol file stores text, read back in
    # text order ('10', '2', '3'): the id is over the sorted text, so it survives the round trip
    rng = np.random.default_rng(11)
    ids = rng.permutation(np.repeat(np.arange(2, 14), 4))  # numbers with one and two digits, 4 images each
    is_train = np.arange(len(ids)) % 4 != 0
    feats = rng.standard_normal((len(ids), 4))
    p = build_protocol(ids, is_train, feats, exemplar_rule="central", exemplars=2, holdout_fraction=0.4, seed=3)
    back = protocol_from_frame(protocol_frame(p, ids, np.arange(len(ids))))
    assert sorted(map(str, back.gallery_ids)) == sorted(map(str, p.gallery_ids))
    assert [str(x) for x in back.gallery_ids] != [str(x) for x in p.gallery_ids]  # the orders really differ
    assert protocol_hash(back) == protocol_hash(p)


def test_a_frame_without_settings_columns_and_an_empty_frame():
    # only the required columns (a hand-made file): the default rule, split seed 0, settings unknown (0)
    df = protocol_frame(small_protocol(), FRAME_IDS, np.arange(8))
    p = protocol_from_frame(df[["row", "identity", "train", "query", "gallery", "query_unknown", "heldout"]])
    assert (p.exemplar_rule, p.seed, p.exemplars, p.holdout_fraction) == ("kmedoids", 0, 0, 0.0)
    assert p.heldout_ids.tolist() == ["c"] and p.gallery_ids.tolist() == ["a", "b"]
    assert p.query_unknown.tolist() == [False, True, True]
    empty = protocol_from_frame(df.iloc[:0])
    assert empty.summary()["n_train"] == 0 and empty.exemplar_rule == "kmedoids"


def test_a_frame_missing_columns_is_named():
    df = protocol_frame(small_protocol(), FRAME_IDS, np.arange(8))
    assert message(protocol_from_frame, df.drop(columns=["query", "heldout"])) == (
        "protocol file lacks column(s) heldout, query; write it with alreid bench again")
    assert message(protocol_from_frame, df.drop(columns=["row"]), source="p.parquet") == (
        "p.parquet lacks column(s) row; write it with alreid bench again")


def frame_dataset(image_ids, name="toy") -> ReidDataset:
    return ReidDataset(name=name, metadata=pd.DataFrame({"image_id": image_ids, "identity": FRAME_IDS}))


def test_load_pinned_checks_the_images_and_the_id(tmp_path):
    p = small_protocol()
    path = tmp_path / "toy.parquet"
    protocol_frame(p, FRAME_IDS, np.arange(10, 18)).sample(frac=1.0, random_state=0).to_parquet(path)
    ds = frame_dataset(np.arange(10, 18))
    h = protocol_hash(p)
    for expected in (h, None):
        got = load_pinned(path, ds, expected)
        assert protocol_hash(got) == h and got.gallery_idx.tolist() == [0, 2]
    assert message(load_pinned, str(path), ds, "0123456789abcdef") == (
        f"protocol file {path} changed since the run was planned (id {h}, expected 0123456789abcdef); "
        "rerun with --overwrite")
    other = f"protocol file {path} was made for other images than dataset 'toy'; rerun with --overwrite"
    assert message(load_pinned, path, frame_dataset(np.arange(11, 19))) == other  # same count, other images
    assert message(load_pinned, path, frame_dataset([10, 11, 12, 13, 14, 15, 17, 16])) == other  # other order
    assert message(load_pinned, path, ReidDataset(name="toy", metadata=pd.DataFrame(
        {"image_id": np.arange(10, 17), "identity": FRAME_IDS[:7]}))) == other  # fewer images
    bad = tmp_path / "bad.parquet"
    protocol_frame(p, FRAME_IDS, np.arange(10, 18)).drop(columns=["gallery"]).to_parquet(bad)
    assert message(load_pinned, bad, ds) == f"{bad} lacks column(s) gallery; write it with alreid bench again"


# ------------------------------------------------------------------------------------------------
# the reference embedding exemplars are chosen on, and the pinned protocol
# ------------------------------------------------------------------------------------------------
def feature_dataset(features=None, name="toy", **columns) -> ReidDataset:
    n = 8 if features is None else len(features)
    meta = pd.DataFrame({"image_id": np.arange(100, 100 + n), "identity": [f"id{i % 3}" for i in range(n)], **columns})
    return ReidDataset(name=name, metadata=meta, features=features)


def test_reference_features_of_a_dataset_with_features():
    x = np.arange(24, dtype=np.float64).reshape(8, 3)
    ds = feature_dataset(x)
    for ref in ("auto", "features"):
        got = reference_features(ds, ref)
        assert got.dtype == np.float32 and np.array_equal(got, x)
    assert np.array_equal(reference_features(ds), x)  # 'auto' is the default
    assert str(pytest.raises(ConfigError, reference_features, feature_dataset(), "features").value) == (
        "protocol.reference 'features': dataset 'toy' has no precomputed features; use protocol.reference: auto "
        "or a backbone name")


def test_reference_features_of_an_image_dataset_use_a_frozen_backbone(monkeypatch):
    calls = []

    def fake(dataset, backbone, *, progress):
        calls.append((dataset.name, backbone, progress))
        return np.zeros((dataset.n, 2), np.float32)

    monkeypatch.setattr(P, "_frozen_backbone_features", fake)
    ds = feature_dataset()  # no features: 'auto' means the default ImageNet backbone
    reference_features(ds)
    reference_features(ds, "auto", progress=False)
    reference_features(ds, "resnet50", progress=True)
    assert calls == [("toy", "efficientnet_lite0", True), ("toy", "efficientnet_lite0", False),
                     ("toy", "resnet50", True)]
    assert P.DEFAULT_IMAGE_REFERENCE == "efficientnet_lite0"


def test_reference_features_from_an_embeddings_folder(tmp_path):
    folder = tmp_path / "mega"
    folder.mkdir()
    pd.DataFrame({"image_id": np.arange(100, 108), "identity": ["q"] * 8}).to_csv(folder / "metadata.csv", index=False)
    feats = np.random.default_rng(0).standard_normal((8, 5)).astype(np.float32)
    np.save(folder / "features.npy", feats)
    ref = f"embeddings:{folder}"
    got = reference_features(feature_dataset(), ref)
    assert got.dtype == np.float32 and np.array_equal(got, feats)
    want = (f"protocol.reference {ref}: its rows are not the images of dataset 'toy' in the same order (compare "
            "their image_id columns)")
    other = feature_dataset()
    other.metadata["image_id"] = [100, 101, 102, 103, 104, 105, 107, 106]
    for ds in (other, feature_dataset(np.zeros((7, 2)))):  # other order; fewer images
        assert str(pytest.raises(ConfigError, reference_features, ds, ref).value) == want


@pytest.fixture()
def image_dataset(tmp_path, monkeypatch):
    """Four generated 32 px images (2 identities) and an empty feature cache."""
    from alreid.datasets.base import load_dataset
    from tests.images.helpers import write_identity_dataset

    monkeypatch.setenv("ALREID_CACHE_DIR", str(tmp_path / "cache"))
    write_identity_dataset(tmp_path / "imgs", n_ids=2, per_id=2)
    return load_dataset(f"metadata:{tmp_path / 'imgs'}")


class ExtractSpy:
    """Wraps extract_features, noting its keyword arguments; ``fail`` makes a call an error."""

    def __init__(self, monkeypatch):
        self.calls: list[dict] = []
        self.fail = False
        self.real = P.extract_features
        monkeypatch.setattr(P, "extract_features", self)

    def __call__(self, *args, **kw):
        assert not self.fail, "features were recomputed although the cache holds them"
        self.calls.append(kw)
        return self.real(*args, **kw)


def test_frozen_backbone_features_are_the_seeded_backbones_and_are_cached(image_dataset, monkeypatch):
    import torch

    from alreid.datasets.base import load_dataset
    from alreid.datasets.images import ImageStore
    from alreid.models.backbones import build_backbone
    from alreid.models.features import extract_features
    from alreid.models.transforms import InputSpec
    from tests.images.helpers import write_identity_dataset

    ds = image_dataset
    spy = ExtractSpy(monkeypatch)
    got = reference_features(ds, "tiny", progress=False)
    # what the reference is: the backbone with seed 0 at its own input size and normalisation
    model = build_backbone("tiny", weights="imagenet", pooling="avg", seed=0)
    spec = InputSpec(tuple(model.default_size), model.input_mean, model.input_std)
    want = extract_features(model, ImageStore(ds.root, ds.metadata["path"].tolist()), np.arange(ds.n), spec,
                            device=torch.device("cpu"), progress=False)
    assert got.shape == (4, model.feature_dim) and np.allclose(got, want, atol=1e-5)
    assert [(c["progress"], c["desc"], c["source"]) for c in spy.calls] == [
        (False, "protocol reference (tiny)", f"dataset {ds.name!r}")]
    spy.fail = True  # the second time it comes from the feature cache
    assert np.array_equal(reference_features(ds, "tiny"), got)
    # another image set of the same size has its own cache entry
    write_identity_dataset(Path(ds.root).parent / "other", n_ids=2, per_id=2, seed=1)
    other = load_dataset(f"metadata:{Path(ds.root).parent / 'other'}")
    spy.fail = False
    assert not np.allclose(reference_features(other, "tiny", progress=True), got)
    assert spy.calls[-1]["progress"] is True


def test_the_protocol_reference_shares_the_feature_cache_of_alreid_features(image_dataset, monkeypatch, tmp_path):
    # `alreid features` (default Lite0 ImageNet) fills the cache; the protocol's reference then reads the
    # same features from it instead of computing them again, and another backbone does not
    from alreid.cli import main
    from alreid.datasets.embeddings import read_features

    ds = image_dataset
    assert main(["features", "--dataset", f"metadata:{ds.root}", "--out", str(tmp_path / "feat")]) == 0
    written, _ = read_features(next((tmp_path / "feat").glob("*.np*")))
    spy = ExtractSpy(monkeypatch)
    spy.fail = True
    got = reference_features(ds, progress=False)
    assert got.shape == (4, 1280) and np.allclose(got, written, atol=1e-6)
    spy.fail = False
    assert reference_features(ds, "tiny", progress=False).shape[1] != 1280


def test_a_dataset_without_features_or_images_cannot_pin_a_protocol(tmp_path):
    want = "dataset 'toy' has neither features nor images to pin its protocol on"
    no_root = feature_dataset(path=[f"{i}.png" for i in range(8)])
    no_path = feature_dataset()
    no_path.root = tmp_path
    for ds in (no_root, no_path):
        assert str(pytest.raises(ConfigError, reference_features, ds, "tiny").value) == want


def test_pinned_protocol_follows_the_settings(monkeypatch):
    from alreid.datasets.splits import resolve_split
    from alreid.harness.settings import ProtocolSettings

    rng = np.random.default_rng(3)
    x = rng.standard_normal((60, 4))
    ds = ReidDataset(name="toy", features=x, metadata=pd.DataFrame(
        {"image_id": np.arange(60), "identity": [f"id{i % 12}" for i in range(60)]}))
    settings = ProtocolSettings(split_seed=3, holdout_fraction=0.5, exemplars=2, exemplar_rule="central",
                                reference="features")
    split = resolve_split(ds.metadata, seed=3)
    assert not np.array_equal(split, resolve_split(ds.metadata, seed=0))  # the seed matters here
    want = build_protocol(ds.identities, split, x, holdout_fraction=0.5, exemplars=2, exemplar_rule="central", seed=3)
    got = pinned_protocol(ds, settings)
    assert protocol_hash(got) == protocol_hash(want) and np.array_equal(got.gallery_idx, want.gallery_idx)
    assert got.summary() == want.summary()
    # the progress flag reaches the reference features
    seen = []
    real = P.reference_features
    monkeypatch.setattr(P, "reference_features", lambda d, r, *, progress: seen.append((r, progress)) or real(d, r))
    pinned_protocol(ds, settings)
    pinned_protocol(ds, settings, progress=False)
    assert seen == [("features", True), ("features", False)]
    # a role column: the dataset's own query/gallery, whatever the settings
    ds.metadata["role"] = ["train"] * 40 + ["query"] * 10 + ["gallery"] * 10
    assert protocol_hash(pinned_protocol(ds, settings)) == protocol_hash(standard_protocol(ds.metadata))
