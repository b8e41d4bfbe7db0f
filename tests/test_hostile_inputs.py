"""The hostile-input campaign of issue #24, kept as one module: recipes and overrides, CSV and PDE data files,
checkpoints and resume states, CLI arguments and the Python API.

Every CLI case runs ``sciformer.cli.main`` in process and asserts exit code 2, exactly one stderr line starting
``sciformer: error:``, no traceback, and that no file outside the case's own run folder was created, changed or
removed (the whole test folder and the shared runs are hashed before and after). Every API case asserts one
documented :class:`~sciformer.errors.SciformerError` subclass with a one-line message and the same untouched tree.
Two tiny runs (a forecaster and a Burgers operator, one epoch each) are trained once for the whole module. The case
tables live in tests/hostile/, by what they attack.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
from collections.abc import Callable
from pathlib import Path

import h5py
import pytest
from conftest import FIXTURES, write_csv
from hostile.api import API_CASES
from hostile.commands import CLI_CASES, OVERRIDES, OWN, RECIPES, filled
from hostile.files import CSV_CASES, H5_CASES
from hostile.places import TINY_OPERATOR, TRAIN, copy_run, operator_recipe, series_recipe, users_file, users_folder, write_recipe
from hostile.runs import CHECKPOINT_EDITS, DEEP_JSON, RESUME_EDITS

from sciformer.cli import main
from sciformer.engine import trainer as trainer_module
from sciformer.errors import CheckpointError, DataError, SciformerError


class Crash(BaseException):
    """Stands in for the process dying (not an Exception: nothing on the way catches it)."""


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


# --------------------------------------------------------------------------- recipes: overrides and values
@pytest.mark.parametrize("case", sorted(OVERRIDES))
def test_a_hostile_override_is_refused_by_validate(world, tmp_path, capsys, case):
    refused_by_cli(["validate", world / "r.yaml", OVERRIDES[case]], capsys, world, tmp_path)


@pytest.mark.parametrize("case", sorted(RECIPES))
def test_a_recipe_that_cannot_run_is_refused_before_any_work(world, tmp_path, capsys, case):
    h5 = shutil.copyfile(world / "b.h5", tmp_path / "b.h5")
    recipe = write_recipe(tmp_path / "hostile.yaml", filled(RECIPES[case], csv=world / "s.csv", h5=h5, ws=tmp_path))
    refused_by_cli(["fit", recipe, "--out", tmp_path / "run"], capsys, world, tmp_path, own=tmp_path / "run")


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


@pytest.mark.parametrize("case", sorted(CLI_CASES))
def test_a_hostile_command_line_exits_2_with_one_line(world, tmp_path, capsys, case):
    argv = CLI_CASES[case](tmp_path, world)
    own = OWN.get(case.split("-")[0])
    refused_by_cli(argv, capsys, world, tmp_path, own=tmp_path / own if own else None)


@pytest.mark.parametrize("case", ["a-folder", "dev-zero", "a-csv", "link-cycle", "string-dtype", "never-written-chunks"])
def test_inspect_describes_what_it_can_then_names_the_problem_in_one_line_and_exits_2(world, tmp_path, capsys, case):
    """``datasets inspect`` is the diagnosis: it describes what it can, then fails as ``fit`` would, in one line."""
    path = {"a-folder": tmp_path, "dev-zero": Path("/dev/zero"), "a-csv": world / "s.csv"}.get(case) or H5_CASES[case](tmp_path)
    before = watched(world, tmp_path, None)
    assert main(["datasets", "inspect", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out.startswith("file: ") and err.startswith("sciformer: error: ") and err.count("\n") == 1 and "Traceback" not in err
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


@pytest.mark.parametrize("case", sorted(API_CASES))
def test_a_hostile_api_call_raises_one_documented_error(world, models, tmp_path, case):
    expected, call = API_CASES[case]
    forecaster, surrogate, history = models
    users_folder(tmp_path), users_file(tmp_path), H5_CASES["nan"](tmp_path)  # made before the tree is hashed
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
