"""DDP on CPU (gloo): two processes make the same updates as one and score every window once; a DDP run
killed mid-epoch resumes to exactly the metrics of an uninterrupted DDP run."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import NO_DATA, benchmark_data

from sciformer.cli import build_parser, torchrun_command
from sciformer.config import load_recipe
from sciformer.data.timeseries import ForecastBatch
from sciformer.engine.checkpoint import LATEST
from sciformer.engine.distributed import Distributed, local_share
from sciformer.engine.runner import RESUME_DIR, fit_recipe

REPO = Path(__file__).resolve().parents[2]
SMOKE = REPO / "recipes" / "smoke" / "itransformer.yaml"
# dropout 0: ranks draw their own dropout masks, so only a dropout-free model can match one process numerically.
# Batch 84: ETTh1's 8569 training windows leave a last batch of one window, so one rank's share of it is empty.
ARGS = ["model.dropout=0", "train.epochs=2", "train.batch_size=84", "train.checkpoint_every=20", "train.patience=0"]
METRICS = ("test_mse", "test_mae", "test_rel_l2", "val_mse", "val_mae")


def _batch(n: int) -> ForecastBatch:
    x = torch.arange(n, dtype=torch.float32)[:, None, None].expand(n, 4, 2)
    return ForecastBatch(x, x[..., :1], x + 0.5, x[..., :1])


@pytest.mark.parametrize("n, world", [(84, 2), (85, 2), (1, 2), (7, 3), (2, 4)])
def test_rank_shares_partition_the_global_batch_and_weights_average_to_its_mean(n, world):
    rows, weighted = [], 0.0
    for rank in range(world):
        share, weight = local_share(_batch(n), Distributed(rank=rank, world_size=world))
        if weight == 0:
            assert share.x.shape[0] == 1  # an empty share trains on one row that does not count
            continue
        rows += share.x[:, 0, 0].tolist()
        assert weight == share.x.shape[0] * world / n
        weighted += weight * share.y.mean().item()  # each rank's weighted mean loss ...
    assert rows == list(range(n))  # every row exactly once, in order
    assert weighted / world == pytest.approx(_batch(n).y.mean().item())  # ... averaged by DDP = the global mean


def test_operator_batch_shares_keep_non_tensor_fields():
    from sciformer.data.operator import OperatorBatch

    u = torch.arange(5.0)[:, None, None].expand(5, 2, 8)
    batch = OperatorBatch(u, u[:, :1] * 2, None, 3)
    share, weight = local_share(batch, Distributed(rank=1, world_size=2))
    assert share.u[:, 0, 0].tolist() == [2.0, 3.0, 4.0] and share.y.shape == (3, 1, 8)
    assert (share.t, share.steps, weight) == (None, 3, 3 * 2 / 5)


def test_single_process_share_is_the_batch_itself():
    batch = _batch(5)
    assert local_share(batch, Distributed()) == (batch, 1.0)


def test_nproc_builds_a_standalone_torchrun_command():
    args = build_parser().parse_args(["--debug", "fit", "r.yaml", "train.epochs=2", "--nproc", "4", "--out", "runs/x"])
    command = torchrun_command(args)
    assert command[1:] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "4", "-m", "sciformer", "--debug",
                           "fit", "r.yaml", "train.epochs=2", "--out", "runs/x"]
    assert command[0] == sys.executable


# ----------------------------------------------------------------------------------- torchrun runs
def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}


def _ddp_fit(*extra: str) -> list[str]:
    return [sys.executable, "-m", "sciformer", "fit", str(SMOKE), *ARGS, "--nproc", "2", *extra]


def _children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (torchrun's workers)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _descendants(pid: int) -> list[int]:
    out = []
    for child in _children(pid):
        out += [child, *_descendants(child)]
    return out


@pytest.fixture(scope="module")
def ddp_runs(tmp_path_factory):
    """An uninterrupted 2-process run, and beside it (for the resume test) a 2-process run killed mid-epoch."""
    if not sys.platform.startswith("linux"):
        pytest.skip("finds torchrun's workers through /proc")
    if benchmark_data() is None:  # the smoke recipe trains on ETTh1
        pytest.skip(NO_DATA)
    root = tmp_path_factory.mktemp("ddp")
    whole = subprocess.Popen(_ddp_fit("--out", str(root / "ddp")), env=_env(), cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    killed = subprocess.Popen(_ddp_fit("--out", str(root / "killed")), env=_env(), cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    latest = root / "killed" / RESUME_DIR / LATEST
    name, deadline = "", time.monotonic() + 180
    try:
        while not (name.startswith("epoch0000-step") and not name.endswith("step000000")):  # mid-epoch 1
            assert killed.poll() is None and time.monotonic() < deadline, "the DDP run ended before it could be killed"
            time.sleep(0.005)
            name = latest.read_text() if latest.is_file() else ""
        for pid in _descendants(killed.pid):  # the whole node dies: every worker at once
            os.kill(pid, signal.SIGKILL)
        killed.wait(timeout=60)
    finally:
        for pid in _descendants(killed.pid):
            os.kill(pid, signal.SIGKILL)
        if killed.poll() is None:
            killed.kill()
    output = whole.communicate(timeout=300)[0]
    assert whole.returncode == 0, output[-3000:]
    return root, output


@pytest.mark.integration  # torchrun
def test_sigterm_to_the_launcher_stops_torchrun_and_its_workers_with_a_resumable_state(data_dir, tmp_path):
    launcher = subprocess.Popen(_ddp_fit("--out", str(tmp_path / "run")), env=_env(), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    latest, deadline = tmp_path / "run" / RESUME_DIR / LATEST, time.monotonic() + 180
    try:
        while not (latest.is_file() and latest.read_text().startswith("epoch0000-step")):
            assert launcher.poll() is None and time.monotonic() < deadline, "the DDP run ended before the signal"
            time.sleep(0.01)
        workers = _descendants(launcher.pid)
        launcher.send_signal(signal.SIGTERM)  # as `kill` or a scheduler sends it: to the launcher alone
        output = launcher.communicate(timeout=120)[0]
    finally:
        if launcher.poll() is None:
            for pid in _descendants(launcher.pid):
                os.kill(pid, signal.SIGKILL)
            launcher.kill()
    assert launcher.returncode == 143, output[-3000:]
    assert not [pid for pid in workers if Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text().split(")")[1][:3]]
    assert latest.is_file() and not (tmp_path / "run" / "metrics.json").exists()


def _metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


@pytest.mark.integration  # torchrun
def test_two_gloo_processes_give_the_metrics_of_one(data_dir, ddp_runs, tmp_path):
    root, output = ddp_runs
    assert output.count("run directory:") == 1  # rank 0 alone reports ...
    assert sorted(p.name for p in (root / "ddp").iterdir()) == ["checkpoint", "data.json", "forecast.png", "history.json", "metrics.json", "recipe.json"]
    ddp = _metrics(root / "ddp")
    assert ddp["world_size"] == 2
    single = fit_recipe(load_recipe(SMOKE, ARGS), tmp_path / "single").metrics
    # the same global batches and updates; only the order of floating-point sums differs
    assert {k: ddp[k] for k in METRICS} == pytest.approx({k: single[k] for k in METRICS}, rel=1e-6)
    assert ddp["best_epoch"] == single["best_epoch"] and ddp["epochs"] == single["epochs"] == 2


def _train_losses(run_dir: Path) -> list[float]:
    return [row["train_loss"] for row in json.loads((run_dir / "history.json").read_text())]


@pytest.mark.integration  # torchrun
def test_ddp_run_killed_mid_epoch_resumes_to_the_same_metrics(data_dir, ddp_runs):
    root, _ = ddp_runs
    killed = root / "killed"
    assert not (killed / "metrics.json").exists()
    shutil.copytree(killed, root / "killed_then_one_process")
    resumed = subprocess.run(_ddp_fit("--resume", str(killed)), env=_env(), cwd=root, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-3000:]
    a, b = _metrics(root / "ddp"), _metrics(killed)
    assert {k: a[k] for k in (*METRICS, "best_epoch", "epochs")} == {k: b[k] for k in (*METRICS, "best_epoch", "epochs")}
    assert _train_losses(killed) == pytest.approx(_train_losses(root / "ddp"), rel=1e-9)
    # resumed on one process: the logged loss of the interrupted epoch keeps its scale (it was off by the world size)
    fit_recipe(load_recipe(SMOKE, ARGS), root / "killed_then_one_process", resume=True)
    assert _train_losses(root / "killed_then_one_process") == pytest.approx(_train_losses(root / "ddp"), rel=1e-6)


@pytest.mark.slow  # ~20 s on two CPU cores; the operator batch's rank shares are unit-tested below
def test_operator_recipe_under_ddp_matches_one_process(data_dir, tmp_path):
    # FactFormer on Darcy: 180 training pairs at batch 32 (last batch 20), 20 validation and 50 test samples
    recipe, args = REPO / "recipes" / "smoke" / "factformer.yaml", ["train.epochs=1"]
    command = [sys.executable, "-m", "sciformer", "fit", str(recipe), *args, "--nproc", "2", "--out", str(tmp_path / "ddp")]
    proc = subprocess.run(command, env=_env(), cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ddp = _metrics(tmp_path / "ddp")
    single = fit_recipe(load_recipe(recipe, args), tmp_path / "single").metrics
    shared = ("test_mse", "test_mae", "test_rel_l2", "val_mse", "test_nrmse")
    assert {k: ddp[k] for k in shared} == pytest.approx({k: single[k] for k in shared}, rel=1e-5)
