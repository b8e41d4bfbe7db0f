"""Hostile command lines: overrides (``OVERRIDES``), recipes that reach the data and model checks (``RECIPES``) and arguments of every verb (``CLI_CASES``)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from conftest import write_csv

from hostile.files import H5_CASES, csv_cell, raw_file, truncated_h5
from hostile.places import BIG, TINY_OPERATOR, TINY_SERIES, copy_run, gappy_csv, operator_recipe, series_recipe, users_file, users_folder


def without(run: Path, name: str) -> Path:
    (run / name).unlink()
    return run


OVERRIDES = {
    "no-equals": "train.epochs",
    "no-key": "=3",
    "empty-value": "train.epochs=",
    "epochs-1e999": "train.epochs=1e999",
    "epochs-negative": "train.epochs=-1",
    "epochs-true": "train.epochs=true",
    "epochs-a-list": "train.epochs=[1,2]",
    "epochs-a-mapping": "train.epochs={a: 1}",
    "epochs-recursive-alias": "train.epochs=&a [*a]",
    "epochs-5000-digits": f"train.epochs={BIG}",
    "seed-5000-digits": f"seed={BIG}",
    "lr-nan": "train.lr=nan",
    "lr-dot-nan": "train.lr=.nan",
    "lr-inf": "train.lr=.inf",
    "unknown-section": "trian.epochs=1",
    "unknown-train-key": "train.epoch=1",
    "below-a-value": "train.epochs.x=1",
    "section-a-number": "train=3",
    "d-model-zero": "model.d_model=0",
    "heads-not-dividing": "model.n_heads=3",
    "model-unknown": "model.name=nope",
    "model-operator-on-series": "model.name=fno",
    "lookback-zero": "data.lookback=0",
    "lookback-1e9-string": "data.lookback=1e9",
    "horizon-negative": "data.horizon=-1",
    "split-nan": "data.split=[.nan,0.5,0.5]",
    "split-four": "data.split=[0.5,0.2,0.2,0.1]",
    "data-dev-zero": "data.name=/dev/zero",
    "data-dev-null": "data.name=/dev/null",
    "data-home-missing": "data.name=~/no-such-file.csv",
    "data-a-directory": "data.name=/tmp",
    "data-empty": "data.name=",
    "batch-zero": "train.batch_size=0",
    "name-a-path": "name=../x",
    "name-5000-chars": "name=" + "n" * 5000,
    "override-python-tag": "data.name=!!python/name:os.system",
    "override-deep-nesting": "train.epochs=" + "[" * 3000 + "]" * 3000,
    "override-billion-laughs": "train.epochs=[" + ",".join(["x"] * 10) + "]",
}


RECIPES = {  # beyond tests/test_recipe_yaml.py: recipes that reach the data and model checks
    "data-etc-shadow": series_recipe("/etc/shadow"),
    "data-proc-file": series_recipe("/proc/self/status"),
    "data-target-unknown": series_recipe("{csv}", target="nope"),
    "data-columns-unknown": series_recipe("{csv}", columns=["nope"]),
    "data-time-col-unknown": series_recipe("{csv}", time_col="nope"),
    "data-lookback-longer-than-the-data": series_recipe("{csv}", lookback=5000),
    "operator-model-on-a-csv": {**series_recipe("{csv}"), "model": TINY_OPERATOR},
    "series-model-on-an-h5": {**operator_recipe("{h5}"), "model": TINY_SERIES},
    "generate-nu-negative": {
        **operator_recipe("{ws}/g.h5"),
        "data": {"name": "{ws}/g.h5", "generate": {"generator": "burgers1d", "n": 2, "res": 16, "nu": -1}},
    },
    "generate-n-zero": {**operator_recipe("{ws}/g.h5"), "data": {"name": "{ws}/g.h5", "generate": {"generator": "burgers1d", "n": 0, "res": 16}}},
    "generate-unknown": {**operator_recipe("{ws}/g.h5"), "data": {"name": "{ws}/g.h5", "generate": {"generator": "kdv", "n": 2, "res": 16}}},
}


def filled(raw, **paths):
    text = json.dumps(raw)
    for key, value in paths.items():
        text = text.replace("{" + key + "}", str(value))
    return json.loads(text)


Argv = Callable[[Path, Path], list]
CLI_CASES: dict[str, Argv] = {
    # fit: where the run goes, how it runs
    "fit-out-a-file": lambda ws, w: ["fit", w / "r.yaml", "--out", users_file(ws)],
    "fit-out-under-a-file": lambda ws, w: ["fit", w / "r.yaml", "--out", users_file(ws) / "run"],
    "fit-out-dev-null": lambda ws, w: ["fit", w / "r.yaml", "--out", "/dev/null"],
    "fit-out-under-dev-null": lambda ws, w: ["fit", w / "r.yaml", "--out", "/dev/null/run"],
    "fit-out-under-proc": lambda ws, w: ["fit", w / "r.yaml", "--out", "/proc/sciformer-run"],
    "fit-out-the-users-folder": lambda ws, w: ["fit", w / "r.yaml", "--out", users_folder(ws)],
    "fit-out-a-link-to-the-users-folder": lambda ws, w: ["fit", w / "r.yaml", "--out", os.symlink(users_folder(ws), ws / "l") or ws / "l"],
    "fit-out-the-working-folder": lambda ws, w: ["fit", w / "r.yaml", "--out", ".", users_file(ws) and "train.epochs=1"],
    "fit-nproc-zero": lambda ws, w: ["fit", w / "r.yaml", "--nproc", "0", "--out", ws / "run"],
    "fit-nproc-negative": lambda ws, w: ["fit", w / "r.yaml", "--nproc", "-4", "--out", ws / "run"],
    "fit-resume-and-another-out": lambda ws, w: ["fit", "--resume", ws / "a", "--out", ws / "b"],
    "fit-resume-a-file": lambda ws, w: ["fit", "--resume", users_file(ws)],
    "fit-resume-dev-null": lambda ws, w: ["fit", "--resume", "/dev/null"],
    "fit-resume-missing": lambda ws, w: ["fit", "--resume", ws / "gone"],
    "fit-resume-the-users-folder": lambda ws, w: ["fit", "--resume", users_folder(ws)],
    "fit-resume-a-finished-run": lambda ws, w: ["fit", "--resume", copy_run(w, ws, "series")],
    "fit-resume-with-its-recipe-record-removed": lambda ws, w: ["fit", w / "r.yaml", "--resume", without(copy_run(w, ws, "crashed"), "recipe.json")],
    "fit-resume-with-its-data-record-removed": lambda ws, w: ["fit", w / "r2.yaml", "--resume", without(copy_run(w, ws, "crashed"), "data.json")],
    "fit-resume-another-lr": lambda ws, w: ["fit", "--resume", copy_run(w, ws, "crashed"), "train.lr=0.5"],
    "fit-recipe-missing": lambda ws, w: ["fit", ws / "missing.yaml", "--out", ws / "run"],
    "fit-recipe-a-folder": lambda ws, w: ["fit", ws, "--out", ws / "run"],
    "fit-recipe-dev-zero": lambda ws, w: ["fit", "/dev/zero", "--out", ws / "run"],
    "fit-recipe-a-fifo": lambda ws, w: ["fit", os.mkfifo(ws / "r.yaml") or ws / "r.yaml", "--out", ws / "run"],
    "fit-recipe-home-missing": lambda ws, w: ["fit", "~/no-such-sciformer-recipe.yaml", "--out", ws / "run"],
    "fit-recipe-latin1": lambda ws, w: ["fit", raw_file(b"data: {name: caf\xe9.csv}\n", "r.yaml")(ws), "--out", ws / "run"],
    "fit-override-5000-digits": lambda ws, w: ["fit", w / "r.yaml", f"train.epochs={BIG}", "--out", ws / "run"],
    # evaluate
    "evaluate-missing": lambda ws, w: ["evaluate", ws / "nope"],
    "evaluate-a-file": lambda ws, w: ["evaluate", users_file(ws)],
    "evaluate-an-empty-folder": lambda ws, w: ["evaluate", (ws / "empty").mkdir() or ws / "empty"],
    "evaluate-dev-null": lambda ws, w: ["evaluate", "/dev/null"],
    "evaluate-the-users-folder": lambda ws, w: ["evaluate", users_folder(ws)],
    "evaluate-override-unknown": lambda ws, w: ["evaluate", w / "series", "data.lookbak=3"],
    "evaluate-override-model": lambda ws, w: ["evaluate", w / "series", "model.d_model=4"],
    "evaluate-override-data-dev-zero": lambda ws, w: ["evaluate", w / "series", "data.name=/dev/zero"],
    "evaluate-override-5000-digits": lambda ws, w: ["evaluate", w / "pde", f"data.test_resolution={BIG}"],
    # predict
    "predict-level-zero": lambda ws, w: ["predict", w / "series", "--level", "0"],
    "predict-level-100": lambda ws, w: ["predict", w / "series", "--level", "100"],
    "predict-level-150": lambda ws, w: ["predict", w / "series", "--level", "150"],
    "predict-level-negative": lambda ws, w: ["predict", w / "series", "--level", "-5"],
    "predict-level-nan": lambda ws, w: ["predict", w / "series", "--level", "nan"],
    "predict-level-inf": lambda ws, w: ["predict", w / "series", "--level", "inf"],
    "predict-levels-on-two-scales": lambda ws, w: ["predict", w / "series", "--level", "0.9", "80"],
    "predict-out-an-existing-file": lambda ws, w: ["predict", w / "series", "--out", users_file(ws, "f.csv")],
    "predict-out-in-a-missing-folder": lambda ws, w: ["predict", w / "series", "--out", ws / "no" / "f.csv"],
    "predict-out-dev-null": lambda ws, w: ["predict", w / "series", "--out", "/dev/null"],
    "predict-out-under-proc": lambda ws, w: ["predict", w / "series", "--out", "/proc/f.csv"],
    "predict-data-missing": lambda ws, w: ["predict", w / "series", "--data", ws / "none.csv"],
    "predict-data-a-folder": lambda ws, w: ["predict", w / "series", "--data", ws],
    "predict-data-dev-zero": lambda ws, w: ["predict", w / "series", "--data", "/dev/zero"],
    "predict-data-with-a-gap": lambda ws, w: ["predict", w / "series", "--data", gappy_csv(ws)],
    "predict-data-too-short": lambda ws, w: ["predict", w / "series", "--data", write_csv(ws / "h.csv", n_rows=5)],
    "predict-data-other-columns": lambda ws, w: ["predict", w / "series", "--data", write_csv(ws / "h.csv", n_rows=80, columns=["x", "y"])],
    "predict-data-inf": lambda ws, w: ["predict", w / "series", "--data", csv_cell("inf", row=150)(ws)],
    "predict-an-operator-run": lambda ws, w: ["predict", w / "pde"],
    # rollout
    "rollout-steps-zero": lambda ws, w: ["rollout", w / "pde", "--steps", "0", "--no-tracking", "--out", ws / "ro"],
    "rollout-steps-negative": lambda ws, w: ["rollout", w / "pde", "--steps", "-3", "--no-tracking", "--out", ws / "ro"],
    "rollout-split-unknown": lambda ws, w: ["rollout", w / "pde", "--split", "tset", "--no-tracking", "--out", ws / "ro"],
    "rollout-frames-beyond": lambda ws, w: ["rollout", w / "pde", "--steps", "2", "--frames", "99", "--no-tracking", "--out", ws / "ro"],
    "rollout-frames-zero": lambda ws, w: ["rollout", w / "pde", "--steps", "2", "--frames", "0", "--no-tracking", "--out", ws / "ro"],
    "rollout-data-missing": lambda ws, w: ["rollout", w / "pde", "--data", ws / "none.h5", "--no-tracking", "--out", ws / "ro"],
    "rollout-data-a-csv": lambda ws, w: ["rollout", w / "pde", "--data", w / "s.csv", "--no-tracking", "--out", ws / "ro"],
    "rollout-data-nan": lambda ws, w: ["rollout", w / "pde", "--data", H5_CASES["nan"](ws), "--no-tracking", "--out", ws / "ro"],
    "rollout-out-a-file": lambda ws, w: ["rollout", w / "pde", "--steps", "1", "--no-tracking", "--out", users_file(ws)],
    "rollout-out-the-users-folder": lambda ws, w: ["rollout", w / "pde", "--steps", "1", "--no-tracking", "--out", users_folder(ws)],
    "rollout-out-under-dev-null": lambda ws, w: ["rollout", w / "pde", "--steps", "1", "--no-tracking", "--out", "/dev/null/ro"],
    "rollout-a-forecasting-run": lambda ws, w: ["rollout", w / "series", "--no-tracking", "--out", ws / "ro"],
    # datasets
    "generate-nu-negative": lambda ws, w: ["datasets", "generate", "burgers1d", "--n", "2", "--res", "16", "--nu", "-1", "--out", ws / "g.h5"],
    "generate-nu-nan": lambda ws, w: ["datasets", "generate", "burgers1d", "--n", "2", "--res", "16", "--nu", "nan", "--out", ws / "g.h5"],
    "generate-nu-inf": lambda ws, w: ["datasets", "generate", "burgers1d", "--n", "2", "--res", "16", "--nu", "inf", "--out", ws / "g.h5"],
    "generate-ns-nu-negative": lambda ws, w: ["datasets", "generate", "ns2d", "--n", "2", "--res", "16", "--nu=-1e-3", "--out", ws / "g.h5"],
    "generate-advection-beta-nan": lambda ws, w: ["datasets", "generate", "advection1d", "--n", "2", "--res", "16", "--beta", "nan", "--out", ws / "g.h5"],
    "generate-darcy-beta-inf": lambda ws, w: ["datasets", "generate", "darcy2d", "--n", "2", "--res", "16", "--beta", "inf", "--out", ws / "g.h5"],
    "generate-n-zero": lambda ws, w: ["datasets", "generate", "burgers1d", "--n", "0", "--res", "16", "--out", ws / "g.h5"],
    "generate-n-negative": lambda ws, w: ["datasets", "generate", "burgers1d", "--n", "-2", "--res", "16", "--out", ws / "g.h5"],
    "generate-res-zero": lambda ws, w: ["datasets", "generate", "burgers1d", "--n", "2", "--res", "0", "--out", ws / "g.h5"],
    "generate-res-huge": lambda ws, w: ["datasets", "generate", "darcy2d", "--n", "2", "--res", "10000000", "--out", ws / "g.h5"],
    "generate-batch-size-zero": lambda ws, w: ["datasets", "generate", "burgers1d", "--n", "2", "--res", "16", "--batch-size", "0", "--out", ws / "g.h5"],
    "generate-unknown": lambda ws, w: ["datasets", "generate", "burgerz1d", "--n", "2", "--res", "16", "--out", ws / "g.h5"],
    "generate-over-a-file": lambda ws, w: ["datasets", "generate", "burgers1d", "--n", "2", "--res", "16", "--out", users_file(ws, "g.h5")],
    "generate-into-a-folder": lambda ws, w: ["datasets", "generate", "burgers1d", "--n", "2", "--res", "16", "--out", users_folder(ws)],
    "generate-under-dev-null": lambda ws, w: ["datasets", "generate", "burgers1d", "--n", "2", "--res", "16", "--out", "/dev/null/g.h5"],
    "download-unknown": lambda ws, w: ["datasets", "download", "ett_h3"],
    "inspect-missing": lambda ws, w: ["datasets", "inspect", ws / "none.h5"],
    "inspect-truncated": lambda ws, w: ["datasets", "inspect", truncated_h5(ws)],
}
OWN = {"fit": "run", "rollout": "ro"}  # the folder a refused command may have begun; every other path stays as it was
