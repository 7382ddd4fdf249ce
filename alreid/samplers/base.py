"""The sampler plugin interface.

A sampler sees a :class:`SamplingContext` and a budget and returns unordered pairs of item
indices to ask the annotator about. The public :meth:`Sampler.select` validates the budget and the
result (the contract every plugin must honour); plugins implement only :meth:`Sampler._select`.
Constructor arguments are keyword-only hyperparameters stored verbatim (scikit-learn's contract),
so a sampler can be rebuilt from ``{name, params}`` and ``get_params`` comes for free.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import scipy.sparse as sp

from alreid.clustering.jaccard import jaccard_distance
from alreid.clustering.knn import knn_search
from alreid.clustering.refine import refine_labels
from alreid.clustering.settings import ClusteringSettings
from alreid.clustering.views import dbscan_cosine, dbscan_labels, singletonize
from alreid.constraints import ConstraintStore
from alreid.errors import AlreidError, ConfigError
from alreid.plugin import Configurable


class SamplerContractError(AlreidError):
    """A sampler returned pairs that break the contract (a plugin bug, not a user mistake)."""


class NeighbourCache:
    """Lazily computed neighbourhoods of one feature matrix, shared by the samplers of a cycle.

    k-NN lists are computed once for the largest k asked for and sliced afterwards; other derived
    structures (the sparse Jaccard distance, clusterings) are memoised by key through :meth:`get`.
    """

    def __init__(self, features: np.ndarray, *, index: str = "exact") -> None:
        self.features = features
        self.index = index
        self._knn: tuple[np.ndarray, np.ndarray] | None = None
        self._memo: dict[Any, Any] = {}

    def knn(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(sims, idx) of the k nearest neighbours of every item, self first."""
        n = self.features.shape[0]
        k = min(int(k), n)
        if self._knn is None or self._knn[1].shape[1] < k:
            self._knn = knn_search(self.features, max(k, 32 if n > 32 else n), index=self.index)
        sims, idx = self._knn
        return sims[:, :k], idx[:, :k]

    def get(self, key: Any, compute: Callable[[], Any]) -> Any:
        """Memoised value for ``key``; ``compute`` runs only the first time."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    def jaccard(self, k1: int, k2: int) -> sp.csr_matrix:
        """The sparse k-reciprocal Jaccard distance (absent entries = 1), computed once per (k1, k2)
        from the k-NN lists (``max(k1, 32)`` of them, so later k-NN requests slice the same lists)."""
        k1, k2 = int(k1), int(k2)

        def compute() -> sp.csr_matrix:
            return jaccard_distance(self.features, k1, k2, knn=self.knn(max(k1, 32)), index=self.index)

        return self.get(("jaccard", k1, k2), compute).tocsr()


@dataclass
class SamplingContext:
    """Everything a sampler may look at in one active-learning cycle (built by :func:`build_context`).

    ``labels`` are the cycle's pseudo-labels refined with every answer so far (NP3 unless the trial's
    ``refine`` says otherwise: ``refined_with``), the same for every sampler; ``base_labels`` are the
    base clustering's before any answer. Both give every outlier its own singleton id; ``outliers``
    marks the items the base clustering called noise (DBSCAN label -1). ``clustering`` holds the base
    clustering's settings (k1/k2/eps of the cycle).
    """

    features: np.ndarray
    labels: np.ndarray
    outliers: np.ndarray
    constraints: ConstraintStore
    neighbours: NeighbourCache
    cycle: int = 0
    clustering: ClusteringSettings = field(default_factory=ClusteringSettings)
    base_labels: np.ndarray | None = None
    refined_with: str = "none"
    extras: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.base_labels is None:
            self.base_labels = self.labels

    @property
    def n(self) -> int:
        return int(self.features.shape[0])

    @property
    def n_pairs(self) -> int:
        return self.n * (self.n - 1) // 2


def build_context(features: np.ndarray, constraints: ConstraintStore, clustering: ClusteringSettings | None = None,
                  *, cycle: int = 1, refine: str = "np3", np3_options: dict[str, Any] | None = None,
                  neighbours: NeighbourCache | None = None) -> SamplingContext:
    """One cycle's sampling context: k-NN, Jaccard, the base clustering, and its labels refined with
    the constraints so far. The one place that assembles it (the trial, ``alreid.testing`` and the
    cycle benchmark call it), so every sampler sees the same labels computed the same way."""
    c = clustering or ClusteringSettings()
    z = np.ascontiguousarray(features, dtype=np.float32)
    cache = neighbours if neighbours is not None else NeighbourCache(z, index=c.knn_index)
    if c.method == "jaccard":
        raw = dbscan_labels(cache.jaccard(c.k1, c.k2), eps=c.eps, min_samples=c.min_samples)
    else:
        raw = dbscan_cosine(z, eps=c.eps, min_samples=c.min_samples)
    base, outliers = singletonize(raw)
    labels = np.asarray(refine_labels(base, constraints, z, refine, np3_options))
    return SamplingContext(features=z, labels=labels, outliers=outliers, constraints=constraints, neighbours=cache,
                           cycle=cycle, clustering=c, base_labels=base,
                           refined_with=refine if len(constraints) else "none")


def check_pairs(pairs: np.ndarray, ctx: SamplingContext, budget: int, who: str = "sampler") -> np.ndarray:
    """Normalise pairs to sorted int64 rows and enforce the sampler contract."""
    arr = np.asarray(pairs, dtype=np.int64)
    if arr.size == 0:
        return np.zeros((0, 2), dtype=np.int64)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise SamplerContractError(f"{who} returned an array of shape {arr.shape}; expected (m, 2)")
    arr = np.sort(arr, axis=1)
    if len(arr) > budget:
        raise SamplerContractError(f"{who} returned {len(arr)} pairs for a budget of {budget}")
    if arr.min() < 0 or arr.max() >= ctx.n:
        raise SamplerContractError(f"{who} returned an index outside [0, {ctx.n})")
    if np.any(arr[:, 0] == arr[:, 1]):
        raise SamplerContractError(f"{who} returned a pair joining an item with itself")
    keys = arr[:, 0] * np.int64(ctx.n) + arr[:, 1]
    if len(np.unique(keys)) != len(keys):
        raise SamplerContractError(f"{who} returned duplicate pairs")
    known = ctx.constraints.is_known(arr)
    if known.any():
        u, v = arr[np.argmax(known)]
        raise SamplerContractError(
            f"{who} returned {int(known.sum())} pair(s) whose answer is already known or implied, "
            f"e.g. ({u}, {v})")
    return arr


class Sampler(Configurable, abc.ABC):
    """Base class of every active-learning pair sampler.

    Subclasses set ``name`` and ``description`` (one line, shown by ``alreid methods``), take their
    hyperparameters as keyword-only constructor arguments stored under the same attribute names,
    and implement :meth:`_select`. After :meth:`select`, ``stats_`` holds the numbers worth logging
    for the cycle (pool sizes and the like); keys become record columns prefixed ``pool_``.
    """

    name: str = ""
    kind: str = "method"
    description: str = ""
    version: str = "1"
    #: False for samplers that never ask anything (the unsupervised base row)
    queries: bool = True

    # the contract --------------------------------------------------------------------------------
    def select(self, ctx: SamplingContext, budget: int, rng: np.random.Generator) -> np.ndarray:
        """At most ``budget`` distinct pairs (m, 2), i < j, none already known or implied."""
        if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)) or budget < 0:
            raise ConfigError(f"budget for sampler {self.name!r} must be a non-negative int; got {budget!r}")
        self.validate_params()  # a plugin built directly (a notebook) gets the CLI's errors
        self.stats_: dict[str, Any] = {}
        if budget == 0 or ctx.n < 2:
            return np.zeros((0, 2), dtype=np.int64)
        pairs = self._select(ctx, int(budget), rng)
        return check_pairs(pairs, ctx, int(budget), who=f"sampler {self.name!r}")

    @abc.abstractmethod
    def _select(self, ctx: SamplingContext, budget: int, rng: np.random.Generator) -> np.ndarray:
        """Return an (m, 2) array of pairs; :meth:`select` validates it."""


def drop_known(pairs: np.ndarray, constraints: ConstraintStore) -> np.ndarray:
    """Rows of ``pairs`` (sorted, deduplicated) whose answer is not yet known or implied."""
    arr = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    if len(arr) == 0:
        return arr
    arr = np.sort(arr, axis=1)
    arr = arr[arr[:, 0] != arr[:, 1]]
    _, first = np.unique(arr, axis=0, return_index=True)
    arr = arr[np.sort(first)]
    return arr[~constraints.is_known(arr)]
