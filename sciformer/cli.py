"""The ``sciformer`` command: one entry point, one function per verb.

Options and positionals may come in any order (``sciformer fit R --out D train.epochs=1``). User errors (bad
recipe, missing data, corrupt checkpoint, unwritable output) print one line ``sciformer: error: ...`` and exit
with code 2; ``--debug`` shows the traceback instead. A fit stopped by SIGTERM/SIGINT prints the command that
continues it and exits 143/130. Warnings print as one line ``sciformer: warning: ...``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

from sciformer import __version__
from sciformer.errors import CheckpointError, ConfigError, DataError, RunInterrupted, SciformerError, StorageError, describe_kind, storage_error, user_path

STARTED = time.perf_counter()  # wall time of a command is reported from here (the interpreter's own start is ~50 ms before)
RECIPES_DIR = Path(__file__).resolve().parents[1] / "recipes"
ANSI = re.compile(r"\x1b\[[0-9;]*m")  # terminal colour codes


# ------------------------------------------------------------------------------------------------- fit
def cmd_fit(args: argparse.Namespace) -> int:
    from sciformer.engine.distributed import env_rank, launched_by_torchrun

    recipe_path, overrides = _recipe_and_overrides(args)
    if args.nproc is not None and args.nproc < 1:
        raise ConfigError(f"--nproc {args.nproc}: expected a number of processes of at least 1")
    if args.nproc is not None and args.nproc > 1 and not launched_by_torchrun():
        return _launch_torchrun(args)
    from sciformer.config import load_recipe
    from sciformer.engine.runner import fit_recipe

    if args.resume is not None and args.out is not None and user_path(args.out) != user_path(args.resume):
        raise ConfigError(f"--out {args.out} and --resume {args.resume} name different run directories; give only --resume")
    recipe = load_recipe(recipe_path, overrides) if recipe_path is not None else _resumed_recipe(args.resume, overrides)
    recipe = _registered_init(recipe)
    tracker = _tracker(recipe, recipe_path) if recipe.tracking.enabled and env_rank() == 0 else None  # rank 0 alone talks to MLflow
    callbacks = [tracker] if tracker is not None else []
    run_dir = user_path(args.resume) if args.resume is not None else (user_path(args.out) if args.out is not None else None)
    result = fit_recipe(recipe, run_dir, callbacks, resume=args.resume is not None)
    if result.rank != 0:
        return 0
    m = result.metrics
    print(f"run directory: {result.run_dir}")
    print(f"test_mse {m['test_mse']:.4f}  test_mae {m['test_mae']:.4f}  (best epoch {m['best_epoch']} of {m['epochs']}, {m['seconds_per_epoch']:.2f} s/epoch)")
    phases = ", ".join(f"{k} {v:.1f} s" for k, v in m.get("phase_seconds", {}).items())
    print(f"wall {time.perf_counter() - STARTED:.1f} s since start ({phases})")
    if tracker is not None and tracker.finished:
        print(f"MLflow run '{tracker.run_name}' ({tracker.run_id}) in {tracker.uri}")
    return 0


def _recipe_and_overrides(args: argparse.Namespace) -> tuple[str | None, list[str]]:
    """The recipe file and the overrides: with ``--resume RUN`` the recipe may be left out, and then a first
    ``key=value`` is an override, not a recipe."""
    recipe, overrides = args.recipe, list(args.overrides)
    if recipe is not None and "=" in recipe and not user_path(recipe).exists():
        recipe, overrides = None, [recipe, *overrides]
    if recipe is None and args.resume is None:
        raise ConfigError("fit needs a recipe: sciformer fit RECIPE.yaml [key=value ...], or sciformer fit --resume RUN_DIR to continue a run")
    return recipe, overrides


def _resumed_recipe(run_dir: Path, overrides: list[str]):
    """``fit --resume RUN`` without a recipe: the resolved recipe the run was started with, plus the overrides."""
    from sciformer.config import stored_recipe
    from sciformer.engine.rundir import RECIPE_FILE

    stored = _existing_dir(run_dir, "run directory", ConfigError, "cannot resume: ") / RECIPE_FILE
    if not stored.is_file():
        raise ConfigError(f"cannot resume '{run_dir}': it has no {RECIPE_FILE}; give the recipe it was started with: sciformer fit RECIPE --resume {run_dir}")
    try:
        raw = json.loads(stored.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        raise ConfigError(f"cannot resume: '{stored}' is damaged ({type(exc).__name__}); give the recipe: sciformer fit RECIPE --resume {run_dir}") from None
    return stored_recipe(raw, overrides)


def _registered_init(recipe):
    """``model.init: models:/NAME/VERSION``: the registered model's checkpoint, downloaded once through MLflow into
    ``$XDG_CACHE_HOME/sciformer/models/NAME/VERSION/checkpoint`` (its MLflow run and model URI recorded beside it, for
    the lineage); the recipe then names that folder, since the engine reads folders only."""
    import dataclasses

    uri = recipe.model.init or ""
    if not uri.startswith("models:/"):
        return recipe
    match = re.fullmatch(r"models:/([^/@]+)/(\d+)", uri)
    if match is None:
        raise ConfigError(f"model.init '{uri}': expected a registered model version, models:/NAME/VERSION (e.g. models:/scot-pretrained/1)")
    cache = user_path(os.environ.get("XDG_CACHE_HOME") or "~/.cache") / "sciformer" / "models" / match[1] / match[2]
    if not (cache / "checkpoint" / "weights.safetensors").is_file():
        _download_registered(uri, match[1], match[2], cache, recipe.tracking)
    return dataclasses.replace(recipe, model=dataclasses.replace(recipe.model, init=str(cache)))


def _download_registered(uri: str, name: str, version: str, cache: Path, tracking) -> None:
    import shutil
    import tempfile

    import mlflow

    from sciformer.engine.checkpoint import write_json
    from sciformer.engine.rundir import RUN_FILE
    from sciformer.tracking.store import absolute_uri, one_line, tracking_uri

    store = absolute_uri(tracking_uri(tracking))
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    cache.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache.parent, prefix=f".{version}.") as tmp:
        try:
            run_id = mlflow.MlflowClient(tracking_uri=store, registry_uri=store).get_model_version(name, version).run_id
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=tmp, tracking_uri=store))
        except mlflow.exceptions.MlflowException as exc:
            raise ConfigError(f"model.init '{uri}': not found in the MLflow store {store} ({one_line(exc, 160)})") from None
        weights = sorted(local.rglob("weights.safetensors"))
        if not weights:
            raise ConfigError(f"model.init '{uri}' holds no sciformer checkpoint (weights.safetensors + config.json)")
        folder = Path(tmp) / "model"
        folder.mkdir()
        shutil.move(weights[0].parent, folder / "checkpoint")
        write_json(folder / RUN_FILE, {"run_id": run_id, "tracking_uri": store, "model_uri": uri})
        if not cache.exists():  # another process may have finished the same download first
            folder.rename(cache)


def _tracker(recipe, recipe_path: str | None):
    """An MLflow tracker that also logs the run's checkpoint as a pyfunc model. The run is named by the recipe's
    own ``name`` where the file sets one (a name taken from the file's stem is not), else by model and data."""
    from sciformer.api.pyfunc import log_run_model
    from sciformer.tracking.mlflow import MLflowTracker

    named = recipe_path is not None and recipe.name != user_path(recipe_path).stem
    return MLflowTracker(recipe.tracking, run_name=recipe.name if named else None, log_model=log_run_model)


def torchrun_command(args: argparse.Namespace) -> list[str]:
    """``sciformer fit ... --nproc N`` as the equivalent single-node torchrun command."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(args.nproc), "-m", "sciformer"]
    if args.debug:
        command.append("--debug")
    command += ["fit", *([str(args.recipe)] if args.recipe is not None else []), *args.overrides]
    if args.out is not None:
        command += ["--out", str(args.out)]
    if args.resume is not None:
        command += ["--resume", str(args.resume)]
    return command


def _launch_torchrun(args: argparse.Namespace) -> int:
    from sciformer.engine.launch import supervise

    command = torchrun_command(args)
    print("launching: " + " ".join(command[2:]), file=sys.stderr)
    return supervise(command)


# ----------------------------------------------------------------------------------- evaluate, predict
def _existing_dir(path: Path, what: str, error: type[SciformerError] = CheckpointError, prefix: str = "") -> Path:
    """``path`` (``~`` expanded) if it is a folder; else ``error`` saying that it is missing or what it is instead."""
    p = user_path(path)
    kind = describe_kind(p)
    if kind == "missing":
        raise error(f"{prefix}{what} '{path}' does not exist")
    if kind != "a directory":
        raise error(f"{prefix}{what} '{path}' is {kind or 'a regular file'}, not a folder")
    return p


def cmd_evaluate(args: argparse.Namespace) -> int:
    run_dir = _existing_dir(args.run_dir, "run directory")
    from sciformer.engine.rundir import METRICS_FILE
    from sciformer.engine.runner import evaluate_run

    metrics = evaluate_run(run_dir, device=args.device, overrides=args.overrides)
    print(json.dumps(metrics, indent=2))
    recorded = run_dir / METRICS_FILE
    try:
        before = json.loads(recorded.read_text()) if recorded.is_file() and not args.overrides else None
    except (OSError, ValueError, RecursionError):
        before = None  # a damaged metrics.json: nothing to compare with
    if isinstance(before, dict):
        shared = [k for k in metrics if k.startswith("test_") and k in before]
        same = all(before[k] == metrics[k] or (before[k] != before[k] and metrics[k] != metrics[k]) for k in shared)  # NaN == NaN
        print(f"{'matches' if same else 'differs from'} {recorded}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    run_dir = _existing_dir(args.run_dir, "run directory")
    out = _new_file(args.out) if args.out is not None else None
    from sciformer.api.forecaster import Forecaster

    forecaster = Forecaster.load(run_dir, device=args.device)
    forecast = forecaster.predict(args.data, level=args.level or None)
    if out is None:
        print(forecast.to_csv(), end="")
        return 0
    _write_text(out, forecast.to_csv())
    print(f"forecast of {len(forecast)} steps written to {out}")
    return 0


def _new_file(path: Path) -> Path:
    """An output file that does not exist yet, in an existing folder (a user's file is never overwritten)."""
    p = user_path(path)
    kind = describe_kind(p)
    if kind != "missing":
        raise StorageError(f"cannot write '{path}': it exists ({kind or 'a regular file'}); give a new file name")
    if describe_kind(p.parent) != "a directory":
        raise StorageError(f"cannot write '{path}': its folder '{p.parent}' does not exist or is not a folder")
    return p


def _write_text(path: Path, text: str) -> None:
    """Write ``path`` whole or not at all: a failed write (no space, read-only) leaves no partial file."""
    partial = path.with_name(f".{path.name}.partial")
    try:
        partial.write_text(text, encoding="utf-8")
        os.replace(partial, path)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise storage_error(exc, path) from None


def cmd_rollout(args: argparse.Namespace) -> int:
    run_dir = _existing_dir(args.run_dir, "run directory")
    from sciformer.engine.rollout import rollout_run

    callbacks = []
    if not args.no_tracking:
        from sciformer.tracking.mlflow import RolloutTracker

        callbacks.append(RolloutTracker(run_dir))
    result = rollout_run(run_dir, args.data, args.split, args.steps, args.out, args.frames, args.device, callbacks)
    print(f"rollout of {result['steps']} steps written to {result['out_dir']}: nRMSE mean {result['nrmse_mean']:.4g}, last step {result['nrmse_last']:.4g}")
    return 0


# ------------------------------------------------------------------------------- validate, ls, datasets
def cmd_validate(args: argparse.Namespace) -> int:
    from sciformer.config import load_recipe

    recipe = load_recipe(args.recipe, args.overrides)
    print(f"{args.recipe}: valid (model '{recipe.model.name}', data '{recipe.data.name}')")
    return 0


def cmd_ls(args: argparse.Namespace) -> int:
    if args.what == "models":
        from sciformer.registry import get_model, list_models

        print_table(["MODEL", "TASK"], [[name, get_model(name).task] for name in list_models()])
    elif args.what == "datasets":
        _print_datasets()
    else:
        for path in sorted(RECIPES_DIR.rglob("*.yaml")):
            print(path.relative_to(RECIPES_DIR.parent))
    return 0


def print_table(header: list[str], rows: list[list[str]]) -> None:
    """Columns as wide as their widest cell, two spaces apart (the last column unpadded)."""
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        cells = [f"{cell!s:<{width}}" for cell, width in zip(row[:-1], widths)]
        print("  ".join([*cells, str(row[-1])]))


def _print_datasets() -> None:
    from sciformer.data.catalog import find_file, manifests

    rows = [[name, m.freq or "-", m.description, str(find_file(m) or "not downloaded")] for name, m in sorted(manifests().items())]
    print_table(["NAME", "FREQ", "DESCRIPTION", "FILE"], rows)


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
        with terminate_as_interrupt():  # the partial file is closed and kept, so that the same command continues it
            path = generate(
                args.generator,
                args.out,
                n=args.n,
                res=args.res,
                seed=args.seed,
                device=args.device,
                batch_size=args.batch_size,
                layout=args.layout,
                dtype=args.dtype,
                compression=args.compression,
                **params,
            )
        print(f"wrote {path}")
    elif args.action == "inspect":
        from sciformer.data.pde import inspect_file

        text, problem = inspect_file(args.file)
        print(text)
        if problem:  # what could be read is shown; the run fails as fit would, in one line
            raise DataError(problem)
    return 0


# ------------------------------------------------------------------------------------------------ parser
class Parser(argparse.ArgumentParser):
    """Options and positionals in any order for every verb without sub-verbs: argparse's intermixed parsing
    (``fit R --out D train.epochs=1`` as well as ``fit R train.epochs=1 --out D``)."""

    _intermixing = False

    def error(self, message: str) -> NoReturn:
        """argparse's own errors (unknown option, bad choice, missing argument) as one line, like every user error;
        the usage is one ``--help`` away. A huge value is not echoed whole."""
        message = " ".join(message.split())
        if len(message) > 200:
            message = message[:197] + "..."
        verb = self.prog.removeprefix("sciformer").strip()  # "fit", "datasets generate", or none
        self.exit(2, f"sciformer: error: {verb + ': ' if verb else ''}{message}\n")

    def parse_known_args(self, args=None, namespace=None):
        if self._intermixing or self._subparsers is not None:  # intermixed parsing cannot take sub-verbs
            return super().parse_known_args(args, namespace)
        self._intermixing = True  # the intermixed parse calls parse_known_args itself, twice
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._intermixing = False


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="sciformer", description="Transformer surrogates for time series and PDEs.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of user errors")
    parser.add_argument("--version", action="version", version=f"sciformer {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("fit", help="train, validate and test a recipe", description="Train, validate and test a recipe; write a run directory.")
    p.add_argument("recipe", nargs="?", help="recipe YAML file (optional with --resume: the run's own recipe)")
    p.add_argument("overrides", nargs="*", default=[], help="dotted overrides, e.g. train.epochs=3 data.horizon=192")
    p.add_argument("--out", type=Path, default=None, help="run directory (default: runs/<recipe>-<timestamp>/)")
    p.add_argument(
        "--resume",
        type=Path,
        default=None,
        metavar="RUN_DIR",
        help="continue an interrupted run from its last checkpoint, with the recipe it was started with "
        "(overrides may change only how it runs: tracking, device, progress...; same MLflow run)",
    )
    p.add_argument(
        "--nproc",
        type=int,
        default=None,
        metavar="N",
        help="train on N processes (one per GPU) with DDP: shorthand for torchrun --standalone --nproc_per_node N -m sciformer fit ...",
    )
    p.set_defaults(func=cmd_fit)

    p = sub.add_parser("evaluate", help="re-test a run's checkpoint", description="Re-run the test split from a run directory's checkpoint.")
    p.add_argument("run_dir", type=Path)
    p.add_argument("overrides", nargs="*", default=[], help="data.* overrides, e.g. data.test_resolution=32")
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: the recipe's)")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser(
        "predict",
        help="forecast the real future from a run's checkpoint",
        description="Forecast the next horizon steps after the last timestamp of --data (default: the end of the training data).",
    )
    p.add_argument("run_dir", type=Path, help="a run directory (or a checkpoint directory / Forecaster.save folder)")
    p.add_argument("--data", type=Path, default=None, help="CSV with at least lookback rows of the training columns")
    p.add_argument("--out", type=Path, default=None, help="write the forecast CSV to this new file (default: print it)")
    p.add_argument("--level", type=float, nargs="*", default=[], help="prediction-interval levels in percent, e.g. 90")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser(
        "rollout",
        help="roll a PDE model out autoregressively and score every step",
        description="Roll a trained operator out on trajectories (default: the run's own data and test split); "
        "write per-step metrics, plots, a GIF and NetCDF predictions.",
    )
    p.add_argument("run_dir", type=Path)
    p.add_argument("--data", type=Path, default=None, help="another data file of the same PDE (default: the run's own data)")
    p.add_argument("--steps", type=int, default=None, help="prediction steps after the initial history (default: every frame)")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: RUN_DIR/rollout)")
    p.add_argument("--frames", type=int, nargs="*", default=None, help="steps to draw as images (default: first, middle, last)")
    p.add_argument("--split", default="test", help="train, val, test or all: which trajectories, split as fit split them (default: test)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-tracking", action="store_true", help="do not log the rollout to MLflow")
    p.set_defaults(func=cmd_rollout)

    p = sub.add_parser("validate", help="check a recipe without running it", description="Check a recipe (and overrides) without running it.")
    p.add_argument("recipe")
    p.add_argument("overrides", nargs="*", default=[])
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("ls", help="list models, datasets or recipes", description="List registered models, datasets or the bundled recipes.")
    p.add_argument("what", choices=["models", "datasets", "recipes"])
    p.set_defaults(func=cmd_ls)

    p = sub.add_parser("datasets", help="list or download datasets", description="List named datasets or download them (sha256-verified).")
    dsub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    dsub.add_parser("ls", help="list named datasets and where their files are")
    d = dsub.add_parser("download", help="download named datasets into $SCIFORMER_DATA_DIR or ./data")
    d.add_argument("names", nargs="+")
    d = dsub.add_parser(
        "generate",
        help="simulate a PDE data set in PDEBench's HDF5 layout",
        description="Simulate N samples of a PDE on an R-point grid and write PDEBench's single-file HDF5 layout.",
    )
    d.add_argument("generator", metavar="NAME", help="advection1d | burgers1d | darcy2d | ns2d | diffreact2d")
    d.add_argument("--n", type=int, required=True, help="number of samples")
    d.add_argument("--res", type=int, required=True, help="grid points per axis")
    d.add_argument("--nu", type=float, default=None, help="viscosity (burgers1d, ns2d)")
    d.add_argument("--beta", type=float, default=None, help="advection speed (advection1d) or Darcy forcing (darcy2d)")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--device", default="cpu", help="cpu or cuda")
    d.add_argument("--batch-size", type=int, default=None, help="samples simulated at once")
    d.add_argument("--layout", choices=("single", "group"), default="single", help="PDEBench single file or one group per sample (not darcy2d)")
    d.add_argument("--dtype", choices=("float32", "float64"), default="float32", help="simulation precision (files hold float32)")
    d.add_argument("--compression", choices=("gzip", "none"), default="gzip", help="HDF5 compression of the fields")
    d.add_argument("--out", type=Path, required=True, help="HDF5 file to write")
    d = dsub.add_parser("inspect", help="describe an HDF5 file: layout, keys, shapes, dtypes, attributes")
    d.add_argument("file", type=Path)
    p.set_defaults(func=cmd_datasets)
    return parser


# -------------------------------------------------------------------------------------------------- main
class Terminated(KeyboardInterrupt):
    """SIGTERM during a command that cleans up after Ctrl-C: the same clean-up, then exit 143."""


@contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Within the block SIGTERM raises :class:`Terminated`, so that open files are closed as on Ctrl-C."""

    def terminate(signum: int, frame: object) -> None:
        raise Terminated

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def one_line_warnings() -> Iterator[None]:
    """Warnings as one line ``sciformer: warning: ...`` (not file:line plus the source line, and without the colour
    codes some libraries put in) while a command runs."""
    default = warnings.formatwarning
    warnings.formatwarning = lambda message, category, *rest, **kwargs: f"sciformer: warning: {' '.join(ANSI.sub('', str(message)).split())}\n"
    try:
        yield
    finally:
        warnings.formatwarning = default


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with one_line_warnings():
            return args.func(args)
    except SciformerError as exc:
        if args.debug:
            raise
        print(f"sciformer: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except RunInterrupted as exc:  # SIGTERM/SIGINT during fit: a resumable state is on disk
        print(f"sciformer: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt as exc:
        print("sciformer: interrupted", file=sys.stderr)
        return 143 if isinstance(exc, Terminated) else 130


if __name__ == "__main__":
    raise SystemExit(main())
