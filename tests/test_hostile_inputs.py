"""The hostile-input campaign of issue #24, kept as one module: recipes and overrides, CSV and PDE data files,
checkpoints and resume states, CLI arguments and the Python API.

Every CLI case runs ``sciformer.cli.main`` in process and asserts exit code 2, exactly one stderr line starting
``sciformer: error:``, no traceback, and that no file outside the case's own run folder was created, changed or
removed (the whole test folder and the shared runs are hashed before and after). Every API case asserts one
documented :class:`~sciformer.errors.SciformerError` subclass with a one-line message and the same untouched tree.
Two tiny runs (a forecaster and a Burgers operator, one epoch each) are trained once for the whole module.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from conftest import FIXTURES, write_csv

from sciformer.cli import main
from sciformer.engine import trainer as trainer_module
from sciformer.engine.checkpoint import LATEST, STATE_JSON
from sciformer.errors import CheckpointError, ConfigError, DataError, SciformerError, StorageError

TINY_SERIES = {"name": "itransformer", "d_model": 8, "d_ff": 8, "n_heads": 2, "e_layers": 1}
TINY_OPERATOR = {"name": "galerkin", "d_model": 8, "n_heads": 2, "n_layers": 1, "d_ff": 8, "modes": 2, "freq_dim": 4, "n_regressor_layers": 1}


class Crash(BaseException):
    """Stands in for the process dying (not an Exception: nothing on the way catches it)."""


TRAIN = {"epochs": 1, "batch_size": 32, "patience": 0, "progress": False}


def series_recipe(data: str, **data_keys) -> dict:
    return {"data": {"name": data, "lookback": 16, "horizon": 8, **data_keys}, "model": TINY_SERIES, "train": TRAIN, "tracking": {"enabled": False}, "seed": 0}


def operator_recipe(data: str) -> dict:
    return {"data": {"name": data}, "model": TINY_OPERATOR, "train": {**TRAIN, "batch_size": 8}, "tracking": {"enabled": False}, "seed": 0}


def write_recipe(path: Path, raw: dict) -> Path:
    path.write_text(json.dumps(raw))  # JSON is YAML
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """``s.csv`` and its recipe ``r.yaml``, a finished forecasting run ``series`` and a run ``crashed`` after
    epoch 1 of 2 (a resumable state); ``b.h5`` (10 Burgers trajectories), its recipe ``p.yaml`` and a finished
    operator run ``pde``. Cases only read these, or copies of them."""
    root = tmp_path_factory.mktemp("world")
    write_csv(root / "s.csv", n_rows=160)
    write_recipe(root / "r.yaml", series_recipe(str(root / "s.csv")))
    shutil.copyfile(FIXTURES / "burgers1d_tiny.h5", root / "b.h5")
    write_recipe(root / "p.yaml", operator_recipe(str(root / "b.h5")))
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        assert main(["fit", "r.yaml", "--out", "series"]) == 0
        assert main(["fit", "p.yaml", "--out", "pde"]) == 0
        write_recipe(root / "r2.yaml", {**series_recipe(str(root / "s.csv")), "train": {**TRAIN, "epochs": 2}})
        save = trainer_module.Trainer._save

        def crash_after_epoch_1(self, progress, *args):
            save(self, progress, *args)
            if progress.epoch == 1:
                raise Crash

        patch.setattr(trainer_module.Trainer, "_save", crash_after_epoch_1)
        with pytest.raises(Crash):
            main(["fit", "r2.yaml", "--out", "crashed"])
    return root


# ------------------------------------------------------------------------------------------------ helpers
def tree(root: Path, skip: Path | None = None) -> dict[str, str]:
    """Every entry under ``root`` (links not followed) → a digest of a file's bytes, a link's target, or its kind."""
    entries = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            if skip is not None and (path == skip or skip in path.parents):
                continue
            mode = path.lstat().st_mode
            if stat.S_ISREG(mode):
                entries[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
            elif stat.S_ISLNK(mode):
                entries[str(path)] = "link -> " + os.readlink(path)
            else:
                entries[str(path)] = "dir" if stat.S_ISDIR(mode) else f"mode {stat.S_IFMT(mode):o}"
    return entries


def watched(world: Path, ws: Path, own: Path | None) -> dict[str, str]:
    return {**tree(world), **tree(ws, own)}


def refused_by_cli(argv: list[str], capsys, world: Path, ws: Path, own: Path | None = None) -> str:
    """Run the CLI: exit 2, one line ``sciformer: error: ...``, no traceback, nothing changed outside ``own``."""
    before = watched(world, ws, own)
    capsys.readouterr()
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert code == 2, f"exit {code}; stdout {out[-500:]!r}; stderr {err[-2000:]!r}"
    assert len(lines) == 1 and lines[0].startswith("sciformer: error: ") and "Traceback" not in err, err[-3000:]
    assert watched(world, ws, own) == before
    return lines[0]


def refused_by_api(call: Callable[[], object], expected: type[SciformerError], world: Path, ws: Path) -> str:
    """Call the API: one ``expected`` error with a one-line message, nothing changed."""
    before = watched(world, ws, None)
    with pytest.raises(expected) as info:
        call()
    message = str(info.value)
    assert message and "\n" not in message, repr(message)
    assert watched(world, ws, None) == before
    return message


def copy_run(world: Path, ws: Path, name: str) -> Path:
    return Path(shutil.copytree(world / name, ws / name, symlinks=True))


# --------------------------------------------------------------------------- recipes: overrides and values
BIG = "9" * 5000
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


@pytest.mark.parametrize("case", sorted(OVERRIDES))
def test_a_hostile_override_is_refused_by_validate(world, tmp_path, capsys, case):
    refused_by_cli(["validate", world / "r.yaml", OVERRIDES[case]], capsys, world, tmp_path)


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


def _filled(raw, **paths):
    text = json.dumps(raw)
    for key, value in paths.items():
        text = text.replace("{" + key + "}", str(value))
    return json.loads(text)


@pytest.mark.parametrize("case", sorted(RECIPES))
def test_a_recipe_that_cannot_run_is_refused_before_any_work(world, tmp_path, capsys, case):
    h5 = shutil.copyfile(world / "b.h5", tmp_path / "b.h5")
    recipe = write_recipe(tmp_path / "hostile.yaml", _filled(RECIPES[case], csv=world / "s.csv", h5=h5, ws=tmp_path))
    refused_by_cli(["fit", recipe, "--out", tmp_path / "run"], capsys, world, tmp_path, own=tmp_path / "run")


# ----------------------------------------------------------------------------------------- CSV data files
def _series_text(rows: int = 160, edit: Callable[[pd.DataFrame], pd.DataFrame] | None = None) -> Callable[[Path], Path]:
    def make(ws: Path) -> Path:
        path = write_csv(ws / "d.csv", n_rows=rows)
        if edit is not None:
            edit(pd.read_csv(path)).to_csv(path, index=False)
        return path

    return make


def _cell(value: str, row: int = 100, column: str = "OT") -> Callable[[Path], Path]:
    def make(ws: Path) -> Path:
        path = write_csv(ws / "d.csv", n_rows=160)
        lines = path.read_text().splitlines()
        header = lines[0].split(",")
        cells = lines[row + 1].split(",")
        cells[header.index(column)] = value
        lines[row + 1] = ",".join(cells)
        path.write_text("\n".join(lines) + "\n")
        return path

    return make


def _bytes(content: bytes, name: str = "d.csv") -> Callable[[Path], Path]:
    def make(ws: Path) -> Path:
        (ws / name).write_bytes(content)
        return ws / name

    return make


def _fifo(ws: Path) -> Path:
    os.mkfifo(ws / "pipe.csv")
    return ws / "pipe.csv"


def _directory(ws: Path) -> Path:
    (ws / "folder.csv").mkdir()
    return ws / "folder.csv"


def _link_loop(ws: Path) -> Path:
    os.symlink("loop-b.csv", ws / "loop-a.csv")
    os.symlink("loop-a.csv", ws / "loop-b.csv")
    return ws / "loop-a.csv"


HEADER = b"date,v0,v1,OT\n"
CSV_CASES: dict[str, Callable[[Path], Path]] = {
    "inf": _cell("inf"),
    "minus-inf": _cell("-inf"),
    "1e999": _cell("1e999"),
    "1e308": _cell("1e308"),
    "minus-1e308": _cell("-1e308", column="v0"),
    "Infinity": _cell("Infinity"),
    "nan-word": _cell("nan"),
    "text-in-a-number-column": _cell("abc"),
    "inf-in-the-first-row": _cell("inf", row=0, column="v1"),
    "inf-in-the-last-row": _cell("inf", row=159),
    "bad-timestamp": _cell("2020-13-45 99:00:00", column="date"),
    "duplicate-timestamps": _series_text(edit=lambda f: f.assign(date=f["date"].where(f.index != 50, f["date"].iloc[49]))),
    "gap-in-time": _series_text(edit=lambda f: f.drop(index=range(60, 64))),
    "unsorted-time": _series_text(edit=lambda f: f.iloc[::-1]),
    "irregular-time": _series_text(
        edit=lambda f: f.assign(date=pd.date_range("2020", periods=len(f), freq="h") + pd.to_timedelta(np.arange(len(f)) ** 2, "s"))
    ),
    "too-few-rows-for-the-windows": _series_text(rows=30),
    "no-numeric-columns": _series_text(edit=lambda f: f[["date"]]),
    "zero-rows": _bytes(HEADER),
    "one-row": _bytes(HEADER + b"2020-01-01 00:00:00,1,2,3\n"),
    "two-rows": _bytes(HEADER + b"2020-01-01 00:00:00,1,2,3\n2020-01-01 01:00:00,1,2,3\n"),
    "empty-file": _bytes(b""),
    "only-newlines": _bytes(b"\n" * 1000),
    "nul-bytes": _bytes(b"\x00" * 100_000),
    "nul-inside-the-text": _bytes(HEADER + b"2020-01-01 00:00:00,1,\x002,3\n" * 50),
    "one-huge-line": _bytes(b"1," * 2_000_000),
    "a-5000-digit-number": _cell("1" * 5000),
    "utf16": _bytes((HEADER + b"2020-01-01 00:00:00,1,2,3\n" * 50).decode().encode("utf-16")),
    "binary-garbage": _bytes(bytes(range(256)) * 200),
    "gzip-bytes": _bytes(b"\x1f\x8b\x08\x00" + bytes(500)),
    "hdf5-named-csv": lambda ws: Path(shutil.copyfile(FIXTURES / "burgers1d_tiny.h5", ws / "d.csv")),
    "a-directory": _directory,
    "a-fifo": _fifo,
    "dev-null": lambda ws: Path("/dev/null"),
    "dev-zero": lambda ws: Path("/dev/zero"),
    "home-missing": lambda ws: Path("~/no-such-sciformer-file.csv"),
    "missing": lambda ws: ws / "missing.csv",
    "link-loop": _link_loop,
    "etc-shadow-like": _bytes(b"root:$6$secret$hash:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\n"),
}


@pytest.mark.parametrize("case", sorted(CSV_CASES))
def test_a_hostile_csv_is_refused_by_fit(world, tmp_path, capsys, case):
    data = CSV_CASES[case](tmp_path)
    recipe = write_recipe(tmp_path / "r.yaml", series_recipe(str(data)))
    line = refused_by_cli(["fit", recipe, "--out", tmp_path / "run"], capsys, world, tmp_path, own=tmp_path / "run")
    assert "secret" not in line  # the first line of a file that is not CSV is never echoed


@pytest.mark.parametrize("case", sorted(CSV_CASES))
def test_a_hostile_csv_is_refused_by_forecaster_fit(world, tmp_path, case):
    from sciformer import Forecaster

    data = CSV_CASES[case](tmp_path)
    forecaster = Forecaster("itransformer", horizon=8, lookback=16, d_model=8, d_ff=8, n_heads=2, e_layers=1, epochs=1, progress=False)
    message = refused_by_api(lambda: forecaster.fit(str(data)), DataError, world, tmp_path)
    assert "secret" not in message


# ------------------------------------------------------------------------------------------ PDE HDF5 files
def _h5(fill: Callable[[h5py.File], None], coordinates: bool = True) -> Callable[[Path], Path]:
    """A PDEBench single-file layout (``tensor [4, 6, 16]`` + coordinates) whose tensor ``fill`` writes."""

    def make(ws: Path) -> Path:
        with h5py.File(ws / "d.h5", "w") as f:
            fill(f)
            if coordinates:
                f["x-coordinate"] = np.linspace(0, 1, 16, dtype=np.float32)
                f["t-coordinate"] = np.arange(7, dtype=np.float32)
        return ws / "d.h5"

    return make


def _tensor(poison: float | None = None, at: tuple = (2, 3, 5), dtype="f4") -> Callable[[h5py.File], None]:
    def fill(f: h5py.File) -> None:
        data = np.random.default_rng(0).standard_normal((4, 6, 16)).astype(dtype)
        if poison is not None:
            data[at] = poison
        f.create_dataset("tensor", data=data)

    return fill


def _holes(f: h5py.File) -> None:
    ds = f.create_dataset("tensor", shape=(4, 6, 16), dtype="f4", chunks=(1, 6, 16))
    for i in (0, 1, 3):  # sample 2 is never written: it would read back as the fill value
        ds[i] = np.ones((6, 16), np.float32)


def _link_cycle(f: h5py.File) -> None:
    f["tensor"] = h5py.SoftLink("/loop")
    f["loop"] = h5py.SoftLink("/tensor")


def _truncated(ws: Path) -> Path:
    data = (FIXTURES / "burgers1d_tiny.h5").read_bytes()
    (ws / "d.h5").write_bytes(data[: len(data) // 2])
    return ws / "d.h5"


def _external_link(ws: Path) -> Path:
    with h5py.File(ws / "d.h5", "w") as f:
        f["tensor"] = h5py.ExternalLink(str(FIXTURES / "burgers1d_tiny.h5"), "/tensor")
    return ws / "d.h5"


class Payload:
    """Runs a command when unpickled: a loader that unpickles would execute it."""

    def __reduce__(self):
        return (os.system, ("touch pwned",))


def _pickled_pt(ws: Path) -> Path:
    import torch

    torch.save({"x": Payload(), "tensor": torch.zeros(2, 3, 8)}, ws / "d.pt")
    return ws / "d.pt"


def _pickled_npz(ws: Path) -> Path:
    np.savez(ws / "d.npz", x=np.array([{"a": 1}, None], dtype=object), y=np.zeros((2, 4, 4)))
    return ws / "d.npz"


H5_CASES: dict[str, Callable[[Path], Path]] = {
    "nan": _h5(_tensor(np.nan)),
    "inf": _h5(_tensor(np.inf)),
    "minus-inf": _h5(_tensor(-np.inf, at=(0, 0, 0))),
    "nan-in-the-last-sample": _h5(_tensor(np.nan, at=(3, 5, 15))),
    "float64-overflow": _h5(_tensor(1e300, dtype="f8")),
    "never-written-chunks": _h5(_holes),
    "never-written-at-all": _h5(lambda f: f.create_dataset("tensor", shape=(4, 6, 16), dtype="f4")),
    "string-dtype": _h5(lambda f: f.create_dataset("tensor", data=np.full((4, 6, 16), b"a", dtype="S1"))),
    "complex-field": _h5(lambda f: f.create_dataset("tensor", data=np.ones((4, 6, 16), np.complex64))),
    "bool-field": _h5(lambda f: f.create_dataset("tensor", data=np.ones((4, 6, 16), bool))),
    "empty-sample-axis": _h5(lambda f: f.create_dataset("tensor", shape=(0, 6, 16), dtype="f4")),
    "empty-space-axis": _h5(lambda f: f.create_dataset("tensor", shape=(4, 6, 0), dtype="f4")),
    "one-dimensional-tensor": _h5(lambda f: f.create_dataset("tensor", data=np.ones(16, np.float32))),
    "scalar-tensor": _h5(lambda f: f.create_dataset("tensor", data=np.float32(1))),
    "tensor-a-group": _h5(lambda f: f.create_group("tensor")),
    "link-cycle": _h5(_link_cycle),
    "dangling-link": _h5(lambda f: f.__setitem__("tensor", h5py.SoftLink("/nowhere"))),
    "external-link": _external_link,
    "no-known-keys": _h5(lambda f: f.create_dataset("velocity", data=np.ones((4, 6, 16), np.float32))),
    "empty-file": _h5(lambda f: None, coordinates=False),
    "truncated": _truncated,
    "zero-bytes": _bytes(b"", "d.h5"),
    "text-named-h5": _bytes(b"date,OT\n2020-01-01,1\n", "d.h5"),
    "hdf5-signature-then-garbage": _bytes(b"\x89HDF\r\n\x1a\n" + bytes(range(256)) * 8, "d.h5"),
    "pickled-object-npz": _pickled_npz,
    "a-directory": lambda ws: (ws / "folder.h5").mkdir() or ws / "folder.h5",
    "huge-shape-one-sample-written": _h5(lambda f: f.create_dataset("tensor", shape=(10**8, 6, 16), dtype="f4", chunks=(1, 6, 16)).__setitem__(0, 1.0)),
    "pickle-in-a-pt": _pickled_pt,
    "text-named-nc": _bytes(b"netcdf nothing {}\n", "d.nc"),
    "text-named-npz": _bytes(b"PK\x03\x04 not really a zip", "d.npz"),
    "a-fifo": lambda ws: os.mkfifo(ws / "pipe.h5") or ws / "pipe.h5",
}


@pytest.mark.parametrize("case", sorted(H5_CASES))
def test_a_hostile_pde_file_is_refused_by_fit(world, tmp_path, capsys, case):
    data = H5_CASES[case](tmp_path)
    recipe = write_recipe(tmp_path / "p.yaml", operator_recipe(str(data)))
    refused_by_cli(["fit", recipe, "--out", tmp_path / "run"], capsys, world, tmp_path, own=tmp_path / "run")


@pytest.mark.parametrize("case", sorted(H5_CASES))
def test_a_hostile_pde_file_is_refused_by_surrogate_fit(world, tmp_path, case):
    from sciformer import Surrogate

    data = H5_CASES[case](tmp_path)
    surrogate = Surrogate("galerkin", **{k: v for k, v in TINY_OPERATOR.items() if k != "name"}, epochs=1, batch_size=8, progress=False)
    refused_by_api(lambda: surrogate.fit(str(data)), DataError, world, tmp_path)


# ---------------------------------------------------------------------------- checkpoints and resume states
DEEP_JSON = "[" * 200_000 + "]" * 200_000  # deeper than Python's JSON parser recurses
HUGE_INT_JSON = '{"format": ' + "1" * 5000 + "}"  # beyond Python's 4300-digit limit of int()


def _write(relative: str, content: str | bytes) -> Callable[[Path], None]:
    def edit(run: Path) -> None:
        path = run / relative
        if path.is_symlink() or path.is_file():
            path.unlink()
        path.write_bytes(content.encode() if isinstance(content, str) else content)

    return edit


def _state(content: str) -> Callable[[Path], None]:
    return lambda run: (run / "resume" / (run / "resume" / LATEST).read_text().strip() / STATE_JSON).write_text(content)


def _replace(relative: str, make: Callable[[Path], None]) -> Callable[[Path], None]:
    def edit(run: Path) -> None:
        path = run / relative
        shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
        make(path)

    return edit


def _link_to(target: str) -> Callable[[Path], None]:
    return lambda path: os.symlink(target, path)


CHECKPOINT_EDITS: dict[str, Callable[[Path], None]] = {
    "config-nested-too-deep": _write("checkpoint/config.json", DEEP_JSON),
    "config-5000-digit-int": _write("checkpoint/config.json", HUGE_INT_JSON),
    "config-nan-format": _write("checkpoint/config.json", '{"format": NaN, "model": {}}'),
    "config-truncated": lambda run: _write("checkpoint/config.json", (run / "checkpoint" / "config.json").read_bytes()[:100])(run),
    "config-link-to-dev-zero": _replace("checkpoint/config.json", _link_to("/dev/zero")),
    "config-a-fifo": _replace("checkpoint/config.json", os.mkfifo),
    "weights-a-pickle": _write("checkpoint/weights.safetensors", b"\x80\x04\x95" + b"cos\nsystem\n" + bytes(64)),
    "weights-link-to-dev-zero": _replace("checkpoint/weights.safetensors", _link_to("/dev/zero")),
    "weights-header-claims-petabytes": _write("checkpoint/weights.safetensors", (2**50).to_bytes(8, "little") + b"{}"),
    "weights-header-nested-json": _write("checkpoint/weights.safetensors", len(DEEP_JSON).to_bytes(8, "little") + DEEP_JSON.encode()),
    "checkpoint-a-file": _replace("checkpoint", lambda path: path.write_text("not a folder")),
    "checkpoint-a-link-loop": _replace("checkpoint", _link_to("checkpoint")),
    "checkpoint-empty": _replace("checkpoint", lambda path: path.mkdir()),
}


@pytest.mark.parametrize("verb", ["evaluate", "predict"])
@pytest.mark.parametrize("case", sorted(CHECKPOINT_EDITS))
def test_a_damaged_checkpoint_is_refused_in_one_line(world, tmp_path, capsys, case, verb):
    run = copy_run(world, tmp_path, "series")
    CHECKPOINT_EDITS[case](run)
    refused_by_cli([verb, run], capsys, world, tmp_path)


@pytest.mark.parametrize("case", sorted(CHECKPOINT_EDITS))
def test_a_damaged_checkpoint_is_refused_by_forecaster_load(world, tmp_path, case):
    from sciformer import Forecaster

    run = copy_run(world, tmp_path, "series")
    CHECKPOINT_EDITS[case](run)
    refused_by_api(lambda: Forecaster.load(run), CheckpointError, world, tmp_path)


RESUME_EDITS: dict[str, Callable[[Path], None]] = {
    "state-nested-too-deep": _state(DEEP_JSON),
    "state-5000-digit-int": _state(HUGE_INT_JSON),
    "state-empty": _state(""),
    "latest-link-to-dev-zero": _replace(f"resume/{LATEST}", _link_to("/dev/zero")),
    "latest-a-folder": _replace(f"resume/{LATEST}", lambda path: path.mkdir()),
    "latest-a-fifo": _replace(f"resume/{LATEST}", os.mkfifo),
    "latest-empty": _write(f"resume/{LATEST}", b""),
    "latest-with-a-newline-and-a-path": _write(f"resume/{LATEST}", b"epoch0001-step000000\n/../../etc\n"),
    "latest-names-a-file": lambda run: _write(f"resume/{LATEST}", b"LATEST")(run),
    "resume-a-file": _replace("resume", lambda path: path.write_text("x")),
    "recipe-nested-too-deep": _write("recipe.json", DEEP_JSON),
    "recipe-5000-digit-int": _write("recipe.json", '{"seed": ' + "1" * 5000 + "}"),
    "data-nested-too-deep": _write("data.json", DEEP_JSON),
    "data-5000-digit-int": _write("data.json", '{"fingerprint": ' + "1" * 5000 + "}"),
    "lock-a-folder": lambda run: (run / ".sciformer.lock").mkdir(),
}


@pytest.mark.parametrize("case", sorted(RESUME_EDITS))
def test_a_damaged_resume_state_is_refused_in_one_line(world, tmp_path, capsys, case):
    run = copy_run(world, tmp_path, "crashed")
    RESUME_EDITS[case](run)
    refused_by_cli(["fit", "--resume", run], capsys, world, tmp_path)


def test_evaluate_with_a_damaged_metrics_file_still_reports_and_keeps_it(world, tmp_path, capsys):
    run = copy_run(world, tmp_path, "series")
    (run / "metrics.json").write_text(DEEP_JSON)
    before = tree(tmp_path)
    assert main(["evaluate", str(run)]) == 0
    out, err = capsys.readouterr()
    assert "test_mse" in out and "Traceback" not in err and "matches" not in out
    assert tree(tmp_path) == before


# ------------------------------------------------------------------------------------------- CLI arguments
def _thesis(ws: Path) -> Path:
    """A folder of the user's (made once; a second call returns it as it is)."""
    if not (ws / "thesis").exists():
        (ws / "thesis").mkdir()
        (ws / "thesis" / "thesis.tex").write_text("\\documentclass{article} years of work")
    return ws / "thesis"


def _user_file(ws: Path, name: str = "notes.txt") -> Path:
    if not (ws / name).exists():
        (ws / name).write_text("the user's own file")
    return ws / name


def _gappy_csv(ws: Path) -> Path:
    frame = pd.read_csv(write_csv(ws / "h.csv", n_rows=80))
    frame.drop(index=[70]).to_csv(ws / "h.csv", index=False)
    return ws / "h.csv"


Argv = Callable[[Path, Path], list]
CLI_CASES: dict[str, Argv] = {
    # fit: where the run goes, how it runs
    "fit-out-a-file": lambda ws, w: ["fit", w / "r.yaml", "--out", _user_file(ws)],
    "fit-out-under-a-file": lambda ws, w: ["fit", w / "r.yaml", "--out", _user_file(ws) / "run"],
    "fit-out-dev-null": lambda ws, w: ["fit", w / "r.yaml", "--out", "/dev/null"],
    "fit-out-under-dev-null": lambda ws, w: ["fit", w / "r.yaml", "--out", "/dev/null/run"],
    "fit-out-under-proc": lambda ws, w: ["fit", w / "r.yaml", "--out", "/proc/sciformer-run"],
    "fit-out-the-users-folder": lambda ws, w: ["fit", w / "r.yaml", "--out", _thesis(ws)],
    "fit-out-a-link-to-the-users-folder": lambda ws, w: ["fit", w / "r.yaml", "--out", os.symlink(_thesis(ws), ws / "l") or ws / "l"],
    "fit-out-the-working-folder": lambda ws, w: ["fit", w / "r.yaml", "--out", ".", _user_file(ws) and "train.epochs=1"],
    "fit-nproc-zero": lambda ws, w: ["fit", w / "r.yaml", "--nproc", "0", "--out", ws / "run"],
    "fit-nproc-negative": lambda ws, w: ["fit", w / "r.yaml", "--nproc", "-4", "--out", ws / "run"],
    "fit-resume-and-another-out": lambda ws, w: ["fit", "--resume", ws / "a", "--out", ws / "b"],
    "fit-resume-a-file": lambda ws, w: ["fit", "--resume", _user_file(ws)],
    "fit-resume-dev-null": lambda ws, w: ["fit", "--resume", "/dev/null"],
    "fit-resume-missing": lambda ws, w: ["fit", "--resume", ws / "gone"],
    "fit-resume-the-users-folder": lambda ws, w: ["fit", "--resume", _thesis(ws)],
    "fit-resume-a-finished-run": lambda ws, w: ["fit", "--resume", copy_run(w, ws, "series")],
    "fit-resume-another-lr": lambda ws, w: ["fit", "--resume", copy_run(w, ws, "crashed"), "train.lr=0.5"],
    "fit-recipe-missing": lambda ws, w: ["fit", ws / "missing.yaml", "--out", ws / "run"],
    "fit-recipe-a-folder": lambda ws, w: ["fit", ws, "--out", ws / "run"],
    "fit-recipe-dev-zero": lambda ws, w: ["fit", "/dev/zero", "--out", ws / "run"],
    "fit-recipe-a-fifo": lambda ws, w: ["fit", os.mkfifo(ws / "r.yaml") or ws / "r.yaml", "--out", ws / "run"],
    "fit-recipe-home-missing": lambda ws, w: ["fit", "~/no-such-sciformer-recipe.yaml", "--out", ws / "run"],
    "fit-recipe-latin1": lambda ws, w: ["fit", _bytes(b"data: {name: caf\xe9.csv}\n", "r.yaml")(ws), "--out", ws / "run"],
    "fit-override-5000-digits": lambda ws, w: ["fit", w / "r.yaml", f"train.epochs={BIG}", "--out", ws / "run"],
    # evaluate
    "evaluate-missing": lambda ws, w: ["evaluate", ws / "nope"],
    "evaluate-a-file": lambda ws, w: ["evaluate", _user_file(ws)],
    "evaluate-an-empty-folder": lambda ws, w: ["evaluate", (ws / "empty").mkdir() or ws / "empty"],
    "evaluate-dev-null": lambda ws, w: ["evaluate", "/dev/null"],
    "evaluate-the-users-folder": lambda ws, w: ["evaluate", _thesis(ws)],
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
    "predict-out-an-existing-file": lambda ws, w: ["predict", w / "series", "--out", _user_file(ws, "f.csv")],
    "predict-out-in-a-missing-folder": lambda ws, w: ["predict", w / "series", "--out", ws / "no" / "f.csv"],
    "predict-out-dev-null": lambda ws, w: ["predict", w / "series", "--out", "/dev/null"],
    "predict-out-under-proc": lambda ws, w: ["predict", w / "series", "--out", "/proc/f.csv"],
    "predict-data-missing": lambda ws, w: ["predict", w / "series", "--data", ws / "none.csv"],
    "predict-data-a-folder": lambda ws, w: ["predict", w / "series", "--data", ws],
    "predict-data-dev-zero": lambda ws, w: ["predict", w / "series", "--data", "/dev/zero"],
    "predict-data-with-a-gap": lambda ws, w: ["predict", w / "series", "--data", _gappy_csv(ws)],
    "predict-data-too-short": lambda ws, w: ["predict", w / "series", "--data", write_csv(ws / "h.csv", n_rows=5)],
    "predict-data-other-columns": lambda ws, w: ["predict", w / "series", "--data", write_csv(ws / "h.csv", n_rows=80, columns=["x", "y"])],
    "predict-data-inf": lambda ws, w: ["predict", w / "series", "--data", _cell("inf", row=150)(ws)],
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
    "rollout-out-a-file": lambda ws, w: ["rollout", w / "pde", "--steps", "1", "--no-tracking", "--out", _user_file(ws)],
    "rollout-out-the-users-folder": lambda ws, w: ["rollout", w / "pde", "--steps", "1", "--no-tracking", "--out", _thesis(ws)],
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
    "generate-over-a-file": lambda ws, w: ["datasets", "generate", "burgers1d", "--n", "2", "--res", "16", "--out", _user_file(ws, "g.h5")],
    "generate-into-a-folder": lambda ws, w: ["datasets", "generate", "burgers1d", "--n", "2", "--res", "16", "--out", _thesis(ws)],
    "generate-under-dev-null": lambda ws, w: ["datasets", "generate", "burgers1d", "--n", "2", "--res", "16", "--out", "/dev/null/g.h5"],
    "download-unknown": lambda ws, w: ["datasets", "download", "ett_h3"],
    "inspect-missing": lambda ws, w: ["datasets", "inspect", ws / "none.h5"],
    "inspect-truncated": lambda ws, w: ["datasets", "inspect", _truncated(ws)],
}
OWN = {"fit": "run", "rollout": "ro"}  # the folder a refused command may have begun; every other path stays as it was


@pytest.mark.parametrize("case", sorted(CLI_CASES))
def test_a_hostile_command_line_exits_2_with_one_line(world, tmp_path, capsys, case):
    argv = CLI_CASES[case](tmp_path, world)
    own = OWN.get(case.split("-")[0])
    refused_by_cli(argv, capsys, world, tmp_path, own=tmp_path / own if own else None)


@pytest.mark.parametrize("case", ["a-folder", "dev-zero", "a-csv", "link-cycle", "string-dtype", "never-written-chunks"])
def test_inspect_names_the_problem_of_a_file_it_cannot_read_as_pde_data(world, tmp_path, capsys, case):
    """``datasets inspect`` is the diagnosis: it describes what it can and ends with one ``problem:`` line."""
    path = {"a-folder": tmp_path, "dev-zero": Path("/dev/zero"), "a-csv": world / "s.csv"}.get(case) or H5_CASES[case](tmp_path)
    before = watched(world, tmp_path, None)
    assert main(["datasets", "inspect", str(path)]) == 0
    out, err = capsys.readouterr()
    assert [line for line in out.splitlines() if line.startswith("problem: ")] and not err
    assert watched(world, tmp_path, None) == before


# ---------------------------------------------------------------------------------------------- Python API
@pytest.fixture(scope="module")
def models(world):
    """The module's forecaster and surrogate, loaded from their runs, and a valid surrogate history ``[T, C, X]``."""
    from sciformer import Forecaster, Surrogate

    surrogate = Surrogate.load(world / "pde")
    with h5py.File(world / "b.h5") as f:
        history = f["tensor"][0, : surrogate.initial_step][:, None]
    return Forecaster.load(world / "series"), surrogate, history


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
    "save-the-users-folder": (StorageError, lambda ws, w, fc, sg, u: fc.save(_thesis(ws))),
    "save-over-a-file": (StorageError, lambda ws, w, fc, sg, u: fc.save(_user_file(ws))),
    "save-under-a-file": (StorageError, lambda ws, w, fc, sg, u: fc.save(_user_file(ws) / "model")),
    "surrogate-save-the-working-folder": (StorageError, lambda ws, w, fc, sg, u: sg.save(".")),
    "surrogate-save-the-users-folder": (StorageError, lambda ws, w, fc, sg, u: sg.save(_thesis(ws))),
    "surrogate-save-dev-null": (StorageError, lambda ws, w, fc, sg, u: sg.save("/dev/null")),
    "load-missing": (CheckpointError, lambda ws, w, fc, sg, u: type(fc).load(ws / "nope")),
    "load-a-file": (CheckpointError, lambda ws, w, fc, sg, u: type(fc).load(_user_file(ws))),
    "load-the-users-folder": (CheckpointError, lambda ws, w, fc, sg, u: type(fc).load(_thesis(ws))),
    "load-dev-null": (CheckpointError, lambda ws, w, fc, sg, u: type(fc).load("/dev/null")),
    "load-an-operator-run": (CheckpointError, lambda ws, w, fc, sg, u: type(fc).load(w / "pde")),
    "surrogate-load-a-forecasting-run": (DataError, lambda ws, w, fc, sg, u: type(sg).load(w / "series")),
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


@pytest.mark.parametrize("case", sorted(API_CASES))
def test_a_hostile_api_call_raises_one_documented_error(world, models, tmp_path, case):
    expected, call = API_CASES[case]
    forecaster, surrogate, history = models
    _thesis(tmp_path), _user_file(tmp_path), H5_CASES["nan"](tmp_path)  # made before the tree is hashed
    refused_by_api(lambda: call(tmp_path, world, forecaster, surrogate, history), expected, world, tmp_path)


SAYS = {  # the misleading messages of issue #24, as `fit` now words them
    "a-directory": "is a directory, not a regular file",
    "a-fifo": "is a FIFO (named pipe), not a regular file",
    "dev-null": "is a character device, not a regular file",
    "dev-zero": "is a character device, not a regular file",
    "home-missing": f"'{Path('~').expanduser()}/no-such-sciformer-file.csv' does not exist",
    "zero-rows": "has no data rows (only a header)",
    "one-row": "too few rows",
    "inf": "column 'OT' has",
    "gap-in-time": "gap",
}


@pytest.mark.parametrize("case", sorted(SAYS))
def test_fit_says_what_is_wrong_with_the_data(world, tmp_path, capsys, case):
    recipe = write_recipe(tmp_path / "r.yaml", series_recipe(str(CSV_CASES[case](tmp_path))))
    line = refused_by_cli(["fit", recipe, "--out", tmp_path / "run"], capsys, world, tmp_path, own=tmp_path / "run")
    assert SAYS[case] in line and "does not exist" not in line.replace(SAYS[case], ""), line
