"""CPU thread settings: seconds per training step of the smoke PatchTST under torch's defaults and under the
settings ``import sciformer`` chooses.

    python benchmarks/cpu_threads.py                 # every setting, 3 rounds each, interleaved
    python benchmarks/cpu_threads.py --steps 20 --rounds 5

Each setting runs in its own process (OpenMP reads its environment once, when torch loads), which imports torch
before sciformer so that the package's defaults do not touch the measured setting. The step is that of
``recipes/smoke/patchtst.yaml`` (ETTh1-sized batch of 256 windows, lookback 48, horizon 24, 7 series): forward,
MSE loss, backward, Adam. Printed: median seconds per step of each round, and the median over rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SETTINGS = {  # name -> (environment, threads; None = torch's default)
    "torch default": ({}, None),
    "1 thread": ({}, 1),
    "OMP_WAIT_POLICY=PASSIVE": ({"OMP_WAIT_POLICY": "PASSIVE"}, None),
    "OMP_WAIT_POLICY=PASSIVE, 1 thread": ({"OMP_WAIT_POLICY": "PASSIVE"}, 1),
    "GOMP_SPINCOUNT=10000": ({"GOMP_SPINCOUNT": "10000"}, None),
    "GOMP_SPINCOUNT=100000": ({"GOMP_SPINCOUNT": "100000"}, None),
}


def worker(steps: int, threads: int | None) -> dict[str, float]:
    import torch  # before sciformer: its defaults apply only where torch is not loaded yet

    from sciformer.config import load_recipe
    from sciformer.registry import build_model

    if threads is not None:
        torch.set_num_threads(threads)
    recipe = load_recipe(REPO / "recipes/smoke/patchtst.yaml")
    L, H, N, B = recipe.data.lookback, recipe.data.horizon, 7, recipe.train.batch_size
    torch.manual_seed(0)
    model = build_model(recipe.model.name, recipe.model.args, n_vars=N, n_marks=4, lookback=L, horizon=H, label_len=recipe.data.label_len)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = torch.randn(B, L, N), torch.randn(B, H, N)
    x_mark, y_mark = torch.randn(B, L, 4), torch.randn(B, H, 4)
    times = []
    for i in range(steps + 3):  # 3 warm-up steps
        started = time.perf_counter()
        loss = torch.nn.functional.mse_loss(model(x, x_mark, y_mark), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i >= 3:
            times.append(time.perf_counter() - started)
    return {"median_s": statistics.median(times), "threads": torch.get_num_threads()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        threads = None if args.worker == "default" else int(args.worker)
        print(json.dumps(worker(args.steps, threads)))
        return
    results: dict[str, list[float]] = {name: [] for name in SETTINGS}
    threads_used: dict[str, int] = {}
    for _ in range(args.rounds):  # interleaved, so a busier minute of the machine hits every setting alike
        for name, (env, threads) in SETTINGS.items():
            environment = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "GOMP_SPINCOUNT")} | env
            command = [sys.executable, __file__, "--worker", "default" if threads is None else str(threads), "--steps", str(args.steps)]
            out = json.loads(subprocess.run(command, env=environment, capture_output=True, text=True, check=True).stdout)
            results[name].append(out["median_s"])
            threads_used[name] = out["threads"]
    print(f"{'setting':<36}{'threads':>8}  median s/step per round -> median")
    for name, values in results.items():
        rounds = " ".join(f"{v:.3f}" for v in values)
        print(f"{name:<36}{threads_used[name]:>8}  {rounds} -> {statistics.median(values):.3f}")


if __name__ == "__main__":
    main()
