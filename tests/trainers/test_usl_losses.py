"""ICE, PPLR, RTMem and PurificationReID: each loss and memory update against a hand computation on a few
vectors (plain-Python loops with math.exp/log, written from the spec's formulas, not the vectorised code)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch
import torch.nn as nn

from alreid.models.parts import stripe_bounds
from alreid.trainers.clustercontrast import ClusterMemory
from alreid.trainers.ice import (camera_proxies, camera_proxy_loss, ema_update, hard_instance_loss, kl_consistency,
                                 proxy_loss)
from alreid.trainers.pplr import aals_loss, cross_agreement, pglr_loss, soft_triplet_loss
from alreid.trainers.purification import fused_distance, purification_loss
from alreid.trainers.rtmem import InstanceClusterMemory
from alreid.trainers.usl_common import KPerIdentitySampler, clustered_labels


def unit(*v: float) -> list[float]:
    n = math.sqrt(sum(x * x for x in v))
    return [x / n for x in v]


def dot(a, b) -> float:
    return sum(x * y for x, y in zip(a, b))


def lse(xs) -> float:
    m = max(xs)
    return m + math.log(sum(math.exp(x - m) for x in xs))


T = lambda rows: torch.tensor(rows, dtype=torch.float64)  # noqa: E731
T32 = lambda rows: torch.tensor(rows, dtype=torch.float32)  # noqa: E731  (the cluster memories are float32)


# ICE ----------------------------------------------------------------------------------------------
F1 = [[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-0.6, 0.8]]  # un-normalised student features
Y = [0, 0, 1, 1]
T2 = [unit(1, 0.1), unit(0.9, 0.5), unit(0.1, 1), unit(-1, 1)]


def test_ice_proxy_loss_is_label_smoothed_ce_over_unnormalised_features():
    mu = [[0.9, 0.3], [-0.2, 0.9]]  # cluster means, not normalised
    want = 0.0
    for f, y in zip(F1, Y):
        logits = [dot(f, m) / 0.5 for m in mu]
        logp = [z - lse(logits) for z in logits]
        q = [0.9 * (c == y) + 0.1 / 2 for c in range(2)]
        want += -sum(qc * lp for qc, lp in zip(q, logp)) / len(F1)
    got = proxy_loss(T(F1), T(mu), torch.tensor(Y), tau=0.5, smoothing=0.1)
    assert float(got) == pytest.approx(want, rel=1e-9)


def test_ice_hard_instance_loss_takes_the_least_similar_positive():
    f_n = [unit(*f) for f in F1]
    want = 0.0
    for i in range(4):
        s = [dot(f_n[i], T2[j]) / 0.1 for j in range(4)]
        pos = min(s[j] for j in range(4) if Y[j] == Y[i])  # itself included
        neg = [s[j] for j in range(4) if Y[j] != Y[i]]
        want += -(pos - lse([pos] + neg)) / 4
    got = hard_instance_loss(T(f_n), T(T2), torch.tensor(Y), tau=0.1)
    assert float(got) == pytest.approx(want, rel=1e-9)


def test_ice_kl_consistency_is_batchmean_kl_of_weak_to_strong():
    f_n = [unit(*f) for f in F1]
    w = [unit(1, 0.2), unit(0.7, 0.7), unit(0.2, 1), unit(-0.5, 1)]
    want = 0.0
    for i in range(4):
        p = [dot(f_n[i], T2[j]) / 0.4 for j in range(4)]
        q = [dot(w[i], w[j]) / 0.4 for j in range(4)]
        logp = [x - lse(p) for x in p]
        logq = [x - lse(q) for x in q]
        want += sum(math.exp(lq) * (lq - lp) for lq, lp in zip(logq, logp)) / 4
    got = kl_consistency(T(f_n), T(T2), T(w), temp=0.4)
    assert float(got) == pytest.approx(want, rel=1e-9)


def test_ice_camera_proxies_and_loss_with_capped_hard_negatives():
    z = T([unit(1, 0), unit(1, 0.2), unit(0, 1), unit(0.3, 1), unit(1, -0.3)])
    labels = torch.tensor([0, 0, 1, 1, 0])
    cams = torch.tensor([0, 1, 0, 1, 1])
    proxies, plab = camera_proxies(z, labels, cams)
    # camera 0: cluster 0 = {0}, cluster 1 = {2}; camera 1: cluster 0 = {1, 4}, cluster 1 = {3}
    m01 = [a + b for a, b in zip(z[1].tolist(), z[4].tolist())]
    want_p = [z[0].tolist(), z[2].tolist(), unit(*m01), z[3].tolist()]
    assert plab.tolist() == [0, 1, 0, 1]
    np.testing.assert_allclose(proxies.numpy(), np.array(want_p), atol=1e-12)
    f = [unit(1, 0.1), unit(0.1, 1), unit(0.9, -0.2)]
    y, bc = [0, 1, 0], [0, 0, 1]
    want = 0.0
    for k in (0, 1):
        rows = [i for i in range(3) if bc[i] == k]
        per = []
        for i in rows:
            a = [dot(f[i], p) / 0.07 for p in want_p]
            pos = [m for m in range(4) if plab[m] == y[i]]
            negs = sorted((m for m in range(4) if plab[m] != y[i]), key=lambda m: -a[m])[:1]  # n_hard = 1
            denom = lse([a[m] for m in pos + negs])
            per.append(-sum(a[m] - denom for m in pos) / len(pos))
        want += 0.5 * sum(per) / len(per)
    got = camera_proxy_loss(T(f), proxies, plab, torch.tensor(y), torch.tensor(bc), beta=0.07, n_hard=1, weight=0.5)
    assert float(got) == pytest.approx(want, rel=1e-9)
    # 50 hard negatives asked, only 2 exist: the cap keeps positives out of the negative set
    capped = camera_proxy_loss(T(f), proxies, plab, torch.tensor(y), torch.tensor(bc), n_hard=50)
    assert torch.isfinite(capped)


def test_ice_ema_updates_parameters_but_not_buffers():
    student, teacher = nn.BatchNorm1d(2), nn.BatchNorm1d(2)
    with torch.no_grad():
        student.weight.copy_(torch.tensor([3.0, -1.0]))
        teacher.weight.copy_(torch.tensor([1.0, 1.0]))
        student.running_mean.fill_(5.0)
    ema_update(teacher, student, 0.9)
    assert teacher.weight.tolist() == pytest.approx([0.9 * 1 + 0.1 * 3, 0.9 * 1 - 0.1 * 1])
    assert teacher.running_mean.tolist() == [0.0, 0.0]


def test_ice_sampler_gives_every_identity_exactly_k_images_camera_first():
    labels = np.array([0, 0, 0, 0, 0, 0, 1, 1, 2])
    cams = np.array([0, 0, 1, 1, 2, 2, 0, 1, 0])
    s = KPerIdentitySampler(labels, num_instances=4, cameras=cams, rng=np.random.default_rng(0))
    batch = next(s.batches(12))
    assert len(batch) == 12
    for c in range(3):
        got = batch[labels[batch] == c]
        assert len(got) == 4
    ident0 = batch[labels[batch] == 0]
    assert set(cams[ident0]) == {0, 1, 2}  # one per camera first, then topped up
    assert len(set(ident0.tolist())) == 4  # six images available: no repeats


# PPLR ---------------------------------------------------------------------------------------------
def test_pplr_cross_agreement_is_the_overlap_of_knn_sets():
    g = np.array([unit(1, 0), unit(1, 0.1), unit(1, 0.3), unit(0, 1), unit(0.2, 1)])
    p = np.array([unit(1, 0), unit(0, 1), unit(1, 0.1), unit(0.1, 1), unit(1, 0.2)])
    # k = 2 nearest (self excluded): global 0 -> {1, 2}; part 0 -> {2, 4}: |{2}| / |{1, 2, 4}| = 1/3
    a = cross_agreement(g, [p, g], k=2)
    assert a[0, 0] == pytest.approx(1 / 3)
    assert np.allclose(a[:, 1], 1.0)  # a part identical to the global view agrees fully


def test_pplr_pglr_soft_targets_mix_onehot_and_agreement_weighted_parts():
    lg = [[2.0, 0.5, -1.0], [0.0, 1.0, 0.3]]
    lp = [[[1.0, 0.0, 0.0], [0.2, 0.1, 2.0]], [[0.0, 0.0, 3.0], [1.0, 1.0, 1.0]]]  # 2 parts
    y, agree = [0, 1], [[0.5, 0.1], [0.0, 0.8]]
    want = 0.0
    for i in range(2):
        w = [math.exp(a) for a in agree[i]]
        w = [x / sum(w) for x in w]
        ens = [0.0, 0.0, 0.0]
        for p in range(2):
            sm = [math.exp(v - lse(lp[p][i])) for v in lp[p][i]]
            ens = [e + w[p] * s for e, s in zip(ens, sm)]
        target = [0.5 * (c == y[i]) + 0.5 * ens[c] for c in range(3)]
        want += -sum(t * (v - lse(lg[i])) for t, v in zip(target, lg[i])) / 2
    got = pglr_loss(T(lg), [T(lp[0]), T(lp[1])], torch.tensor(y), T(agree), beta=0.5)
    assert float(got) == pytest.approx(want, rel=1e-9)


def test_pplr_soft_triplet_and_aals():
    f = [[0.0, 0.0], [3.0, 0.0], [0.0, 1.0], [2.0, 2.0]]
    y = [0, 0, 1, 1]
    want = 0.0
    for i in range(4):
        d = [math.dist(f[i], f[j]) for j in range(4)]
        dp = max(d[j] for j in range(4) if y[j] == y[i])
        dn = min(d[j] for j in range(4) if y[j] != y[i])
        want += math.log(1 + math.exp(dp - dn)) / 4
    assert float(soft_triplet_loss(T(f), torch.tensor(y))) == pytest.approx(want, rel=1e-9)
    logits, yy, a = [[2.0, 0.0, 1.0], [0.5, 0.5, 3.0]], [0, 2], [0.25, 1.0]
    want = 0.0
    for i in range(2):
        logp = [v - lse(logits[i]) for v in logits[i]]
        kl = sum((1 / 3) * (math.log(1 / 3) - lp) for lp in logp)
        want += (a[i] * -logp[yy[i]] + (1 - a[i]) * kl) / 2
    assert float(aals_loss(T(logits), torch.tensor(yy), T(a))) == pytest.approx(want, rel=1e-9)


# RTMem --------------------------------------------------------------------------------------------
def test_rtmem_memory_starts_from_one_member_and_is_replaced_by_the_last_batch_sample():
    feats = T32([unit(1, 0), unit(0.8, 0.6), unit(0, 1), unit(0.6, 0.8), [0.0, 0.0]])
    labels = np.array([0, 0, 1, 1, -1])
    mem = InstanceClusterMemory(feats, labels, rng=np.random.default_rng(0), temperature=0.05, loss_scale=2.2)
    for c in (0, 1):  # each slot is exactly one member's feature, never the mean
        members = [feats[i].tolist() for i in np.flatnonzero(labels == c)]
        assert any(np.allclose(mem.prototypes[c].tolist(), m) for m in members)
    f = T32([unit(1, 0.1), unit(0.9, 0.3), unit(0.2, 1)])
    pos = torch.tensor([0, 1, 2])
    protos = mem.prototypes.clone()
    want = 0.0
    for i, c in enumerate([0, 0, 1]):
        logits = [dot(f[i].tolist(), protos[k].tolist()) / 0.05 for k in range(2)]
        want += -2.2 * (logits[c] - lse(logits)) / 3
    assert float(mem.loss(f, pos)) == pytest.approx(want, rel=1e-5)
    mem.update(f, pos)
    np.testing.assert_allclose(mem.prototypes[0].numpy(), f[1].numpy(), atol=1e-6)  # last sample of cluster 0
    np.testing.assert_allclose(mem.prototypes[1].numpy(), f[2].numpy(), atol=1e-6)


# PurificationReID ---------------------------------------------------------------------------------
def test_purification_fused_distance_and_three_view_loss_with_distillation():
    d = [np.full((2, 2), 1.0), np.full((2, 2), 0.5), np.full((2, 2), 0.0)]
    assert fused_distance(d, 0.15)[0, 1] == pytest.approx(0.7 * 1.0 + 0.15 * 0.5)
    # sparse Jaccard: absent = distance 1; stored zeros are real zeros
    dense = [np.array([[0, .2, 1, 1], [.2, 0, 1, .5], [1, 1, 0, 1], [1, .5, 1, 0]]),
             np.array([[0, 1, .4, 1], [1, 0, 1, 0.0], [.4, 1, 0, 1], [1, 0.0, 1, 0]]),
             np.array([[0, .6, 1, 1], [.6, 0, 1, 1], [1, 1, 0, 1], [1, 1, 1, 0]])]
    sparse = []
    for m in dense:
        r, c = np.nonzero(m < 1)
        sparse.append(sp.csr_matrix((m[r, c], (r, c)), shape=m.shape))
    fused = fused_distance(sparse, 0.15)
    want = 0.7 * dense[0] + 0.15 * dense[1] + 0.15 * dense[2]
    as_dense = np.ones((4, 4))
    coo = fused.tocoo()
    as_dense[coo.row, coo.col] = coo.data  # stored entries, explicit zeros included; absent = 1
    np.testing.assert_allclose(as_dense, want, atol=1e-6)
    assert fused[2, 3] == 0 and (2, 3) not in set(zip(*fused.nonzero()))  # absent everywhere: stays absent (= 1)
    feats0 = [T32([unit(1, 0), unit(0, 1), unit(1, 1)]) for _ in range(3)]
    labels = np.array([0, 1, 0])
    mems = [ClusterMemory(f, labels, temperature=0.05, momentum=0.1) for f in feats0]
    f = [T32([unit(1, 0.2)]), T32([unit(0.3, 1)]), T32([unit(1, 1)])]
    t = [T32([unit(1, 0)]), T32([unit(0, 1)]), T32([unit(1, 0.5)])]
    pos = torch.tensor([2])  # label 0
    want = 0.0
    for v, w in enumerate((0.8, 0.2, 0.2)):
        protos = mems[v].prototypes
        logits = [dot(f[v][0].tolist(), protos[k].tolist()) / 0.05 for k in range(2)]
        ce = -(logits[0] - lse(logits))
        kd = sum((a - b) ** 2 for a, b in zip(f[v][0].tolist(), t[v][0].tolist()))
        want += w * (ce + 1.0 * kd)
    got = purification_loss(f, mems, pos, lambda2=0.2, teacher=t, mu=1.0)
    assert float(got) == pytest.approx(want, rel=1e-5)
    # memory update: M_y <- n(0.1 M_y + 0.9 f)
    before = mems[0].prototypes[0].tolist()
    mems[0].update(f[0], pos)
    moved = unit(*[0.1 * m + 0.9 * x for m, x in zip(before, f[0][0].tolist())])
    np.testing.assert_allclose(mems[0].prototypes[0].numpy(), moved, atol=1e-6)
    frozen = ClusterMemory(feats0[0], labels, momentum=1.0)  # the student's warm-up epoch
    keep = frozen.prototypes.clone()
    frozen.update(f[0], pos)
    torch.testing.assert_close(frozen.prototypes, keep, rtol=0, atol=1e-6)


# shared --------------------------------------------------------------------------------------------
def test_clustered_labels_applies_the_hook_then_drops_singletons():
    dist = np.array([[0, .1, .9, .9, .9], [.1, 0, .9, .9, .9], [.9, .9, 0, .1, .9], [.9, .9, .1, 0, .9],
                     [.9, .9, .9, .9, 0]])
    feats = np.eye(5)
    seen = {}

    def refine(labels, f):  # a must-link pulls the outlier (4) into the first cluster
        seen["in"] = labels.copy()
        out = labels.copy()
        out[4] = out[0]
        return out

    dist = sp.csr_matrix(dist)
    labels, stats = clustered_labels(dist, feats, refine, eps=0.5, min_samples=2)
    assert len(set(seen["in"].tolist())) == 3  # noise arrived as its own singleton id
    assert labels.tolist() == [0, 0, 1, 1, 0]
    labels, _ = clustered_labels(dist, feats, None, eps=0.5, min_samples=2)
    assert labels.tolist() == [0, 0, 1, 1, -1]

    def split(labels, f):  # a cannot-link splits point 3 from its cluster: a clustered point left alone
        out = labels.copy()
        out[3] = out.max() + 1
        return out

    dropped, _ = clustered_labels(dist, feats, split, eps=0.5, min_samples=2)
    kept, _ = clustered_labels(dist, feats, split, eps=0.5, min_samples=2, singletons_to_noise=False)
    assert dropped.tolist() == [0, 0, -1, -1, -1]  # spec default refine_singletons_to_noise: 2 and 3 dropped
    assert kept.tolist() == [0, 0, 1, 2, -1]  # kept as classes of their own; DBSCAN noise (4) still dropped


def test_stripes_follow_adaptive_pooling_bounds():
    assert stripe_bounds(8, 2) == [(0, 4), (4, 8)]
    assert stripe_bounds(16, 3) == [(0, 6), (5, 11), (10, 16)]
    x = torch.arange(16.0).view(1, 1, 16, 1)
    want = torch.nn.functional.adaptive_avg_pool2d(x, (3, 1)).flatten()
    got = torch.stack([x[:, :, lo:hi].mean() for lo, hi in stripe_bounds(16, 3)])
    assert torch.allclose(got, want)


def test_pplr_knn_sets_in_chunks_match_a_full_sort():
    from alreid.trainers.pplr import knn_sets

    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 8))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    sims = x @ x.T
    np.fill_diagonal(sims, -np.inf)
    want = np.argsort(-sims, axis=1)[:, :7]
    got = knn_sets(x, 7, chunk=16)
    assert all(set(a) == set(b) for a, b in zip(got, want))
    assert not any(i in row for i, row in enumerate(got))  # itself excluded
