"""Train/test splits: honour a dataset's own ``split`` column, else build a leakage-free open-set split.

The built split mirrors wildlife-datasets' ``OpenSetSplit(ratio_train, ratio_class_test)`` used for
WildlifeReID-10k (spec 5.1): about ``test_only_fraction`` of the labelled images belong to
individuals seen only in test, and about ``train_fraction`` of *all* labelled images go to train
(the closed part is split per identity with the ratio rescaled to hit that total). Unlike a plain
per-image split, images that share an encounter, video, similarity cluster or calendar day are
never separated: near-duplicates on both sides would make retrieval look far better than it is.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from alreid.errors import ConfigError, DatasetError

GROUP_COLUMNS = ("encounter", "video", "cluster_id", "date")
TRAIN_VALUES = ("train", "database")
TEST_VALUES = ("test", "query")
UNKNOWN_IDENTITY = "unknown"


def split_from_column(values: pd.Series) -> np.ndarray:
    """Map a ``split`` column (train/test, or AnimalCLEF's database/query) to ``is_train``."""
    norm = values.astype("string").str.strip().str.lower()
    bad = ~norm.isin(TRAIN_VALUES + TEST_VALUES) | norm.isna()
    if bad.any():
        shown = ", ".join("(empty)" if pd.isna(v) else repr(v) for v in pd.unique(values[bad].astype(object))[:5])
        raise DatasetError(f"column 'split' has {int(bad.sum())} value(s) other than train/test "
                           f"(or database/query): {shown}; fix them or drop the column to build a split")
    return norm.isin(TRAIN_VALUES).to_numpy(dtype=bool)


def _group_values(df: pd.DataFrame, column: str) -> pd.Series:
    """Values that define a group; ``date`` is compared by calendar day, unparsable dates verbatim."""
    col = df[column]
    if column != "date":
        return col.astype(object).where(col.notna(), None)
    parsed = pd.to_datetime(col, errors="coerce", format="mixed")
    day = parsed.dt.strftime("%Y-%m-%d").astype(object)
    raw = col.astype(str).astype(object)
    return day.where(parsed.notna(), raw.where(col.notna(), None))


def group_components(df: pd.DataFrame, columns: tuple[str, ...] = GROUP_COLUMNS) -> np.ndarray:
    """Component label per row: rows linked through any shared group value stay together.

    Rows sharing a value in *any* group column are joined (union of groups), so the components are
    the smallest units that can be assigned to one side without splitting any group.
    """
    n = len(df)
    rows, nodes, n_nodes = [], [], n
    for column in columns:
        if column not in df.columns:
            continue
        vals = _group_values(df, column)
        present = vals.notna().to_numpy()
        codes, uniques = pd.factorize(vals[present])
        rows.append(np.flatnonzero(present))
        nodes.append(n_nodes + codes)
        n_nodes += len(uniques)
    if not rows:
        return np.arange(n)
    r, c = np.concatenate(rows), np.concatenate(nodes)
    graph = coo_matrix((np.ones(len(r), np.int8), (r, c)), shape=(n_nodes, n_nodes))
    _, labels = connected_components(graph, directed=False)
    _, comp = np.unique(labels[:n], return_inverse=True)
    return comp


def _row_keys(df: pd.DataFrame) -> np.ndarray:
    """Content keys for ordering: ``image_id`` when unique (row-order independent), else position."""
    if "image_id" in df.columns and df["image_id"].is_unique and df["image_id"].notna().all():
        return pd.factorize(df["image_id"].astype(str), sort=True)[0]
    return np.arange(len(df))


def _pick_test_only(comp: np.ndarray, ident: np.ndarray, labelled: np.ndarray, n_target: float,
                    rng: np.random.Generator) -> np.ndarray:
    """Components forced into test so that ~n_target labelled images belong to test-only identities.

    Identities (``ident``: sortable codes) are visited in seeded random order and taken when that
    brings the count closer to the target; taking one takes every component it appears in, and one
    identity always stays out so that train keeps an identity.
    """
    forced = np.zeros(int(comp.max()) + 1 if len(comp) else 0, bool)
    comp_size = np.bincount(comp[labelled], minlength=len(forced))
    pairs = pd.DataFrame({"id": ident[labelled], "comp": comp[labelled]}).drop_duplicates()
    comps_of = pairs.groupby("id")["comp"].apply(np.asarray)
    if n_target <= 0 or len(comps_of) < 2:
        return forced
    n_taken = taken = 0
    for i in rng.permutation(len(comps_of)):
        if n_taken >= n_target or taken == len(comps_of) - 1:
            break
        new = comps_of.iloc[i][~forced[comps_of.iloc[i]]]
        size = int(comp_size[new].sum())
        if size < 2 * (n_target - n_taken):  # |n_taken + size - target| < |n_taken - target|
            forced[new] = True
            n_taken += size
            taken += 1
    return forced


def _closed_targets(ident: np.ndarray, labelled: np.ndarray, free: np.ndarray, ratio: float
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Per-identity wanted train/test counts among free rows (wildlife-datasets rounding rules).

    round(ratio * n) train images, but at least one train image, and at least one test image when an
    identity has two or more.
    """
    codes = np.full(len(ident), -1)
    sel = labelled & free
    codes[sel] = pd.factorize(ident[sel])[0]
    n_id = np.bincount(codes[sel], minlength=codes.max() + 1)
    want_train = np.round(ratio * n_id).astype(int)
    want_train = np.where((want_train == n_id) & (n_id > 1), n_id - 1, want_train)
    want_train = np.maximum(want_train, 1)
    return codes, np.stack([want_train, n_id - want_train])


def _assign_closed(comp: np.ndarray, codes: np.ndarray, want: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Greedy train(0)/test(1) side per component, visiting components in ``order``.

    Each component goes to the side that moves its identities' counts closest to their targets
    (change in sum |have - want|); on a tie, to the side with the larger *relative* shortfall, so
    that an identity's single wanted test image is not lost to a train target that is merely
    larger in absolute terms.
    """
    side = np.zeros(int(comp.max()) + 1, np.int8)
    have = np.zeros_like(want)
    by_comp = np.argsort(comp, kind="stable")
    start = np.searchsorted(comp[by_comp], np.arange(len(side) + 1))
    for c in order:
        rows = by_comp[start[c]:start[c + 1]]
        ids, cnt = np.unique(codes[rows][codes[rows] >= 0], return_counts=True)
        if len(ids) == 0:
            continue  # only unknown-identity rows: keep in train, where unlabelled data is useful
        w, h = want[:, ids], have[:, ids]
        cost = (np.abs(h + cnt - w) - np.abs(h - w)).sum(axis=1)
        if cost[0] != cost[1]:
            s = int(cost[1] < cost[0])
        else:
            short = ((w - h) / np.maximum(w, 1)).sum(axis=1)
            s = int(short[1] > short[0])
        side[c] = s
        have[s, ids] += cnt
    return side


def open_set_split(df: pd.DataFrame, *, seed: int = 0, train_fraction: float = 0.8,
                   test_only_fraction: float = 0.05, unknown_label: Any = UNKNOWN_IDENTITY) -> np.ndarray:
    """Group-respecting open-set split; returns ``is_train`` (see the module docstring)."""
    if "identity" not in df.columns:
        raise DatasetError("cannot build a split: the metadata has no 'identity' column")
    ident_s = df["identity"]
    labelled = (ident_s.notna() & (ident_s.astype(str) != str(unknown_label))).to_numpy()
    ident = ident_s.astype(str).to_numpy()
    comp = group_components(df)
    rng = np.random.default_rng(seed)
    keys = _row_keys(df)
    comp_key = pd.Series(keys).groupby(comp).min().to_numpy()
    comp_by_key = np.argsort(comp_key, kind="stable")  # canonical order, independent of row order
    ident_sorted = np.unique(ident[labelled])
    ident_rank = np.searchsorted(ident_sorted, ident)  # identities visited by sorted name

    n_lab = int(labelled.sum())
    forced = _pick_test_only(comp, ident_rank, labelled, test_only_fraction * n_lab, rng)
    free = ~forced[comp]
    order = comp_by_key[rng.permutation(len(comp_by_key))]
    order = order[~forced[order]]
    n_free = int((labelled & free).sum())
    if n_free == 0:
        return ~forced[comp]
    side = _calibrated_sides(comp, ident, labelled, free, order, train_fraction * n_lab / n_free)
    side[forced] = 1
    return side[comp] == 0


def _calibrated_sides(comp: np.ndarray, ident: np.ndarray, labelled: np.ndarray, free: np.ndarray,
                      order: np.ndarray, target: float, rounds: int = 8) -> np.ndarray:
    """Sides of the free components with the per-identity ratio tuned so ~``target`` of them train.

    Whole groups are coarse (a 3-encounter identity cannot be split 5:1), which biases the plain
    per-identity split towards test; a short bisection on the ratio removes most of that bias.
    """
    sel = labelled & free
    n_free = int(sel.sum())

    def run(ratio: float) -> tuple[np.ndarray, float]:
        codes, want = _closed_targets(ident, labelled, free, ratio)
        side = _assign_closed(comp, codes, want, order)
        return side, float((side[comp][sel] == 0).sum()) / n_free

    target = float(np.clip(target, 0.0, 1.0))
    best_side, best_frac = run(target)
    lo, hi = (target, 1.0) if best_frac < target else (0.0, target)
    for _ in range(rounds):
        if abs(best_frac - target) * n_free < 1:
            break
        mid = (lo + hi) / 2
        side, frac = run(mid)
        if abs(frac - target) < abs(best_frac - target):
            best_side, best_frac = side, frac
        lo, hi = (mid, hi) if frac < target else (lo, mid)
    return best_side


def resolve_split(df: pd.DataFrame, *, seed: int = 0, train_fraction: float = 0.8,
                  test_only_fraction: float = 0.05) -> np.ndarray:
    """``is_train`` per row: the ``split`` column when the dataset has one, else an open-set split."""
    if not 0.0 < train_fraction < 1.0:
        raise ConfigError(f"train_fraction must be in (0, 1), got {train_fraction}")
    if not 0.0 <= test_only_fraction < 1.0 - train_fraction + 1e-12:
        raise ConfigError(f"test_only_fraction must be in [0, 1 - train_fraction], got {test_only_fraction}")
    if "split" in df.columns:
        return split_from_column(df["split"])
    return open_set_split(df, seed=seed, train_fraction=train_fraction, test_only_fraction=test_only_fraction)
