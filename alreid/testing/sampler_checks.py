"""The shared sampler contract: budget, uniqueness, nothing known or implied, seeded determinism."""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np

from alreid.constraints import ConstraintStore
from alreid.clustering.settings import ClusteringSettings
from alreid.registry import SAMPLERS
from alreid.samplers.base import Sampler, SamplingContext, build_context


def make_context(n_ids: int = 12, per_id: int = 8, dim: int = 16, *, seed: int = 0, n_answers: int = 40,
                 clustering: str = "jaccard", refine: str = "np3") -> tuple[SamplingContext, np.ndarray]:
    """A small clustered problem with some answers already known, in the context a trial builds
    (:func:`~alreid.samplers.base.build_context`: Jaccard k1=10/k2=3, DBSCAN, labels refined by ``refine``)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_ids, dim))
    ids = np.repeat(np.arange(n_ids), per_id)
    x = centres[ids] + 0.6 * rng.standard_normal((len(ids), dim))
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    store = ConstraintStore(len(ids))
    asked = 0
    while asked < n_answers:
        u, v = rng.choice(len(ids), 2, replace=False)
        if store.implied(u, v) == 0:
            store.add(int(u), int(v), bool(ids[u] == ids[v]))
            asked += 1
    settings = ClusteringSettings(method=clustering, k1=10, k2=3)
    return build_context(x, store, settings, cycle=1, refine=refine), ids


def _select(sampler: Sampler, ctx: SamplingContext, budget: int, seed: int) -> np.ndarray:
    return sampler.select(ctx, budget, np.random.default_rng(seed))


def check_sampler(sampler: str | type[Sampler] | Sampler, params: dict[str, Any] | None = None) -> None:
    """Raise AssertionError when a sampler breaks the contract every sampler must honour."""
    if isinstance(sampler, Sampler):
        cls, params = type(sampler), sampler.get_params()
    else:
        cls = SAMPLERS.get(sampler)
    make = lambda: cls.from_params(params)  # noqa: E731
    s = make()
    assert s.name, f"{cls.__name__} has no name"
    assert s.description and "\n" not in s.description, f"{cls.__name__} needs a one-line description"
    assert make().get_params() == s.get_params(), "constructor must store parameters verbatim"
    ctx, _ = make_context()
    before = (ctx.features.copy(), ctx.labels.copy(), len(ctx.constraints))
    for budget in (0, 1, 7, 60):
        pairs = _select(s, ctx, budget, 0)
        assert pairs.shape[1] == 2 and len(pairs) <= budget, f"{len(pairs)} pairs for budget {budget}"
        assert np.all(pairs[:, 0] < pairs[:, 1]), "pairs must be returned as (i, j) with i < j"
        keys = pairs[:, 0] * ctx.n + pairs[:, 1]
        assert len(np.unique(keys)) == len(keys), "duplicate pairs"
        assert not ctx.constraints.is_known(pairs).any(), "pair whose answer is known or implied"
        if not s.queries:
            assert len(pairs) == 0, "a sampler with queries=False must ask nothing"
    a = _select(make(), ctx, 30, 123)
    b = _select(make(), ctx, 30, 123)
    assert np.array_equal(a, b), "same seed must give the same pairs"
    assert np.array_equal(ctx.features, before[0]) and np.array_equal(ctx.labels, before[1]), "inputs mutated"
    assert len(ctx.constraints) == before[2], "sampler must not add constraints itself"
    clone = pickle.loads(pickle.dumps(make()))
    assert np.array_equal(_select(clone, ctx, 30, 123), a), "pickled sampler behaves differently"
    assert isinstance(getattr(s, "stats_", {}), dict)
