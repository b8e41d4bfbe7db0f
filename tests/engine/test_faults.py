"""Faults during a run and their documented outcome: a full disk (injected ENOSPC), a loss that becomes NaN, and
SIGTERM/SIGINT. None of them exits 0, none loses what was already finished, and each says what happened in one line."""

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import tiny_forecast_recipe as _raw

from sciformer.cli import main
from sciformer.config import recipe_from_dict
from sciformer.engine import plots
from sciformer.engine import trainer as trainer_module
from sciformer.engine.callbacks import Callback
from sciformer.engine.checkpoint import LATEST, load_model, load_training_state
from sciformer.engine.rundir import CHECKPOINT_DIR, HISTORY_FILE, METRICS_FILE, RESUME_DIR
from sciformer.engine.runner import fit_recipe
from sciformer.errors import RunInterrupted, StorageError, TrainingDivergedError

REPO = Path(__file__).resolve().parents[2]


def _recipe_file(tmp_path: Path, **train) -> Path:
    path = tmp_path / "r.yaml"
    path.write_text(json.dumps(_raw(tmp_path, **train)))  # JSON is YAML
    return path


def _messages(capsys) -> list[str]:
    """What the CLI said on stderr besides the per-epoch progress lines."""
    return [line for line in capsys.readouterr().err.splitlines() if not line.startswith("epoch ")]


def _no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


# ------------------------------------------------------------------------------------------ full disk
def test_a_full_disk_while_plotting_keeps_metrics_and_exits_2_with_one_line(tmp_path, monkeypatch, capsys):
    from matplotlib.figure import Figure

    monkeypatch.setattr(Figure, "savefig", _no_space)
    run = tmp_path / "run"
    assert main(["fit", str(_recipe_file(tmp_path)), "--out", str(run)]) == 2
    assert _messages(capsys) == [f"sciformer: error: cannot write '{run / 'forecast.png'}': no space left on the device"]
    metrics = json.loads((run / METRICS_FILE).read_text())
    assert metrics["epochs"] == 1 and len(json.loads((run / HISTORY_FILE).read_text())) == 1
    load_model(run / CHECKPOINT_DIR)  # the final checkpoint is complete


def test_a_full_disk_while_checkpointing_never_marks_the_run_finished(tmp_path, monkeypatch):
    from sciformer.engine import checkpoint

    monkeypatch.setattr(checkpoint, "_write_tensors", _no_space)
    with pytest.raises(StorageError, match="no space left on the device"):
        fit_recipe(recipe_from_dict(_raw(tmp_path)), tmp_path / "run")
    assert not (tmp_path / "run" / METRICS_FILE).exists()


def test_save_figure_turns_oserror_into_one_storage_error(tmp_path):
    fig = plots.step_error_figure([1.0, 0.5])
    (tmp_path / "plot.png").mkdir()  # a folder where the file should go
    with pytest.raises(StorageError, match=f"cannot write '{tmp_path / 'plot.png'}': Is a directory"):
        plots.save_figure(fig, tmp_path / "plot.png")


# ------------------------------------------------------------------------------------------ divergence
def test_a_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch, capsys):
    step = trainer_module.Trainer.train_step
    calls = []

    def nan_in_second_epoch(self, batch, lr):
        calls.append(1)
        loss = step(self, batch, lr)
        return loss * float("nan") if len(calls) > 3 else loss  # 3 steps an epoch: epoch 2 diverges

    monkeypatch.setattr(trainer_module.Trainer, "train_step", nan_in_second_epoch)
    run = tmp_path / "run"
    with pytest.raises(TrainingDivergedError, match=r"the training loss is nan in epoch 2, steps 1-3; the run keeps its last good checkpoint"):
        fit_recipe(recipe_from_dict(_raw(tmp_path, epochs=3)), run)
    assert not (run / METRICS_FILE).exists()
    load_model(run / CHECKPOINT_DIR)  # epoch 1's model
    assert (run / RESUME_DIR / LATEST).read_text() == "epoch0001-step000000"
    calls.clear()
    assert main(["fit", str(_recipe_file(tmp_path, epochs=3)), "--out", str(tmp_path / "cli")]) == 2
    (message,) = _messages(capsys)
    assert message.startswith("sciformer: error: training diverged: the training loss is nan in epoch 2")


def test_a_nan_loss_is_caught_at_a_mid_epoch_checkpoint_before_it_is_saved(tmp_path, monkeypatch):
    step = trainer_module.Trainer.train_step
    calls = []

    def inf_from_step_3(self, batch, lr):
        calls.append(1)
        loss = step(self, batch, lr)
        return loss + float("inf") if len(calls) >= 3 else loss

    monkeypatch.setattr(trainer_module.Trainer, "train_step", inf_from_step_3)
    run = tmp_path / "run"
    with pytest.raises(TrainingDivergedError, match=r"is inf in epoch 1, steps 3-4"):
        fit_recipe(recipe_from_dict(_raw(tmp_path, checkpoint_every=2, batch_size=24)), run)  # 4 steps
    assert (run / RESUME_DIR / LATEST).read_text() == "epoch0000-step000002"  # the last finite state


# --------------------------------------------------------------------------------------------- signals
def test_a_signal_in_the_training_loop_stops_at_the_next_step_with_a_state_there(tmp_path, monkeypatch):
    step = trainer_module.Trainer.train_step
    calls = []

    def signal_during_step_2(self, batch, lr):
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return step(self, batch, lr)

    monkeypatch.setattr(trainer_module.Trainer, "train_step", signal_during_step_2)
    run = tmp_path / "run"
    with pytest.raises(RunInterrupted) as caught:
        fit_recipe(recipe_from_dict(_raw(tmp_path, epochs=2)), run)
    assert caught.value.exit_code == 143 and f"sciformer fit --resume {run}" in str(caught.value)
    assert (run / RESUME_DIR / LATEST).read_text() == "epoch0000-step000002"
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handlers are given back
    monkeypatch.undo()
    metrics = fit_recipe(recipe_from_dict(_raw(tmp_path, epochs=2)), run, resume=True).metrics
    assert metrics["epochs"] == 2


def test_a_failure_the_signal_caused_reports_the_interruption(tmp_path, monkeypatch):
    def ctrl_c_ends_the_data_workers_too(self, batch, lr):
        os.kill(os.getpid(), signal.SIGINT)
        raise RuntimeError("DataLoader worker (pid 4242) exited unexpectedly")

    monkeypatch.setattr(trainer_module.Trainer, "train_step", ctrl_c_ends_the_data_workers_too)
    with pytest.raises(RunInterrupted) as caught:
        fit_recipe(recipe_from_dict(_raw(tmp_path)), tmp_path / "run")
    assert caught.value.exit_code == 130


class Recorder(Callback):
    def __init__(self):
        self.failures = []

    def on_failure(self, error):
        self.failures.append(error)


def test_callbacks_learn_that_the_run_was_interrupted(tmp_path, monkeypatch):
    def sigint(self, *args):
        os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(trainer_module.Trainer, "evaluate", sigint)  # outside the step loop: raised at once
    recorder = Recorder()
    with pytest.raises(RunInterrupted):
        fit_recipe(recipe_from_dict(_raw(tmp_path)), tmp_path / "run", callbacks=[recorder])
    (error,) = recorder.failures
    assert isinstance(error, RunInterrupted) and error.exit_code == 130 and error.signal == signal.SIGINT


@pytest.mark.integration
def test_sigterm_ends_the_cli_with_143_the_resume_command_and_a_resumable_state(tmp_path):
    recipe = _recipe_file(tmp_path, epochs=400, checkpoint_every=1)  # far longer than the test waits
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "sciformer", "fit", str(recipe), "--out", str(run)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (run / RESUME_DIR / LATEST).is_file():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1][-2000:]
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-2000:]
    assert err.strip().splitlines()[-1] == f"sciformer: interrupted by SIGTERM; the run keeps a resumable state, continue it with: sciformer fit --resume {run}"
    assert not (run / METRICS_FILE).exists()
    assert load_training_state(run / RESUME_DIR)["progress"]["step"] >= 1  # a complete state to resume from


def test_a_signal_while_tracking_a_finished_run_says_the_results_are_complete(tmp_path):
    class SlowUpload(Recorder):
        def on_fit_end(self, metrics, run_dir):
            os.kill(os.getpid(), signal.SIGTERM)

    tracker = SlowUpload()
    with pytest.raises(RunInterrupted, match=r"after the run had finished; its results are complete in .*run$"):
        fit_recipe(recipe_from_dict(_raw(tmp_path)), tmp_path / "run", callbacks=[tracker])
    assert (tmp_path / "run" / METRICS_FILE).is_file()
    (error,) = tracker.failures
    assert error.finished and error.exit_code == 143



def test_a_nan_validation_loss_is_never_taken_for_the_best_model(tmp_path, monkeypatch):
    evaluate = trainer_module.Trainer.evaluate

    def nan_on_validation(self, data, split):
        scores = evaluate(self, data, split)
        return {k: float("nan") for k in scores} if split == "val" else scores

    monkeypatch.setattr(trainer_module.Trainer, "evaluate", nan_on_validation)
    with pytest.raises(TrainingDivergedError, match=r"the validation loss is nan after epoch 1"):
        fit_recipe(recipe_from_dict(_raw(tmp_path)), tmp_path / "run")
    assert not (tmp_path / "run" / CHECKPOINT_DIR).exists()  # nothing was saved as the best model
