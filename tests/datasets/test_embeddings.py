from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from alreid.datasets import load_dataset
from alreid.errors import DatasetError

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def _write(tmp_path, n=6, feats=None, meta=None, name="features.npz", **npz):
    meta = meta if meta is not None else pd.DataFrame(
        {"image_id": range(n), "identity": list("aabbcc")[:n], "path": [f"img{i}.jpg" for i in range(n)]})
    meta.to_csv(tmp_path / "metadata.csv", index=False)
    feats = feats if feats is not None else np.random.default_rng(0).standard_normal((n, 4))
    if name.endswith(".npz"):
        np.savez(tmp_path / name, features=feats, **npz)
    elif name.endswith(".npy"):
        np.save(tmp_path / name, feats)
    else:
        pd.DataFrame(feats, columns=[f"f{i}" for i in range(feats.shape[1])]).to_parquet(tmp_path / name)
    return feats


@pytest.mark.parametrize("name", ["features.npz", "features.npy", "features.parquet"])
def test_formats_load_in_row_order(tmp_path, name):
    feats = _write(tmp_path, name=name)
    d = load_dataset(f"embeddings:{tmp_path}")
    assert d.n == 6 and np.allclose(d.features, feats.astype(np.float32))


def test_stored_paths_align_features_to_metadata(tmp_path):
    feats = np.arange(24, dtype=np.float32).reshape(6, 4)
    order = np.array([5, 4, 3, 2, 1, 0])
    _write(tmp_path, feats=feats[order], path=np.array([f"img{i}.jpg" for i in order]))
    d = load_dataset(f"embeddings:{tmp_path}")
    assert np.array_equal(d.features, feats)


@pytest.mark.parametrize("setup, message", [
    (lambda p: None, "does not exist"),
    (lambda p: (p.mkdir(), (p / "metadata.csv").write_text("image_id,identity,path\n0,a,x\n")), "no features file"),
    (lambda p: (p.mkdir(), np.save(p / "f.npy", np.zeros((1, 2)))), "has no metadata.csv"),
])
def test_missing_pieces(tmp_path, setup, message):
    loc = tmp_path / "ds"
    setup(loc)
    with pytest.raises(DatasetError, match=message):
        load_dataset(f"embeddings:{loc}")


def test_row_count_mismatch(tmp_path):
    _write(tmp_path, feats=np.zeros((5, 3)))
    with pytest.raises(DatasetError, match="has 5 rows but .* has 6"):
        load_dataset(f"embeddings:{tmp_path}")


def test_metadata_problems(tmp_path):
    meta = pd.DataFrame({"image_id": [0, 1, 1], "identity": ["a", "b", "c"], "path": ["x", "y", "z"]})
    _write(tmp_path, n=3, meta=meta, feats=np.zeros((3, 2)))
    with pytest.raises(DatasetError, match="duplicate image_id"):
        load_dataset(f"embeddings:{tmp_path}")
    meta = pd.DataFrame({"image_id": [0, 1, 2], "path": ["x", "y", "z"]})
    _write(tmp_path, n=3, meta=meta, feats=np.zeros((3, 2)))
    with pytest.raises(DatasetError, match="lacks required column.*identity"):
        load_dataset(f"embeddings:{tmp_path}")


def test_ambiguous_features(tmp_path):
    _write(tmp_path)
    np.save(tmp_path / "other.npy", np.zeros((6, 4)))
    with pytest.raises(DatasetError, match="several features files"):
        load_dataset(f"embeddings:{tmp_path}")
    assert load_dataset(f"embeddings:{tmp_path / 'other.npy'}").n == 6


@pytest.mark.skipif(not (SHARED / "nyala").exists(), reason="../shared/data/nyala not present")
def test_nyala():
    d = load_dataset(f"embeddings:{SHARED / 'nyala'}")
    assert d.n == 1942 and d.features.shape == (1942, 1280) and d.metadata.identity.nunique() == 237
