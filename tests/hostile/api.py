"""Hostile Python API calls (``API_CASES``): each maps to the one documented error it must raise."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from hostile.places import users_file, users_folder
from sciformer.errors import CheckpointError, ConfigError, DataError, SciformerError, StorageError


def _history(ws: Path, world: Path, edit: Callable[[pd.DataFrame], pd.DataFrame]) -> pd.DataFrame:
    return edit(pd.read_csv(world / "s.csv", parse_dates=["date"]))


def _forecaster(**kwargs):
    from sciformer import Forecaster

    return lambda ws, w, fc, sg, u: Forecaster(kwargs.pop("model", "itransformer"), **{"horizon": 8, "lookback": 16, **kwargs})


def _surrogate(model: str = "galerkin", **kwargs):
    from sciformer import Surrogate

    return lambda ws, w, fc, sg, u: Surrogate(model, **kwargs)


def _fit_frame(edit: Callable[[pd.DataFrame], pd.DataFrame], **kwargs):
    def call(ws, w, fc, sg, u):
        from sciformer import Forecaster

        return Forecaster("itransformer", horizon=8, lookback=16, d_model=8, d_ff=8, n_heads=2, e_layers=1, epochs=1).fit(_history(ws, w, edit), **kwargs)

    return call


def _set(column: str, row: int, value) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def edit(frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.copy()
        frame.loc[row, column] = value
        return frame

    return edit


same = lambda frame: frame
Call = Callable[[Path, Path, object, object, np.ndarray], object]
API_CASES: dict[str, tuple[type[SciformerError], Call]] = {
    # constructing
    "forecaster-unknown-model": (ConfigError, _forecaster(model="itransfomer")),
    "forecaster-operator-model": (ConfigError, _forecaster(model="fno")),
    "forecaster-horizon-zero": (ConfigError, _forecaster(horizon=0)),
    "forecaster-lookback-negative": (ConfigError, _forecaster(lookback=-1)),
    "forecaster-d-model-zero": (ConfigError, _forecaster(d_model=0)),
    "forecaster-unknown-argument": (ConfigError, _forecaster(horizn=8)),
    "forecaster-lr-nan": (ConfigError, _forecaster(lr=float("nan"))),
    "forecaster-epochs-a-string": (ConfigError, _forecaster(epochs="3")),
    "surrogate-series-model": (ConfigError, _surrogate("itransformer")),
    "surrogate-unknown-argument": (ConfigError, _surrogate(nope=1)),
    "surrogate-unknown-model": (ConfigError, _surrogate("galerkn")),
    # Forecaster.fit on frames
    "fit-frame-inf": (DataError, _fit_frame(_set("OT", 50, np.inf))),
    "fit-frame-minus-inf": (DataError, _fit_frame(_set("v0", 0, -np.inf))),
    "fit-frame-1e308": (DataError, _fit_frame(_set("OT", 50, 1e308))),
    "fit-frame-nan": (DataError, _fit_frame(_set("OT", 50, np.nan))),
    "fit-frame-empty": (DataError, _fit_frame(lambda f: f.iloc[:0])),
    "fit-frame-one-row": (DataError, _fit_frame(lambda f: f.iloc[:1])),
    "fit-frame-gap": (DataError, _fit_frame(lambda f: f.drop(index=[40]))),
    "fit-frame-target-unknown": (DataError, _fit_frame(same, target="nope")),
    "fit-frame-time-col-unknown": (DataError, _fit_frame(same, time_col="nope")),
    "fit-frame-freq-unknown": (ConfigError, _fit_frame(same, freq="fortnight")),
    "fit-frame-val-size-zero": (ConfigError, _fit_frame(same, val_size=0)),
    "fit-a-list": (DataError, lambda ws, w, fc, sg, u: _forecaster()(ws, w, fc, sg, u).fit([1, 2, 3])),
    "fit-none": (DataError, lambda ws, w, fc, sg, u: _forecaster()(ws, w, fc, sg, u).fit(None)),
    # predict
    "predict-level-zero": (ConfigError, lambda ws, w, fc, sg, u: fc.predict(level=0)),
    "predict-level-100": (ConfigError, lambda ws, w, fc, sg, u: fc.predict(level=100)),
    "predict-level-150": (ConfigError, lambda ws, w, fc, sg, u: fc.predict(level=150)),
    "predict-level-negative": (ConfigError, lambda ws, w, fc, sg, u: fc.predict(level=-10)),
    "predict-level-nan": (ConfigError, lambda ws, w, fc, sg, u: fc.predict(level=float("nan"))),
    "predict-level-a-string": (ConfigError, lambda ws, w, fc, sg, u: fc.predict(level="90")),
    "predict-level-true": (ConfigError, lambda ws, w, fc, sg, u: fc.predict(level=True)),
    "predict-levels-on-two-scales": (ConfigError, lambda ws, w, fc, sg, u: fc.predict(level=[0.9, 80])),
    "predict-history-with-a-gap": (DataError, lambda ws, w, fc, sg, u: fc.predict(_history(ws, w, lambda f: f.drop(index=[150])))),
    "predict-history-inf": (DataError, lambda ws, w, fc, sg, u: fc.predict(_history(ws, w, _set("OT", 155, np.inf)))),
    "predict-history-too-short": (DataError, lambda ws, w, fc, sg, u: fc.predict(_history(ws, w, lambda f: f.iloc[:5]))),
    "predict-history-other-columns": (DataError, lambda ws, w, fc, sg, u: fc.predict(_history(ws, w, lambda f: f.rename(columns={"OT": "ot"})))),
    "predict-dev-zero": (DataError, lambda ws, w, fc, sg, u: fc.predict("/dev/zero")),
    "predict-a-folder": (DataError, lambda ws, w, fc, sg, u: fc.predict(str(ws))),
    "predict-home-missing": (DataError, lambda ws, w, fc, sg, u: fc.predict("~/no-such-sciformer-file.csv")),
    "predict-unfitted": (DataError, lambda ws, w, fc, sg, u: _forecaster()(ws, w, fc, sg, u).predict()),
    # backtest, plot
    "backtest-batch-size-zero": (ConfigError, lambda ws, w, fc, sg, u: fc.backtest(str(w / "s.csv"), batch_size=0)),
    "backtest-windows-zero": (ConfigError, lambda ws, w, fc, sg, u: fc.backtest(str(w / "s.csv"), windows=0)),
    "backtest-stride-negative": (ConfigError, lambda ws, w, fc, sg, u: fc.backtest(str(w / "s.csv"), stride=-1)),
    "backtest-too-short": (DataError, lambda ws, w, fc, sg, u: fc.backtest(_history(ws, w, lambda f: f.iloc[:10]))),
    "plot-unknown-column": (ConfigError, lambda ws, w, fc, sg, u: fc.plot(columns=["nope"])),
    "plot-level-200": (ConfigError, lambda ws, w, fc, sg, u: fc.plot(level=200)),
    # save, load
    "save-the-working-folder": (StorageError, lambda ws, w, fc, sg, u: fc.save(".")),
    "save-dev-null": (StorageError, lambda ws, w, fc, sg, u: fc.save("/dev/null")),
    "save-proc": (StorageError, lambda ws, w, fc, sg, u: fc.save("/proc")),
    "save-under-proc": (StorageError, lambda ws, w, fc, sg, u: fc.save("/proc/forecaster")),
    "save-the-users-folder": (StorageError, lambda ws, w, fc, sg, u: fc.save(users_folder(ws))),
    "save-over-a-file": (StorageError, lambda ws, w, fc, sg, u: fc.save(users_file(ws))),
    "save-under-a-file": (StorageError, lambda ws, w, fc, sg, u: fc.save(users_file(ws) / "model")),
    "surrogate-save-the-working-folder": (StorageError, lambda ws, w, fc, sg, u: sg.save(".")),
    "surrogate-save-the-users-folder": (StorageError, lambda ws, w, fc, sg, u: sg.save(users_folder(ws))),
    "surrogate-save-dev-null": (StorageError, lambda ws, w, fc, sg, u: sg.save("/dev/null")),
    "load-missing": (CheckpointError, lambda ws, w, fc, sg, u: type(fc).load(ws / "nope")),
    "load-a-file": (CheckpointError, lambda ws, w, fc, sg, u: type(fc).load(users_file(ws))),
    "load-the-users-folder": (CheckpointError, lambda ws, w, fc, sg, u: type(fc).load(users_folder(ws))),
    "load-dev-null": (CheckpointError, lambda ws, w, fc, sg, u: type(fc).load("/dev/null")),
    "load-an-operator-run": (CheckpointError, lambda ws, w, fc, sg, u: type(fc).load(w / "pde")),
    "surrogate-load-a-forecasting-run": (CheckpointError, lambda ws, w, fc, sg, u: type(sg).load(w / "series")),
    "surrogate-load-missing": (CheckpointError, lambda ws, w, fc, sg, u: type(sg).load(ws / "nope")),
    # Surrogate inputs
    "surrogate-predict-wrong-rank": (DataError, lambda ws, w, fc, sg, u: sg.predict(np.zeros(3))),
    "surrogate-predict-nan": (DataError, lambda ws, w, fc, sg, u: sg.predict(np.full_like(u, np.nan))),
    "surrogate-predict-inf": (DataError, lambda ws, w, fc, sg, u: sg.predict(np.full_like(u, np.inf))),
    "surrogate-predict-overflows-float32": (DataError, lambda ws, w, fc, sg, u: sg.predict(u.astype(np.float64) * 1e300)),
    "surrogate-predict-complex": (DataError, lambda ws, w, fc, sg, u: sg.predict(u.astype(np.complex64))),
    "surrogate-predict-complex-tensor": (DataError, lambda ws, w, fc, sg, u: sg.predict(__import__("torch").from_numpy(u.astype(np.complex64)))),
    "surrogate-predict-empty-grid": (DataError, lambda ws, w, fc, sg, u: sg.predict(u[:, :, :0])),
    "surrogate-predict-two-channels": (DataError, lambda ws, w, fc, sg, u: sg.predict(np.concatenate([u, u], axis=1))),
    "surrogate-predict-a-string": (DataError, lambda ws, w, fc, sg, u: sg.predict("field.h5")),
    "surrogate-rollout-zero-steps": (ConfigError, lambda ws, w, fc, sg, u: sg.rollout(u, 0)),
    "surrogate-rollout-negative-steps": (ConfigError, lambda ws, w, fc, sg, u: sg.rollout(u, -1)),
    "surrogate-rollout-fractional-steps": (ConfigError, lambda ws, w, fc, sg, u: sg.rollout(u, 2.5)),
    "surrogate-rollout-true-steps": (ConfigError, lambda ws, w, fc, sg, u: sg.rollout(u, True)),
    "surrogate-rollout-beyond-memory": (DataError, lambda ws, w, fc, sg, u: sg.rollout(u, 10**15)),
    "surrogate-evaluate-nan-file": (DataError, lambda ws, w, fc, sg, u: sg.evaluate(str(ws / "d.h5"))),
    "surrogate-evaluate-a-csv": (DataError, lambda ws, w, fc, sg, u: sg.evaluate(str(w / "s.csv"))),
    "surrogate-predict-unfitted": (DataError, lambda ws, w, fc, sg, u: _surrogate()(ws, w, fc, sg, u).predict(u)),
}
