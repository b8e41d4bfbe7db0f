"""CPU thread settings: seconds per training step of the smoke PatchTST under torch's defaults and under the
settings ``import sciformer`` chooses, on a quiet machine and beside other busy processes.

    python benchmarks/cpu_threads.py                 # every setting, 3 rounds each, interleaved
    python benchmarks/cpu_threads.py --load 0 1 2 4  # the same with 0, 1, 2 and 4 busy processes beside it

Each setting runs in its own process (OpenMP reads its environment once, when torch loads), which imports torch
before sciformer so that the package's defaults do not touch the measured setting, except ``sciformer's default``,
which imports sciformer first (its choice then sees the busy processes). ``--load N`` runs N processes that
spin a core each for the whole measurement of that level. The step is that of
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
SETTINGS = {  # name -> (environment, threads: None = torch's default, "sciformer" = import sciformer first)
    "torch default": ({}, None),
    "1 thread": ({}, 1),
    "OMP_WAIT_POLICY=PASSIVE": ({"OMP_WAIT_POLICY": "PASSIVE"}, None),
    "GOMP_SPINCOUNT=10000": ({"GOMP_SPINCOUNT": "10000"}, None),
    "sciformer's default": ({}, "sciformer"),
}
VARIABLES = ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "GOMP_SPINCOUNT")


def worker(steps: int, threads: int | str | None) -> dict[str, float]:
    if threads == "sciformer":
        import sciformer  # noqa: F401  (its thread defaults, chosen now, before torch loads)
    import torch  # otherwise before sciformer: its defaults apply only where torch is not loaded yet

    from sciformer.config import load_recipe
    from sciformer.registry import build_model

    if isinstance(threads, int):
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


def measure(steps: int, rounds: int) -> dict[str, dict]:
    """Median s/step of each setting per round, the rounds interleaved so that a busier minute hits every setting alike."""
    results: dict[str, dict] = {name: {"rounds": []} for name in SETTINGS}
    for _ in range(rounds):
        for name, (env, threads) in SETTINGS.items():
            environment = {k: v for k, v in os.environ.items() if k not in VARIABLES} | env
            command = [sys.executable, __file__, "--worker", "default" if threads is None else str(threads), "--steps", str(steps)]
            out = json.loads(subprocess.run(command, env=environment, capture_output=True, text=True, check=True).stdout)
            results[name]["rounds"].append(out["median_s"])
            results[name]["threads"] = out["threads"]
    for r in results.values():
        r["median_s"] = statistics.median(r["rounds"])
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--load", type=int, nargs="+", default=[0], help="busy processes beside the measurement, one level after another")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        threads = {"default": None, "sciformer": "sciformer"}[args.worker] if args.worker in ("default", "sciformer") else int(args.worker)
        print(json.dumps(worker(args.steps, threads)))
        return
    levels = {}
    for load in args.load:
        spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(load)]
        try:
            time.sleep(1 if load else 0)  # the spinners running before the first measurement
            levels[load] = measure(args.steps, args.rounds)
        finally:
            for p in spinners:
                p.kill()
                p.wait()
        one = levels[load]["1 thread"]["median_s"]
        print(f"\n{load} busy processes beside it ({os.cpu_count()} cores)")
        print(f"{'setting':<28}{'threads':>8}  median s/step per round -> median (× 1 thread)")
        for name, r in levels[load].items():
            rounds = " ".join(f"{v:.3f}" for v in r["rounds"])
            print(f"{name:<28}{r['threads']:>8}  {rounds} -> {r['median_s']:.3f} ({r['median_s'] / one:.2f})")
    if args.json:
        args.json.write_text(json.dumps({"cores": os.cpu_count(), "steps": args.steps, "levels": levels}, indent=1))


if __name__ == "__main__":
    main()
