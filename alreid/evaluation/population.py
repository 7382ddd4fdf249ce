"""How many individuals are in a pool? Nested importance sampling (NIS, Perez et al., ECCV 2024).

The number of identities is K = sum_i 1/deg(i), deg(i) = size of i's identity (spec 3.1). NIS samples
vertices v ~ Q, and for each v a few neighbours j ~ q_v = s(v, .), a row softmax of cosine
similarity; asking "same individual?" for every (v, j) gives an importance-sampling estimate of
deg(v), hence of K, with a normal-approximation confidence interval. This module is the pure
estimator (usable on any features and any source of answers); :mod:`alreid.samplers.nis` uses it to
choose the pairs an annotator is asked about and to log the estimate every cycle.

Similarity rows are computed on demand, one sampled vertex at a time, so no n x n matrix is ever
built: ``"exact"`` rows cost O(n d) per vertex; ``"knn"`` truncates each row to the vertex's k
nearest neighbours (the softmax runs over those k only), for pools too large for exact rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

TAU = 0.5
Similarity = Literal["exact", "knn"]
VertexProposal = Literal["uniform", "inverse_degree"]


# ------------------------------------------------------------------------------------------------
# similarity rows and proposals
# ------------------------------------------------------------------------------------------------
class SoftmaxRows:
    """Row-softmax similarity s(v, .) = softmax(cos(v, .) / tau), with cos(v, v) set to 1.

    ``knn=(sims, idx)`` (self first, as :func:`alreid.clustering.knn.knn_search` returns) restricts
    each row to its k nearest neighbours; without it rows are exact over all n items.
    """

    def __init__(self, features: np.ndarray, *, tau: float = TAU,
                 knn: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        self.features = np.asarray(features, dtype=np.float32)
        self.tau = float(tau)
        self.knn = knn

    @property
    def n(self) -> int:
        return int(self.features.shape[0])

    def _cosines(self, v: int) -> tuple[np.ndarray, np.ndarray]:
        """(support, cosines) of row v; the support always contains v, with cosine 1."""
        if self.knn is None:
            cos = (self.features @ self.features[v]).astype(np.float64)
            cos[v] = 1.0
            return np.arange(self.n), cos
        sims, idx = self.knn
        support = idx[v].astype(np.int64)
        cos = sims[v].astype(np.float64)
        keep = support >= 0  # faiss pads missing neighbours with -1
        support, cos = support[keep], cos[keep]
        cos[support == v] = 1.0
        if not np.any(support == v):
            support, cos = np.append(support, v), np.append(cos, 1.0)
        return support, cos

    def row(self, v: int) -> tuple[np.ndarray, np.ndarray]:
        """(support, probabilities) of q_v = s(v, .); probabilities sum to 1."""
        support, cos = self._cosines(v)
        w = np.exp((cos - cos.max()) / self.tau)
        return support, w / w.sum()

    def normalisers(self, block: int = 1024) -> np.ndarray:
        """Softmax denominators Z_i = sum_j exp(cos(i, j) / tau), computed in row blocks."""
        if self.knn is not None:
            sims, idx = self.knn
            cos = np.where(idx >= 0, sims, -np.inf).astype(np.float64)
            is_self = idx == np.arange(self.n)[:, None]
            cos[is_self] = -np.inf  # added back once below, also where self is missing from the list
            return np.exp(cos / self.tau).sum(axis=1) + math.exp(1.0 / self.tau)
        out = np.empty(self.n)
        x = self.features
        for start in range(0, self.n, block):
            cos = (x[start:start + block] @ x.T).astype(np.float64)
            rows = np.arange(start, min(start + block, self.n))
            cos[rows - start, rows] = 1.0
            out[start:start + block] = np.exp(cos / self.tau).sum(axis=1)
        return out


def vertex_proposal(rows: SoftmaxRows, kind: VertexProposal = "uniform") -> np.ndarray:
    """Q over all items. ``"uniform"`` is what the released code amounts to (softmax rows sum to 1,
    so Q ∝ 1/n̂ with n̂_i = sum_j s(i, j) is uniform); ``"inverse_degree"`` is the paper's
    Q ∝ 1/n̂ with n̂_i the *unnormalised* degree Z_i (the softmax denominator), which favours
    items in sparse regions, i.e. likely small identities that dominate K."""
    if kind == "uniform":
        return np.full(rows.n, 1.0 / rows.n)
    if kind == "inverse_degree":
        inv = 1.0 / rows.normalisers()
        return inv / inv.sum()
    raise ValueError(f"unknown vertex proposal {kind!r}; use 'uniform' or 'inverse_degree'")


# ------------------------------------------------------------------------------------------------
# draws
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class NestedDraws:
    """Sampled vertices and, per vertex, its neighbour draws (column 0 is the vertex itself).

    ``vertex_prob[i]`` is Q(vertices[i]); ``neighbour_prob[i, c]`` is q_v(neighbours[i, c]).
    """

    vertices: np.ndarray
    vertex_prob: np.ndarray
    neighbours: np.ndarray
    neighbour_prob: np.ndarray

    def __len__(self) -> int:
        return int(len(self.vertices))

    @property
    def n_neighbours(self) -> int:
        return int(self.neighbours.shape[1])

    def pairs(self) -> np.ndarray:
        """Every (v, j) of the draws in draw order, including j == v (callers filter those)."""
        v = np.repeat(self.vertices, self.n_neighbours)
        return np.stack([v, self.neighbours.reshape(-1)], axis=1).astype(np.int64)

    @classmethod
    def concat(cls, parts: list["NestedDraws"]) -> "NestedDraws":
        """Pool draws made with the same number of neighbours per vertex."""
        widths = {p.n_neighbours for p in parts}
        if len(widths) > 1:
            raise ValueError(f"cannot pool draws with different neighbour counts {sorted(widths)}")
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in
                     ("vertices", "vertex_prob", "neighbours", "neighbour_prob")))


def draw_nested(rows: SoftmaxRows, q: np.ndarray, n_vertices: int, n_neighbours: int,
                rng: np.random.Generator) -> NestedDraws:
    """``n_vertices`` vertices ~ q (with replacement), each with itself plus ``n_neighbours - 1``
    neighbours ~ s(v, .) (with replacement), as in the released ``nested_is``."""
    if n_neighbours < 1:
        raise ValueError(f"n_neighbours must be >= 1; got {n_neighbours}")
    vertices = rng.choice(rows.n, size=int(n_vertices), replace=True, p=q).astype(np.int64)
    nb = np.empty((len(vertices), n_neighbours), dtype=np.int64)
    nb_p = np.empty((len(vertices), n_neighbours))
    for i, v in enumerate(vertices):
        support, p = rows.row(int(v))
        picks = rng.choice(len(p), size=n_neighbours - 1, replace=True, p=p)
        self_pos = int(np.flatnonzero(support == v)[0])
        nb[i] = np.concatenate([[v], support[picks]])
        nb_p[i] = np.concatenate([[p[self_pos]], p[picks]])
    return NestedDraws(vertices, q[vertices], nb, nb_p)


# ------------------------------------------------------------------------------------------------
# answers and the estimator
# ------------------------------------------------------------------------------------------------
def answers_from_labels(draws: NestedDraws, labels: np.ndarray) -> np.ndarray:
    """g(v, j) from ground-truth identities (a perfect oracle), shaped like ``draws.neighbours``."""
    labels = np.asarray(labels)
    return (labels[draws.neighbours] == labels[draws.vertices][:, None]).astype(np.float64)


@dataclass(frozen=True)
class PopulationEstimate:
    """K̂ with its confidence interval; ``n_vertices`` vertex terms were used, ``n_dropped`` lacked answers."""

    k_hat: float
    half_width: float
    n_vertices: int
    n_dropped: int = 0

    @property
    def ci_low(self) -> float:
        return self.k_hat - self.half_width

    @property
    def ci_high(self) -> float:
        return self.k_hat + self.half_width


def vertex_terms(draws: NestedDraws, answers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-vertex terms (1/n̄_v)(1/Q(v)) and a mask of the vertices whose answers are all known.

    ``answers`` holds 1 (same), 0 (different) or NaN (unknown) per draw; column 0 (v itself) is
    taken as 1. n̄_v = mean_j g(v, j)/q_v(j) over the N_n draws, the prepended v included, exactly as
    the released code does: the 1/q_v(v) term keeps n̄_v > 0 and shrinks 1/n̄_v when few positives
    are drawn (an "unbiased" variant that counts v once instead overestimates K through Jensen's
    inequality on 1/n̄_v; measured, so not offered).
    """
    g = np.array(answers, dtype=np.float64, copy=True)
    g[:, 0] = 1.0
    complete = ~np.isnan(g).any(axis=1)
    n_bar = (np.nan_to_num(g) / draws.neighbour_prob).mean(axis=1)
    return 1.0 / (n_bar * draws.vertex_prob), complete


def estimate_population(draws: NestedDraws, answers: np.ndarray, *, z: float = 1.96) -> PopulationEstimate:
    """K̂ = mean_v (1/n̄_v)(1/Q(v)); half-width z·sqrt(var̂/N_v), var̂ = mean_v (term_v - K̂)² (spec 3.1).

    Vertices with any unknown answer are dropped (their draws were not all answered; whether a pair
    got answered never depends on the answer, so dropping them keeps the estimator's expectation).
    """
    return summarise_terms(*vertex_terms(draws, answers), z=z)


def summarise_terms(terms: np.ndarray, complete: np.ndarray, *, z: float = 1.96) -> PopulationEstimate:
    """The estimate from vertex terms (possibly pooled from draws of different sizes or proposals:
    each term is unbiased for K on its own). With no usable term K̂ is NaN; with a single one the
    interval is NaN (no spread to measure)."""
    terms = np.asarray(terms, dtype=np.float64)[np.asarray(complete, dtype=bool)]
    dropped = int(len(complete) - len(terms))
    m = len(terms)
    if m == 0:
        return PopulationEstimate(math.nan, math.nan, 0, dropped)
    k_hat = float(terms.mean())
    if m < 2:
        return PopulationEstimate(k_hat, math.nan, m, dropped)
    var_hat = float(((terms - k_hat) ** 2).mean())
    return PopulationEstimate(k_hat, float(z * math.sqrt(var_hat / m)), m, dropped)
