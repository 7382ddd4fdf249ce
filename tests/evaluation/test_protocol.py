"""The open-set query/gallery protocol (spec 5.2) and its evaluation on real frozen features."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from alreid.errors import AlreidError
from alreid.evaluation.protocol import build_protocol, central, evaluate_protocol, kmedoids
from tests.images.helpers import SHARED

NYALA = SHARED / "nyala"  # ../shared beside the repository (the path helper of every real-data test)


def make_data(seed=0, n_ids=40, dim=8):
    """Identities with 1..12 images around their own centre, a random train/test flag, some unknowns."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(1, 13, n_ids)
    ids = np.repeat([f"id{i:02d}" for i in range(n_ids)], counts)
    centres = rng.standard_normal((n_ids, dim)) * 3
    feats = centres[np.repeat(np.arange(n_ids), counts)] + rng.standard_normal((len(ids), dim))
    is_train = rng.random(len(ids)) < 0.7
    test_only = [f"id{i:02d}" for i in range(n_ids - 4, n_ids)]
    is_train[np.isin(ids, test_only)] = False
    ids = np.concatenate([ids, ["unknown"] * 6])
    feats = np.vstack([feats, rng.standard_normal((6, dim))])
    is_train = np.concatenate([is_train, [True, True, True, False, False, False]])
    return ids, is_train, feats.astype(np.float32)


@pytest.fixture(scope="module")
def data():
    return make_data()


@pytest.fixture(scope="module")
def proto(data):
    ids, is_train, feats = data
    return build_protocol(ids, is_train, feats, seed=0)


def test_training_pool_and_queries(data, proto):
    ids, is_train, _ = data
    assert np.array_equal(proto.train_idx, np.flatnonzero(is_train))  # unknown train rows included
    assert np.array_equal(proto.query_idx, np.flatnonzero(~is_train & (ids != "unknown")))


def test_heldout_fraction(data, proto):
    ids, is_train, _ = data
    train_ids = set(ids[is_train]) - {"unknown"}
    assert len(proto.heldout_ids) == round(0.2 * len(train_ids))
    assert set(proto.heldout_ids) <= train_ids


def test_gallery_is_a_small_subset_of_train(data, proto):
    ids, is_train, _ = data
    assert set(proto.gallery_idx) <= set(proto.train_idx)
    g_ids = ids[proto.gallery_idx]
    assert "unknown" not in set(g_ids)
    assert not set(g_ids) & set(proto.heldout_ids)
    per_id = pd.Series(g_ids).value_counts()
    assert per_id.max() <= 5
    for identity in set(ids[is_train]) - {"unknown"} - set(proto.heldout_ids):
        n_train = int((is_train & (ids == identity)).sum())
        assert per_id[identity] == min(n_train, 5)  # all images when <= 5, else exactly 5


def test_unknown_flags(data, proto):
    ids, is_train, _ = data
    q_ids = ids[proto.query_idx]
    test_only = set(ids[~is_train]) - set(ids[is_train])
    expected = np.array([(i in test_only) or (i in set(proto.heldout_ids)) for i in q_ids])
    assert np.array_equal(proto.query_unknown, expected)
    assert expected.any() and (~expected).any()
    assert set(q_ids[~proto.query_unknown]) <= set(ids[proto.gallery_idx])


def test_deterministic_for_a_seed(data):
    ids, is_train, feats = data
    a = build_protocol(ids, is_train, feats, seed=3)
    b = build_protocol(ids, is_train, feats, seed=3)
    c = build_protocol(ids, is_train, feats, seed=4)
    for field in ("train_idx", "query_idx", "gallery_idx", "heldout_ids", "query_unknown"):
        assert np.array_equal(getattr(a, field), getattr(b, field))
    assert not np.array_equal(a.heldout_ids, c.heldout_ids)


def test_summary(proto):
    s = proto.summary()
    assert s["n_query"] == s["n_query_known"] + s["n_query_unknown"]
    assert s["n_gallery"] == len(proto.gallery_idx) and s["exemplar_rule"] == "kmedoids"


def brute_force_kmedoid_cost(x, medoids):
    z = x / np.linalg.norm(x, axis=1, keepdims=True)
    d = 1 - z @ z.T
    return d[:, medoids].min(axis=1).sum()


def test_kmedoids_finds_one_medoid_per_cluster_and_medoids_are_locally_optimal():
    rng = np.random.default_rng(1)
    dirs = np.eye(3) * 10
    labels = np.repeat([0, 1, 2], [7, 4, 9])
    x = dirs[labels] + rng.standard_normal((20, 3))
    med = kmedoids(x, 3)
    assert sorted(labels[med]) == [0, 1, 2]
    z = x / np.linalg.norm(x, axis=1, keepdims=True)
    d = 1 - z @ z.T
    for m in med:  # each medoid minimises the summed distance within its own cluster
        members = np.flatnonzero(labels == labels[m])
        assert m == members[np.argmin(d[np.ix_(members, members)].sum(axis=1))]
    # swapping any medoid for any other point cannot lower the k-medoids cost by much here
    cost = brute_force_kmedoid_cost(x, med)
    for i in range(3):
        for j in range(20):
            trial = med.copy()
            trial[i] = j
            if len(set(trial)) == 3:
                assert brute_force_kmedoid_cost(x, trial) >= cost - 1e-9


def test_kmedoids_with_duplicate_images_returns_distinct_rows():
    x = np.ones((8, 4))
    med = kmedoids(x, 5)
    assert len(set(med.tolist())) == 5


def test_central_rule_brute_force():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((12, 5))
    z = x / np.linalg.norm(x, axis=1, keepdims=True)
    mean_sim = [(z[i] @ z.T).mean() for i in range(12)]
    assert sorted(central(x, 5).tolist()) == sorted(np.argsort(mean_sim)[-5:].tolist())


def test_exemplars_are_members_of_their_identity_for_both_rules(data):
    ids, is_train, feats = data
    for rule in ("kmedoids", "central"):
        p = build_protocol(ids, is_train, feats, exemplar_rule=rule, exemplars=3)
        per_id = pd.Series(ids[p.gallery_idx]).value_counts()
        assert per_id.max() <= 3
        assert is_train[p.gallery_idx].all()


def test_errors():
    ids = np.array(["a", "a", "b"])
    feats = np.eye(3)
    with pytest.raises(AlreidError, match="no test image"):
        build_protocol(ids, np.array([True, True, True]), feats)
    with pytest.raises(AlreidError, match="no train image"):
        build_protocol(np.array(["unknown", "a", "b"]), np.array([True, False, False]), feats)
    with pytest.raises(AlreidError, match="exemplar_rule"):
        build_protocol(ids, np.array([True, False, True]), feats, exemplar_rule="random")
    with pytest.raises(AlreidError, match="same rows"):
        build_protocol(ids, np.array([True, False]), feats)


def test_evaluate_protocol_queries_against_the_gallery(data, proto):
    ids, _, feats = data
    out = evaluate_protocol(proto, feats, ids)
    assert out["n_queries"] == len(proto.query_idx)
    assert out["n_unknown_queries"] == int(proto.query_unknown.sum())
    assert out["n_skipped_queries"] == out["n_unknown_queries"]  # unknowns have no gallery match
    assert out["n_gallery"] == len(proto.gallery_idx)
    want_map, n_valid = brute_force_map(feats, proto.query_idx, proto.gallery_idx, ids)
    assert out["n_valid_queries"] == n_valid
    assert out["mAP"] == pytest.approx(want_map, abs=1e-9)  # exact: the brute force below
    # a camera stand-in equal to the identity removes every true match: all queries skipped
    out = evaluate_protocol(proto, feats, ids, cameras=ids)
    assert out["n_valid_queries"] == 0


# ------------------------------------------------------------------------------------------------
# real data: frozen ImageNet features of NyalaData
# ------------------------------------------------------------------------------------------------
def brute_force_map(feats, q_rows, g_rows, ids):
    z = feats / np.linalg.norm(feats, axis=1, keepdims=True)
    aps = []
    for q in q_rows:
        sims = z[g_rows] @ z[q]
        order = np.argsort(-sims, kind="stable")
        rel = ids[g_rows][order] == ids[q]
        if not rel.any():
            continue
        hit_pos = np.flatnonzero(rel) + 1
        aps.append(np.mean(np.arange(1, len(hit_pos) + 1) / hit_pos))
    return float(np.mean(aps)), len(aps)


def test_nyala_frozen_features_map_matches_brute_force():
    if not (NYALA / "metadata.csv").exists():
        pytest.skip(f"{NYALA} is absent (shared real data not checked out on this machine)")
    from alreid.datasets.splits import resolve_split

    meta = pd.read_csv(NYALA / "metadata.csv")
    with np.load(NYALA / "embeddings_efficientnet_lite0_imagenet.npz") as z:
        feats = z["features"].astype(np.float32)
        assert np.array_equal(z["path"].astype(str), meta["path"].astype(str).to_numpy())
    ids = meta["identity"].astype(str).to_numpy()
    is_train = resolve_split(meta, seed=0)  # no `split` column: source_split must not be used
    assert "split" not in meta.columns
    # encounters (left/right photo pairs) never straddle the split
    assert pd.Series(is_train).groupby(meta["encounter"].to_numpy()).nunique().max() == 1
    proto = build_protocol(ids, is_train, feats, seed=0)
    out = evaluate_protocol(proto, feats, ids)
    want_map, n_valid = brute_force_map(feats, proto.query_idx, proto.gallery_idx, ids)
    assert out["n_valid_queries"] == n_valid > 50
    assert out["mAP"] == pytest.approx(want_map, abs=1e-6)
    assert out["n_unknown_queries"] > 0 and 0 <= out["AUC"] <= 1
