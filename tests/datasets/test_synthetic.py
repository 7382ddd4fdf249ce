import numpy as np
import pytest

from alreid.datasets import load_dataset
from alreid.datasets.synthetic import SyntheticSpec, generate
from alreid.errors import DatasetError


def test_deterministic_and_seed_dependent():
    a, b = generate(SyntheticSpec(seed=3)), generate(SyntheticSpec(seed=3))
    assert np.array_equal(a.features, b.features) and a.metadata.equals(b.metadata)
    c = generate(SyntheticSpec(seed=4))
    assert not np.array_equal(a.features[:50], c.features[:50])


def test_wildlife_like_structure():
    d = generate(SyntheticSpec(n_images=3000, seed=1))
    m, x = d.metadata, d.features
    assert len(m) == 3000 and x.shape == (3000, 128)
    assert np.allclose(np.linalg.norm(x, axis=1), 1, atol=1e-5)
    sizes = m.groupby("identity").size()
    assert sizes.min() >= 1 and sizes.max() <= 60
    assert (sizes == 1).mean() > 0.2 and sizes.max() >= 20  # heavy-tailed
    both_views = m.groupby("identity")["orientation"].nunique()
    assert (both_views == 2).sum() > 50
    # same identity, same view is closer than same identity, other view, which beats other identities
    ids, views = m.identity.to_numpy(), m.orientation.to_numpy()
    sim = x[:600] @ x[:600].T
    same_id = ids[:600, None] == ids[None, :600]
    same_view = views[:600, None] == views[None, :600]
    off = ~np.eye(600, dtype=bool)
    assert sim[same_id & same_view & off].mean() > sim[same_id & ~same_view].mean() > sim[~same_id].mean()
    # look-alike identities are closer than random pairs of identities
    look = m[m.lookalike_of != ""].drop_duplicates("identity")
    cen = {i: x[ids == i].mean(0) for i in np.unique(ids)}
    look_sim = np.mean([cen[a] @ cen[b] / np.linalg.norm(cen[a]) / np.linalg.norm(cen[b])
                        for a, b in zip(look.identity, look.lookalike_of)])
    names = list(cen)
    rng = np.random.default_rng(0)
    rand = [(names[i], names[j]) for i, j in rng.integers(0, len(names), (300, 2)) if i != j]
    rand_sim = np.mean([cen[a] @ cen[b] / np.linalg.norm(cen[a]) / np.linalg.norm(cen[b]) for a, b in rand])
    assert look_sim > rand_sim + 0.1  # about 0.2 against 0.0 with the default noise
    # open set: identities that occur only in test; encounters never split
    test_ids = set(m.identity[m.split == "test"])
    train_ids = set(m.identity[m.split == "train"])
    assert len(test_ids - train_ids) > 0
    assert (m.groupby("encounter")["split"].nunique() == 1).all()
    assert 0.12 < (m.split == "test").mean() < 0.3


def test_spec_options_and_errors():
    d = load_dataset("synthetic:n_images=500,dim=16,seed=2")
    assert d.features.shape == (500, 16)
    with pytest.raises(DatasetError, match="unknown synthetic option 'bogus'"):
        load_dataset("synthetic:bogus=1")
    with pytest.raises(DatasetError, match="not a number"):
        load_dataset("synthetic:dim=abc")
    with pytest.raises(DatasetError, match="n_images must be >= 20"):
        load_dataset("synthetic:n_images=3")
