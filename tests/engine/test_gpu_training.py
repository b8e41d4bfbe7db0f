"""GPU training paths (opt-in: ``pytest -m gpu tests/engine/test_gpu_training.py``): CUDA graphs, fused Adam,
torch.compile and NCCL DDP give the eager loop's numbers; resume works with graphs on."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sciformer.config import load_recipe
from sciformer.engine.callbacks import CallbackList
from sciformer.engine.runner import fit_recipe, load_data, train
from sciformer.engine.trainer import seed_everything

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

REPO = Path(__file__).resolve().parents[2]
SMOKE = REPO / "recipes" / "smoke" / "itransformer.yaml"
# dropout 0: graphs and eager draw dropout masks in a different order
ARGS = ["model.dropout=0", "train.epochs=2", "train.batch_size=64", "train.device=cuda"]
METRICS = ("test_mse", "test_mae", "val_mse")


def _fit(*extra: str, smoke: Path = SMOKE, args: list[str] = ARGS):
    recipe = load_recipe(smoke, [*args, *extra])
    seed_everything(recipe.seed)
    data = load_data(recipe).to("cuda")
    _, trainer, _ = train(recipe, data, torch.device("cuda"), CallbackList())
    test = trainer.evaluate(data, "test")
    return trainer, {"test_mse": test["mse"], "test_mae": test["mae"], "val_mse": trainer.evaluate(data, "val")["mse"]}


@pytest.mark.filterwarnings("error:CUDA graph capture failed")
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_cuda_graphs_train_and_evaluate_like_the_eager_loop(data_dir, tmp_path, precision):
    eager_trainer, eager = _fit(f"train.precision={precision}")
    trainer, graphs = _fit(f"train.precision={precision}", "train.cuda_graphs=true")
    assert trainer._train_graph.graph is not None and trainer._eval_graph.graph is not None  # captured, not fallen back
    assert trainer.cuda_graphs == "captured" and eager_trainer.cuda_graphs == "off"
    tolerance = 1e-4 if precision == "fp32" else 2e-2
    assert {k: graphs[k] for k in METRICS} == pytest.approx({k: eager[k] for k in METRICS}, rel=tolerance)


@pytest.mark.filterwarnings("error:CUDA graph capture failed")
@pytest.mark.parametrize("name", ["autoformer", "informer", "etsformer", "patchtst"])
def test_every_forecaster_replays_its_steps_from_cuda_graphs_with_the_eager_numbers(data_dir, name):
    # dropout, ETSformer's augmentation and Informer's key samples stay on: a replayed graph advances the CUDA
    # generator exactly as the eager steps draw from it
    smoke, args = REPO / "recipes" / "smoke" / f"{name}.yaml", ["train.epochs=1", "train.device=cuda"]
    _, eager = _fit("train.cuda_graphs=false", smoke=smoke, args=args)
    trainer, graphs = _fit("train.cuda_graphs=true", smoke=smoke, args=args)
    assert trainer._train_graph.graph is not None and trainer._eval_graph.graph is not None  # captured, not fallen back
    assert {k: graphs[k] for k in METRICS} == pytest.approx({k: eager[k] for k in METRICS}, rel=1e-3)


@pytest.mark.filterwarnings("error:CUDA graph capture failed")
def test_fno_with_complex_weights_replays_its_steps_from_cuda_graphs(data_dir):
    # complex spectral weights take the foreach Adam, whose step counts the eager warm-up leaves on the host
    pytest.importorskip("neuralop")
    smoke, args = REPO / "recipes" / "smoke" / "fno.yaml", ["train.epochs=2", "train.device=cuda"]
    _, eager = _fit("train.cuda_graphs=false", smoke=smoke, args=args)
    trainer, graphs = _fit("train.cuda_graphs=true", smoke=smoke, args=args)
    assert trainer._train_graph.graph is not None  # captured, not fallen back
    assert {k: graphs[k] for k in METRICS} == pytest.approx({k: eager[k] for k in METRICS}, rel=1e-3)


def test_fused_and_foreach_adam_agree(data_dir, tmp_path):
    _, fused = _fit("train.fused_optimizer=true")
    _, foreach = _fit("train.fused_optimizer=false")
    assert {k: fused[k] for k in METRICS} == pytest.approx({k: foreach[k] for k in METRICS}, rel=1e-4)


def test_torch_compile_trains_like_eager(data_dir, tmp_path):
    _, eager = _fit()
    _, compiled = _fit("train.compile=true")
    assert {k: compiled[k] for k in METRICS} == pytest.approx({k: eager[k] for k in METRICS}, rel=1e-3)


def test_resume_with_cuda_graphs(data_dir, tmp_path, monkeypatch):
    from sciformer.engine import trainer as trainer_module

    class Crash(BaseException):
        pass

    save = trainer_module.Trainer._save

    def save_then_crash(self, progress, *args):
        save(self, progress, *args)
        if (progress.epoch, progress.step) == (1, 40):
            raise Crash

    args = [*ARGS, "train.cuda_graphs=true", "train.checkpoint_every=40"]
    reference = fit_recipe(load_recipe(SMOKE, args), tmp_path / "reference").metrics
    monkeypatch.setattr(trainer_module.Trainer, "_save", save_then_crash)
    with pytest.raises(Crash):
        fit_recipe(load_recipe(SMOKE, args), tmp_path / "run")
    resumed = fit_recipe(load_recipe(SMOKE, args), tmp_path / "run", resume=True).metrics
    # GPU kernels are not bit-reproducible (atomics in index backward), so: equal up to float noise
    assert {k: resumed[k] for k in METRICS} == pytest.approx({k: reference[k] for k in METRICS}, rel=1e-4)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_nccl_ddp_on_two_gpus_matches_one(data_dir, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "sciformer", "fit", str(SMOKE), *ARGS, "--nproc", "2", "--out", str(tmp_path / "ddp")]
    proc = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ddp = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    single = fit_recipe(load_recipe(SMOKE, ARGS), tmp_path / "single").metrics
    assert ddp["world_size"] == 2 and ddp["device"] == "cuda:0"
    assert {k: ddp[k] for k in METRICS} == pytest.approx({k: single[k] for k in METRICS}, rel=1e-4)
