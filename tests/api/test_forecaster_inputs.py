"""Forecaster with hostile or unusual inputs: each is refused with one documented exception and one line,
or works as documented (xarray in and out, ``~`` paths, a run's own training CSV)."""

import hashlib
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from sciformer import Forecaster
from sciformer.errors import ConfigError, DataError, SciformerError

xr = pytest.importorskip("xarray")
TINY = {"d_model": 8, "d_ff": 8, "n_heads": 2, "e_layers": 1, "epochs": 1, "batch_size": 64, "progress": False}


def frame(n=120, columns=("a", "OT")) -> pd.DataFrame:
    t = np.arange(n)
    data = {c: 10 * i + np.sin(2 * np.pi * t / 24) for i, c in enumerate(columns)}
    return pd.DataFrame({"date": pd.date_range("2021-03-01", periods=n, freq="h"), **data})


@pytest.fixture(scope="module")
def fitted():
    torch.manual_seed(0)
    return Forecaster("itransformer", horizon=4, lookback=16, **TINY).fit(frame())


def one_line(err) -> str:
    assert "\n" not in str(err.value)
    return str(err.value)


@pytest.mark.parametrize("value,shown", [(np.inf, "inf"), (-np.inf, "-inf"), (np.nan, r"a missing value \(NaN\)"), (1e300, r"1e\+300")])
def test_predict_refuses_non_finite_history(fitted, value, shown):
    history = frame()
    history.loc[110, "OT"] = value
    with pytest.raises(DataError, match=rf"the DataFrame: column 'OT' has (the value )?{shown}.* at row 110 \(time 2021-03-05 14:00:00\)"):
        fitted.predict(history)


def test_predict_refuses_a_value_that_overflows_after_scaling(fitted):
    history = frame()
    history.loc[115, "a"] = 1e140  # finite in float64, beyond float32 once scaled by the training statistics
    with pytest.raises(DataError, match=r"the history: column 'a' has the value inf at row 115 .* after scaling with the training statistics"):
        fitted.predict(history)


def test_predict_refuses_a_gap_anywhere_in_the_history_as_fit_does(fitted):
    gappy = frame().drop(index=[20])  # far before the last lookback rows
    with pytest.raises(DataError, match=r"the history has a gap in its time index: after 2021-03-01 19:00:00 comes 2021-03-01 21:00:00"):
        fitted.predict(gappy)
    with pytest.raises(DataError, match="the training data has a gap"):
        Forecaster("itransformer", horizon=4, lookback=16, **TINY).fit(gappy)


def test_predict_refuses_a_repeated_timestamp_as_fit_does_on_a_file(fitted, tmp_path):
    """Only a registered benchmark file keeps its rows verbatim (the weather CSV repeats one timestamp, and the
    published splits count it); any file or frame given by the user, to fit or to predict, is refused."""
    repeated = frame()
    repeated = pd.concat([repeated.iloc[:60], repeated.iloc[59:]], ignore_index=True)  # 2021-03-03 11:00 twice
    path = tmp_path / "repeated.csv"
    repeated.to_csv(path, index=False)
    for data in (path, repeated):
        with pytest.raises(DataError, match=r"timestamp 2021-03-03 11:00:00 appears more than once; expected unique timestamps"):
            fitted.predict(data)
    with pytest.raises(DataError, match=rf"CSV file '{path}': timestamp 2021-03-03 11:00:00 appears more than once"):
        Forecaster("itransformer", horizon=4, lookback=16, **TINY).fit(path)


INVALID = [{"batch_size": 0}, {"batch_size": -1}, {"windows": 0}, {"stride": 0}, {"stride": 2.5}, {"windows": True}, {"batch_size": "8"}]


@pytest.mark.parametrize("kwargs", INVALID)
def test_backtest_refuses_invalid_numbers(fitted, kwargs):
    with pytest.raises(ConfigError, match=r"backtest \w+ must be a positive integer") as err:
        fitted.backtest(frame(), **kwargs)
    one_line(err)


def test_plot_unknown_column_suggests_the_closest(fitted):
    with pytest.raises(ConfigError, match=r"plot: unknown column 'OTT' \(did you mean 'OT'\?\); the columns are \['a', 'OT'\]") as err:
        fitted.plot(columns=["OTT"])
    one_line(err)
    with pytest.raises(ConfigError, match="unknown column 'nope'"):
        fitted.plot(columns="nope")


@pytest.mark.parametrize("val_size", [0, 0.0, 1.0, -3, True, "0.2", float("nan")])
def test_fit_refuses_an_invalid_val_size(val_size):
    with pytest.raises(ConfigError, match="val_size must be a fraction in"):
        Forecaster("itransformer", horizon=4, lookback=16, **TINY).fit(frame(), val_size=val_size)


def test_unknown_frequency_target_and_time_column_are_one_line_with_a_hint():
    fc = Forecaster("itransformer", horizon=4, lookback=16, **TINY)
    with pytest.raises(ConfigError, match=r"freq='bogus' is not a pandas frequency"):
        fc.fit(frame(), freq="bogus")
    with pytest.raises(DataError, match=r"has no target column \['OTT'\] \(did you mean 'OT'\?\)"):
        fc.fit(frame(), target="OTT")
    with pytest.raises(DataError, match=r"has no time column 'Date'; its columns are \['date', 'a', 'OT'\] \(did you mean 'date'\?\)"):
        fc.fit(frame(), time_col="Date")


@pytest.mark.parametrize("rows", [1, 2, 20])
def test_too_few_rows_are_reported_as_such(rows):
    with pytest.raises(DataError, match=rf"the training data has {rows} rows?: too few rows for lookback 16 and horizon 4") as err:
        Forecaster("itransformer", horizon=4, lookback=16, **TINY).fit(frame(n=rows))
    assert "freq" not in one_line(err)


def test_home_relative_csv_path(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    frame().to_csv(tmp_path / "series.csv", index=False)
    fc = Forecaster("itransformer", horizon=4, lookback=16, **TINY).fit("~/series.csv")
    assert len(fc.predict("~/series.csv")) == 4


# -------------------------------------------------------------------------------------------- xarray
def test_netcdf_path_in_dataset_out_with_intervals_on_a_level_dimension(tmp_path):
    wide = frame().set_index("date")
    ds = xr.Dataset({c: ("time", wide[c].to_numpy()) for c in wide.columns}, coords={"time": wide.index.to_numpy()})
    ds.to_netcdf(tmp_path / "series.nc")
    torch.manual_seed(0)
    fc = Forecaster("itransformer", horizon=4, lookback=16, **TINY).fit(str(tmp_path / "series.nc"))
    point = fc.predict()
    assert isinstance(point, xr.Dataset) and set(point.data_vars) == {"a", "OT"} and point.sizes["time"] == 4
    out = fc.predict(level=[80, 95])
    assert set(out.data_vars) == {"mean", "lower", "upper"}
    assert out["lower"].dims == ("level", "time", "variable") and list(out["level"].values) == [80.0, 95.0]
    assert list(out["variable"].values) == ["a", "OT"]
    np.testing.assert_array_equal(out["mean"].sel(variable="OT").values, point["OT"].values)
    lo95, lo80, hi80 = (out[b].sel(level=lvl) for b, lvl in (("lower", 95), ("lower", 80), ("upper", 80)))
    assert bool((lo95 <= lo80).all() and (lo80 <= out["mean"]).all() and (out["mean"] <= hi80).all())
    # the same numbers as the wide frame of the same forecaster
    table = fc.predict(wide.reset_index(), level=80)
    np.testing.assert_allclose(out["upper"].sel(level=80, variable="OT").values, table["OT-hi-80"].to_numpy())


def test_dataarray_in_dataarray_out_and_intervals_keep_its_dims():
    wide = frame().set_index("date")
    array = xr.DataArray(wide.to_numpy(), dims=("t", "sensor"), coords={"t": wide.index.to_numpy(), "sensor": list(wide.columns)}, name="load")
    fc = Forecaster("itransformer", horizon=4, lookback=16, **TINY).fit(array)
    point = fc.predict()
    assert isinstance(point, xr.DataArray) and point.dims == ("t", "sensor") and point.name == "load"
    out = fc.predict(array, level=0.9)  # a fraction: 90 %
    assert out["upper"].dims == ("level", "t", "sensor") and list(out["level"].values) == [90.0]
    assert out["t"].values[0] == np.datetime64(wide.index[-1] + pd.Timedelta(hours=1))


# ----------------------------------------------------------------------------------------- save
def digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_save_never_replaces_a_folder_of_the_users_files(fitted, tmp_path):
    folder = tmp_path / "thesis"
    folder.mkdir()
    (folder / "thesis.tex").write_text("\\documentclass{article}\n")
    (folder / "figures").mkdir()
    (folder / "figures" / "plot.pdf").write_bytes(b"%PDF-1.5 ...")
    before = digest(folder)
    with pytest.raises(SciformerError) as err:
        fitted.save(folder)
    one_line(err)
    assert digest(folder) == before and not list(tmp_path.glob(".thesis*"))
    document = tmp_path / "notes.txt"
    document.write_text("keep me")
    with pytest.raises(SciformerError):
        fitted.save(document)
    assert document.read_text() == "keep me" and not list(tmp_path.glob(".notes*"))


@pytest.mark.parametrize("target", [".", "/dev/null", "/proc", "/proc/forecaster"])
def test_save_to_special_places_is_one_line(fitted, tmp_path, target):
    (tmp_path / "mine.txt").write_text("x")
    with pytest.raises(SciformerError) as err:
        fitted.save(target)
    one_line(err)
    assert sorted(os.listdir(tmp_path)) == ["mine.txt"]


def test_saving_again_over_a_saved_forecaster_is_allowed(fitted, tmp_path):
    fitted.save(tmp_path / "fc")
    fitted.save(tmp_path / "fc")
    assert Forecaster.load(tmp_path / "fc").predict().equals(fitted.predict())


# ----------------------------------------------------------------------------- a recipe's own CSV
def test_predict_accepts_the_training_csv_of_a_recipe_with_time_col_target_and_columns(tmp_path):
    data = frame(columns=("a", "OT", "unused")).rename(columns={"date": "stamp"})
    data["note"] = "text"  # a column the recipe does not select
    data.to_csv(tmp_path / "plant.csv", index=False)
    recipe = {
        "data": {"name": str(tmp_path / "plant.csv"), "lookback": 16, "horizon": 4, "time_col": "stamp", "target": "a", "columns": ["a", "OT"]},
        "model": {"name": "itransformer", "d_model": 8, "d_ff": 8, "n_heads": 2, "e_layers": 1},
        "train": {"epochs": 1, "batch_size": 64, "progress": False},
        "tracking": {"enabled": False},
    }
    (tmp_path / "plant.yaml").write_text(yaml.safe_dump(recipe))
    fc = Forecaster.from_recipe(tmp_path / "plant.yaml").fit(str(tmp_path / "plant.csv"))
    assert fc.columns == ["OT", "a"]  # the target last, as the recipe's data section asks
    fc.save(tmp_path / "run")
    again = Forecaster.load(tmp_path / "run")  # what `sciformer predict RUN --data plant.csv` does
    future = again.predict(str(tmp_path / "plant.csv"), level=90)
    assert list(future.columns[:3]) == ["OT", "OT-lo-90", "OT-hi-90"] and len(future) == 4
    assert future.index[0] == pd.Timestamp("2021-03-06 00:00:00")
