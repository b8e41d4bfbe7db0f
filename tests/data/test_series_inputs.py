"""Hostile and odd time-series inputs are refused at load time with one line naming what was found."""

import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import write_csv

from sciformer.config import DataConfig
from sciformer.data.frames import read_frame, to_wide
from sciformer.data.series_checks import MAX_ABS, check_finite
from sciformer.data.timeseries import TimeSeriesData
from sciformer.errors import ConfigError, DataError

xr = pytest.importorskip("xarray")


def one_line(exc_info) -> str:
    message = str(exc_info.value)
    assert "\n" not in message and "Traceback" not in message
    return message


def series(n=40, columns=("a", "OT")) -> pd.DataFrame:
    t = np.arange(n, dtype=np.float64)
    return pd.DataFrame({c: np.sin(t / 5) + i for i, c in enumerate(columns)}, index=pd.date_range("2021-01-01", periods=n, freq="h"))


# ------------------------------------------------------------------------------------------ non-finite
@pytest.mark.parametrize("text,shown", [("inf", "inf"), ("-inf", "-inf"), ("1e999", "inf"), ("1e308", "1e+308"), ("-1e200", "-1e+200")])
def test_non_finite_or_overflowing_csv_value_names_file_column_and_row(tmp_path, text, shown):
    path = write_csv(tmp_path / "x.csv", n_rows=30)
    lines = path.read_text().splitlines()
    cells = lines[8].split(",")
    cells[2] = text  # column v1, data row 7
    lines[8] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as err:
        read_frame(path)
    message = one_line(err)
    assert f"CSV file '{path}': column 'v1' has the value {shown}" in message
    assert "at row 7 (time 2020-01-01 07:00:00)" in message and "expected finite numbers" in message


def test_non_finite_dataframe_and_xarray_values_are_refused_by_the_same_check():
    frame = series()
    frame.iloc[12, 1] = np.inf
    with pytest.raises(DataError, match=r"the DataFrame: column 'OT' has the value inf at row 12 \(time 2021-01-01 12:00:00\)"):
        to_wide(frame)
    frame.iloc[12, 1] = np.nan
    with pytest.raises(DataError, match=r"the DataFrame: column 'OT' has a missing value \(NaN\) at row 12"):
        to_wide(frame)
    values = series()["a"].to_numpy().copy()
    values[3] = -np.inf
    ds = xr.Dataset({"a": ("time", values)}, coords={"time": series().index})
    with pytest.raises(DataError, match=r"the xarray Dataset: column 'a' has the value -inf at row 3 \(time 2021-01-01 03:00:00\)"):
        to_wide(ds)
    values[3] = 1e300
    with pytest.raises(DataError, match=r"the value 1e\+300 \(beyond ±1e\+150: its square overflows the statistics\)"):
        to_wide(ds)


def test_values_at_the_limit_train_to_finite_statistics():
    frame = series()
    frame["OT"] = frame["OT"] * MAX_ABS / 2  # accepted: the scaler's variance stays finite
    data = TimeSeriesData(read_frame(frame), lookback=8, horizon=4)
    assert np.isfinite(data.std).all() and bool(data.values.isfinite().all())


def test_finite_input_that_overflows_after_scaling_is_refused():
    frame = read_frame(series())
    with pytest.raises(DataError, match=r"column 'OT' has the value inf at row 0 .* after scaling"):
        TimeSeriesData(frame, lookback=8, horizon=4, scaler=(np.zeros(2), np.full(2, 1e-300)))


def test_check_finite_names_the_first_bad_cell_in_row_order():
    values = np.ones((5, 3))
    values[4, 0] = np.nan
    values[2, 2] = np.inf
    with pytest.raises(DataError, match=r"column 'c' has the value inf at row 2;"):
        check_finite(values, ["a", "b", "c"], None, "test")


# ---------------------------------------------------------------------------------- bounded reading
@pytest.mark.parametrize("content,found", [
    (b"1234567890," * (5 * 2**20 // 11), "no line break in its first 1 MiB"),
    (b"\0" * 2**20, "holds NUL bytes (the first at byte 0)"),
    ("date,OT\n2021-01-01,1\n".encode("utf-16"), "holds NUL bytes"),
    (b"\x89HDF\r\n\x1a\n" + bytes(range(256)) * 100, "is an HDF5 file"),
    (b"PK\x03\x04" + b"x" * 1000, "is a ZIP archive"),
    (b"\x1f\x8b\x08" + b"x" * 1000, "is a gzip-compressed file"),
    (b"", "is empty"),
])
def test_files_that_are_not_csv_text_are_refused_fast(tmp_path, content, found):
    path = tmp_path / "data.csv"
    path.write_bytes(content)
    start = time.perf_counter()
    with pytest.raises(DataError) as err:
        read_frame(path)
    assert time.perf_counter() - start < 0.5
    assert found in one_line(err) and f"CSV file '{path}'" in str(err.value)


# -------------------------------------------------------------------------------------------- paths
def test_a_directory_fifo_and_devices_say_what_they_are(tmp_path):
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    cases = {tmp_path: "is a directory", fifo: "is a FIFO", "/dev/null": "is a character device", "/dev/zero": "is a character device",
             tmp_path / "none.csv": "does not exist"}
    for path, what in cases.items():
        with pytest.raises(DataError) as err:
            read_frame(path)
        assert f"data file '{path}' {what}" in one_line(err)


def test_home_relative_paths_work_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    write_csv(tmp_path / "series.csv", n_rows=200)
    assert len(read_frame("~/series.csv")) == 200
    data = TimeSeriesData.from_config(DataConfig(name="~/series.csv", lookback=24, horizon=12))
    assert data.n_vars == 3 and "series.csv" in data.name and "~" not in data.name
    from sciformer.data import catalog

    catalog.check_dataset_name("~/series.csv")
    with pytest.raises(ConfigError, match=r"recipe key 'data.name': data file '.*' is a directory"):
        catalog.check_dataset_name(str(tmp_path) + "/")
    (tmp_path / "store.zarr").mkdir()  # a Zarr store is a folder: a data path like a file
    catalog.check_dataset_name("~/store.zarr")


# ----------------------------------------------------------------------------------------- few rows
@pytest.mark.parametrize("rows", [0, 1])
def test_csv_of_zero_or_one_rows_says_too_few_rows(tmp_path, rows):
    path = write_csv(tmp_path / "short.csv", n_rows=max(rows, 1))
    if rows == 0:
        path.write_text(path.read_text().splitlines()[0] + "\n")
    with pytest.raises(DataError) as err:
        TimeSeriesData.from_config(DataConfig(name=str(path), lookback=4, horizon=2))
    message = one_line(err)
    assert ("no data rows" if rows == 0 else "has 1 row: too few rows") in message
    assert "pass freq" not in message


# ------------------------------------------------------------------------------------------ security
def test_header_of_an_arbitrary_file_is_not_echoed(tmp_path):
    secret = tmp_path / "shadow"
    secret.write_text("root:$6$saltsalt$c2VjcmV0aGFzaA:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\n")
    with pytest.raises(DataError) as err:
        read_frame(secret)
    message = one_line(err)
    assert "saltsalt" not in message and "19000" not in message and "not a comma-separated header" in message


def test_long_or_unprintable_column_names_are_quoted_short(tmp_path):
    path = tmp_path / "wide.csv"
    names = [f"col{'x' * 60}{i}" for i in range(20)] + ["bell\x07"]
    path.write_text(",".join(names) + "\n" + ",".join("1" for _ in names) + "\n")
    with pytest.raises(DataError) as err:
        read_frame(path)
    quoted = one_line(err).split("its columns are ")[1].split("]")[0]
    assert len(quoted) <= 80 and "\x07" not in str(err.value)
    frame = pd.DataFrame({"date": pd.date_range("2021", periods=3, freq="h"), "v": ["1", "x" * 500 + "\x00", "2"]})
    with pytest.raises(DataError, match=r"column 'v' has a non-numeric value 'x{37}\.\.\.' at row 1") as err:
        read_frame(frame)
    assert len(str(err.value)) < 200


def test_unparseable_timestamp_is_named_by_row_not_by_a_parser_dump(tmp_path):
    path = write_csv(tmp_path / "x.csv", n_rows=10)
    path.write_text(path.read_text().replace("2020-01-01 04:00:00", "not-a-date"))
    with pytest.raises(DataError, match=r"time column 'date' has 'not-a-date' at row 4, which is not a timestamp"):
        read_frame(path)


# -------------------------------------------------------------------------------------------- xarray
def test_netcdf_path_dataset_and_dataarray_read_like_a_frame(tmp_path):
    frame = series()
    ds = xr.Dataset({c: ("time", frame[c].to_numpy()) for c in frame.columns}, coords={"time": frame.index})
    ds["station_height"] = 12.0  # static metadata without the time dimension is left out
    ds.to_netcdf(tmp_path / "s.nc")  # NetCDF3 through scipy
    from_file, layout = to_wide(str(tmp_path / "s.nc"))
    assert layout.kind == "dataset" and list(from_file.columns) == ["a", "OT"]
    np.testing.assert_array_equal(from_file.to_numpy(), frame.to_numpy())
    array = xr.DataArray(frame.to_numpy(), dims=("when", "var"), coords={"when": frame.index, "var": ["a", "OT"]})
    from_array, layout = to_wide(array)
    assert layout.kind == "dataarray" and layout.time_name == "when" and layout.extra["variable_dim"] == "var"
    pd.testing.assert_frame_equal(from_array, from_file)
    data = TimeSeriesData.from_config(DataConfig(name=str(tmp_path / "s.nc"), lookback=8, horizon=4))
    assert data.columns == ["a", "OT"] and data.name == f"NetCDF file '{tmp_path / 's.nc'}'"


def test_xarray_time_axis_detection_and_refusals(tmp_path):
    frame = series()
    obs = xr.Dataset({"OT": ("obs", frame["OT"].to_numpy())}, coords={"time": ("obs", frame.index)})
    assert to_wide(obs)[0].index.equals(frame.index.rename("time"))  # a non-index datetime coordinate
    two = obs.assign_coords(issued=("obs", frame.index - pd.Timedelta("1D")))
    with pytest.raises(DataError, match=r"several datetime coordinates .* time_col="):
        to_wide(two.drop_vars("time").assign_coords(valid=("obs", frame.index)))
    assert to_wide(two, time_col="issued")[0].index[0] == frame.index[0] - pd.Timedelta("1D")
    with pytest.raises(DataError, match=r"no datetime coordinate 'isued' \(did you mean 'issued'\?\)"):
        to_wide(two, time_col="isued")
    grid = xr.Dataset({"T": (("time", "station"), np.ones((40, 2)))}, coords={"time": frame.index})
    with pytest.raises(DataError, match=r"variable 'T' has dims \('time', 'station'\); expected only \('time',\)"):
        to_wide(grid)
    with pytest.raises(DataError, match="has no datetime coordinate among dims"):
        to_wide(xr.DataArray(np.ones(5), dims="step"))
    (tmp_path / "fake.nc").write_text("date,OT\n")
    with pytest.raises(DataError, match=r"NetCDF file '.*fake.nc' is not a NetCDF file"):
        to_wide(str(tmp_path / "fake.nc"))


def test_zarr_store_reads_or_names_the_missing_package(tmp_path):
    frame = series()
    ds = xr.Dataset({"OT": ("time", frame["OT"].to_numpy())}, coords={"time": frame.index})
    store = tmp_path / "s.zarr"
    try:
        import zarr  # noqa: F401
    except ImportError:
        store.mkdir()
        with pytest.raises(DataError, match=r"Zarr store '.*s.zarr': reading a Zarr store needs the 'zarr' package \(pip install zarr\)"):
            to_wide(str(store))
        return
    ds.to_zarr(store)
    assert list(to_wide(str(store))[0].columns) == ["OT"]


def test_reading_modules_never_import_the_windowing_module():
    # one-way: timeseries builds on frames (reading, checks), never the reverse
    import ast
    import importlib

    for name in ("frames", "series_checks", "series_files", "series_xarray"):
        source = importlib.import_module(f"sciformer.data.{name}").__file__
        tree = ast.parse(Path(source).read_text())
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        assert "sciformer.data.timeseries" not in imported, name
