"""Empirical coverage of Forecaster's split-conformal intervals on the ETTh1 test windows.

    python benchmarks/forecast_intervals.py [--model itransformer] [--out docs/intervals.md]

Fits ``Forecaster(model, horizon=96, lookback=96)`` with the model's ETTh1 recipe hyperparameters on the
benchmark's train + validation rows (the first 11520; its last 20% calibrate the intervals), then backtests
the 2785 standard test windows (stride 1, origins 11519 .. 14303) and reports the share of true values inside
the 80/90/95% intervals, with the test MSE/MAE.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
from sciformer import Forecaster  # noqa: E402
from sciformer.data.catalog import resolve  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="itransformer")
    parser.add_argument("--levels", type=float, nargs="+", default=[80, 90, 95])
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    df = pd.read_csv(resolve("ett_h1"))
    fc = Forecaster.from_recipe(REPO / "recipes" / f"ett_{args.model}.yaml", ["train.progress=false", "tracking.enabled=false"])
    started = time.perf_counter()
    fc.fit(df.iloc[:11520])
    fit_seconds = time.perf_counter() - started
    result = fc.backtest(df.iloc[:14400], windows=2785, stride=1, level=args.levels)
    s = result.summary["scaled"]
    lines = [
        f"Interval coverage on the 2785 ETTh1 test windows ({args.model}, lookback 96, horizon 96; {time.strftime('%Y-%m-%d')}; "
        f"device {fc.device}; fit {fit_seconds:.0f} s; `python benchmarks/forecast_intervals.py --model {args.model}`)",
        "",
        "| nominal level | empirical coverage |",
        "|---|---|",
        *[f"| {lvl:g}% | {100 * s[f'coverage_{lvl:g}']:.1f}% |" for lvl in args.levels],
        "",
        f"Test MSE / MAE of the same forecasts (scaled): {s['mse']:.4f} / {s['mae']:.4f}.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    os.environ.setdefault("SCIFORMER_DATA_DIR", str(REPO.parent / "shared" / "datasets"))
    main()
