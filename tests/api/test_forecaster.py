import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import write_csv

from sciformer import Forecaster
from sciformer.config import load_recipe
from sciformer.errors import ConfigError, DataError
from sciformer.registry import list_models

REPO = Path(__file__).resolve().parents[2]
TINY = {"d_model": 16, "d_ff": 16, "n_heads": 2, "e_layers": 1, "epochs": 1, "batch_size": 64, "progress": False}


def frame(n=400, freq="h", columns=("a", "b", "OT")):
    rng = np.random.default_rng(0)
    t = np.arange(n)
    data = {c: 10 * i + np.sin(2 * np.pi * t / 24) + 0.1 * rng.standard_normal(n) for i, c in enumerate(columns)}
    return pd.DataFrame({"date": pd.date_range("2021-03-01", periods=n, freq=freq), **data})


@pytest.fixture(scope="module")
def fitted():
    torch.manual_seed(0)
    return Forecaster("itransformer", horizon=12, lookback=24, **TINY).fit(frame())


@pytest.mark.integration  # a fit over 11520 real rows
def test_etth1_predict_continues_the_hourly_index_in_data_units(data_dir, tmp_path):
    df = pd.read_csv(data_dir / "ETT-small" / "ETTh1.csv")
    train = df.iloc[:11520]
    fc = Forecaster("itransformer", horizon=96, lookback=96, d_model=32, d_ff=32, epochs=1, batch_size=128, progress=False).fit(train)
    future = fc.predict()
    assert len(future) == 96 and list(future.columns) == list(df.columns[1:])
    assert future.index[0] == pd.Timestamp(train["date"].iloc[-1]) + pd.Timedelta(hours=1)
    assert (future.index == pd.date_range(future.index[0], periods=96, freq="h")).all()
    # original units: the forecast sits in the range of the data, not around 0 (the scaled range)
    last_week = train.iloc[-168:, 1:]
    assert ((future.mean() > last_week.min() - 3 * last_week.std()) & (future.mean() < last_week.max() + 3 * last_week.std())).all()
    assert abs(future["OT"].mean()) > 1
    fc.save(tmp_path / "fc")
    again = Forecaster.load(tmp_path / "fc").predict()
    pd.testing.assert_frame_equal(future, again, check_exact=True, check_names=False)


def test_pyfunc_model_gives_the_same_numbers(fitted, tmp_path):
    mlflow = pytest.importorskip("mlflow")
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    info = fitted.log_model("forecaster")
    history = frame().iloc[-50:]
    served = mlflow.pyfunc.load_model(info.model_uri).predict(history)
    direct = fitted.predict(history)
    np.testing.assert_array_equal(served[direct.columns].to_numpy(), direct.to_numpy())
    assert (pd.DatetimeIndex(served["date"]) == direct.index).all()


def test_intervals_are_ordered_and_nested(fitted):
    out = fitted.predict(level=[80, 95])
    for c in ("a", "b", "OT"):
        assert (out[f"{c}-lo-95"] <= out[f"{c}-lo-80"]).all() and (out[f"{c}-lo-80"] <= out[c]).all()
        assert (out[c] <= out[f"{c}-hi-80"]).all() and (out[f"{c}-hi-80"] <= out[f"{c}-hi-95"]).all()


@pytest.mark.parametrize("level", [150, 100, 1, 0, -5, [0.9, 95], float("nan"), True, "90", [90, None]])
def test_ambiguous_or_impossible_levels_are_refused(fitted, level):
    with pytest.raises(ConfigError, match=r"interval level"):
        fitted.predict(level=level)


def test_fraction_levels_mean_the_same_percentages(fitted):
    as_percent = fitted.predict(level=[80, 95])
    as_fraction = fitted.predict(level=[0.8, 0.95])
    pd.testing.assert_frame_equal(as_percent, as_fraction)  # 0.9 is 90 %, not 0.9 %
    assert "OT-lo-95" in as_fraction.columns


def test_backtest_tables(fitted):
    result = fitted.backtest(frame(), windows=5, stride=10, level=90)
    assert len(result.windows) == 5 and result.windows["origin"].is_monotonic_increasing
    assert set(result.summary.index) == {"mse", "mae", "coverage_90"}
    assert 0 <= result.summary.loc["coverage_90", "scaled"] <= 1
    # scaled and original MSE differ by the per-column variance factor
    assert result.summary.loc["mse", "original"] != pytest.approx(result.summary.loc["mse", "scaled"])


def test_plot_returns_a_figure(fitted):
    fig = fitted.plot(level=[80, 95])
    assert len(fig.axes) == 3


@pytest.mark.parametrize("model", list_models(task="forecast"))
def test_every_forecaster_fits_and_predicts(model):
    args = load_recipe(REPO / "recipes" / "smoke" / f"{model}.yaml").model.args
    fc = Forecaster(model, horizon=12, lookback=48, epochs=1, batch_size=64, progress=False, **args).fit(frame(n=500))
    out = fc.predict(level=90)
    assert out.shape == (12, 9) and np.isfinite(out.to_numpy()).all()


def test_long_format_with_several_series():
    wide = frame(n=300)
    long = wide.melt(id_vars="date", var_name="unique_id", value_name="y").rename(columns={"date": "ds"})
    fc = Forecaster("itransformer", horizon=12, lookback=24, **TINY).fit(long)
    out = fc.predict(level=80)
    assert list(out.columns) == ["unique_id", "ds", "y", "y-hi-80", "y-lo-80"] or set(out.columns) == {"unique_id", "ds", "y", "y-lo-80", "y-hi-80"}
    assert sorted(out["unique_id"].unique()) == ["OT", "a", "b"] and len(out) == 36
    assert out.groupby("unique_id")["ds"].min().eq(wide["date"].iloc[-1] + pd.Timedelta(hours=1)).all()


def test_xarray_in_xarray_out():
    xr = pytest.importorskip("xarray")
    wide = frame(n=300).set_index("date")
    ds = xr.Dataset({c: ("time", wide[c].to_numpy()) for c in wide.columns}, coords={"time": wide.index.to_numpy()})
    out = Forecaster("itransformer", horizon=12, lookback=24, **TINY).fit(ds).predict()
    assert isinstance(out, xr.Dataset) and set(out.data_vars) == {"a", "b", "OT"} and out.sizes["time"] == 12


def test_csv_path_and_explicit_frequency(tmp_path):
    path = write_csv(tmp_path / "s.csv", n_rows=300, freq="15min")
    fc = Forecaster("itransformer", horizon=8, lookback=24, **TINY).fit(str(path))
    assert fc.freq == "15min" and (fc.predict().index.to_series().diff().dropna() == pd.Timedelta(minutes=15)).all()


def test_predict_data_with_other_columns(fitted):
    with pytest.raises(DataError, match=r"columns differ from training: missing \['OT'\], unexpected \['c'\]"):
        fitted.predict(frame(columns=("a", "b", "c")))


def test_history_shorter_than_lookback(fitted):
    with pytest.raises(DataError, match="the history has 10 rows, fewer than the lookback of 24"):
        fitted.predict(frame().iloc[:10])


def test_unsorted_and_duplicated_timestamps(fitted):
    df = frame()
    with pytest.raises(DataError, match="not sorted"):
        fitted.predict(df.iloc[::-1])
    dup = df.copy()
    dup.loc[390, "date"] = dup.loc[389, "date"]
    with pytest.raises(DataError, match="appears more than once"):
        fitted.predict(dup)


def test_frequency_that_cannot_be_inferred_asks_for_freq():
    df = frame(n=300)
    rng = np.random.default_rng(1)
    df["date"] = pd.Timestamp("2021-01-01") + pd.to_timedelta(np.cumsum(rng.integers(1, 90, len(df))), unit="min")
    with pytest.raises(DataError, match=r"cannot infer the sampling frequency of the training data; pass freq="):
        Forecaster("itransformer", horizon=12, lookback=24, **TINY).fit(df)


def test_gap_in_time_index_names_the_first_gap():
    df = frame(n=300).drop(index=[150, 151])
    with pytest.raises(DataError, match=r"gap in its time index: after 2021-03-07 05:00:00 comes 2021-03-07 08:00:00, expected 2021-03-07 06:00:00"):
        Forecaster("itransformer", horizon=12, lookback=24, **TINY).fit(df)


def test_unknown_argument_and_unfitted():
    with pytest.raises(ConfigError, match="unknown argument 'd_modle'"):
        Forecaster("itransformer", horizon=12, lookback=24, d_modle=3)
    with pytest.raises(DataError, match="not fitted yet"):
        Forecaster("itransformer", horizon=12, lookback=24).predict()


@pytest.mark.integration  # fit and predict in subprocesses
def test_cli_predict_from_a_run_directory(data_dir, tmp_path):
    run = tmp_path / "run"
    env_cmd = [sys.executable, "-m", "sciformer"]
    run_in = {"cwd": tmp_path, "env": {**os.environ, "PYTHONPATH": str(REPO)}}
    subprocess.run([*env_cmd, "fit", str(REPO / "recipes/smoke/itransformer.yaml"), "--out", str(run)], check=True, capture_output=True, **run_in)
    recent = pd.read_csv(data_dir / "ETT-small" / "ETTh1.csv").iloc[1000:1100]
    recent.to_csv(tmp_path / "recent.csv", index=False)
    predict = [*env_cmd, "predict", str(run), "--data", str(tmp_path / "recent.csv"), "--out", str(tmp_path / "f.csv"), "--level", "90"]
    proc = subprocess.run(predict, capture_output=True, text=True, **run_in)
    assert proc.returncode == 0, proc.stderr
    forecast = pd.read_csv(tmp_path / "f.csv", index_col=0, parse_dates=True)
    assert len(forecast) == 24 and forecast.index[0] == pd.Timestamp(recent["date"].iloc[-1]) + pd.Timedelta(hours=1)
    assert {"OT", "OT-lo-90", "OT-hi-90"} <= set(forecast.columns)
    # without --data: the future after the end of the training file
    proc = subprocess.run([*env_cmd, "predict", str(run)], capture_output=True, text=True, **run_in)
    assert proc.returncode == 0 and proc.stdout.splitlines()[1].startswith("2018-06-26 20:00:00")
