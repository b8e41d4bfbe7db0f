"""The ``sciformer`` command: one entry point, one function per verb.

User errors (bad recipe, missing data, corrupt checkpoint) print one line and exit with code 2;
``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from sciformer.errors import ConfigError, SciformerError

STARTED = time.perf_counter()  # wall time of a command is reported from here (the interpreter's own start is ~50 ms before)
RECIPES_DIR = Path(__file__).resolve().parents[1] / "recipes"


def cmd_fit(args: argparse.Namespace) -> int:
    from sciformer.engine.distributed import env_rank, launched_by_torchrun

    if args.nproc is not None and args.nproc > 1 and not launched_by_torchrun():
        return _launch_torchrun(args)
    from sciformer.config import load_recipe
    from sciformer.engine.runner import fit_recipe

    if args.resume is not None and args.out is not None and args.out != args.resume:
        raise ConfigError(f"--out {args.out} and --resume {args.resume} name different run directories; give only --resume")
    recipe = load_recipe(args.recipe, args.overrides)
    run_dir = args.resume if args.resume is not None else args.out
    callbacks = []
    if recipe.tracking.enabled and env_rank() == 0:  # rank 0 alone talks to MLflow
        from sciformer.tracking.mlflow import MLflowTracker

        callbacks.append(MLflowTracker(recipe.tracking, run_name=recipe.name))
    try:
        result = fit_recipe(recipe, run_dir, callbacks, resume=args.resume is not None)
    except KeyboardInterrupt:
        if env_rank() == 0:
            print(f"sciformer: interrupted; continue with: sciformer fit {args.recipe} ... --resume RUN_DIR", file=sys.stderr)
        raise
    if result.rank != 0:
        return 0
    m = result.metrics
    print(f"run directory: {result.run_dir}")
    print(
        f"test_mse {m['test_mse']:.4f}  test_mae {m['test_mae']:.4f}  (best epoch {m['best_epoch']} of {m['epochs']}, "
        f"{m['seconds_per_epoch']:.2f} s/epoch)"
    )
    phases = ", ".join(f"{k} {v:.1f} s" for k, v in m.get("phase_seconds", {}).items())
    print(f"wall {time.perf_counter() - STARTED:.1f} s since start ({phases})")
    return 0


def torchrun_command(args: argparse.Namespace) -> list[str]:
    """``sciformer fit ... --nproc N`` as the equivalent single-node torchrun command."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(args.nproc), "-m", "sciformer"]
    if args.debug:
        command.append("--debug")
    command += ["fit", str(args.recipe), *args.overrides]
    if args.out is not None:
        command += ["--out", str(args.out)]
    if args.resume is not None:
        command += ["--resume", str(args.resume)]
    return command


def _launch_torchrun(args: argparse.Namespace) -> int:
    import subprocess

    command = torchrun_command(args)
    print("launching: " + " ".join(command[2:]), file=sys.stderr)
    return subprocess.call(command)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from sciformer.engine.runner import METRICS_FILE, evaluate_run

    metrics = evaluate_run(args.run_dir, device=args.device, overrides=args.overrides)
    print(json.dumps(metrics, indent=2))
    recorded = Path(args.run_dir) / METRICS_FILE
    if recorded.is_file() and not args.overrides:
        before = json.loads(recorded.read_text())
        shared = [k for k in metrics if k.startswith("test_") and k in before]
        same = all(before[k] == metrics[k] or (before[k] != before[k] and metrics[k] != metrics[k]) for k in shared)  # NaN == NaN
        print(f"{'matches' if same else 'differs from'} {recorded}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from sciformer.api.forecaster import Forecaster

    forecaster = Forecaster.load(args.run_dir, device=args.device)
    forecast = forecaster.predict(args.data, level=args.level or None)
    if args.out:
        forecast.to_csv(args.out)
        print(f"forecast of {len(forecast)} steps written to {args.out}")
    else:
        print(forecast.to_csv(), end="")
    return 0


def cmd_rollout(args: argparse.Namespace) -> int:
    from sciformer.engine.rollout import run_rollout

    callbacks = []
    if not args.no_tracking:
        from sciformer.tracking.mlflow import RolloutTracker

        callbacks.append(RolloutTracker(args.run_dir))
    result = run_rollout(args.run_dir, args.data, args.steps, args.out, args.frames, args.split, args.device, callbacks)
    print(f"rollout of {result['steps']} steps written to {result['out_dir']}: nRMSE mean {result['nrmse_mean']:.4g}, last step {result['nrmse_last']:.4g}")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from sciformer.config import load_recipe

    recipe = load_recipe(args.recipe, args.overrides)
    print(f"{args.recipe}: valid (model '{recipe.model.name}', data '{recipe.data.name}')")
    return 0


def cmd_ls(args: argparse.Namespace) -> int:
    if args.what == "models":
        from sciformer.registry import get_model, list_models

        for name in list_models():
            print(f"{name:<24}{get_model(name).task}")
    elif args.what == "datasets":
        _print_datasets()
    else:
        for path in sorted(RECIPES_DIR.rglob("*.yaml")):
            print(path.relative_to(RECIPES_DIR.parent))
    return 0


def _print_datasets() -> None:
    from sciformer.data.catalog import find_file, manifests

    for name, manifest in sorted(manifests().items()):
        where = find_file(manifest)
        print(f"{name:<14}{manifest.freq or '':<8}{manifest.description:<80}{where or 'not downloaded'}")


def cmd_datasets(args: argparse.Namespace) -> int:
    if args.action == "ls":
        _print_datasets()
    elif args.action == "download":
        from sciformer.data.catalog import download

        for name in args.names:
            print(f"{name}: {download(name)}")
    elif args.action == "generate":
        from sciformer.data.generators import generate

        params = {"nu": args.nu, "beta": args.beta}
        path = generate(args.generator, args.out, n=args.n, res=args.res, seed=args.seed, device=args.device, batch_size=args.batch_size, **params)
        print(f"wrote {path}")
    elif args.action == "inspect":
        from sciformer.data.pde import describe

        print(describe(args.file))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sciformer", description="Transformer surrogates for time series and PDEs.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of user errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("fit", help="train, validate and test a recipe", description="Train, validate and test a recipe; write a run directory.")
    p.add_argument("recipe", help="recipe YAML file")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.epochs=3 data.horizon=192")
    p.add_argument("--out", type=Path, default=None, help="run directory (default: runs/<recipe>-<timestamp>/)")
    p.add_argument("--resume", type=Path, default=None, metavar="RUN_DIR",
                   help="continue an interrupted run from its last checkpoint (same recipe and overrides; same MLflow run)")
    p.add_argument("--nproc", type=int, default=None, metavar="N",
                   help="train on N processes (one per GPU) with DDP: shorthand for torchrun --standalone --nproc_per_node N -m sciformer fit ...")
    p.set_defaults(func=cmd_fit)

    p = sub.add_parser("evaluate", help="re-test a run's checkpoint", description="Re-run the test split from a run directory's checkpoint.")
    p.add_argument("run_dir", type=Path)
    p.add_argument("overrides", nargs="*", help="data.* overrides, e.g. data.test_resolution=32")
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: the recipe's)")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", help="forecast the real future from a run's checkpoint",
                       description="Forecast the next horizon steps after the last timestamp of --data (default: the end of the training data).")
    p.add_argument("run_dir", type=Path, help="a run directory (or a checkpoint directory / Forecaster.save folder)")
    p.add_argument("--data", type=Path, default=None, help="CSV with at least lookback rows of the training columns")
    p.add_argument("--out", type=Path, default=None, help="write the forecast CSV here (default: print it)")
    p.add_argument("--level", type=float, nargs="*", default=[], help="prediction-interval levels in percent, e.g. 90")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("rollout", help="roll a PDE model out autoregressively and score every step",
                       description="Roll a trained operator out on a PDEBench file's trajectories; write per-step metrics, plots, a GIF and NetCDF predictions.")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--data", type=Path, required=True, help="PDEBench HDF5 file (either layout)")
    p.add_argument("--steps", type=int, required=True, help="prediction steps after the initial history")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: RUN_DIR/rollout)")
    p.add_argument("--frames", type=int, nargs="*", default=None, help="steps to draw as images (default: first, middle, last)")
    p.add_argument("--split", default="test", choices=["test", "train", "all"], help="which samples of the file (PDEBench split)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-tracking", action="store_true", help="do not log the rollout to MLflow")
    p.set_defaults(func=cmd_rollout)

    p = sub.add_parser("validate", help="check a recipe without running it", description="Check a recipe (and overrides) without running it.")
    p.add_argument("recipe")
    p.add_argument("overrides", nargs="*")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("ls", help="list models, datasets or recipes", description="List registered models, datasets or the bundled recipes.")
    p.add_argument("what", choices=["models", "datasets", "recipes"])
    p.set_defaults(func=cmd_ls)

    p = sub.add_parser("datasets", help="list or download datasets", description="List named datasets or download them (sha256-verified).")
    dsub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    dsub.add_parser("ls", help="list named datasets and where their files are")
    d = dsub.add_parser("download", help="download named datasets into $SCIFORMER_DATA_DIR or ./data")
    d.add_argument("names", nargs="+")
    d = dsub.add_parser("generate", help="simulate a PDE data set in PDEBench's HDF5 layout",
                        description="Simulate N samples of a PDE on an R-point grid and write PDEBench's single-file HDF5 layout.")
    d.add_argument("generator", metavar="NAME", help="advection1d | burgers1d | darcy2d | ns2d | diffreact2d")
    d.add_argument("--n", type=int, required=True, help="number of samples")
    d.add_argument("--res", type=int, required=True, help="grid points per axis")
    d.add_argument("--nu", type=float, default=None, help="viscosity (burgers1d, ns2d)")
    d.add_argument("--beta", type=float, default=None, help="advection speed (advection1d) or Darcy forcing (darcy2d)")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--device", default="cpu", help="cpu or cuda")
    d.add_argument("--batch-size", type=int, default=None, help="samples simulated at once")
    d.add_argument("--out", type=Path, required=True, help="HDF5 file to write")
    d = dsub.add_parser("inspect", help="describe an HDF5 file: layout, keys, shapes, dtypes, attributes")
    d.add_argument("file", type=Path)
    p.set_defaults(func=cmd_datasets)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except SciformerError as exc:
        if args.debug:
            raise
        print(f"sciformer: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sciformer: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
