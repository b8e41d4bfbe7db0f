"""Streaming end to end: training over a file far larger than the memory it may use, and a 2-process gloo run
over a streamed file scoring its test split as one process does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
MB = 2**20


def _big_file(path: Path, n: int, t: int = 20, res: int = 64) -> int:
    """A single-file PDEBench set written one sample at a time (the writer never holds it whole)."""
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("tensor", shape=(n, t, res, res), dtype="f4", chunks=(1, t, res, res))
        base = np.sin(np.linspace(0, 6, res * res, dtype=np.float32)).reshape(res, res)
        for i in range(n):
            ds[i] = base[None] * np.linspace(1, 2, t, dtype=np.float32)[:, None, None] + i * 1e-3
        f["x-coordinate"] = f["y-coordinate"] = np.linspace(0, 1, res, dtype=np.float32)
    return path.stat().st_size


TWO_STEPS = """
import json, resource, sys, types
import torch
from sciformer.data.operator import load_operator_data
from sciformer.data.sources import streaming

streaming.CHUNK_BYTES = 8 * 2**20  # the stream holds a few chunks at a time, whatever the file size
data_cfg = types.SimpleNamespace(name=sys.argv[1], in_memory=False, generate=None, num_samples=None, initial_step=1,
                                 reduced_resolution=1, reduced_resolution_t=1, test_resolution=None)
train_cfg = types.SimpleNamespace(mode="one_step", unroll_steps=1, augment="none")
data = load_operator_data(data_cfg, train_cfg, allow_generate=False)
torch.manual_seed(0)
model = torch.nn.Conv2d(data.in_channels, data.out_channels, 3, padding=1)  # a small operator: one local stencil
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
losses = []
for step, batch in zip(range(2), data.batches("train", 8, shuffle=True, generator=torch.Generator().manual_seed(0))):
    loss = torch.nn.functional.mse_loss(model(batch.u), batch.y)
    optimizer.zero_grad(); loss.backward(); optimizer.step()
    losses.append(loss.item())
print(json.dumps({"streamed": data.streamed, "losses": losses, "before": before,
                  "self": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "workers": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))
"""


def test_two_training_steps_over_a_file_far_larger_than_the_memory_they_use(tmp_path):
    size = _big_file(tmp_path / "big.h5", n=640)  # 640 trajectories of 20 frames at 64²: 210 MB
    assert size > 200 * MB
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", TWO_STEPS, str(tmp_path / "big.h5")], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["streamed"] and len(out["losses"]) == 2 and all(np.isfinite(out["losses"]))
    cap = 64 * MB  # under a third of the file
    assert (out["self"] - out["before"]) * 1024 < cap  # ru_maxrss is in KiB
    assert (out["workers"] - out["before"]) * 1024 < cap  # a forked worker starts from the parent's pages


@pytest.mark.integration
def test_two_gloo_processes_over_a_streamed_file_score_the_test_split_as_one(tmp_path):
    import torch

    from sciformer.config import load_recipe
    from sciformer.data.operator import load_operator_data
    from sciformer.engine.checkpoint import load_model
    from sciformer.engine.trainer import Trainer

    _big_file(tmp_path / "pde.h5", n=30, t=6, res=16)
    overrides = [f"data.name={tmp_path / 'pde.h5'}", "data.in_memory=false", "data.num_samples=null", "train.epochs=1", "train.batch_size=7",
                 "train.eval_batch_size=3"]
    recipe_file = REPO / "recipes" / "smoke" / "fno.yaml"
    command = [sys.executable, "-m", "sciformer", "fit", str(recipe_file), *overrides, "--nproc", "2", "--out", str(tmp_path / "ddp")]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ddp = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    assert ddp["world_size"] == 2
    recipe = load_recipe(recipe_file, overrides)
    data = load_operator_data(recipe.data, recipe.train, allow_generate=False)
    assert data.streamed
    model, _ = load_model(tmp_path / "ddp" / "checkpoint", torch.device("cpu"))
    single = Trainer(model, recipe.train, torch.device("cpu")).evaluate(data, "test")  # every test window, one process
    assert {k: ddp[f"test_{k}"] for k in ("mse", "mae", "rel_l2")} == pytest.approx(single, rel=1e-6)
