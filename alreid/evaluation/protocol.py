"""The paper's open-set query/gallery protocol (spec 5.2), fixed once per dataset and seed.

Query = every test image with a usable identity. Gallery = at most ``exemplars`` images of each
train identity except a seeded 20 % held out, so test-only and held-out individuals become the
"unknown" queries the AUC is about. The unlabelled training pool is the whole train split; the
gallery is a subset of it. Exemplars are chosen on the *starting* features and then frozen, so
every method is evaluated against the same gallery images.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from alreid.datasets.base import load_dataset
from alreid.datasets.images import ImageStore
from alreid.datasets.metadata import dataset_fingerprint
from alreid.datasets.splits import resolve_split
from alreid.errors import AlreidError, ConfigError
from alreid.evaluation.metrics import _l2_normalise, evaluate_retrieval
from alreid.models.backbones import build_backbone
from alreid.models.features import cache_key, extract_features, load_cached, pick_device, save_cached
from alreid.models.transforms import InputSpec

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


def standard_protocol(metadata: pd.DataFrame) -> OpenSetProtocol:
    """The fixed query/gallery of person Re-ID benchmarks (a ``role`` column: train/query/gallery)."""
    role = metadata["role"].astype(str).to_numpy()
    bad = sorted(set(role) - {"train", "query", "gallery"})
    if bad:
        raise AlreidError(f"the 'role' column may hold train, query or gallery; found {', '.join(bad)}")
    ids = metadata["identity"].astype(str).to_numpy()
    train, query, gallery = (np.flatnonzero(role == r) for r in ("train", "query", "gallery"))
    if len(train) == 0 or len(query) == 0 or len(gallery) == 0:
        raise AlreidError("a 'role' column needs train, query and gallery rows")
    gallery_ids = np.unique(ids[gallery])
    return OpenSetProtocol(train_idx=train, query_idx=query, gallery_idx=gallery, heldout_ids=np.array([], dtype=object),
                           query_unknown=~np.isin(ids[query], gallery_ids), gallery_ids=gallery_ids,
                           exemplar_rule="standard", exemplars=0, holdout_fraction=0.0)


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


# ------------------------------------------------------------------------------ the pinned protocol
#: the default reference embedding of image datasets: frozen ImageNet features of this backbone
DEFAULT_IMAGE_REFERENCE = "efficientnet_lite0"


def protocol_hash(protocol: OpenSetProtocol) -> str:
    """``protocol_id``: a hash of what the protocol is (rows of train/query/gallery, unknown queries,
    held-out identities, settings), so two trials evaluated on equal terms carry the same id."""
    h = hashlib.sha256()
    for arr in (protocol.train_idx, protocol.query_idx, protocol.gallery_idx, protocol.query_unknown):
        a = np.ascontiguousarray(np.asarray(arr, dtype=np.int64))
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    for ids in (protocol.heldout_ids, protocol.gallery_ids):  # as sorted text: a file reads numbers back as text
        h.update(json.dumps(sorted(str(x) for x in np.asarray(ids).tolist())).encode())
    h.update(json.dumps([protocol.exemplar_rule, int(protocol.exemplars), float(protocol.holdout_fraction),
                         int(protocol.seed)]).encode())
    return h.hexdigest()[:16]


def protocol_frame(protocol: OpenSetProtocol, identities: np.ndarray, image_ids: np.ndarray) -> pd.DataFrame:
    """One row per dataset row: its membership in train / query / gallery, unknown-query and held-out flags."""
    n = len(identities)
    keys = identity_keys(np.asarray(identities))
    df = pd.DataFrame({"row": np.arange(n), "image_id": np.asarray(image_ids).astype(str),
                       "identity": np.asarray(identities).astype(str)})
    for name, idx in (("train", protocol.train_idx), ("query", protocol.query_idx), ("gallery", protocol.gallery_idx)):
        flag = np.zeros(n, bool)
        flag[np.asarray(idx, dtype=np.int64)] = True
        df[name] = flag
    unknown = np.zeros(n, bool)
    unknown[np.asarray(protocol.query_idx, dtype=np.int64)[np.asarray(protocol.query_unknown, bool)]] = True
    df["query_unknown"] = unknown
    df["heldout"] = np.isin(keys, np.asarray(protocol.heldout_ids)) & df["train"].to_numpy()
    df["exemplar_rule"] = protocol.exemplar_rule
    df["exemplars"] = int(protocol.exemplars)
    df["holdout_fraction"] = float(protocol.holdout_fraction)
    df["split_seed"] = int(protocol.seed)
    df["protocol_id"] = protocol_hash(protocol)
    return df


def protocol_from_frame(df: pd.DataFrame, *, source: str = "protocol file") -> OpenSetProtocol:
    """The inverse of :func:`protocol_frame` (index arrays sorted, as :func:`build_protocol` makes them)."""
    need = {"row", "identity", "train", "query", "gallery", "query_unknown", "heldout"}
    missing = sorted(need - set(df.columns))
    if missing:
        raise AlreidError(f"{source} lacks column(s) {', '.join(missing)}; write it with alreid bench again")
    df = df.sort_values("row", kind="stable")
    ids = df["identity"].astype(str).to_numpy()
    train = np.flatnonzero(df["train"].to_numpy(bool))
    query = np.flatnonzero(df["query"].to_numpy(bool))
    gallery = np.flatnonzero(df["gallery"].to_numpy(bool))
    first = df.iloc[0] if len(df) else {}
    rule = str(first.get("exemplar_rule", "kmedoids"))
    gallery_ids = np.unique(ids[gallery])
    heldout_ids = np.unique(ids[df["heldout"].to_numpy(bool)])
    if rule == "standard":
        heldout_ids = np.array([], dtype=object)
    return OpenSetProtocol(train_idx=train, query_idx=query, gallery_idx=gallery, heldout_ids=heldout_ids,
                           query_unknown=df["query_unknown"].to_numpy(bool)[query], gallery_ids=gallery_ids,
                           seed=int(first.get("split_seed", 0)), exemplar_rule=rule,
                           exemplars=int(first.get("exemplars", 0)),
                           holdout_fraction=float(first.get("holdout_fraction", 0.0)))


def reference_features(dataset: Any, reference: str = "auto", *, progress: bool = True) -> np.ndarray:
    """The pinned embedding the gallery exemplars are chosen on, whatever trainer a row uses.

    ``auto``: the dataset's own frozen features when it has them (``embeddings:``, ``synthetic``), else
    the frozen ImageNet features of :data:`DEFAULT_IMAGE_REFERENCE`; ``features``: the dataset's own;
    ``embeddings:PATH``: features of the same images computed elsewhere (e.g. MegaDescriptor, same
    image_id order); any other value names a backbone whose frozen ImageNet features are used
    (computed once and kept in the feature cache).
    """
    if reference == "auto":
        reference = "features" if dataset.features is not None else DEFAULT_IMAGE_REFERENCE
    if reference == "features":
        if dataset.features is None:
            raise ConfigError(f"protocol.reference 'features': dataset {dataset.name!r} has no precomputed features; "
                              f"use protocol.reference: auto or a backbone name")
        return np.asarray(dataset.features, dtype=np.float32)
    if reference.startswith("embeddings:"):
        ref = load_dataset(reference)
        mine = dataset.metadata["image_id"].astype(str).to_numpy()
        theirs = ref.metadata["image_id"].astype(str).to_numpy()
        if len(mine) != len(theirs) or not np.array_equal(mine, theirs):
            raise ConfigError(f"protocol.reference {reference}: its rows are not the images of dataset "
                              f"{dataset.name!r} in the same order (compare their image_id columns)")
        return np.asarray(ref.features, dtype=np.float32)
    return _frozen_backbone_features(dataset, reference, progress=progress)


def _frozen_backbone_features(dataset: Any, backbone: str, *, progress: bool) -> np.ndarray:
    """Frozen ImageNet features of every image at the backbone's own input size (cached on disk)."""
    if dataset.root is None or "path" not in dataset.metadata.columns:
        raise ConfigError(f"dataset {dataset.name!r} has neither features nor images to pin its protocol on")
    device = pick_device("auto")
    model = build_backbone(backbone, weights="imagenet", pooling="avg", seed=0).to(device)
    spec = InputSpec(tuple(model.default_size), model.input_mean, model.input_std)
    key = cache_key(dataset_fingerprint(dataset), dict(model.describe(), neck="bn-identity"), spec)
    feats = load_cached(key, dataset.n)
    if feats is None:
        store = ImageStore(dataset.root, dataset.metadata["path"].astype(str).tolist(), cache_bytes=0)
        feats = extract_features(model, store, np.arange(dataset.n), spec, device=device, progress=progress,
                                 desc=f"protocol reference ({backbone})", source=f"dataset {dataset.name!r}")
        save_cached(key, feats)
    return feats


def pinned_protocol(dataset: Any, settings: Any, *, progress: bool = True) -> OpenSetProtocol:
    """The protocol of (dataset, split seed, reference embedding), the same for every row of a table:
    the dataset's own query/gallery when it has a ``role`` column (Market-1501), else the open-set
    protocol with exemplars chosen on :func:`reference_features`. ``settings`` is a ProtocolSettings."""
    if "role" in dataset.metadata.columns:
        return standard_protocol(dataset.metadata)
    is_train = resolve_split(dataset.metadata, seed=settings.split_seed)
    feats = reference_features(dataset, settings.reference, progress=progress)
    return build_protocol(dataset.identities, is_train, feats, holdout_fraction=settings.holdout_fraction,
                          exemplars=settings.exemplars, exemplar_rule=settings.exemplar_rule, seed=settings.split_seed)


def load_pinned(path: str | Path, dataset: Any, expected_id: str | None = None) -> OpenSetProtocol:
    """A saved protocol, checked against the dataset it will evaluate and its expected id."""
    p = Path(path)
    df = pd.read_parquet(p)
    ids = dataset.metadata["image_id"].astype(str).to_numpy()
    if len(df) != len(ids) or not np.array_equal(df.sort_values("row")["image_id"].astype(str).to_numpy(), ids):
        raise AlreidError(f"protocol file {p} was made for other images than dataset {dataset.name!r}; "
                          f"rerun with --overwrite")
    protocol = protocol_from_frame(df, source=str(p))
    if expected_id is not None and protocol_hash(protocol) != expected_id:
        raise AlreidError(f"protocol file {p} changed since the run was planned (id {protocol_hash(protocol)}, "
                          f"expected {expected_id}); rerun with --overwrite")
    return protocol
