"""NP3: make any partition satisfy must-link (ML) and cannot-link (CL) constraints (spec 1.10).

1. Clusters joined by an ML pair are merged (the merged cluster keeps the smallest id).
2. Every cluster that then holds a CL pair ("impure") is split: its constrained points form ML
   groups (atomic nodes), CL pairs are edges between them, each connected component of that conflict
   graph is coloured; the colour classes of the component with the highest chromatic number become
   the sub-clusters, the other components' colour classes are matched onto them by the Hungarian
   algorithm on centroid distances, and unconstrained points join the nearest sub-cluster.
3. The largest sub-cluster keeps the cluster's id, the others get fresh ids above every id in use.

Only impure clusters are touched, so the cost is O(n) plus the size of those clusters. Clusters that
hold no CL pair and take part in no ML merge come back with the same members and the same id.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.optimize import linear_sum_assignment
from scipy.sparse.csgraph import connected_components

from alreid.errors import ConstraintConflictError

_GREEDY = {"dsatur": "saturation_largest_first", "largest_first": "largest_first"}


# graph colouring ----------------------------------------------------------------------------------
def exact_colouring(n_nodes: int, edges: np.ndarray) -> np.ndarray:
    """Minimum colouring by backtracking (colour of each node, 0..chi-1); meant for a dozen nodes."""
    adj = [set() for _ in range(n_nodes)]
    for a, b in np.asarray(edges, dtype=np.int64).reshape(-1, 2):
        if a == b:
            raise ValueError(f"self-loop on node {a} cannot be coloured")
        adj[a].add(int(b))
        adj[b].add(int(a))
    order = sorted(range(n_nodes), key=lambda v: (-len(adj[v]), v))
    colour = [-1] * n_nodes

    def place(pos: int, k: int, used: int) -> bool:
        if pos == n_nodes:
            return True
        v = order[pos]
        banned = {colour[u] for u in adj[v]}
        for c in range(min(k, used + 1)):  # new colours only in order: no symmetric retries
            if c not in banned:
                colour[v] = c
                if place(pos + 1, k, max(used, c + 1)):
                    return True
        colour[v] = -1
        return False

    for k in range(1 if n_nodes else 0, n_nodes + 1):
        if place(0, k, 0):
            break
    return np.asarray(colour, dtype=np.int64)


def greedy_colouring(n_nodes: int, edges: np.ndarray, strategy: str = "dsatur") -> np.ndarray:
    """networkx greedy colouring ("dsatur" = saturation_largest_first, or "largest_first")."""
    import networkx as nx

    if strategy not in _GREEDY:
        raise ValueError(f"unknown colouring {strategy!r}; use one of {sorted(_GREEDY)}")
    g = nx.Graph()
    g.add_nodes_from(range(n_nodes))
    g.add_edges_from(map(tuple, np.asarray(edges, dtype=np.int64).reshape(-1, 2).tolist()))
    col = nx.coloring.greedy_color(g, strategy=_GREEDY[strategy])
    return np.asarray([col[v] for v in range(n_nodes)], dtype=np.int64)


def colour_graph(n_nodes: int, edges: np.ndarray, *, exact_max: int = 12, colouring: str = "dsatur") -> np.ndarray:
    """Exact minimum colouring up to ``exact_max`` nodes, greedy above (colours renumbered 0..chi-1)."""
    if n_nodes <= exact_max:
        return exact_colouring(n_nodes, edges)
    col = greedy_colouring(n_nodes, edges, colouring)
    return np.unique(col, return_inverse=True)[1].astype(np.int64)


# helpers ------------------------------------------------------------------------------------------
def _pairs(p: np.ndarray, n: int, what: str) -> np.ndarray:
    arr = np.asarray(p, dtype=np.int64).reshape(-1, 2)
    if len(arr) and (arr.min() < 0 or arr.max() >= n):
        raise IndexError(f"{what} pair index outside [0, {n})")
    return arr


def _merge_must_links(labels: np.ndarray, ml: np.ndarray) -> np.ndarray:
    """Union the clusters joined by ML pairs; each merged cluster takes its smallest id."""
    a, b = labels[ml[:, 0]], labels[ml[:, 1]]
    touched = np.unique(np.concatenate([a, b]))
    m = len(touched)
    ia, ib = np.searchsorted(touched, a), np.searchsorted(touched, b)
    g = sp.coo_matrix((np.ones(len(ia), dtype=np.int8), (ia, ib)), shape=(m, m))
    _, comp = connected_components(g, directed=False)
    smallest = np.full(comp.max() + 1, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(smallest, comp, touched)
    new_id = smallest[comp]
    out = labels.copy()
    hit = np.isin(labels, touched)
    out[hit] = new_id[np.searchsorted(touched, labels[hit])]
    return out


class _Centroids:
    """Running member sums of the sub-clusters and the chosen distance to them."""

    def __init__(self, z: np.ndarray, cost: str) -> None:
        if cost not in ("cosine", "euclidean"):
            raise ValueError(f"unknown NP3 cost {cost!r}; use 'cosine' or 'euclidean'")
        self.z, self.cost = z, cost
        self.sums: list[np.ndarray] = []
        self.counts: list[int] = []

    def add(self, s: int, rows: np.ndarray) -> None:
        total = self.z[rows].sum(axis=0)
        if s == len(self.sums):
            self.sums.append(total)
            self.counts.append(len(rows))
        else:
            self.sums[s] = self.sums[s] + total
            self.counts[s] += len(rows)

    def _norm(self, m: np.ndarray, counts: np.ndarray) -> np.ndarray:
        if self.cost == "cosine":
            nrm = np.linalg.norm(m, axis=1, keepdims=True)
            return m / np.where(nrm == 0, 1.0, nrm)
        return m / counts[:, None]

    def distance(self, sums: np.ndarray, counts: np.ndarray) -> np.ndarray:
        """(len(sums), K) distances from groups given by member sums to the current sub-clusters."""
        a = self._norm(np.atleast_2d(sums), np.asarray(counts, dtype=np.float64))
        b = self._norm(np.stack(self.sums), np.asarray(self.counts, dtype=np.float64))
        if self.cost == "cosine":
            return 1.0 - a @ b.T
        return np.sqrt(np.maximum(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1), 0.0))


# the per-cluster split ----------------------------------------------------------------------------
def _split_cluster(members: np.ndarray, ml: np.ndarray, cl: np.ndarray, z: np.ndarray, *,
                   exact_max: int, colouring: str, cost: str, unconstrained: str) -> np.ndarray:
    """Sub-cluster index (0..K-1) of every member (sorted ids) of one impure cluster; z = their features."""
    constrained = np.unique(np.concatenate([ml.reshape(-1), cl.reshape(-1)]))
    cpos = np.searchsorted(members, constrained)  # members are sorted
    m = len(constrained)
    # ML groups: components of the ML edges among the constrained points
    mu, mv = np.searchsorted(constrained, ml[:, 0]), np.searchsorted(constrained, ml[:, 1])
    _, group = connected_components(sp.coo_matrix((np.ones(len(mu)), (mu, mv)), shape=(m, m)), directed=False)
    cu = group[np.searchsorted(constrained, cl[:, 0])]
    cv = group[np.searchsorted(constrained, cl[:, 1])]
    bad = np.flatnonzero(cu == cv)
    if len(bad):
        u, v = (int(t) for t in cl[bad[0]])
        raise ConstraintConflictError(
            f"cannot-link pair ({u}, {v}) joins two items that must-link answers put in one group; "
            "one of those annotations is wrong, remove it")
    n_groups = int(group.max()) + 1
    edges = np.unique(np.sort(np.stack([cu, cv], axis=1), axis=1), axis=0)
    # CL groups: components of the conflict graph over ML groups
    _, comp = connected_components(sp.coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])),
                                                 shape=(n_groups, n_groups)), directed=False)
    group_size = np.bincount(group, minlength=n_groups)
    colour = np.empty(n_groups, dtype=np.int64)
    chi, size = [], []
    for r in range(int(comp.max()) + 1):
        nodes = np.flatnonzero(comp == r)
        pos = np.full(n_groups, -1, dtype=np.int64)
        pos[nodes] = np.arange(len(nodes))
        sub = edges[comp[edges[:, 0]] == r]
        colour[nodes] = colour_graph(len(nodes), pos[sub], exact_max=exact_max, colouring=colouring)
        chi.append(int(colour[nodes].max()) + 1)
        size.append(int(group_size[nodes].sum()))
    order = sorted(range(len(chi)), key=lambda r: (-chi[r], -size[r], r))
    point_comp = comp[group]  # per constrained point
    point_colour = colour[group]
    assign = np.full(len(members), -1, dtype=np.int64)
    cents = _Centroids(z, cost)
    first = order[0]
    for c in range(chi[first]):  # colour classes of the max-chromatic component seed the sub-clusters
        rows = cpos[(point_comp == first) & (point_colour == c)]
        assign[rows] = c
        cents.add(c, rows)
    for r in order[1:]:
        classes = [cpos[(point_comp == r) & (point_colour == c)] for c in range(chi[r])]
        sums = np.stack([z[rows].sum(axis=0) for rows in classes])
        cost_m = cents.distance(sums, [len(rows) for rows in classes])
        row_ind, col_ind = linear_sum_assignment(cost_m)  # injective: CL inside r stay apart
        for c, s in zip(row_ind, col_ind):
            assign[classes[c]] = s
            cents.add(int(s), classes[c])
    free = np.flatnonzero(assign < 0)
    if len(free):
        d = cents.distance(z[free], np.ones(len(free)))
        if unconstrained == "nearest":
            assign[free] = np.argmin(d, axis=1)
        elif unconstrained == "margin":
            # most clear-cut points first, centroids updated after each point
            srt = np.sort(d, axis=1)
            margin = srt[:, 1] - srt[:, 0] if d.shape[1] > 1 else np.zeros(len(free))
            for p in free[np.argsort(-margin, kind="stable")]:
                s = int(np.argmin(cents.distance(z[p][None, :], np.ones(1))[0]))
                assign[p] = s
                cents.add(s, np.asarray([p]))
        else:
            raise ValueError(f"unknown unconstrained-point rule {unconstrained!r}; use 'nearest' or 'margin'")
    return assign


def np3(
    labels: np.ndarray,
    ml_pairs: np.ndarray,
    cl_pairs: np.ndarray,
    features: np.ndarray,
    *,
    exact_colouring_max: int = 12,
    colouring: str = "dsatur",
    cost: str = "cosine",
    unconstrained: str = "nearest",
) -> np.ndarray:
    """Refine ``labels`` so every must-link pair shares a cluster and every cannot-link pair does not.

    ``labels`` must not contain -1 (call :func:`alreid.clustering.views.singletonize` first, so each
    noise point is its own cluster). Ids are kept where possible: untouched clusters keep theirs, a
    merged cluster the smallest of its ids, a split cluster's largest part its id; new parts get ids
    above the current maximum. Conflicting constraints (a CL pair inside an ML group) raise
    :class:`~alreid.errors.ConstraintConflictError`. Options: ``exact_colouring_max`` (exact minimum
    colouring up to that many ML groups per CL group), ``colouring`` ("dsatur" | "largest_first",
    greedy above it), ``cost`` ("cosine" on normalised centroids | "euclidean" on mean features),
    ``unconstrained`` ("nearest" sub-cluster centroid | "margin": sequential, clearest first).
    """
    labels = np.asarray(labels, dtype=np.int64)
    n = len(labels)
    if n and labels.min() < 0:
        raise ValueError("np3 needs labels without -1; give each noise point its own id first (views.singletonize)")
    ml = _pairs(ml_pairs, n, "must-link")
    cl = _pairs(cl_pairs, n, "cannot-link")
    if len(cl) and np.any(cl[:, 0] == cl[:, 1]):
        u = int(cl[np.argmax(cl[:, 0] == cl[:, 1]), 0])
        raise ConstraintConflictError(f"cannot-link pair ({u}, {u}) separates an item from itself")
    ml = ml[ml[:, 0] != ml[:, 1]]
    out = _merge_must_links(labels, ml) if len(ml) else labels.copy()
    if not len(cl):
        return out
    lu, lv = out[cl[:, 0]], out[cl[:, 1]]
    inside = lu == lv
    if not inside.any():
        return out
    impure = np.unique(lu[inside])
    z_all = np.asarray(features)
    if z_all.shape[0] != n:
        raise ValueError(f"features have {z_all.shape[0]} rows for {n} labels")
    pts = np.flatnonzero(np.isin(out, impure))
    pts = pts[np.argsort(out[pts], kind="stable")]
    bounds = np.searchsorted(out[pts], impure)
    bounds = np.append(bounds, len(pts))
    cl_in = cl[inside]
    cl_owner = lu[inside]
    ml_owner = out[ml[:, 0]] if len(ml) else np.zeros(0, dtype=np.int64)
    keep_ml = np.isin(ml_owner, impure)
    ml_in, ml_owner = ml[keep_ml], ml_owner[keep_ml]
    next_id = int(out.max()) + 1
    result = out.copy()
    for k, cid in enumerate(impure):
        members = pts[bounds[k]:bounds[k + 1]]
        z = np.asarray(z_all[members], dtype=np.float64)
        if cost == "cosine":
            nrm = np.linalg.norm(z, axis=1, keepdims=True)
            z = z / np.where(nrm == 0, 1.0, nrm)
        sub = _split_cluster(members, ml_in[ml_owner == cid], cl_in[cl_owner == cid], z,
                             exact_max=exact_colouring_max, colouring=colouring, cost=cost,
                             unconstrained=unconstrained)
        sizes = np.bincount(sub)
        keeper = int(np.argmax(sizes))  # ties -> lowest sub-cluster index
        ids = np.empty(len(sizes), dtype=np.int64)
        others = [s for s in range(len(sizes)) if s != keeper]
        ids[keeper] = cid
        ids[others] = next_id + np.arange(len(others))
        next_id += len(others)
        result[members] = ids[sub]
    return result
