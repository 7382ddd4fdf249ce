"""SpCL / ClusterContrast pieces against hand computations: memory loss and update, reliability, sampler."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from alreid.trainers.clustercontrast import ClusterMemory, cc_pseudo_labels
from alreid.trainers.image_training import RandomMultipleGallerySampler
from alreid.trainers.spcl import independence_threshold, own_cluster_iou, reliable_labels, spcl_pseudo_labels
from alreid.models.hybrid_memory import HybridMemory


def _unit(rows):
    x = np.asarray(rows, dtype=np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


M = _unit([[1, 0, 0], [0.8, 0.6, 0], [0, 1, 0], [0, 0.6, 0.8], [0, 0, 1]])
LABELS = np.array([0, 0, 1, 2, 2])  # slot 2 is an un-clustered instance
F_BATCH = _unit([[0.6, 0.8, 0], [0, 0.28, 0.96]])
IDX = np.array([0, 3])


def test_hybrid_memory_loss_is_the_hand_computed_softmax_over_centroids():
    tau = 0.05
    mem = HybridMemory(torch.tensor(M, dtype=torch.float32), LABELS, temperature=tau, momentum=0.2)
    loss = mem.loss(torch.tensor(F_BATCH, dtype=torch.float32), torch.tensor(IDX))
    expected = []
    for f, i in zip(F_BATCH, IDX):
        # spec 4.5: class score = mean over members j of f . M_j / tau
        scores = np.array([np.mean([f @ M[j] / tau for j in np.flatnonzero(LABELS == c)]) for c in range(3)])
        expected.append(-(scores[LABELS[i]] - np.log(np.exp(scores).sum())))
    assert float(loss) == pytest.approx(np.mean(expected), rel=1e-5)


def test_hybrid_memory_momentum_update_by_hand():
    mem = HybridMemory(torch.tensor(M, dtype=torch.float32), LABELS, momentum=0.2)
    mem.update(torch.tensor(F_BATCH, dtype=torch.float32), torch.tensor(IDX))
    for f, i in zip(F_BATCH, IDX):
        v = 0.2 * M[i] + 0.8 * f
        assert np.allclose(mem.features[i].numpy(), v / np.linalg.norm(v), atol=1e-6)
    untouched = [1, 2, 4]
    assert np.allclose(mem.features[untouched].numpy(), M[untouched], atol=1e-6)


def test_hybrid_memory_gradient_reaches_only_the_batch():
    """dL/df_b = (sum_k p_bk c_k - c_{y_b}) / (tau B), c_k = mean memory of class k, p = softmax(C f_b / tau)."""
    tau = 0.05
    mem = HybridMemory(torch.tensor(M, dtype=torch.float32), LABELS, temperature=tau)
    f = torch.tensor(F_BATCH, dtype=torch.float32, requires_grad=True)
    mem.loss(f, torch.tensor(IDX)).backward()
    assert not mem.features.requires_grad  # the memory moves only by the momentum update
    cents = np.stack([M[LABELS == c].mean(axis=0) for c in range(3)])
    want = []
    for fb, i in zip(F_BATCH, IDX):
        logits = cents @ fb / tau
        p = np.exp(logits - logits.max())
        p /= p.sum()
        want.append((p @ cents - cents[LABELS[i]]) / (tau * len(IDX)))
    np.testing.assert_allclose(f.grad.numpy(), np.stack(want), rtol=1e-4, atol=1e-6)


def test_cluster_memory_by_hand():
    labels = np.array([0, 0, -1, 1, 1])  # the outlier (-1) is not part of any prototype
    mem = ClusterMemory(torch.tensor(M, dtype=torch.float32), labels, temperature=0.1, momentum=0.1)
    p0 = (M[0] + M[1]) / np.linalg.norm(M[0] + M[1])
    p1 = (M[3] + M[4]) / np.linalg.norm(M[3] + M[4])
    assert np.allclose(mem.prototypes.numpy(), [p0, p1], atol=1e-6)
    f = torch.tensor(F_BATCH, dtype=torch.float32)
    loss = mem.loss(f, torch.tensor([1, 4]))
    logits = F_BATCH @ np.stack([p0, p1]).T / 0.1
    ce = [-(logits[0, 0] - np.log(np.exp(logits[0]).sum())), -(logits[1, 1] - np.log(np.exp(logits[1]).sum()))]
    assert float(loss) == pytest.approx(np.mean(ce), rel=1e-4)
    mem.update(f, torch.tensor([1, 4]))
    v = 0.1 * p0 + 0.9 * F_BATCH[0]
    assert np.allclose(mem.prototypes[0].numpy(), v / np.linalg.norm(v), atol=1e-6)
    hard = ClusterMemory(torch.tensor(M, dtype=torch.float32), labels, momentum=0.5, use_hard=True)
    batch = torch.tensor(_unit([[1, 0.05, 0], [0, 1, 0]]), dtype=torch.float32)  # both in cluster 0
    hard.update(batch, torch.tensor([0, 1]))
    v = 0.5 * p0 + 0.5 * batch[1].numpy()  # the member least similar to the prototype moves it
    assert np.allclose(hard.prototypes[0].numpy(), v / np.linalg.norm(v), atol=1e-6)


MAIN = np.array([0, 0, 0, 0, 1, 1, 1, 2])
TIGHT = np.array([0, 0, 0, 1, 2, 2, 2, 3])
LOOSE = np.array([0, 0, 0, 0, 0, 0, 0, 1])


def test_own_cluster_iou_by_hand():
    assert np.allclose(own_cluster_iou(MAIN, TIGHT), [3 / 4, 3 / 4, 3 / 4, 1 / 4, 1, 1, 1, 1])
    assert np.allclose(own_cluster_iou(MAIN, LOOSE), [4 / 7] * 4 + [3 / 7] * 3 + [1])


def test_reliability_criterion_by_hand():
    # R_comp: cluster A = {0..3}: 0.25 for 0-2, 0.75 for 3 (split off in the tight clustering); B = {4,5,6}: 0
    # R_indep: A 3/7, B 4/7 (both merge in the loose clustering); threshold = sorted [3/7, 4/7][min(1, round(1.8))]
    labels, thres, stats = reliable_labels(MAIN, TIGHT, LOOSE, None)
    assert thres == pytest.approx(4 / 7)
    groups = {tuple(np.flatnonzero(labels == c)) for c in np.unique(labels)}
    assert groups == {(0, 1, 2), (3,), (4, 5, 6), (7,)}
    assert stats == {"n_clusters": 2, "n_unclustered": 2, "n_ejected": 1}
    # with the threshold fixed at 0.5 (as after epoch 0), B is not independent enough and dissolves
    labels, thres, _ = reliable_labels(MAIN, TIGHT, LOOSE, 0.5)
    assert thres == 0.5
    assert {tuple(np.flatnonzero(labels == c)) for c in np.unique(labels)} == {(0, 1, 2), (3,), (4,), (5,), (6,), (7,)}
    # protected points (e.g. must-linked) are never ejected
    labels, _, _ = reliable_labels(MAIN, TIGHT, LOOSE, None, protect=np.array([0, 0, 0, 1, 0, 0, 0, 0], bool))
    assert len(set(labels[:4])) == 1


def test_independence_threshold_ignores_singletons():
    assert independence_threshold(np.array([0.0, 0.3, 0.1, 0.9]), np.array([1, 3, 2, 5])) == pytest.approx(0.9)
    assert independence_threshold(np.array([0.0]), np.array([1])) is None


def _blobs(n_per=6, k=3, d=8, seed=0):
    rng = np.random.default_rng(seed)
    centres = np.eye(d)[:k] * 5
    x = np.concatenate([c + 0.1 * rng.standard_normal((n_per, d)) for c in centres])
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_spcl_pseudo_labels_apply_the_refinement_to_every_labeling():
    x = _blobs()
    plain, _, st = spcl_pseudo_labels(x, None, k1=6, k2=2)
    assert st["n_clusters"] == 3 and len(np.unique(plain)) == 3
    calls = []

    def refine(labels, feats):  # split point 0 from its cluster, as a cannot-link would
        calls.append(labels.copy())
        out = labels.copy()
        out[0] = labels.max() + 1
        return out

    labels, _, _ = spcl_pseudo_labels(x, refine, k1=6, k2=2)
    assert len(calls) == 3  # main, tight, loose
    assert labels[0] != labels[1] and labels[1] == labels[2]
    calls.clear()
    spcl_pseudo_labels(x, refine, k1=6, k2=2, refine_all=False)
    assert len(calls) == 1


def test_clustercontrast_labels_drop_singletons_after_refinement():
    x = np.concatenate([_blobs(), _unit([[0, 0, 0, 0, 0, 0, 1, 1]]).astype(np.float32)])
    labels, st = cc_pseudo_labels(x, None, eps=0.6, min_samples=4, k1=6, k2=2)
    assert labels[-1] == -1 and st["n_clusters"] == 3 and (labels[:-1] >= 0).all()


def test_random_multiple_gallery_sampler():
    labels = np.array([0, 0, 0, 0, 1, 2, 2])
    cams = np.array([1, 1, 2, 2, 1, 1, 2])
    s = RandomMultipleGallerySampler(labels, num_instances=3, cameras=cams, rng=np.random.default_rng(0))
    for _ in range(20):
        one = s.one_pass()
        assert len(one) == 3 + 1 + 3  # singletons contribute one image
        by_label = {}
        for i in one:
            by_label.setdefault(labels[i], []).append(i)
        assert sorted(by_label) == [0, 1, 2]
        anchor, *rest = by_label[0]
        assert all(cams[r] != cams[anchor] for r in rest)  # other cameras preferred
    batches = s.batches(4)
    assert all(len(next(batches)) == 4 for _ in range(10))
