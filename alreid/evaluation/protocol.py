"""The paper's open-set query/gallery protocol (spec 5.2), fixed once per dataset and seed.

Query = every test image with a usable identity. Gallery = at most ``exemplars`` images of each
train identity except a seeded 20 % held out, so test-only and held-out individuals become the
"unknown" queries the AUC is about. The unlabelled training pool is the whole train split; the
gallery is a subset of it. Exemplars are chosen on the *starting* features and then frozen, so
every method is evaluated against the same gallery images.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from alreid.errors import AlreidError
from alreid.evaluation.metrics import _l2_normalise, evaluate_retrieval

EXEMPLAR_RULES = ("kmedoids", "central")
#: identities with more train images than this are sub-sampled (seeded) before k-medoids, which
#: needs an n x n similarity matrix
MAX_MEDOID_CANDIDATES = 4096


@dataclass(frozen=True, eq=False)
class OpenSetProtocol:
    """Row indices (into the dataset) that define one open-set evaluation."""

    train_idx: np.ndarray
    query_idx: np.ndarray
    gallery_idx: np.ndarray
    heldout_ids: np.ndarray
    query_unknown: np.ndarray
    gallery_ids: np.ndarray
    seed: int = 0
    exemplar_rule: str = "kmedoids"
    exemplars: int = 5
    holdout_fraction: float = 0.2

    def summary(self) -> dict[str, Any]:
        """Counts and settings worth logging next to the metrics."""
        return {
            "n_train": int(len(self.train_idx)),
            "n_query": int(len(self.query_idx)),
            "n_gallery": int(len(self.gallery_idx)),
            "n_gallery_ids": int(len(self.gallery_ids)),
            "n_heldout_ids": int(len(self.heldout_ids)),
            "n_query_known": int((~self.query_unknown).sum()),
            "n_query_unknown": int(self.query_unknown.sum()),
            "seed": int(self.seed),
            "exemplar_rule": self.exemplar_rule,
            "exemplars": int(self.exemplars),
            "holdout_fraction": float(self.holdout_fraction),
        }


def usable_identity(identities: np.ndarray, unknown_label: Any = "unknown") -> np.ndarray:
    """True where a row has a real identity (not missing, not the ``unknown`` placeholder)."""
    s = pd.Series(np.asarray(identities, dtype=object))
    return (s.notna() & (s.astype(str) != str(unknown_label))).to_numpy()


def identity_keys(identities: np.ndarray) -> np.ndarray:
    """Identities as sortable keys: numbers stay numbers, anything mixed becomes str."""
    ids = np.asarray(identities)
    return ids if ids.dtype.kind in "biufU" else ids.astype(str)


def _farthest_first(dist: np.ndarray, k: int) -> np.ndarray:
    """Greedy farthest-first seeds, starting from the most central item (smallest distance sum)."""
    chosen = [int(np.argmin(dist.sum(axis=1)))]
    nearest = dist[chosen[0]].copy()
    nearest[chosen[0]] = -np.inf
    while len(chosen) < k:
        nxt = int(np.argmax(nearest))  # -inf marks chosen items, so duplicates are never re-picked
        chosen.append(nxt)
        nearest = np.minimum(nearest, dist[nxt])
        nearest[chosen] = -np.inf
    return np.array(chosen)


def kmedoids(x: np.ndarray, k: int, *, max_iter: int = 100) -> np.ndarray:
    """Positions of k medoids of the rows of ``x`` under cosine distance (alternating k-medoids).

    Medoids are actual images, both representative (central in their cluster) and diverse (the
    farthest-first initialisation spreads them over the identity's appearance modes).
    """
    z = _l2_normalise(x)
    dist = np.clip(1.0 - z @ z.T, 0.0, 2.0).astype(np.float64)
    medoids = _farthest_first(dist, k)
    for _ in range(max_iter):
        assign = np.argmin(dist[:, medoids], axis=1)
        new = medoids.copy()
        for c in range(k):
            members = np.flatnonzero(assign == c)
            if len(members):
                new[c] = members[np.argmin(dist[np.ix_(members, members)].sum(axis=1))]
        if np.array_equal(new, medoids):
            break
        medoids = new
    return np.sort(medoids)


def central(x: np.ndarray, k: int) -> np.ndarray:
    """Positions of the k rows with the highest mean cosine similarity to their identity."""
    z = _l2_normalise(x)
    score = (z @ z.sum(axis=0)) / len(z)
    return np.sort(np.argsort(-score, kind="stable")[:k])


def select_exemplars(features: np.ndarray, rows: np.ndarray, k: int, rule: str,
                     rng: np.random.Generator) -> np.ndarray:
    """At most k gallery rows out of one identity's train ``rows`` (all of them when <= k)."""
    if len(rows) <= k:
        return rows
    cand = rows
    if len(rows) > MAX_MEDOID_CANDIDATES:
        cand = np.sort(rng.choice(rows, MAX_MEDOID_CANDIDATES, replace=False))
    pick = kmedoids(features[cand], k) if rule == "kmedoids" else central(features[cand], k)
    return cand[pick]


def _check_inputs(identities: np.ndarray, is_train: np.ndarray, features: np.ndarray, holdout_fraction: float,
                  exemplars: int, exemplar_rule: str) -> None:
    n = len(identities)
    if len(is_train) != n or len(features) != n:
        raise AlreidError(f"identities ({n}), is_train ({len(is_train)}) and features ({len(features)}) "
                          "must describe the same rows")
    if not 0.0 <= holdout_fraction < 1.0:
        raise AlreidError(f"holdout_fraction must be in [0, 1), got {holdout_fraction}")
    if exemplars < 1:
        raise AlreidError(f"exemplars must be >= 1, got {exemplars}")
    if exemplar_rule not in EXEMPLAR_RULES:
        raise AlreidError(f"unknown exemplar_rule {exemplar_rule!r}; choose one of {', '.join(EXEMPLAR_RULES)}")


def build_protocol(identities: np.ndarray, is_train: np.ndarray, features: np.ndarray, *,
                   holdout_fraction: float = 0.2, exemplars: int = 5, exemplar_rule: str = "kmedoids",
                   seed: int = 0, unknown_label: Any = "unknown") -> OpenSetProtocol:
    """Hold out identities, pick gallery exemplars and flag unknown queries (spec 5.2).

    Deterministic for a seed: identities are sorted before the seeded draw, so the result does
    not depend on the order they first appear in.
    """
    identities = np.asarray(identities)
    is_train = np.asarray(is_train, dtype=bool)
    features = np.asarray(features)
    _check_inputs(identities, is_train, features, holdout_fraction, exemplars, exemplar_rule)
    usable = usable_identity(identities, unknown_label)
    keys = identity_keys(identities)
    train_idx = np.flatnonzero(is_train)
    query_idx = np.flatnonzero(~is_train & usable)
    if len(query_idx) == 0:
        raise AlreidError("no test image with a known identity: the split has no queries; "
                          "check the split column or lower train_fraction")
    labelled_train = np.flatnonzero(is_train & usable)
    train_ids = np.unique(keys[labelled_train])
    if len(train_ids) == 0:
        raise AlreidError("no train image with a known identity: the gallery would be empty")

    rng = np.random.default_rng(seed)
    n_hold = min(int(round(holdout_fraction * len(train_ids))), len(train_ids) - 1)
    heldout = np.sort(rng.permutation(train_ids)[:n_hold])
    gallery_ids = np.setdiff1d(train_ids, heldout)

    order = labelled_train[np.argsort(keys[labelled_train], kind="stable")]
    bounds = np.flatnonzero(np.r_[True, keys[order][1:] != keys[order][:-1], True])
    gallery = []
    for s, e in zip(bounds[:-1], bounds[1:]):
        rows = order[s:e]
        if keys[rows[0]] in heldout:
            continue
        gallery.append(select_exemplars(features, rows, exemplars, exemplar_rule, rng))
    gallery_idx = np.sort(np.concatenate(gallery)).astype(np.int64)
    query_unknown = ~np.isin(keys[query_idx], gallery_ids)
    return OpenSetProtocol(train_idx=train_idx, query_idx=query_idx, gallery_idx=gallery_idx,
                           heldout_ids=heldout, query_unknown=query_unknown, gallery_ids=gallery_ids,
                           seed=int(seed), exemplar_rule=exemplar_rule, exemplars=int(exemplars),
                           holdout_fraction=float(holdout_fraction))


def evaluate_protocol(protocol: OpenSetProtocol, embeddings: np.ndarray, identities: np.ndarray,
                      cameras: np.ndarray | None = None, **kw: Any) -> dict[str, Any]:
    """Evaluate embeddings of *all* dataset rows: test queries against the frozen gallery.

    ``cameras`` is an optional per-row camera stand-in (e.g. ``encounter``) for same-camera
    removal; without it every query gets camera 0 and every gallery image camera 1, so nothing is
    removed (setting them equal would delete every true match). ``kw`` goes to
    :func:`evaluate_retrieval` (``baus_threshold``, ``new_class``).
    """
    embeddings = np.asarray(embeddings)
    identities = np.asarray(identities)
    if len(embeddings) != len(identities):
        raise AlreidError(f"{len(embeddings)} embeddings but {len(identities)} identities; "
                          "pass embeddings of every dataset row")
    q, g = protocol.query_idx, protocol.gallery_idx
    q_cams = g_cams = None
    if cameras is not None:
        cameras = np.asarray(cameras, dtype=object)
        if len(cameras) != len(identities):
            raise AlreidError(f"{len(cameras)} camera values but {len(identities)} rows")
        q_cams, g_cams = cameras[q], cameras[g]
    keys = identity_keys(identities)
    out = evaluate_retrieval(embeddings[q], embeddings[g], keys[q], keys[g], query_unknown=protocol.query_unknown,
                             q_cams=q_cams, g_cams=g_cams, **kw)
    out["n_gallery"] = int(len(g))
    return out
