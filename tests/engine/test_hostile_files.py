"""Hostile edits of what the engine reads back and writes into: checkpoints, resume states, run files and output
destinations. Every case ends the command with exit code 2 and exactly one stderr line ``sciformer: error: ...``
(no traceback), and nothing outside the case's own folder changes."""

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import write_csv

from sciformer.cli import main
from sciformer.engine import trainer as trainer_module
from sciformer.engine.checkpoint import LATEST, STATE_JSON, STATE_TENSORS
from sciformer.engine.rundir import CHECKPOINT_DIR, DATA_FILE, METRICS_FILE, RECIPE_FILE, RESUME_DIR, RunLock

Edit = Callable[[Path], None]


class Crash(BaseException):
    pass


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """A recipe, a finished run and a run that crashed after its first epoch (a resumable state)."""
    root = tmp_path_factory.mktemp("hostile")
    csv = write_csv(root / "s.csv", n_rows=160)
    raw = {
        "data": {"name": str(csv), "lookback": 16, "horizon": 8},
        "model": {"name": "itransformer", "d_model": 8, "d_ff": 8, "n_heads": 2, "e_layers": 1},
        "train": {"epochs": 2, "batch_size": 32, "patience": 0, "progress": False},
        "tracking": {"enabled": False},
    }
    (root / "r.yaml").write_text(json.dumps(raw))
    assert main(["fit", str(root / "r.yaml"), "--out", str(root / "finished")]) == 0
    save = trainer_module.Trainer._save

    def crash_after_epoch_1(self, progress, *args):
        save(self, progress, *args)
        if progress.epoch == 1:
            raise Crash

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(trainer_module.Trainer, "_save", crash_after_epoch_1)
        with pytest.raises(Crash):
            main(["fit", str(root / "r.yaml"), "--out", str(root / "crashed")])
    return root


def _snapshot(folder: Path, skip: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file() and skip not in p.parents}


def _refused(argv: list[str], capsys, own: Path, watched: list[Path]) -> str:
    """Run the CLI; assert exit 2, one error line and no change outside ``own``; returns the line."""
    before = {folder: _snapshot(folder, own) for folder in watched}
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("sciformer: error: "), err[-3000:]
    assert {folder: _snapshot(folder, own) for folder in watched} == before
    return lines[0]


# ------------------------------------------------------------------------------------------ checkpoints
def _json_edit(name: str, change: Callable[[dict], object]) -> Edit:
    def edit(run: Path) -> None:
        path = run / CHECKPOINT_DIR / name
        path.write_text(json.dumps(change(json.loads(path.read_text()))))

    return edit


def _bytes_edit(name: str, change: Callable[[bytes], bytes]) -> Edit:
    def edit(run: Path) -> None:
        path = run / CHECKPOINT_DIR / name
        path.write_bytes(change(path.read_bytes()))

    return edit


def _flip_last(data: bytes) -> bytes:
    return data[:-1] + bytes([data[-1] ^ 1])


def _make_dir(relative: str) -> Edit:
    def edit(run: Path) -> None:
        path = run / relative
        path.unlink()
        path.mkdir()

    return edit


def _config_key(key: str, value: object) -> Edit:
    return _json_edit("config.json", lambda c: {**c, key: value})


def _model_key(key: str, value: object) -> Edit:
    return _json_edit("config.json", lambda c: {**c, "model": {**c["model"], key: value}})


def _data_key(key: str, value: object) -> Edit:
    return _json_edit("config.json", lambda c: {**c, "data": {**c["data"], key: value}})


def _drop_data_key(key: str) -> Edit:
    return _json_edit("config.json", lambda c: {**c, "data": {k: v for k, v in c["data"].items() if k != key}})


CHECKPOINT_CASES: dict[str, Edit] = {
    "config-not-json": _bytes_edit("config.json", lambda b: b"{not json"),
    "config-empty": _bytes_edit("config.json", lambda b: b""),
    "config-non-utf8": _bytes_edit("config.json", lambda b: b"\xff\xfe{\x00"),
    "config-a-list": _json_edit("config.json", lambda c: [c]),
    "config-a-number": _json_edit("config.json", lambda c: 3),
    "config-without-model": _json_edit("config.json", lambda c: {k: v for k, v in c.items() if k != "model"}),
    "config-is-a-folder": _make_dir(f"{CHECKPOINT_DIR}/config.json"),
    "model-a-string": _config_key("model", "itransformer"),
    "model-name-a-number": _model_key("name", 5),
    "model-name-unknown": _model_key("name", "itransformr"),
    "model-args-a-list": _model_key("args", [1, 2]),
    "model-args-unknown": _model_key("args", {"no_such_argument": 1}),
    "model-sizes-a-string": _model_key("data_sizes", "big"),
    "format-a-string": _config_key("format", "1"),
    "format-from-the-future": _config_key("format", 99),
    "recipe-a-list": _config_key("recipe", []),
    "recipe-lr-a-string": _json_edit("config.json", lambda c: {**c, "recipe": {**c["recipe"], "train": {**c["recipe"]["train"], "lr": "fast"}}}),
    "recipe-unknown-key": _json_edit("config.json", lambda c: {**c, "recipe": {**c["recipe"], "trian": {}}}),
    "data-a-number": _config_key("data", 5),
    "data-without-scaler": _drop_data_key("scaler"),
    "data-without-columns": _drop_data_key("columns"),
    "data-scaler-empty": _data_key("scaler", {}),
    "weights-truncated": _bytes_edit("weights.safetensors", lambda b: b[: len(b) // 2]),
    "weights-empty": _bytes_edit("weights.safetensors", lambda b: b""),
    "weights-garbage": _bytes_edit("weights.safetensors", lambda b: os.urandom(len(b))),
    "weights-one-bit": _bytes_edit("weights.safetensors", _flip_last),
    "weights-missing": lambda run: (run / CHECKPOINT_DIR / "weights.safetensors").unlink(),
    "weights-a-folder": _make_dir(f"{CHECKPOINT_DIR}/weights.safetensors"),
    "extras-one-bit": _bytes_edit("extras.safetensors", _flip_last),
    "extras-truncated": _bytes_edit("extras.safetensors", lambda b: b[:40]),
}


# evaluate reads the weights and config only; predict also the extras (history and calibration scores)
VERBS = [(case, verb) for case in sorted(CHECKPOINT_CASES) for verb in ("evaluate", "predict") if verb == "predict" or not case.startswith("extras")]


@pytest.mark.parametrize(("case", "verb"), VERBS)
def test_a_damaged_checkpoint_is_refused_in_one_line(runs, tmp_path, capsys, case, verb):
    run = tmp_path / "run"
    shutil.copytree(runs / "finished", run)
    CHECKPOINT_CASES[case](run)
    _refused([verb, str(run)], capsys, run, [runs, tmp_path])


# ------------------------------------------------------------------------------------------ resume files
def _state_json(change: Callable[[dict], object]) -> Edit:
    def edit(run: Path) -> None:
        path = run / RESUME_DIR / (run / RESUME_DIR / LATEST).read_text() / STATE_JSON
        path.write_text(json.dumps(change(json.loads(path.read_text()))))

    return edit


def _state_entry(key: str, value: object) -> Edit:
    return _state_json(lambda p: {**p, "state": {**p["state"], key: value}})


def _progress(change: Callable[[dict], dict]) -> Edit:
    return _state_json(lambda p: {**p, "state": {**p["state"], "progress": change(p["state"]["progress"])}})


def _state_tensors(change: Callable[[bytes], bytes]) -> Edit:
    def edit(run: Path) -> None:
        path = run / RESUME_DIR / (run / RESUME_DIR / LATEST).read_text() / STATE_TENSORS
        path.write_bytes(change(path.read_bytes()))

    return edit


def _run_file(name: str, content: bytes) -> Edit:
    return lambda run: (run / name).write_bytes(content)


def _remove_state_file(name: str) -> Edit:
    return lambda run: (run / RESUME_DIR / (run / RESUME_DIR / LATEST).read_text() / name).unlink()


RESUME_CASES: dict[str, Edit] = {
    "latest-names-a-path": _run_file(f"{RESUME_DIR}/{LATEST}", b"../../../etc"),
    "latest-names-nothing-there": _run_file(f"{RESUME_DIR}/{LATEST}", b"epoch0042-step000000"),
    "latest-garbage-bytes": _run_file(f"{RESUME_DIR}/{LATEST}", b"\xff\xfe\x00\x01"),
    "latest-very-long": _run_file(f"{RESUME_DIR}/{LATEST}", b"e" * 5000),
    "state-json-truncated": lambda run: _state_json(lambda p: p)(run) or _truncate_state_json(run),
    "state-json-a-list": _state_json(lambda p: [p]),
    "state-json-without-state": _state_json(lambda p: {k: v for k, v in p.items() if k != "state"}),
    "state-json-digests-a-string": _state_json(lambda p: {**p, "sha256": "none"}),
    "state-json-format-a-string": _state_json(lambda p: {**p, "format": "1"}),
    "state-json-format-from-the-future": _state_json(lambda p: {**p, "format": 99}),
    "state-json-missing": _remove_state_file(STATE_JSON),
    "state-tensors-missing": _remove_state_file(STATE_TENSORS),
    "state-tensors-truncated": _state_tensors(lambda b: b[: len(b) // 3]),
    "state-tensors-one-bit": _state_tensors(_flip_last),
    "state-tensors-empty": _state_tensors(lambda b: b""),
    "tensor-reference-unknown": _state_entry("model", {"__tensor__": "state.model.nothing"}),
    "progress-epoch-a-string": _progress(lambda p: {**p, "epoch": "one"}),
    "progress-step-negative": _progress(lambda p: {**p, "step": -1}),
    "progress-done-a-string": _progress(lambda p: {**p, "done": "yes"}),
    "progress-history-a-string": _progress(lambda p: {**p, "history": "none"}),
    "progress-without-epoch": _progress(lambda p: {k: v for k, v in p.items() if k != "epoch"}),
    "progress-extra-entry": _progress(lambda p: {**p, "surprise": 1}),
    "progress-a-list": _state_entry("progress", [1, 2, 3]),
    "progress-epoch-beyond-the-recipe": _progress(lambda p: {**p, "epoch": 10**30}),
    "progress-step-beyond-the-epoch": _progress(lambda p: {**p, "step": 10**6}),
    "rng-a-number": _state_entry("rng", 7),
    "rng-entries-broken": _state_entry("rng", [{"python": 1}]),
    "data-rng-a-string": _state_entry("data_rng", "seed"),
    "model-weights-missing": _state_entry("model", {}),
    "optimizer-empty": _state_entry("optimizer", {}),
    "best-a-string": _state_entry("best", "none"),
    "recipe-json-not-json": _run_file(RECIPE_FILE, b'{"model": '),
    "recipe-json-a-list": _run_file(RECIPE_FILE, b"[]"),
    "recipe-json-another-lr": lambda run: _edit_recipe_json(run, lr=0.5),
    "data-json-a-list": _run_file(DATA_FILE, b"[]"),
    "data-json-not-json": _run_file(DATA_FILE, b"\x00\x01"),
    "data-json-another-fingerprint": _run_file(DATA_FILE, b'{"name": "s.csv", "fingerprint": "0123"}'),
    "finished-already": _run_file(METRICS_FILE, b"{}"),
}


def _truncate_state_json(run: Path) -> None:
    path = run / RESUME_DIR / (run / RESUME_DIR / LATEST).read_text() / STATE_JSON
    path.write_bytes(path.read_bytes()[:50])


def _edit_recipe_json(run: Path, **train) -> None:
    stored = json.loads((run / RECIPE_FILE).read_text())
    stored["train"] |= train
    (run / RECIPE_FILE).write_text(json.dumps(stored))


@pytest.mark.parametrize("case", sorted(RESUME_CASES))
def test_a_damaged_resume_state_is_refused_in_one_line(runs, tmp_path, capsys, case):
    run = tmp_path / "run"
    shutil.copytree(runs / "crashed", run)
    RESUME_CASES[case](run)
    _refused(["fit", str(runs / "r.yaml"), "--resume", str(run)], capsys, run, [runs, tmp_path])


def test_a_resume_into_a_locked_run_is_refused_in_one_line(runs, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(runs / "crashed", run)
    lock = RunLock(run).acquire()
    try:
        line = _refused(["fit", str(runs / "r.yaml"), "--resume", str(run)], capsys, run, [runs])
    finally:
        lock.release()
    assert f"(PID {os.getpid()})" in line


# ------------------------------------------------------------------------------------------ destinations
def _thesis(tmp_path: Path) -> Path:
    (tmp_path / "thesis").mkdir()
    (tmp_path / "thesis" / "thesis.tex").write_text("years of work")
    return tmp_path / "thesis"


def _hidden_only(tmp_path: Path) -> Path:
    (tmp_path / "repo").mkdir()
    (tmp_path / "repo" / ".git").write_text("gitdir: elsewhere")
    return tmp_path / "repo"


def _a_file(tmp_path: Path) -> Path:
    (tmp_path / "paper.pdf").write_bytes(b"%PDF")
    return tmp_path / "paper.pdf"


def _under_a_file(tmp_path: Path) -> Path:
    return _a_file(tmp_path) / "run"


def _a_foreign_config(tmp_path: Path) -> Path:
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    return tmp_path / "model"


DESTINATIONS: dict[str, Callable[[Path], Path]] = {
    "a-folder-of-the-users": _thesis,
    "a-folder-with-hidden-files": _hidden_only,
    "a-regular-file": _a_file,
    "under-a-regular-file": _under_a_file,
    "a-foreign-config-folder": _a_foreign_config,
    "dev-null": lambda tmp_path: Path("/dev/null"),
    "under-dev-null": lambda tmp_path: Path("/dev/null/run"),
    "under-proc": lambda tmp_path: Path("/proc/sciformer-run"),
    "a-name-too-long": lambda tmp_path: tmp_path / ("x" * 300),
    "under-a-fifo": lambda tmp_path: (os.mkfifo(tmp_path / "pipe"), tmp_path / "pipe" / "run")[1],
}


@pytest.mark.parametrize("case", sorted(DESTINATIONS))
def test_fit_into_a_destination_that_is_not_a_run_folder_is_refused(runs, tmp_path, capsys, case):
    out = DESTINATIONS[case](tmp_path)
    line = _refused(["fit", str(runs / "r.yaml"), "--out", str(out)], capsys, tmp_path / "nothing-is-ours", [runs, tmp_path])
    assert "cannot write" in line
