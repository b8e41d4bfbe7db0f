"""Resumable runs: a run killed mid-epoch (SIGKILL, or an exception) and resumed ends with exactly the metrics
of an uninterrupted run; the run directory stays loadable; damaged states fail with CheckpointError."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import write_csv

from sciformer.cli import main
from sciformer.config import load_recipe, recipe_from_dict
from sciformer.engine import trainer as trainer_module
from sciformer.engine.checkpoint import LATEST, load_model, load_training_state
from sciformer.engine.rundir import CHECKPOINT_DIR, DATA_FILE, RECIPE_FILE, RESUME_DIR
from sciformer.engine.runner import fit_recipe
from sciformer.errors import CheckpointError, ConfigError

REPO = Path(__file__).resolve().parents[2]
SMOKE = REPO / "recipes" / "smoke" / "itransformer.yaml"
# 134 steps per epoch at batch 64 on ETTh1; dropout stays on (0.1), so the RNG states must be restored too
KILL_ARGS = ["train.epochs=2", "train.batch_size=64", "train.checkpoint_every=20", "train.patience=0"]
COMPARED = ("test_mse", "test_mae", "test_rel_l2", "val_mse", "val_mae", "best_epoch", "epochs")


def _env() -> dict[str, str]:
    # one thread per process: deterministic CPU kernels, and two runs side by side on a small machine
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}


def _fit_command(*extra: str) -> list[str]:
    return [sys.executable, "-m", "sciformer", "fit", str(SMOKE), *KILL_ARGS, *extra]


def _wait_for_mid_epoch_state(proc: subprocess.Popen, run_dir: Path, epoch: int, timeout: float = 120) -> str:
    """Poll until the run has written a training state in the middle of ``epoch`` (0-based); returns its name."""
    latest = run_dir / RESUME_DIR / LATEST
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            name = latest.read_text()
        except OSError:
            name = ""
        if name.startswith(f"epoch{epoch:04d}-step") and not name.startswith(f"epoch{epoch:04d}-step000000"):
            return name
        assert proc.poll() is None, f"the run finished before it could be killed (exit code {proc.returncode})"
        time.sleep(0.005)
    raise AssertionError(f"no mid-epoch training state appeared in {latest}")


def _metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def _history(run_dir: Path) -> list[tuple[float, float]]:
    return [(h["train_loss"], h["val_loss"]) for h in json.loads((run_dir / "history.json").read_text())]


@pytest.mark.integration  # three fits in subprocesses
def test_sigkill_mid_epoch_then_resume_matches_an_uninterrupted_run_exactly(data_dir, tmp_path):
    reference = subprocess.Popen(_fit_command("--out", str(tmp_path / "reference")), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    killed_dir = tmp_path / "killed"
    victim = subprocess.Popen(_fit_command("--out", str(killed_dir)), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for_mid_epoch_state(victim, killed_dir, epoch=1)
        os.kill(victim.pid, signal.SIGKILL)
        assert victim.wait() == -signal.SIGKILL
    finally:
        if victim.poll() is None:
            victim.kill()
    assert not (killed_dir / "metrics.json").exists()
    # the crashed run is loadable: its best model so far, and a resumable state in the middle of epoch 2
    _, config = load_model(killed_dir / CHECKPOINT_DIR)
    assert config["model"]["name"] == "itransformer"
    state = (killed_dir / RESUME_DIR / LATEST).read_text()
    assert state.startswith("epoch0001-step") and not state.endswith("step000000")

    resumed = subprocess.run(_fit_command("--resume", str(killed_dir)), env=_env(), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert reference.wait() == 0
    a, b = _metrics(tmp_path / "reference"), _metrics(killed_dir)
    assert {k: a[k] for k in COMPARED} == {k: b[k] for k in COMPARED}  # bit for bit
    assert _history(tmp_path / "reference") == _history(killed_dir)
    assert not (killed_dir / RESUME_DIR).exists()  # a finished run keeps no resume state


# ------------------------------------------------------------------------------------- in-process
def _csv_recipe(tmp_path: Path, **train) -> dict:
    path = write_csv(tmp_path / "s.csv", n_rows=400)
    return {
        "data": {"name": str(path), "lookback": 24, "horizon": 12},
        "model": {"name": "itransformer", "d_model": 16, "d_ff": 16, "n_heads": 2, "e_layers": 1},
        "train": {"epochs": 3, "batch_size": 16, "lr": 3e-3, "patience": 0, "progress": False, "checkpoint_every": 4, **train},
        "tracking": {"enabled": False},
        "seed": 3,
    }


class Crash(BaseException):
    """Stands in for a process dying: not an Exception, so nothing on the way catches it."""


@pytest.fixture
def crash_after(monkeypatch):
    """Make the run die right after it has saved the training state ``(epoch, step)``."""

    def arm(epoch: int, step: int):
        save = trainer_module.Trainer._save

        def save_then_crash(self, progress, *args):
            save(self, progress, *args)
            if (progress.epoch, progress.step) == (epoch, step):
                raise Crash(f"simulated crash after epoch {epoch} step {step}")

        monkeypatch.setattr(trainer_module.Trainer, "_save", save_then_crash)
        return lambda: monkeypatch.setattr(trainer_module.Trainer, "_save", save)

    return arm


@pytest.mark.parametrize("where", [(1, 4), (2, 0)], ids=["mid-epoch", "epoch-end"])
def test_resume_in_process_matches_uninterrupted(tmp_path, crash_after, where):
    raw = _csv_recipe(tmp_path)
    reference = fit_recipe(recipe_from_dict(raw), tmp_path / "reference").metrics
    disarm = crash_after(*where)
    with pytest.raises(Crash):
        fit_recipe(recipe_from_dict(raw), tmp_path / "run")
    disarm()
    assert (tmp_path / "run" / RESUME_DIR / LATEST).read_text() == f"epoch{where[0]:04d}-step{where[1]:06d}"
    resumed = fit_recipe(recipe_from_dict(raw), tmp_path / "run", resume=True).metrics
    assert {k: reference[k] for k in COMPARED} == {k: resumed[k] for k in COMPARED}
    assert _history(tmp_path / "reference") == _history(tmp_path / "run")


def test_resume_after_early_stopping_does_not_train_again(tmp_path, crash_after):
    # lr ~ 0: no improvement after epoch 1, so patience 1 stops after epoch 2; the crash comes after that decision
    raw = _csv_recipe(tmp_path, lr=1e-12, patience=1, epochs=6)
    crash_after(2, 0)
    with pytest.raises(Crash):
        fit_recipe(recipe_from_dict(raw), tmp_path / "run")
    metrics = fit_recipe(recipe_from_dict(raw), tmp_path / "run", resume=True).metrics
    assert (metrics["epochs"], metrics["best_epoch"]) == (2, 1)


def test_resume_without_any_state_starts_over(tmp_path):
    raw = _csv_recipe(tmp_path, epochs=1)
    (tmp_path / "run").mkdir()
    with pytest.warns(RuntimeWarning, match="no complete training state"):
        metrics = fit_recipe(recipe_from_dict(raw), tmp_path / "run", resume=True).metrics
    assert metrics["epochs"] == 1


def test_resume_refuses_a_changed_recipe_or_a_finished_run(tmp_path, crash_after):
    raw = _csv_recipe(tmp_path)
    crash_after(1, 0)
    with pytest.raises(Crash):
        fit_recipe(recipe_from_dict(raw), tmp_path / "run")
    changed = {**raw, "train": {**raw["train"], "lr": 1e-2}}
    with pytest.raises(ConfigError, match=r"recipe differs .*train\.lr \(0\.003 -> 0\.01\)"):
        fit_recipe(recipe_from_dict(changed), tmp_path / "run", resume=True)
    engine_only = {**raw, "train": {**raw["train"], "checkpoint_every": 0, "progress": True}}
    fit_recipe(recipe_from_dict(engine_only), tmp_path / "run", resume=True)  # how it runs may change
    with pytest.raises(ConfigError, match="has finished"):
        fit_recipe(recipe_from_dict(raw), tmp_path / "run", resume=True)
    with pytest.raises(ConfigError, match="does not exist"):
        fit_recipe(recipe_from_dict(raw), tmp_path / "nowhere", resume=True)


def test_resume_accepts_a_run_started_before_a_recipe_key_existed(tmp_path, crash_after):
    raw = _csv_recipe(tmp_path)
    for run, lr in (("same", None), ("changed", 1.0)):
        crash_after(1, 0)
        with pytest.raises(Crash):
            fit_recipe(recipe_from_dict(raw), tmp_path / run)
        stored = tmp_path / run / RECIPE_FILE
        older = json.loads(stored.read_text())
        del older["train"]["h1_weight"], older["train"]["augment"]  # as an older sciformer wrote it
        if lr is not None:
            older["train"]["lr"] = lr
        stored.write_text(json.dumps(older))
    assert fit_recipe(recipe_from_dict(raw), tmp_path / "same", resume=True).metrics["epochs"] >= 1
    with pytest.raises(ConfigError, match=r"train\.lr \(1\.0 -> 0\.003\)"):  # keys the old run recorded still count
        fit_recipe(recipe_from_dict(raw), tmp_path / "changed", resume=True)


def test_corrupt_training_state_raises_checkpoint_error_naming_the_file(tmp_path, crash_after):
    raw = _csv_recipe(tmp_path)
    crash_after(1, 4)
    with pytest.raises(Crash):
        fit_recipe(recipe_from_dict(raw), tmp_path / "run")
    state_dir = tmp_path / "run" / RESUME_DIR / (tmp_path / "run" / RESUME_DIR / LATEST).read_text()
    tensors = state_dir / "state.safetensors"
    data = bytearray(tensors.read_bytes())
    data[-5] ^= 0xFF  # one flipped bit in the tensor data: still a valid safetensors file
    tensors.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=f"'{tensors}' is corrupt or truncated"):
        fit_recipe(recipe_from_dict(raw), tmp_path / "run", resume=True)
    (state_dir / "state.json").write_text('{"format": 1, "sta')
    with pytest.raises(CheckpointError, match=f"'{state_dir / 'state.json'}' is corrupt: not valid JSON"):
        fit_recipe(recipe_from_dict(raw), tmp_path / "run", resume=True)


def test_cli_resume_continues_the_same_mlflow_run(tmp_path, crash_after, capsys):
    mlflow = pytest.importorskip("mlflow")
    raw = _csv_recipe(tmp_path)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(json.dumps(raw))  # JSON is YAML
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    args = ["fit", str(recipe), "tracking.enabled=true", f"tracking.uri={uri}"]
    crash_after(1, 4)
    with pytest.raises(Crash):
        main([*args, "--out", str(tmp_path / "run")])
    run_id = json.loads((tmp_path / "run" / "mlflow_run.json").read_text())["run_id"]
    assert main([*args, "--resume", str(tmp_path / "run")]) == 0
    assert "run directory" in capsys.readouterr().out
    client = mlflow.tracking.MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name("sciformer").experiment_id])
    assert run.info.run_id == run_id and run.info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(run_id, "val_loss")] == [1, 2, 3]
    assert run.data.tags["sciformer.resumes"] == "1" and "test_mse" in run.data.metrics
    mlflow.set_tracking_uri(None)  # leave no global tracking state behind for later tests


def test_cli_resume_and_out_must_agree(tmp_path, capsys):
    assert main(["fit", str(SMOKE), "--out", str(tmp_path / "a"), "--resume", str(tmp_path / "b")]) == 2
    assert "name different run directories" in capsys.readouterr().err


def test_smoke_recipe_checkpoint_every_needs_a_non_negative_value():
    with pytest.raises(ConfigError, match=r"train.checkpoint_every"):
        load_recipe(SMOKE, ["train.checkpoint_every=-1"])


def test_a_fresh_run_in_a_used_directory_leaves_nothing_of_the_old_run(tmp_path, monkeypatch):
    raw = _csv_recipe(tmp_path, epochs=1)
    run = fit_recipe(recipe_from_dict(raw), tmp_path / "run").run_dir
    (run / "mlflow_run.json").write_text("{}")
    (run / "notes.txt").write_text("mine")
    assert {"checkpoint", "metrics.json", "history.json"} <= {p.name for p in run.iterdir()}

    def first_step_fails(*args, **kwargs):
        raise Crash("the new run dies before it saves anything of its own")

    monkeypatch.setattr(trainer_module.Trainer, "train_step", first_step_fails)
    with pytest.raises(Crash):
        fit_recipe(recipe_from_dict(raw), run)
    # the old model cannot be mistaken for the new run's, nor its MLflow run reopened by --resume
    assert sorted(p.name for p in run.iterdir()) == sorted(["notes.txt", RECIPE_FILE, DATA_FILE])
    assert not list(run.glob(".*.tmp"))


def test_tampered_resume_files_are_refused_with_one_line_each(tmp_path, crash_after):
    raw = _csv_recipe(tmp_path, epochs=2)
    crash_after(1, 0)
    with pytest.raises(Crash):
        fit_recipe(recipe_from_dict(raw), tmp_path / "run")
    resume = tmp_path / "run" / RESUME_DIR
    state_json = resume / (resume / LATEST).read_text() / "state.json"
    original = {path: path.read_bytes() for path in (resume / LATEST, state_json, tmp_path / "run" / RECIPE_FILE, tmp_path / "run" / DATA_FILE)}
    payload = json.loads(state_json.read_text())

    def edited(**changes):
        return json.dumps({**payload, **changes}).encode()

    progress = payload["state"]["progress"]
    cases = [
        (resume / LATEST, b"../../../etc", CheckpointError, "must name a state folder beside it"),
        (resume / LATEST, b"\xff\xfe garbage", CheckpointError, "does not exist"),
        (state_json, edited(sha256="none"), CheckpointError, "has no training state"),
        (state_json, edited(format="1"), CheckpointError, "its format is '1', not a number"),
        (state_json, edited(state={**payload["state"], "progress": {**progress, "epoch": "one"}}), CheckpointError, "progress.epoch is 'one'"),
        (state_json, edited(state={**payload["state"], "progress": {**progress, "step": -3}}), CheckpointError, "progress.step is -3"),
        (state_json, edited(state={**payload["state"], "rng": 7}), CheckpointError, "does not fit"),
        (tmp_path / "run" / RECIPE_FILE, b'{"model": ', ConfigError, "is damaged"),
        (tmp_path / "run" / DATA_FILE, b"[]", ConfigError, "is damaged"),
    ]
    for path, content, error, message in cases:
        path.write_bytes(content)
        with pytest.raises(error, match=message) as caught:
            fit_recipe(recipe_from_dict(raw), tmp_path / "run", resume=True)
        assert "\n" not in str(caught.value)
        path.write_bytes(original[path])
    assert load_training_state(resume)["progress"]["epoch"] == 1  # the refusals changed nothing
