"""Image dataset adapters, lazy loading and the bad-image policy (missing/corrupt files by path)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from alreid.cli import main as cli_main
from alreid.datasets import load_dataset
from alreid.datasets.images import ImageReadError, ImageStore
from alreid.datasets.market1501 import parse_person_name
from alreid.errors import DatasetError

from .helpers import SHARED, write_identity_dataset


def test_metadata_adapter_reads_wildlife_convention(tmp_path):
    write_identity_dataset(tmp_path, n_ids=3, per_id=2, extra={"dataset": ["A"] * 4 + ["B"] * 2,
                                                               "orientation": ["left", "right"] * 3})
    d = load_dataset(f"metadata:{tmp_path}")
    assert d.n == 6 and d.features is None and d.root == tmp_path
    assert list(d.metadata.columns[:3]) == ["image_id", "identity", "path"]
    assert d.metadata.identity.tolist() == ["id000", "id000", "id001", "id001", "id002", "id002"]
    # the file itself may be named, and subsets select the 'dataset' column
    assert load_dataset(f"metadata:{tmp_path / 'metadata.csv'}").n == 6
    sub = load_dataset(f"metadata:{tmp_path}?subset=B")
    assert sub.name == "B" and sub.n == 2 and set(sub.metadata.identity) == {"id002"}
    assert load_dataset(f"metadata:{tmp_path}?subset=A+B").n == 6
    with pytest.raises(DatasetError, match="available: A, B"):
        load_dataset(f"metadata:{tmp_path}?subset=Cow")
    with pytest.raises(DatasetError, match="unknown option"):
        load_dataset(f"metadata:{tmp_path}?colour=red")


def test_metadata_errors_name_the_problem(tmp_path):
    with pytest.raises(DatasetError, match="has no metadata.csv"):
        load_dataset(f"metadata:{tmp_path}")
    pd.DataFrame({"image_id": [0], "path": ["x.png"]}).to_csv(tmp_path / "metadata.csv", index=False)
    with pytest.raises(DatasetError, match="lacks required column.*identity"):
        load_dataset(f"metadata:{tmp_path}")
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset(f"metadata:{tmp_path / 'nowhere'}")


def test_unknown_identities_kept_or_dropped(tmp_path):
    write_identity_dataset(tmp_path, n_ids=2, per_id=2)
    meta = pd.read_csv(tmp_path / "metadata.csv")
    meta.loc[0, "identity"] = "unknown"
    meta.to_csv(tmp_path / "metadata.csv", index=False)
    assert (load_dataset(f"metadata:{tmp_path}").metadata.identity == "unknown").sum() == 1
    assert load_dataset(f"metadata:{tmp_path}?unknown=drop").n == 3


def _break(tmp_path):
    """Delete one image and corrupt another; returns (missing path, corrupt path)."""
    meta = pd.read_csv(tmp_path / "metadata.csv")
    missing, corrupt = tmp_path / meta.path[1], tmp_path / meta.path[4]
    missing.unlink()
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    return missing, corrupt


def test_missing_files_fail_up_front_with_every_path(tmp_path):
    write_identity_dataset(tmp_path, n_ids=3, per_id=3)
    meta = pd.read_csv(tmp_path / "metadata.csv")
    for i in (1, 7):
        (tmp_path / meta.path[i]).unlink()
    with pytest.raises(DatasetError) as err:
        load_dataset(f"metadata:{tmp_path}")
    msg = str(err.value)
    assert "2 image(s)" in msg and meta.path[1] in msg and meta.path[7] in msg and "alreid check" in msg
    with pytest.warns(UserWarning, match="skipping 2"):
        d = load_dataset(f"metadata:{tmp_path}?bad=skip")
    assert d.n == 7 and meta.path[1] not in set(d.metadata.path)


def test_corrupt_files_found_by_decode_check_and_by_alreid_check(tmp_path, capsys):
    write_identity_dataset(tmp_path, n_ids=3, per_id=2)
    missing, corrupt = _break(tmp_path)
    with pytest.raises(DatasetError) as err:  # the default check only stats: the missing file
        load_dataset(f"metadata:{tmp_path}")
    assert str(missing) in str(err.value) and str(corrupt) not in str(err.value)
    with pytest.raises(DatasetError) as err:
        load_dataset(f"metadata:{tmp_path}?check=decode")
    assert str(missing) in str(err.value) and str(corrupt) in str(err.value)
    rc = cli_main(["check", "--dataset", f"metadata:{tmp_path}"])
    out = capsys.readouterr().out
    assert rc == 1
    assert f"{missing}: file not found" in out and f"{corrupt}: corrupt" in out
    assert "1 missing, 1 unreadable" in out


def test_alreid_check_clean_dataset(tmp_path, capsys):
    write_identity_dataset(tmp_path, n_ids=2, per_id=2)
    assert cli_main(["check", "--dataset", f"metadata:{tmp_path}"]) == 0
    assert "OK: 4 images checked" in capsys.readouterr().out


def test_image_store_lru_cache_is_bounded(tmp_path):
    meta = write_identity_dataset(tmp_path, n_ids=2, per_id=3)
    one = 16 * 16 * 3
    store = ImageStore(tmp_path, meta.path.tolist(), cache_bytes=2 * one)
    a = store.resized(0, (16, 16))
    assert a.shape == (16, 16, 3) and a.dtype == np.uint8
    store.resized(0, (16, 16))
    assert store.hits == 1 and store.misses == 1
    for i in range(1, 6):
        store.resized(i, (16, 16))
    assert store._bytes <= 2 * one and len(store._cache) == 2
    store.resized(0, (16, 16))  # evicted: decoded again
    assert store.misses == 7
    assert store.batch([0, 1, 2], (8, 12)).shape == (3, 8, 12, 3)
    (tmp_path / meta.path[5]).unlink()
    with pytest.raises(ImageReadError, match=str(tmp_path / meta.path[5])):
        store.resized(5, (8, 8))


def test_folders_adapter(tmp_path):
    write_identity_dataset(tmp_path / "train", n_ids=2, per_id=2, layout="folders")
    write_identity_dataset(tmp_path / "val", n_ids=1, per_id=3, layout="folders", seed=1)
    (tmp_path / "val" / "unknown").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "val" / "unknown" / "x.png")
    d = load_dataset(f"folders:{tmp_path}")
    assert d.n == 8
    assert d.metadata.identity.value_counts().to_dict() == {"id000": 5, "id001": 2, "unknown": 1}
    assert set(d.metadata.source_split) == {"train", "val"}
    assert load_dataset(f"folders:{tmp_path}?unknown=drop").n == 7
    with pytest.raises(DatasetError, match="no images found"):
        load_dataset(f"folders:{tmp_path / 'train' / 'id000'}")


def test_market1501_names_roles_and_junk(tmp_path):
    assert parse_person_name("0002_c1s1_000451_03.jpg") == (2, 1)
    assert parse_person_name("-1_c3s2_001.jpg") == (-1, 3)
    root = tmp_path / "Market-1501-v15.09.15"
    files = {"bounding_box_train": ["0002_c1s1_000451_03.jpg", "0002_c2s1_000301_01.jpg", "0007_c3s3_077419_03.jpg"],
             "query": ["0001_c1s1_001051_00.jpg"],
             "bounding_box_test": ["0001_c2s1_000301_01.jpg", "0000_c1s1_000001_01.jpg", "-1_c1s1_000401_03.jpg"]}
    for folder, names in files.items():
        (root / folder).mkdir(parents=True)
        for n in names:
            Image.new("RGB", (64, 128), (10, 20, 30)).save(root / folder / n)
    d = load_dataset(f"market1501:{tmp_path}")  # the parent folder is enough
    m = d.metadata
    assert d.n == 6  # junk (-1) dropped, distractor (0) kept
    assert m.role.tolist() == ["train"] * 3 + ["query", "gallery", "gallery"]
    assert m.split.tolist() == ["train"] * 3 + ["test"] * 3
    assert m.camera.tolist() == [1, 2, 3, 1, 1, 2]  # files in sorted order
    assert m.identity.tolist() == ["2", "2", "7", "1", "0", "1"]
    assert d.info["protocol"] == "standard"
    with pytest.raises(DatasetError, match="does not contain"):
        load_dataset(f"personx:{tmp_path}")
    (tmp_path / "PersonX").mkdir()
    root.rename(tmp_path / "PersonX" / "inner")
    assert load_dataset(f"personx:{tmp_path / 'PersonX' / 'inner'}").n == 6


def test_wildlife_adapter_through_wildlife_datasets(tmp_path):
    pytest.importorskip("wildlife_datasets", reason="wildlife-datasets is not installed")
    write_identity_dataset(tmp_path, n_ids=2, per_id=2, extra={"dataset": ["A", "A", "B", "B"]})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        d = load_dataset(f"wildlife:Dataset_Metadata:{tmp_path}")
        assert d.n == 4 and set(d.metadata.identity) == {"id000", "id001"}
        assert load_dataset(f"wildlife:Dataset_Metadata:{tmp_path}?subset=B").n == 2
    with pytest.raises(DatasetError, match="no dataset class 'NoSuchZoo'"):
        load_dataset(f"wildlife:NoSuchZoo:{tmp_path}")
    with pytest.raises(DatasetError, match="wildlife:ClassName:ROOT"):
        load_dataset(f"wildlife:{tmp_path}")


@pytest.mark.parametrize("name,n,ids", [("lion", 740, 94), ("nyala", 1942, 237)])
def test_shared_real_datasets(name, n, ids):
    root = SHARED / name
    if not (root / "metadata.csv").is_file():
        pytest.skip(f"{root} is absent (shared real data not checked out on this machine)")
    d = load_dataset(f"metadata:{root}")
    assert d.n == n and d.metadata.identity.nunique() == ids and d.root == root
    store = ImageStore(d.root, d.metadata.path.tolist())
    assert store.resized(0, (32, 32)).shape == (32, 32, 3)


def test_market1501_trial_uses_the_standard_query_gallery(tmp_path):
    from alreid.harness.settings import make_trial_config
    from alreid.harness.trial import Trial

    rng = np.random.default_rng(0)
    root = tmp_path / "Market-1501-v15.09.15"
    layout = {"bounding_box_train": [(p, c) for p in (11, 12, 13) for c in (1, 2)],
              "query": [(1, 1), (2, 2)], "bounding_box_test": [(1, 1), (1, 3), (2, 4), (0, 5)]}
    for folder, items in layout.items():
        (root / folder).mkdir(parents=True)
        for k, (pid, cam) in enumerate(items):
            arr = rng.integers(0, 256, size=(32, 16, 3), dtype=np.uint8)
            Image.fromarray(arr).save(root / folder / f"{pid:04d}_c{cam}s1_{k:06d}_00.jpg")
    cfg = make_trial_config({"dataset": f"market1501:{tmp_path}", "trainer": "baseline", "cycles": 0,
                             "trainer_params": {"backbone": "tiny", "image_size": "32x16", "progress": False}})
    trial = Trial(cfg)
    role = trial.dataset.metadata.role.to_numpy()
    assert (role[trial.protocol.query_idx] == "query").all() and len(trial.protocol.query_idx) == 2
    assert (role[trial.protocol.gallery_idx] == "gallery").all() and len(trial.protocol.gallery_idx) == 4
    assert trial.cameras is not None  # the adapter's camera column filters same-camera matches
    rec = trial.run()
    assert rec.mAP.notna().all()
