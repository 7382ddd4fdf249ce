"""Re-identification metrics: Market-1501 retrieval metrics, BAKS/BAUS and known-vs-unknown AUC.

Values are fractions in [0, 1]. Retrieval follows the fast-reid / torchreid conventions (spec 7.1):
the gallery is ranked by descending similarity, gallery items with the query's identity *and*
camera are removed, and queries left without a true match are skipped (and counted), which is
how open-set unknown queries drop out of mAP/mINP/CMC. Equal similarities are ordered by gallery
index (a stable ranking), so results never depend on the sorting algorithm.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from alreid.errors import AlreidError

NEW_INDIVIDUAL = "new_individual"


# ------------------------------------------------------------------------------------------------
# retrieval
# ------------------------------------------------------------------------------------------------
def _joint_codes(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes shared by two label arrays, so mixed or string labels compare as ints."""
    codes, _ = pd.factorize(pd.Series(np.concatenate([np.asarray(a, dtype=object), np.asarray(b, dtype=object)])))
    return codes[: len(a)], codes[len(a):]


def _camera_codes(q_cams: np.ndarray | None, g_cams: np.ndarray | None, nq: int, ng: int
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Camera codes; a missing camera (None/NaN) never equals another one, so it removes nothing."""
    if (q_cams is None) != (g_cams is None):
        raise AlreidError("give both q_cams and g_cams, or neither")
    if q_cams is None:
        return np.zeros(nq, np.int64), np.ones(ng, np.int64)
    q_cams, g_cams = np.asarray(q_cams), np.asarray(g_cams)
    if len(q_cams) != nq or len(g_cams) != ng:
        raise AlreidError(f"camera arrays have {len(q_cams)} and {len(g_cams)} entries; expected {nq} and {ng}")
    qc, gc = _joint_codes(q_cams, g_cams)  # pandas gives missing values the code -1
    return np.where(qc < 0, -1, qc), np.where(gc < 0, -2, gc)


def _group_rows(codes: np.ndarray, n_codes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSR view of gallery rows per identity code: (rows sorted by code, start, count).

    ``start``/``count`` have ``n_codes + 1`` entries; the last one (count 0) serves code -1, a
    missing identity, which matches nothing.
    """
    order = np.argsort(codes, kind="stable")
    count = np.bincount(codes[codes >= 0], minlength=n_codes).astype(np.int64)
    n_missing = int((codes < 0).sum())  # code -1 sorts first
    start = n_missing + np.concatenate([[0], np.cumsum(count)[:-1]]).astype(np.int64)
    return order, np.append(start, 0), np.append(count, 0)


def _searchsorted_rows(sorted_rows: np.ndarray, rows: np.ndarray, values: np.ndarray, *, strict: bool
                       ) -> np.ndarray:
    """Vectorised per-row ``searchsorted``: how many entries of ``sorted_rows[r]`` are < (strict) or <= v.

    numpy's searchsorted is one-row-only; a joint binary search over all (row, value) pairs keeps
    the work at O(pairs * log n) without a Python loop over queries.
    """
    n = sorted_rows.shape[1]
    lo = np.zeros(len(rows), np.int64)
    hi = np.full(len(rows), n, np.int64)
    active = lo < hi
    while active.any():
        mid = (lo + hi) // 2
        probe = sorted_rows[rows, np.minimum(mid, n - 1)]
        right = active & ((probe < values) if strict else (probe <= values))
        lo = np.where(right, mid + 1, lo)
        hi = np.where(active & ~right, mid, hi)
        active = lo < hi
    return lo


def _match_ranks(block: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """1-based rank of each true match ``block[rows, cols]`` within its row, by descending value.

    Sorting each row once and binary-searching the few true matches is ~3x faster than argsort and
    needs no (queries x gallery) index array. Ties are ordered by column (gallery) index.
    """
    values = block[rows, cols]
    ordered = np.sort(block, axis=1)
    leq = _searchsorted_rows(ordered, rows, values, strict=False)
    ranks = block.shape[1] - leq + 1
    tied = np.flatnonzero(leq - _searchsorted_rows(ordered, rows, values, strict=True) > 1)
    for t in tied:  # rare: equal similarities, the earlier gallery item ranks first
        ranks[t] += int(np.count_nonzero(block[rows[t], : cols[t]] == values[t]))
    return ranks


def _per_query_scores(ranks: np.ndarray, qrow: np.ndarray, n_rows: int
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """AP, INP, first-hit rank and #matches per query row from the ranks of its true matches."""
    order = np.lexsort((ranks, qrow))
    ranks, qrow = ranks[order], qrow[order]
    n_match = np.bincount(qrow, minlength=n_rows)
    first = np.concatenate([[0], np.cumsum(n_match)[:-1]])
    hit_no = np.arange(len(ranks)) - first[qrow] + 1  # 1..m within each query
    with np.errstate(invalid="ignore", divide="ignore"):
        ap = np.bincount(qrow, weights=hit_no / ranks, minlength=n_rows) / n_match
        last_rank = np.zeros(n_rows)
        last_rank[qrow] = ranks  # sorted ascending, so the last write per query is its last hit
        inp = n_match / last_rank
    first_rank = np.full(n_rows, np.inf)
    np.minimum.at(first_rank, qrow, ranks)
    return ap, inp, first_rank, n_match


def rank_metrics(sim: np.ndarray, q_ids: np.ndarray, g_ids: np.ndarray, q_cams: np.ndarray | None = None,
                 g_cams: np.ndarray | None = None, topk: Sequence[int] = (1, 3, 5, 10), chunk: int = 512
                 ) -> dict[str, Any]:
    """mAP, mINP and CMC top-k of a (queries x gallery) similarity matrix, Market-1501 semantics.

    Per query, gallery items with the same identity and the same camera are removed (nothing is
    removed when no cameras are given); a query with no true match left is skipped and counted in
    ``n_skipped_queries``. Work is chunked over queries, so memory stays at a few copies of
    ``chunk`` similarity rows. Metrics are NaN when no query is valid.
    """
    sim = np.asarray(sim)
    if sim.ndim != 2:
        raise AlreidError(f"similarity matrix must be 2-D (queries x gallery), got shape {sim.shape}")
    nq, ng = sim.shape
    if len(q_ids) != nq or len(g_ids) != ng:
        raise AlreidError(f"similarity matrix is {nq} x {ng} but there are {len(q_ids)} query and "
                          f"{len(g_ids)} gallery identities")
    topk = tuple(int(k) for k in topk)
    if any(k < 1 for k in topk):
        raise AlreidError(f"top-k values must be >= 1, got {topk}")
    qc, gc = _joint_codes(q_ids, g_ids)
    qcam, gcam = _camera_codes(q_cams, g_cams, nq, ng)
    g_order, g_start, g_count = _group_rows(gc, int(max(qc.max(initial=-1), gc.max(initial=-1))) + 1)
    dtype = sim.dtype if np.issubdtype(sim.dtype, np.floating) else np.float64

    ap, inp, first = np.full(nq, np.nan), np.full(nq, np.nan), np.full(nq, np.inf)
    valid = np.zeros(nq, bool)
    for a in range(0, nq, max(int(chunk), 1)):
        b = min(a + max(int(chunk), 1), nq)
        cnt = g_count[qc[a:b]]  # true-match candidates per query (code -1 -> the empty last entry)
        qrow = np.repeat(np.arange(b - a), cnt)
        offset = np.arange(len(qrow)) - np.repeat(np.cumsum(cnt) - cnt, cnt)
        gcol = g_order[np.repeat(g_start[qc[a:b]], cnt) + offset]
        junk = gcam[gcol] == qcam[a + qrow]
        block = np.array(sim[a:b], dtype=dtype)  # private copy: removed items are overwritten
        if not np.isfinite(block).all():
            raise AlreidError("similarity matrix contains NaN or infinite values")
        block[qrow[junk], gcol[junk]] = -np.inf  # removed items sink below every finite similarity
        keep = ~junk
        if keep.any():
            ranks = _match_ranks(block, qrow[keep], gcol[keep])
            ap_c, inp_c, first_c, n_match = _per_query_scores(ranks, qrow[keep], b - a)
            ok = np.flatnonzero(n_match > 0)
            valid[a + ok], ap[a + ok], inp[a + ok], first[a + ok] = True, ap_c[ok], inp_c[ok], first_c[ok]

    n_valid = int(valid.sum())
    out: dict[str, Any] = {
        "mAP": float(ap[valid].mean()) if n_valid else float("nan"),
        "mINP": float(inp[valid].mean()) if n_valid else float("nan"),
    }
    for k in topk:
        out[f"top{k}"] = float((first[valid] <= k).mean()) if n_valid else float("nan")
    out["n_valid_queries"] = n_valid
    out["n_skipped_queries"] = nq - n_valid
    return out


# ------------------------------------------------------------------------------------------------
# classification-style open-set metrics
# ------------------------------------------------------------------------------------------------
def _balanced_rate(y_true: np.ndarray, hit: np.ndarray) -> float:
    """Mean over identities of the per-identity hit rate (every individual weighs the same)."""
    if len(y_true) == 0:
        return float("nan")
    codes, _ = pd.factorize(pd.Series(y_true, dtype=object))
    per_id = np.bincount(codes, weights=hit.astype(float)) / np.bincount(codes)
    return float(per_id.mean())


def _in_set(values: np.ndarray, members: Iterable[Any]) -> np.ndarray:
    """Hash-based membership that tolerates mixed label types (np.isin would sort them)."""
    return pd.Series(values, dtype=object).isin(list(members)).to_numpy()


def _equal(a: np.ndarray, b: Any) -> np.ndarray:
    """Element-wise Python ``==`` against an array or a scalar; mixed label types never coerce."""
    if np.ndim(b) == 0:
        return np.array([bool(x == b) for x in a], dtype=bool)
    return np.array([bool(x == y) for x, y in zip(a, b)], dtype=bool)


def baks(y_true: Sequence[Any], y_pred: Sequence[Any], unknown_ids: Iterable[Any]) -> float:
    """Balanced accuracy on known samples (wildlife-datasets BAKS); NaN when no known sample.

    Balanced over identities because wildlife datasets are dominated by a few prolific individuals.
    """
    y_true, y_pred = np.asarray(y_true, dtype=object), np.asarray(y_pred, dtype=object)
    known = ~_in_set(y_true, unknown_ids)
    return _balanced_rate(y_true[known], _equal(y_pred[known], y_true[known]))


def baus(y_true: Sequence[Any], y_pred: Sequence[Any], unknown_ids: Iterable[Any],
         new_class: Any = NEW_INDIVIDUAL) -> float:
    """Balanced accuracy on unknown samples (wildlife-datasets BAUS): rate of ``new_class`` predictions."""
    y_true, y_pred = np.asarray(y_true, dtype=object), np.asarray(y_pred, dtype=object)
    unknown = _in_set(y_true, unknown_ids)
    return _balanced_rate(y_true[unknown], _equal(y_pred[unknown], new_class))


def auc_known_unknown(is_unknown: np.ndarray, top1_score: np.ndarray) -> float:
    """ROC-AUC of separating known from unknown queries by top-1 similarity (positive = known).

    Threshold-free, which is why the paper reports it instead of BAUS. NaN with a single class.
    """
    from sklearn.metrics import roc_auc_score

    is_unknown = np.asarray(is_unknown, dtype=bool)
    score = np.asarray(top1_score, dtype=float)
    if len(is_unknown) != len(score):
        raise AlreidError(f"{len(is_unknown)} unknown flags but {len(score)} scores")
    if is_unknown.all() or not is_unknown.any():
        return float("nan")
    return float(roc_auc_score(~is_unknown, score))


# ------------------------------------------------------------------------------------------------
# everything at once
# ------------------------------------------------------------------------------------------------
def _l2_normalise(x: np.ndarray) -> np.ndarray:
    """Row-normalised float32 copy; zero rows stay zero rather than NaN."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms == 0, 1.0, norms)


def evaluate_retrieval(query_feats: np.ndarray, gallery_feats: np.ndarray, q_ids: np.ndarray, g_ids: np.ndarray,
                       *, query_unknown: np.ndarray, q_cams: np.ndarray | None = None,
                       g_cams: np.ndarray | None = None, baus_threshold: float | None = None,
                       new_class: Any = NEW_INDIVIDUAL) -> dict[str, Any]:
    """Cosine retrieval of queries against a gallery: rank metrics, BAKS, AUC and optionally BAUS.

    BAKS uses plain 1-NN predictions (the paper's "closed setting"); AUC ranks all queries by their
    top-1 similarity; BAUS predicts ``new_class`` below ``baus_threshold``.
    """
    q_ids, g_ids = np.asarray(q_ids), np.asarray(g_ids)
    query_unknown = np.asarray(query_unknown, dtype=bool)
    if len(query_feats) != len(q_ids) or len(query_unknown) != len(q_ids):
        raise AlreidError(f"{len(query_feats)} query features, {len(q_ids)} query identities and "
                          f"{len(query_unknown)} unknown flags; they must match")
    if len(gallery_feats) == 0:
        raise AlreidError("the gallery is empty; nothing to retrieve against")
    sim = _l2_normalise(query_feats) @ _l2_normalise(gallery_feats).T
    out = rank_metrics(sim, q_ids, g_ids, q_cams, g_cams)
    best = sim.argmax(axis=1)
    top1_score = sim[np.arange(len(sim)), best]
    pred = g_ids[best].astype(object)
    unknown_ids = pd.unique(pd.Series(q_ids[query_unknown], dtype=object))
    out["BAKS"] = baks(q_ids, pred, unknown_ids)
    out["AUC"] = auc_known_unknown(query_unknown, top1_score)
    if baus_threshold is not None:
        open_pred = np.where(top1_score < baus_threshold, np.asarray(new_class, dtype=object), pred)
        out["BAUS"] = baus(q_ids, open_pred, unknown_ids, new_class)
    out["n_queries"] = int(len(q_ids))
    out["n_known_queries"] = int((~query_unknown).sum())
    out["n_unknown_queries"] = int(query_unknown.sum())
    return out
