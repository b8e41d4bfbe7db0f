import pytest
import torch

from conftest import write_csv
from sciformer.config import TrainConfig, recipe_from_dict
from sciformer.data.timeseries import TimeSeriesData, read_frame
from sciformer.engine.runner import fit_recipe
from sciformer.engine.trainer import Trainer, lr_factor
from sciformer.registry import build_model


def test_halve_schedule_matches_tslib_type1():
    # TSLib adjusts after every epoch with factor 0.5 ** (epoch - 1), epoch counted from 1 -> lr, lr, lr/2, lr/4
    assert [lr_factor("halve", e, 10) for e in range(5)] == [1.0, 1.0, 0.5, 0.25, 0.125]
    assert lr_factor("cosine", 0, 10) == 1.0 and lr_factor("cosine", 5, 10) == pytest.approx(0.5)
    assert lr_factor("constant", 7, 10) == 1.0
    assert [lr_factor("type3", e, 100) for e in range(6)] == pytest.approx([1 / 25, 1, 1, 1, 0.9, 0.81])


def _data(tmp_path, n_rows=400):
    return TimeSeriesData(read_frame(write_csv(tmp_path / "s.csv", n_rows=n_rows)), lookback=24, horizon=12)


def _model(data):
    return build_model("itransformer", {"d_model": 16, "d_ff": 16, "n_heads": 2, "e_layers": 1}, n_vars=data.n_vars, n_marks=data.n_marks, lookback=24, horizon=12)


def test_training_reduces_validation_loss_and_restores_best(tmp_path):
    torch.manual_seed(0)
    data = _data(tmp_path)
    trainer = Trainer(_model(data), TrainConfig(epochs=4, batch_size=32, lr=3e-3, lr_schedule="constant", patience=0, progress=False), torch.device("cpu"))
    before = trainer.evaluate(data, "val")["mse"]
    result = trainer.fit(data)
    best = min(h["val_loss"] for h in result.history)
    assert best < before
    assert trainer.evaluate(data, "val")["mse"] == pytest.approx(best, rel=1e-6)  # best weights restored
    assert result.history[result.best_epoch - 1]["val_loss"] == best


def test_early_stopping_with_patience(tmp_path):
    torch.manual_seed(0)
    data = _data(tmp_path)
    # a learning rate of ~0 cannot improve after the first epoch, so patience 2 stops at epoch 3
    trainer = Trainer(_model(data), TrainConfig(epochs=10, batch_size=64, lr=1e-12, lr_schedule="constant", patience=2, progress=False), torch.device("cpu"))
    result = trainer.fit(data)
    assert result.epochs == 3 and result.best_epoch == 1


def test_grad_clip_and_bf16_autocast_run(tmp_path):
    torch.manual_seed(0)
    data = _data(tmp_path)
    cfg = TrainConfig(epochs=1, batch_size=64, grad_clip=0.1, precision="bf16", progress=False)
    result = Trainer(_model(data), cfg, torch.device("cpu")).fit(data)
    assert result.epochs == 1 and torch.isfinite(torch.tensor(result.history[0]["train_loss"]))


def test_same_seed_gives_identical_metrics(tmp_path):
    path = write_csv(tmp_path / "s.csv", n_rows=400)
    raw = {
        "data": {"name": str(path), "lookback": 24, "horizon": 12},
        "model": {"name": "itransformer", "d_model": 16, "d_ff": 16, "n_heads": 2, "e_layers": 1},
        "train": {"epochs": 2, "batch_size": 32, "progress": False},
        "tracking": {"enabled": False},
        "seed": 7,
    }
    a = fit_recipe(recipe_from_dict(raw), tmp_path / "a").metrics
    b = fit_recipe(recipe_from_dict(raw), tmp_path / "b").metrics
    c = fit_recipe(recipe_from_dict({**raw, "seed": 8}), tmp_path / "c").metrics
    assert (a["test_mse"], a["test_mae"], a["val_mse"]) == (b["test_mse"], b["test_mae"], b["val_mse"])
    assert a["test_mse"] != c["test_mse"]
