"""Where sciformer may write: a checkpoint or run only goes into a new or empty folder or over sciformer's own
output; everything else is refused with one line and left byte-identical. A run directory is locked while a run
executes, and a resume refuses data that changed since the run started."""

import json
import os
from pathlib import Path

import pytest
import torch
from conftest import tiny_forecast_recipe as _raw
from conftest import write_csv

from sciformer.cli import main
from sciformer.config import recipe_from_dict
from sciformer.engine import trainer as trainer_module
from sciformer.engine.checkpoint import load_model, save_checkpoint
from sciformer.engine.rundir import LOCK_FILE, RESUME_DIR, RunLock
from sciformer.engine.runner import fit_recipe
from sciformer.errors import ConfigError, DataError, RunLockedError, StorageError
from sciformer.registry import build_model

SPEC = {"model": {"name": "itransformer", "args": {"d_model": 8, "d_ff": 8, "n_heads": 2, "e_layers": 1},
                  "data_sizes": {"n_vars": 3, "n_marks": 4, "lookback": 12, "horizon": 6}}}
THESIS = b"\\documentclass{article}\n\\begin{document}years of work\\end{document}\n"


def _model():
    return build_model("itransformer", SPEC["model"]["args"], **SPEC["model"]["data_sizes"])


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def thesis(tmp_path) -> Path:
    folder = tmp_path / "thesis"
    folder.mkdir()
    (folder / "thesis.tex").write_bytes(THESIS)
    return folder


# ----------------------------------------------------------------------------------------- checkpoints
def test_checkpoint_save_refuses_a_folder_of_the_users_and_touches_nothing(thesis):
    before = _snapshot(thesis.parent)
    with pytest.raises(StorageError, match=r"holds files that are not a sciformer checkpoint \(thesis.tex\)"):
        save_checkpoint(thesis, _model(), SPEC)
    assert _snapshot(thesis.parent) == before
    assert sorted(p.name for p in thesis.parent.iterdir()) == ["thesis"]  # no temporaries or .old folders beside it


def test_checkpoint_save_refuses_a_file_the_cwd_and_devices(tmp_path, monkeypatch):
    paper = tmp_path / "paper.pdf"
    paper.write_bytes(b"%PDF-1.7")
    cases = {
        paper: "it is a regular file",
        paper / "model": f"'{paper}' is a regular file, not a folder",
        Path("."): "needs a folder of its own",
        Path("/dev/null"): "it is a character device",
    }
    for path, message in cases.items():
        with pytest.raises(StorageError, match=message):
            save_checkpoint(path, _model(), SPEC)
    assert paper.read_bytes() == b"%PDF-1.7"
    with pytest.raises(StorageError, match="cannot write '/proc/sciformer-model'"):
        save_checkpoint("/proc/sciformer-model", _model(), SPEC)


def test_checkpoint_save_goes_into_an_empty_folder_and_over_its_own_checkpoint(tmp_path):
    (tmp_path / "empty").mkdir()
    save_checkpoint(tmp_path / "empty", _model(), SPEC)
    second = _model()
    save_checkpoint(tmp_path / "empty", second, SPEC)
    loaded, _ = load_model(tmp_path / "empty")
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), second.state_dict().values()))
    (tmp_path / "empty" / "notes.txt").write_text("mine")  # once the user adds a file, the folder is theirs
    with pytest.raises(StorageError, match=r"\(config.json, notes.txt, weights.safetensors\)"):
        save_checkpoint(tmp_path / "empty", _model(), SPEC)
    assert (tmp_path / "empty" / "notes.txt").read_text() == "mine"


def test_checkpoint_save_with_no_space_left_names_the_destination_and_keeps_the_old_one(tmp_path, monkeypatch):
    import errno

    from sciformer.engine import checkpoint

    first = _model()
    save_checkpoint(tmp_path / "ckpt", first, SPEC)

    def full_disk(path, data):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(checkpoint, "_write_bytes", full_disk)
    with pytest.raises(StorageError, match=f"cannot write '{tmp_path / 'ckpt'}': no space left on the device"):
        save_checkpoint(tmp_path / "ckpt", _model(), SPEC)
    monkeypatch.undo()
    loaded, _ = load_model(tmp_path / "ckpt")
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), first.state_dict().values()))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


# --------------------------------------------------------------------------------------------- runs
def test_fit_refuses_a_folder_of_the_users_before_any_work(tmp_path, thesis, capsys):
    before = _snapshot(thesis)
    with pytest.raises(StorageError, match=r"holds files that sciformer did not write \(thesis.tex\)"):
        fit_recipe(recipe_from_dict(_raw(tmp_path)), thesis)
    with pytest.raises(StorageError, match=r"holds files that sciformer did not write"):
        fit_recipe(recipe_from_dict(_raw(tmp_path)), thesis, resume=True)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(json.dumps(_raw(tmp_path)))  # JSON is YAML
    assert main(["fit", str(recipe), "--out", str(thesis)]) == 2
    assert main(["fit", str(recipe), "--out", str(thesis / "thesis.tex")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and all(line.startswith("sciformer: error: cannot write a run into") for line in err)
    assert _snapshot(thesis) == before


def test_a_second_process_is_refused_with_the_holders_pid(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    lock = RunLock(run).acquire()  # a second open file description: flock refuses it like another process
    try:
        assert (run / LOCK_FILE).read_text().strip() == str(os.getpid())
        for resume in (False, True):
            with pytest.raises(RunLockedError, match=f"in use by another sciformer process \\(PID {os.getpid()}\\)"):
                fit_recipe(recipe_from_dict(_raw(tmp_path)), run, resume=resume)
    finally:
        lock.release()
    assert not (run / LOCK_FILE).exists()
    RunLock(run).acquire().release()  # free again


def test_the_lock_is_released_when_the_process_dies(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    child = os.fork()
    if child == 0:  # the holder: takes the lock and dies without releasing it
        RunLock(run).acquire()
        os._exit(0)
    assert os.waitpid(child, 0)[1] == 0
    assert (run / LOCK_FILE).read_text().strip() == str(child)  # left behind: a run marker, no longer a lock
    RunLock(run).acquire().release()


class Crash(BaseException):
    pass


def test_resume_after_the_data_changed_is_refused_naming_the_data(tmp_path, monkeypatch):
    raw = _raw(tmp_path, epochs=2)
    save = trainer_module.Trainer._save

    def crash_after_first_epoch(self, progress, *args):
        save(self, progress, *args)
        if progress.epoch == 1:
            raise Crash

    monkeypatch.setattr(trainer_module.Trainer, "_save", crash_after_first_epoch)
    with pytest.raises(Crash):
        fit_recipe(recipe_from_dict(raw), tmp_path / "run")
    monkeypatch.undo()
    csv = Path(raw["data"]["name"])
    lines = csv.read_text().splitlines()
    lines[5] = lines[5].rsplit(",", 1)[0] + ",123.0"  # one edited value
    csv.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=f"cannot resume '.*run': data '{csv}' has changed since the run started"):
        fit_recipe(recipe_from_dict(raw), tmp_path / "run", resume=True)
    assert (tmp_path / "run" / RESUME_DIR / "LATEST").read_text() == "epoch0001-step000000"  # still resumable


def test_a_checkpoint_reached_through_a_link_is_replaced_and_its_target_kept(tmp_path):
    save_checkpoint(tmp_path / "real", _model(), SPEC)
    (tmp_path / "link").symlink_to(tmp_path / "real")
    for _ in range(2):  # the second save meets the first one's leftovers, if any
        save_checkpoint(tmp_path / "link", _model(), SPEC)
    assert (tmp_path / "link").is_dir() and not (tmp_path / "link").is_symlink()
    load_model(tmp_path / "real")  # the link's target is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "real"]


def test_resume_names_what_is_there_instead_of_a_run_directory(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match=r"'.*notes.txt' is a regular file, not a run directory"):
        fit_recipe(recipe_from_dict(_raw(tmp_path)), tmp_path / "notes.txt", resume=True)


def test_a_stray_old_folder_beside_a_checkpoint_is_never_deleted(tmp_path):
    save_checkpoint(tmp_path / "ckpt", _model(), SPEC)
    (tmp_path / ".ckpt.old").mkdir()
    (tmp_path / ".ckpt.old" / "draft.txt").write_text("mine")
    with pytest.raises(StorageError, match=r"'.*\.ckpt\.old' is in the way and was not written by sciformer"):
        save_checkpoint(tmp_path / "ckpt", _model(), SPEC)
    assert (tmp_path / ".ckpt.old" / "draft.txt").read_text() == "mine"
    load_model(tmp_path / "ckpt")


def test_forecaster_save_into_a_folder_of_the_users_leaves_it_byte_identical(tmp_path, thesis):
    import pandas as pd

    from sciformer import Forecaster

    frame = pd.read_csv(write_csv(tmp_path / "s.csv", n_rows=120), index_col="date", parse_dates=True)
    forecaster = Forecaster("itransformer", horizon=4, lookback=8, d_model=8, d_ff=8, n_heads=2, e_layers=1, epochs=1, progress=False)
    forecaster.fit(frame)
    before = _snapshot(thesis.parent)
    for destination in (thesis, thesis / "thesis.tex", Path(".")):
        with pytest.raises(StorageError, match="cannot write a checkpoint into"):
            forecaster.save(destination)
    assert _snapshot(thesis.parent) == before
