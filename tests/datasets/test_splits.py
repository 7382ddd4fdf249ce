"""Train/test splits: the split column is honoured, built splits keep groups whole and hit the ratios."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alreid.datasets.splits import GROUP_COLUMNS, group_components, resolve_split
from alreid.errors import ConfigError, DatasetError
from tests.images.helpers import SHARED


def make_df(n_ids=200, seed=0, encounter_size=1, n_unknown=0):
    """Identities with 1..15 images; consecutive images of an identity share an encounter."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_ids):
        for j in range(int(rng.integers(1, 16))):
            rows.append({"identity": f"id{i}", "encounter": f"e{i}_{j // encounter_size}"})
    for j in range(n_unknown):
        rows.append({"identity": "unknown", "encounter": None})
    df = pd.DataFrame(rows)
    df.insert(0, "image_id", np.arange(len(df)) * 3 + 1)
    return df


def test_group_columns_are_the_documented_ones():
    assert GROUP_COLUMNS == ("encounter", "video", "cluster_id", "date")


# ------------------------------------------------------------------------------------------------
# the split column
# ------------------------------------------------------------------------------------------------
def test_split_column_is_honoured():
    df = pd.DataFrame({"identity": list("aabb"), "split": ["train", "test", " Train", "TEST"]})
    assert resolve_split(df).tolist() == [True, False, True, False]


def test_database_query_are_train_test():
    df = pd.DataFrame({"identity": list("abc"), "split": ["database", "query", "database"]})
    assert resolve_split(df).tolist() == [True, False, True]


@pytest.mark.parametrize(("bad", "shown"), [("validation", "'validation'"), (None, "(empty)")])
def test_bad_split_values_name_the_values(bad, shown):
    df = pd.DataFrame({"identity": list("abc"), "split": ["train", bad, "test"]})
    with pytest.raises(DatasetError, match="split") as err:
        resolve_split(df)
    assert shown in str(err.value)


def test_source_split_column_is_not_a_split():
    df = make_df(50)
    df["source_split"] = "train"  # an original release's split; must not be taken as ours
    is_train = resolve_split(df)
    assert 0 < is_train.sum() < len(df)


# ------------------------------------------------------------------------------------------------
# built open-set split
# ------------------------------------------------------------------------------------------------
def fractions(df, is_train):
    ids = df["identity"].to_numpy()
    labelled = ids != "unknown"
    test_only = labelled & ~np.isin(ids, ids[is_train & labelled])
    return is_train[labelled].mean(), test_only.sum() / labelled.sum()


@pytest.mark.parametrize("encounter_size", [1, 2, 3])
def test_ratios_within_tolerance(encounter_size):
    df = make_df(300, seed=encounter_size, encounter_size=encounter_size)
    is_train = resolve_split(df, seed=0)
    train, test_only = fractions(df, is_train)
    assert abs(train - 0.8) < 0.02
    assert abs(test_only - 0.05) < 0.015


def test_other_fractions():
    df = make_df(300, seed=4)
    train, test_only = fractions(df, resolve_split(df, train_fraction=0.6, test_only_fraction=0.2))
    assert abs(train - 0.6) < 0.02 and abs(test_only - 0.2) < 0.02
    train, test_only = fractions(df, resolve_split(df, test_only_fraction=0.0))
    assert abs(train - 0.8) < 0.02 and test_only == 0


def test_identities_in_both_sides_get_train_and_test_images():
    df = make_df(200, seed=1)
    is_train = resolve_split(df)
    ids = df["identity"].to_numpy()
    counts = df.groupby("identity").size()
    train_ids = set(ids[is_train])
    # the split has both kinds of individual: test-only ones (all images in test) and ones on both sides
    test_only = set(ids) - train_ids
    both = {i for i in train_ids if (~is_train[ids == i]).any()}
    assert test_only and both
    assert all((~is_train[ids == i]).all() for i in test_only)
    assert 0.02 < sum(counts[i] for i in test_only) / len(df) < 0.08  # about test_only_fraction = 0.05
    multi = [i for i in train_ids if counts[i] >= 2]
    with_test = [i for i in multi if (~is_train[ids == i]).any()]
    assert len(with_test) == len(multi)  # wildlife-datasets rule: >= 2 images -> at least one in test


def test_deterministic_and_seeded():
    df = make_df(120, seed=2, encounter_size=2)
    a, b = resolve_split(df, seed=5), resolve_split(df, seed=5)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, resolve_split(df, seed=6))


def test_row_order_does_not_matter_when_image_ids_are_unique():
    df = make_df(120, seed=3, encounter_size=2)
    shuffled = df.sample(frac=1.0, random_state=0)
    is_train = pd.Series(resolve_split(df, seed=1), index=df["image_id"])
    is_train_shuffled = pd.Series(resolve_split(shuffled, seed=1), index=shuffled["image_id"].to_numpy())
    assert is_train.equals(is_train_shuffled.loc[is_train.index])


def test_unknown_rows_stay_in_the_training_pool():
    df = make_df(80, seed=4, n_unknown=30)
    is_train = resolve_split(df)
    assert is_train[df["identity"].to_numpy() == "unknown"].all()
    train, _ = fractions(df, is_train)
    assert abs(train - 0.8) < 0.03  # fractions count labelled images only


def test_missing_identity_column_is_an_error():
    with pytest.raises(DatasetError, match="identity"):
        resolve_split(pd.DataFrame({"path": ["a", "b"]}))


def test_bad_fractions_are_config_errors():
    df = make_df(10)
    with pytest.raises(ConfigError):
        resolve_split(df, train_fraction=1.0)
    with pytest.raises(ConfigError):
        resolve_split(df, train_fraction=0.8, test_only_fraction=0.5)


# ------------------------------------------------------------------------------------------------
# groups
# ------------------------------------------------------------------------------------------------
def test_dates_group_by_calendar_day_and_groups_chain():
    df = pd.DataFrame({
        "identity": ["a", "a", "b", "b", "c", "c"],
        "date": ["2020-01-01 08:00", "2020-01-01 17:30", "2020-01-02 08:00", None, "2020-01-03", "not a date"],
        "video": [None, None, 7, 7, None, None],
        "encounter": [None, None, None, "x", "x", None],
    })
    comp = group_components(df)
    # rows 0,1 share a day; rows 2,3 share video 7; rows 3,4 share encounter x -> 2,3,4 linked;
    # row 5 has an unparsable date of its own
    assert comp[0] == comp[1]
    assert comp[2] == comp[3] == comp[4]
    assert len({comp[0], comp[2], comp[5]}) == 3


def groups_intact(df, is_train):
    comp = group_components(df)
    for column in GROUP_COLUMNS:
        if column not in df.columns:
            continue
        key = df[column] if column != "date" else pd.to_datetime(df[column]).dt.date
        sides = pd.Series(is_train).groupby(key.to_numpy()).nunique()
        if (sides > 1).any():
            return False
    return pd.Series(is_train).groupby(comp).nunique().max() == 1


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(2, 60),
    n_ids=st.integers(1, 12),
    n_enc=st.integers(1, 30),
    n_days=st.integers(1, 10),
    p_missing=st.floats(0.0, 0.9),
    seed=st.integers(0, 2**16),
)
def test_groups_are_never_split(n, n_ids, n_enc, n_days, p_missing, seed):
    rng = np.random.default_rng(seed)
    enc = rng.integers(0, n_enc, n).astype(object)
    enc[rng.random(n) < p_missing] = None
    day = pd.Timestamp("2021-05-01") + pd.to_timedelta(rng.integers(0, n_days, n), unit="D") \
        + pd.to_timedelta(rng.integers(0, 86_000, n), unit="s")
    day = pd.Series(day).where(rng.random(n) >= p_missing)
    df = pd.DataFrame({"identity": rng.integers(0, n_ids, n).astype(str), "encounter": enc,
                       "date": day, "cluster_id": rng.integers(0, n, n)})
    is_train = resolve_split(df, seed=seed)
    assert groups_intact(df, is_train)
    assert is_train.any()  # one identity is always left out of the test-only set


def test_groups_are_never_split_on_a_realistic_table():
    df = make_df(150, seed=7, encounter_size=2)
    df["video"] = np.where(np.arange(len(df)) % 17 == 0, 1, None)  # a video spanning identities
    assert groups_intact(df, resolve_split(df, seed=3))


def test_nyala_split_keeps_encounters_whole():
    path = SHARED / "nyala" / "metadata.csv"  # ../shared beside the repository, wherever it is cloned
    if not path.exists():
        pytest.skip(f"{path} is absent (shared real data not checked out on this machine)")
    df = pd.read_csv(path)
    is_train = resolve_split(df, seed=0)
    assert groups_intact(df, is_train)
    assert not np.array_equal(is_train, (df["source_split"] == "train").to_numpy())
    train, test_only = fractions(df.assign(identity=df["identity"].astype(str)), is_train)
    assert abs(train - 0.8) < 0.03 and abs(test_only - 0.05) < 0.02
