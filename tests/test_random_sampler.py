import numpy as np

from alreid.constraints import ConstraintStore
from alreid.samplers.base import NeighbourCache, SamplingContext
from alreid.samplers.random_pairs import RandomSampler


def _ctx(n, store=None):
    x = np.eye(n, dtype=np.float32)
    return SamplingContext(features=x, labels=np.arange(n), outliers=np.zeros(n, bool),
                           constraints=store or ConstraintStore(n), neighbours=NeighbourCache(x))


def test_uniform_over_pairs():
    """Each of the 10 pairs of 5 items is drawn about equally often (chi-square bound)."""
    counts = np.zeros((5, 5))
    s = RandomSampler()
    for seed in range(2000):
        for u, v in s.select(_ctx(5), 1, np.random.default_rng(seed)):
            counts[u, v] += 1
    observed = counts[np.triu_indices(5, 1)]
    expected = 2000 / 10
    chi2 = ((observed - expected) ** 2 / expected).sum()
    assert chi2 < 27.9  # 99.9th percentile of chi-square with 9 degrees of freedom


def test_exhausts_unknown_pairs_and_skips_implied():
    store = ConstraintStore(6)
    store.add(0, 1, True)
    store.add(1, 2, True)  # implies (0, 2)
    store.add(3, 4, False)
    pairs = RandomSampler().select(_ctx(6, store), 100, np.random.default_rng(0))
    # 15 pairs in all; (0,1), (1,2), (0,2), (3,4) are known
    assert len(pairs) == 11
    assert not store.is_known(pairs).any()


def test_large_n_does_not_materialise_pairs():
    n = 200_000
    x = np.zeros((n, 2), dtype=np.float32)
    ctx = SamplingContext(features=x, labels=np.arange(n), outliers=np.zeros(n, bool),
                          constraints=ConstraintStore(n), neighbours=NeighbourCache(x))
    pairs = RandomSampler().select(ctx, 5000, np.random.default_rng(1))
    assert len(pairs) == 5000
