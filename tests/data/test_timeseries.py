import dataclasses
import hashlib

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import write_csv

from sciformer.config import DataConfig
from sciformer.data import catalog
from sciformer.data.timefeatures import time_features
from sciformer.data.timeseries import TimeSeriesData, read_frame, split_borders
from sciformer.errors import DataError

# (dataset, lookback, horizon) -> train/val/test windows, from TSLib's border rule (reference/TIMESERIES.md §1.3)
WINDOWS = [
    ("ett_h1", 96, 96, (8449, 2785, 2785)),
    ("ett_h2", 96, 96, (8449, 2785, 2785)),
    ("ett_h1", 96, 720, (7825, 2161, 2161)),
    ("ett_m1", 96, 96, (34369, 11425, 11425)),
    ("ett_m2", 96, 96, (34369, 11425, 11425)),
    ("weather", 96, 96, (36887 - 191, 5270 + 96 - 191, 10539 + 96 - 191)),
]


@pytest.mark.parametrize("name,lookback,horizon,expected", WINDOWS)
def test_window_counts_on_real_files(data_dir, name, lookback, horizon, expected):
    data = TimeSeriesData.from_config(DataConfig(name=name, lookback=lookback, horizon=horizon))
    assert tuple(data.splits[s].n_windows for s in ("train", "val", "test")) == expected
    assert data.columns[-1] == "OT"
    assert data.n_marks == 4  # TSLib passes hourly time features for every dataset


def test_ett_h1_scaler_is_fit_on_train_rows_only(data_dir):
    data = TimeSeriesData.from_config(DataConfig(name="ett_h1"))
    raw = pd.read_csv(data_dir / "ETT-small" / "ETTh1.csv").iloc[:, 1:].to_numpy()
    np.testing.assert_allclose(data.mean, raw[:8640].mean(0))
    np.testing.assert_allclose(data.std, raw[:8640].std(0))
    train = data.values[:8640].double()
    assert torch.allclose(train.mean(0), torch.zeros(7, dtype=torch.float64), atol=1e-5)
    assert not torch.allclose(data.values[8640:11520].double().mean(0), torch.zeros(7, dtype=torch.float64), atol=1e-2)


def test_benchmark_file_of_the_wrong_size_is_refused(data_dir, tmp_path, monkeypatch):
    # a truncated download would silently move the published split borders
    (tmp_path / "ETT-small").mkdir()
    lines = (data_dir / "ETT-small" / "ETTh1.csv").read_text().splitlines()
    (tmp_path / "ETT-small" / "ETTh1.csv").write_text("\n".join(lines[:15001]) + "\n")
    monkeypatch.setenv("SCIFORMER_DATA_DIR", str(tmp_path))
    with pytest.raises(DataError, match=r"has 15000 rows \(expected 17420\).*sciformer datasets download ett_h1"):
        TimeSeriesData.from_config(DataConfig(name="ett_h1"))
    # a different column set is caught too; a recipe's own column selection is not
    frame = pd.read_csv(data_dir / "ETT-small" / "ETTh1.csv").drop(columns=["HULL"])
    frame.to_csv(tmp_path / "ETT-small" / "ETTh1.csv", index=False)
    with pytest.raises(DataError, match=r"7 columns \(expected 8\)"):
        TimeSeriesData.from_config(DataConfig(name="ett_h1"))
    assert TimeSeriesData.from_config(DataConfig(name="ett_h1", columns=["HUFL", "OT"])).n_vars == 2


def test_duplicated_columns_bad_borders_and_a_data_dir_that_is_a_file(tmp_path, monkeypatch):
    index = pd.date_range("2020-01-01", periods=300, freq="h")
    frame = pd.DataFrame(np.ones((300, 3)), index=index, columns=["a", "b", "a"])
    with pytest.raises(DataError, match=r"the DataFrame has duplicated column names \['a'\]"):
        read_frame(frame)
    good = read_frame(frame.iloc[:, :2])
    for borders in ({"val": (0, 100)}, {"train": (0, 200), "test": (150, 400)}, {"train": (100, 50)}):
        with pytest.raises(DataError, match=r"must include 'train' .*0 <= start < stop <= 300"):
            TimeSeriesData(good, 24, 12, borders=borders)
    (tmp_path / "file").write_text("x")
    monkeypatch.setenv("SCIFORMER_DATA_DIR", str(tmp_path / "file"))
    with pytest.raises(DataError, match=r"SCIFORMER_DATA_DIR=.*file' is a file, not a folder"):
        catalog.resolve("ett_h1")


def test_split_fractions_on_a_fixed_split_dataset_and_gaps_in_a_recipe_csv_are_refused(data_dir, tmp_path):
    from sciformer.errors import ConfigError

    with pytest.raises(ConfigError, match=r"'data.split': dataset 'ett_h1' has the published fixed split \(ett_hour\)"):
        TimeSeriesData.from_config(DataConfig(name="ett_h1", split=[0.6, 0.2, 0.2]))
    path = write_csv(tmp_path / "gappy.csv", n_rows=400)
    frame = pd.read_csv(path)
    frame.drop(index=200).to_csv(path, index=False)  # one missing hour: a window across it would mix two spans
    with pytest.raises(DataError, match=r"CSV file '.*gappy\.csv' has a gap in its time index: after 2020-01-09 07:00:00 comes"):
        TimeSeriesData.from_config(DataConfig(name=str(path), lookback=24, horizon=12))


def test_val_and_test_windows_reach_back_one_lookback():
    borders = split_borders(17420, "ett_hour", 96)
    assert borders == {"train": (0, 8640), "val": (8544, 11520), "test": (11424, 14400)}


@pytest.mark.parametrize("name,n_rows,columns,expected", [
    ("traffic", 17544, 863, (12280, 1756, 3508)),
    ("electricity", 26304, 322, (18412, 2632, 5260)),
])
def test_traffic_and_electricity_adapters_on_synthetic_files_with_their_schema(tmp_path, monkeypatch, name, n_rows, columns, expected):
    manifest = catalog.get_manifest(name)
    assert manifest.columns == columns and manifest.rows == n_rows and manifest.split == "ratio"
    # the canonical split sizes at the full row count
    b = split_borders(n_rows, "ratio", 0)
    assert (b["train"][1], b["val"][1] - b["val"][0], b["test"][1] - b["test"][0]) == expected
    # a file of exactly that schema (date, 0..C-3, OT), fewer rows to stay fast, read through the manifest
    schema = [str(i) for i in range(columns - 2)] + ["OT"]
    path = tmp_path / manifest.file
    path.parent.mkdir(parents=True)
    write_csv(path, n_rows=400, columns=schema)
    monkeypatch.setenv("SCIFORMER_DATA_DIR", str(tmp_path))
    monkeypatch.setitem(catalog.manifests(), name, dataclasses.replace(manifest, rows=400))  # the short stand-in file
    data = TimeSeriesData.from_config(DataConfig(name=name, lookback=24, horizon=12))
    assert data.n_vars == columns - 1 and data.columns == schema
    assert data.splits["train"].n_windows == 280 - 24 - 12 + 1
    batch = next(data.batches("test", 8))
    assert batch.x.shape == (8, 24, columns - 1) and batch.y.shape == (8, 12, columns - 1)


def test_hourly_time_features_match_tslib():
    stamps = pd.DatetimeIndex(["2016-07-01 00:00:00", "2016-12-31 23:00:00"])
    feats = time_features(stamps, "h")
    # hour/23-0.5, dayofweek/6-0.5, (day-1)/30-0.5, (dayofyear-1)/365-0.5
    expected = [[-0.5, 4 / 6 - 0.5, -0.5, 182 / 365 - 0.5], [0.5, 5 / 6 - 0.5, 0.5, 365 / 365 - 0.5]]
    np.testing.assert_allclose(feats, expected, atol=1e-6)
    assert time_features(stamps, "15min").shape == (2, 5)


def test_every_window_is_visited_exactly_once_no_drop(tmp_path):
    data = TimeSeriesData(read_frame(write_csv(tmp_path / "s.csv", n_rows=500)), lookback=16, horizon=8)
    for split in ("train", "val", "test"):
        seen = torch.cat([b.x[:, 0, 0] for b in data.batches(split, 7, shuffle=True, generator=torch.Generator().manual_seed(1))])
        starts = data.window_starts(split)
        assert len(seen) == data.splits[split].n_windows
        assert torch.equal(seen.sort().values, data.values[starts, 0].sort().values)


def test_ddp_shards_cover_windows_once(tmp_path):
    data = TimeSeriesData(read_frame(write_csv(tmp_path / "s.csv", n_rows=500)), lookback=16, horizon=8)
    shards = [torch.cat([b.x[:, 0, 0] for b in data.batches("test", 5, rank=r, world_size=3)]) for r in range(3)]
    assert sum(len(s) for s in shards) == data.splits["test"].n_windows


def test_windows_are_contiguous_slices(tmp_path):
    data = TimeSeriesData(read_frame(write_csv(tmp_path / "s.csv", n_rows=300)), lookback=10, horizon=5)
    batch = data.gather(torch.tensor([3]))
    assert torch.equal(batch.x[0], data.values[3:13]) and torch.equal(batch.y[0], data.values[13:18])
    assert torch.equal(batch.y_mark[0], data.marks[13:18])


def test_dataframe_with_datetime_index_and_target_last(tmp_path):
    frame = pd.read_csv(write_csv(tmp_path / "s.csv", n_rows=50, columns=["OT", "a", "b"]))
    frame = frame.set_index(pd.to_datetime(frame.pop("date")))
    out = read_frame(frame, target="OT")
    assert list(out.columns) == ["a", "b", "OT"]


def test_csv_without_time_column(tmp_path):
    path = tmp_path / "x.csv"
    pd.DataFrame({"a": [1.0, 2.0], "b": [3.0, 4.0]}).to_csv(path, index=False)
    with pytest.raises(DataError, match=r"has no time column 'date'; its columns are \['a', 'b'\]"):
        read_frame(path)


def test_non_numeric_value_names_column_and_row(tmp_path):
    path = write_csv(tmp_path / "x.csv", n_rows=20)
    frame = pd.read_csv(path)
    frame["v0"] = frame["v0"].astype(object)
    frame.loc[7, "v0"] = "abc"
    frame.to_csv(path, index=False)
    with pytest.raises(DataError, match=r"column 'v0' has a non-numeric value 'abc' at row 7"):
        read_frame(path)


def test_nan_value_names_column_and_row(tmp_path):
    path = write_csv(tmp_path / "x.csv", n_rows=20)
    frame = pd.read_csv(path)
    frame.loc[11, "OT"] = np.nan
    frame.to_csv(path, index=False)
    with pytest.raises(DataError, match=r"column 'OT' has a missing value \(NaN\) at row 11 \(time 2020-01-01 11:00:00\)"):
        read_frame(path)


def test_series_too_short_for_lookback_plus_horizon(tmp_path):
    frame = read_frame(write_csv(tmp_path / "x.csv", n_rows=100))
    with pytest.raises(DataError, match=r"the train split has 70 rows .* fewer than lookback \+ horizon = 192"):
        TimeSeriesData(frame, lookback=96, horizon=96)


def test_duplicated_and_unsorted_timestamps_in_user_data(tmp_path):
    frame = pd.read_csv(write_csv(tmp_path / "x.csv", n_rows=20))
    dup = frame.copy()
    dup.loc[5, "date"] = dup.loc[4, "date"]
    with pytest.raises(DataError, match="appears more than once"):
        read_frame(dup, time_col="date")
    swapped = frame.iloc[[0, 2, 1, *list(range(3, 20))]]
    with pytest.raises(DataError, match=r"not sorted \(row 2"):
        read_frame(swapped, time_col="date")


def test_missing_file_offline_names_file_dirs_and_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("SCIFORMER_DATA_DIR", str(tmp_path / "empty"))
    offline = catalog.Manifest(name="ett_h1", file="ETT-small/ETTh1.csv", url="http://127.0.0.1:9/ETTh1.csv", sha256="0" * 64)
    monkeypatch.setattr(catalog, "manifests", lambda: {"ett_h1": offline})
    with pytest.raises(DataError) as err:
        catalog.resolve("ett_h1")
    message = str(err.value)
    assert "'ETT-small/ETTh1.csv' not found in" in message and str(tmp_path / "empty") in message and "'data'" in message
    assert "downloading it from http://127.0.0.1:9/ETTh1.csv failed" in message and "SCIFORMER_DATA_DIR" in message
    assert not (tmp_path / "empty" / "ETT-small" / "ETTh1.csv").exists()


def test_download_verifies_sha256(tmp_path, monkeypatch):
    source = write_csv(tmp_path / "upstream.csv", n_rows=30)
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    monkeypatch.setenv("SCIFORMER_DATA_DIR", str(tmp_path / "cache"))
    good = catalog.Manifest(name="toy", file="toy/toy.csv", url=source.as_uri(), sha256=digest)
    bad = catalog.Manifest(name="toy_bad", file="toy/bad.csv", url=source.as_uri(), sha256="f" * 64)
    monkeypatch.setattr(catalog, "manifests", lambda: {"toy": good, "toy_bad": bad})
    assert catalog.resolve("toy") == tmp_path / "cache" / "toy" / "toy.csv"
    assert catalog.sha256_of(tmp_path / "cache" / "toy" / "toy.csv") == digest
    with pytest.raises(DataError, match=r"has sha256 .* expected ffff.*not kept"):
        catalog.resolve("toy_bad")
    assert not (tmp_path / "cache" / "toy" / "bad.csv").exists()
    assert not list((tmp_path / "cache" / "toy").glob(".*part"))


def test_every_manifest_has_url_and_sha256():
    for name, manifest in catalog.manifests().items():
        assert manifest.url and manifest.url.startswith("https://"), name
        assert manifest.sha256 and len(manifest.sha256) == 64, name
