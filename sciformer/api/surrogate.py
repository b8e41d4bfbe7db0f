"""``Surrogate``: fit any registered operator model on PDE data, predict a step, roll it out, score it.

    sg = Surrogate("fno", modes=12, epochs=20).fit("ns2d.h5")         # a data file or an xarray.Dataset
    nxt = sg.predict(u)                                                # one step: torch, numpy, xarray or CuPy
    traj = sg.rollout(u0, steps=20)                                    # xarray.DataArray with t and grid coordinates
    sg.evaluate("ns2d.h5")                                             # PDEBench metrics on the test split
    sg.save("model/"); Surrogate.load("model/")                        # safetensors checkpoint; also a run's folder

The PDE counterpart of :class:`~sciformer.api.forecaster.Forecaster`, and as thin: data is read through the
same path as ``sciformer fit`` (the operator task's loader: PDEBench HDF5 in both layouts, The Well, NetCDF, Zarr,
neuraloperator files; PDEBench's train/test split, the last tenth of train validating), trained by the same
:class:`~sciformer.engine.trainer.Trainer`, saved in the same checkpoint format.

Fields: a time-dependent model reads the last ``initial_step`` frames ``[B, initial_step, C, *grid]`` (or one
sample ``[initial_step, C, *grid]``) and returns the next frame ``[B, C, *grid]``; a steady one (Darcy) maps
``[B, C_in, *grid]`` to ``[B, C_out, *grid]``. An ``xarray.DataArray`` names its dims ``sample`` (optional),
``t``, ``channel`` (optional for one channel) and ``x``/``y``/``z``; an ``xarray.Dataset`` in
:func:`~sciformer.data.xarray_io.to_xarray`'s layout holds one variable per channel. CuPy arrays cross into
torch without a copy (DLPack) and come back as CuPy arrays.
"""

from __future__ import annotations

import dataclasses
import inspect
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sciformer.config import DATA_FILLED, DataConfig, Recipe, TrainConfig, load_recipe, recipe_from_dict, stored_recipe
from sciformer.data.sources.memory import available_memory
from sciformer.engine.callbacks import CallbackList
from sciformer.engine.checkpoint import find_checkpoint, load_model, read_config, save_checkpoint
from sciformer.engine.rollout import check_steps, data_coordinates, rollout
from sciformer.engine.tasks import train
from sciformer.engine.tasks.operator import OperatorTask, operator_test_metrics
from sciformer.engine.trainer import pick_device, seed_everything
from sciformer.errors import CheckpointError, ConfigError, DataError, user_path
from sciformer.registry import get_model

_TRAIN_KEYS = set(TrainConfig.__dataclass_fields__)
_DATA_KEYS = {"initial_step", "reduced_resolution", "reduced_resolution_t", "num_samples"}
_SPACE = ("x", "y", "z")
_TASK = OperatorTask()


class Surrogate:
    """Fit/predict/rollout/evaluate/save for any registered operator model.

    Keyword arguments are constructor arguments of the model (``modes=12``), keys of a recipe's ``train`` section
    (``epochs=20, lr=1e-3, mode="unroll"``) or of its operator ``data`` section (``initial_step=10``,
    ``reduced_resolution=2``, ``num_samples=...``); ``seed`` and ``tracking`` (bool, or a ``tracking`` mapping)
    are accepted too. Tracking is off unless asked for.

    Errors: an invalid argument raises :class:`~sciformer.errors.ConfigError`; data that cannot be used (a field
    of the wrong shape, unreadable or non-finite files) raises :class:`~sciformer.errors.DataError`.
    """

    def __init__(self, model: str, **overrides: Any) -> None:
        seed = overrides.pop("seed", 0)
        tracking = overrides.pop("tracking", False)
        accepted = inspect.signature(get_model(model).__init__).parameters
        sections: dict[str, dict[str, Any]] = {"model": {"name": model}, "train": {}, "data": {}}
        for key, value in overrides.items():
            if key in _TRAIN_KEYS:
                sections["train"][key] = value
            elif key in _DATA_KEYS:
                sections["data"][key] = value
            elif key in accepted and key not in DATA_FILLED:
                sections["model"][key] = value
            else:
                raise ConfigError(
                    f"Surrogate got an unknown argument '{key}': expected a '{model}' model argument, a train "
                    f"setting ({', '.join(sorted(_TRAIN_KEYS))}) or a data setting ({', '.join(sorted(_DATA_KEYS))})"
                )
        raw = {**sections, "tracking": tracking if isinstance(tracking, dict) else {"enabled": bool(tracking)}, "seed": seed, "name": f"surrogate-{model}"}
        raw["data"]["name"] = "in-memory.nc"  # replaced by fit's data
        self._init(recipe_from_dict(raw, check_data=False))

    def _init(self, recipe: Recipe) -> None:
        if get_model(recipe.model.name).task != "operator":
            raise ConfigError(f"Surrogate needs an operator model; '{recipe.model.name}' is a {get_model(recipe.model.name).task} model (use Forecaster)")
        self.recipe = recipe
        self.model: torch.nn.Module | None = None
        self.config: dict[str, Any] = {}
        self.coords: dict[str, np.ndarray] = {}
        self.channels: list[str] = []
        self.steady = False
        self.device = pick_device(recipe.train.device)

    @classmethod
    def from_recipe(cls, path: str | Path, overrides: list[str] | None = None) -> Surrogate:
        """A surrogate with a recipe's model, train and data settings (``fit`` gets the data itself)."""
        surrogate = cls.__new__(cls)
        surrogate._init(load_recipe(path, overrides))
        return surrogate

    @property
    def initial_step(self) -> int:
        return int(self.config["data"]["initial_step"]) if self.config else self.recipe.data.initial_step

    # ------------------------------------------------------------------------------------------- fit
    def fit(self, data: Any) -> Surrogate:
        """Train on ``data`` (a file path or an ``xarray.Dataset``): its PDEBench ``train`` split, the last tenth of
        it validating (in memory or streamed from the file, as ``data.in_memory`` says)."""
        with _as_path(data) as path:
            recipe = self._recipe_for(path)
            seed_everything(recipe.seed)
            operator_data = _TASK.load_data(recipe, allow_generate=False)
            operator_data.to(self.device)
            hooks = CallbackList(self._callbacks())
            hooks.on_fit_start(recipe.to_dict(), {"data": str(path), "sizes": operator_data.sizes()})
            try:
                self.model, _, self.fit_result = train(recipe, operator_data, self.device, hooks)
            except BaseException as exc:
                hooks.on_failure(exc)
                raise
            self.model.eval()
            self.config = _TASK.checkpoint_config(recipe, operator_data)
            self._describe(recipe.data, operator_data.n_frames, operator_data.grid_shape)
            hooks.on_fit_end({"best_epoch": self.fit_result.best_epoch, "epochs": self.fit_result.epochs}, Path("."))
        return self

    def _recipe_for(self, path: Path) -> Recipe:
        return dataclasses.replace(self.recipe, data=dataclasses.replace(self.recipe.data, name=str(path), generate=None))

    def _describe(self, data_cfg: DataConfig, n_frames: int | None, grid: tuple[int, ...]) -> None:
        """Coordinates (``t`` for time-dependent data: ``n_frames`` given, grid axes) and channel names of the
        training data, kept in the checkpoint's ``surrogate`` entry."""
        coords, channels = data_coordinates(data_cfg, n_frames or 1, grid)
        if n_frames is None:
            coords.pop("t")
        self.steady = n_frames is None
        self.coords = {k: np.asarray(v, dtype=np.float64) for k, v in coords.items()}
        n_out = self.config["model"]["data_sizes"]["out_channels"]
        self.channels = channels if channels and len(channels) == n_out else [f"u{c}" for c in range(n_out)]
        self.config["surrogate"] = {"coords": {k: v.tolist() for k, v in self.coords.items()}, "channels": self.channels, "steady": self.steady}

    def _callbacks(self) -> list:
        if not self.recipe.tracking.enabled:
            return []
        from sciformer.tracking.mlflow import MLflowTracker

        return [MLflowTracker(self.recipe.tracking, run_name=self.recipe.name)]

    # ------------------------------------------------------------------------------ predict, rollout
    def _require_fitted(self) -> torch.nn.Module:
        """The fitted model; refuses an unfitted Surrogate in one line."""
        if self.model is None:
            raise DataError("this Surrogate is not fitted yet: call fit(data) or Surrogate.load(dir) first")
        return self.model

    @torch.no_grad()
    def predict(self, u: Any) -> Any:
        """The next frame after the history ``u`` (time-dependent), or the solution for the input field (steady);
        returned as the input's kind (torch on its device, numpy, xarray ``DataArray``, CuPy)."""
        model = self._require_fitted()
        history, given = self._history(u)
        if self.steady:
            pred = model(history.to(self.device)).float()
        else:
            pred = rollout(model, history.to(self.device), self.initial_step, 1, self._time_conditioned, n_frames=self._n_frames)[:, 0]
        return given.like(pred, given.kind, self._dims(given.batched, time=False), self._field_coords(given, None))

    @torch.no_grad()
    def rollout(self, u0: Any, steps: int):
        """Roll ``steps`` frames out after the history ``u0`` (its last ``initial_step`` frames are read): an
        ``xarray.DataArray`` ``[sample, t, channel, *grid]`` (no ``sample`` for one unbatched history) whose ``t``
        continues the history's times (an ``xarray`` input's own, else the training data's spacing)."""
        model = self._require_fitted()
        if self.steady:
            raise DataError("this Surrogate maps a coefficient field to a steady solution: there is no time to roll out")
        check_steps(steps)
        history, given = self._history(u0)
        need, free = 4 * steps * history[:, 0].numel(), available_memory()  # the float32 result [B, steps, C, *grid]
        if free is not None and need > free:
            raise DataError(
                f"a rollout of {steps} steps needs {need / 2**30:.3g} GiB for its result, more than the {free / 2**30:.3g} GiB "
                "of memory available; roll out fewer steps"
            )
        pred = rollout(model, history.to(self.device), self.initial_step, steps, self._time_conditioned, n_frames=self._n_frames)
        dims = self._dims(given.batched, time=True)
        return given.like(pred, "xarray", dims, self._field_coords(given, self._future_times(given, steps)))

    @property
    def _time_conditioned(self) -> bool:
        return self.config["data"]["mode"] == "all_to_all"

    @property
    def _n_frames(self) -> int | None:
        return len(self.coords["t"]) if "t" in self.coords else None

    def _history(self, u: Any) -> tuple[torch.Tensor, _Input]:
        """``u`` as a float32 tensor ``[B, initial_step, C, *grid]`` (steady: ``[B, C_in, *grid]``) and what it was."""
        sizes = self.config["model"]["data_sizes"]
        tensor, given = _to_tensor(u)
        n_dims = sizes["n_dims"]
        lead = 1 if self.steady else 2  # axes before the grid in one sample
        if tensor.ndim not in (lead + n_dims, lead + n_dims + 1):
            shape = "[B, C_in, *grid]" if self.steady else "[B, T, C, *grid]"
            raise DataError(f"expected a field of shape {shape} (or one sample) on a {n_dims}D grid, got shape {tuple(tensor.shape)}")
        if tensor.numel() == 0:
            raise DataError(f"the input field is empty: shape {tuple(tensor.shape)}")
        given.batched = tensor.ndim == lead + n_dims + 1
        tensor = tensor if given.batched else tensor[None]
        channels = sizes["in_channels"] if self.steady else sizes["out_channels"]
        if tensor.shape[-n_dims - 1] != channels:
            raise DataError(f"expected {channels} channel(s), got {tensor.shape[-n_dims - 1]} (shape {tuple(tensor.shape)})")
        if not self.steady:
            if tensor.shape[1] < self.initial_step:
                raise DataError(f"the history has {tensor.shape[1]} frame(s); the model reads the last {self.initial_step}")
            tensor = tensor[:, -self.initial_step :]
        if not torch.isfinite(tensor).all():
            raise DataError("the input field holds NaN or infinite values")
        return tensor.float(), given

    def _dims(self, batched: bool, time: bool) -> list[str]:
        n_dims = self.config["model"]["data_sizes"]["n_dims"]
        return ["sample"] * batched + ["t"] * time + ["channel"] + list(_SPACE[:n_dims])

    def _field_coords(self, given: _Input, time: np.ndarray | None) -> dict[str, Any]:
        """Grid coordinates of an xarray input, else the training data's; channel names; ``t`` when given."""
        coords: dict[str, Any] = {"channel": self.channels}
        for ax in _SPACE[: self.config["model"]["data_sizes"]["n_dims"]]:
            coords[ax] = given.coords[ax] if ax in given.coords else self.coords.get(ax)
        if time is not None:
            coords["t"] = time
        return {k: v for k, v in coords.items() if v is not None}

    def _future_times(self, given: _Input, steps: int) -> np.ndarray:
        t = self.coords["t"]
        dt = float(t[1] - t[0]) if len(t) > 1 else 1.0
        last = float(given.coords["t"][-1]) if "t" in given.coords else float(t[self.initial_step - 1])
        return last + dt * np.arange(1, steps + 1)

    # ------------------------------------------------------------------------------------- evaluate
    def evaluate(self, data: Any) -> dict[str, float]:
        """PDEBench metrics (``test_nrmse``, ``test_rel_l2``, ``test_rmse``, ...; rollout nRMSE at 10 and 50 steps
        where the trajectories are long enough) on the ``test`` split of ``data`` (a file path or a Dataset)."""
        model = self._require_fitted()
        with _as_path(data) as path:
            operator_data = _TASK.load_data(self._recipe_for(path), allow_generate=False)
            expected = self.config["model"]["data_sizes"]
            if operator_data.sizes() != expected:
                raise DataError(f"'{path}' gives a model of sizes {operator_data.sizes()}; this Surrogate was trained on {expected}")
            operator_data.to(self.device)
            return operator_test_metrics(model, operator_data, self.recipe.train.eval_rows)

    # ----------------------------------------------------------------------------------- save, load
    def save(self, path: str | Path) -> Path:
        """Write the checkpoint (``weights.safetensors`` + ``config.json``) into a new or empty folder, or over a
        checkpoint of sciformer's; returns the folder."""
        model = self._require_fitted()
        return save_checkpoint(user_path(path), model, self.config)

    @classmethod
    def load(cls, path: str | Path, device: str | None = None) -> Surrogate:
        """A surrogate from a :meth:`save` folder or from a ``sciformer fit`` run directory of an operator model."""
        ckpt = find_checkpoint(user_path(path))
        config = read_config(ckpt)
        if (config.get("data") or {}).get("kind") != "operator":
            raise CheckpointError(f"'{path}' holds a forecaster's checkpoint, not an operator model's; load it with Forecaster.load")
        recipe = stored_recipe(config["recipe"])
        if device is not None:
            recipe = dataclasses.replace(recipe, train=dataclasses.replace(recipe.train, device=device))
        surrogate = cls.__new__(cls)
        surrogate._init(recipe)
        surrogate.model, surrogate.config = load_model(ckpt, surrogate.device)
        meta = config.get("surrogate")
        if meta:
            surrogate.coords = {k: np.asarray(v, dtype=np.float64) for k, v in meta["coords"].items()}
            surrogate.channels, surrogate.steady = list(meta["channels"]), bool(meta["steady"])
        elif "n_frames" in config["data"]:  # a run's checkpoint that says how long its trajectories are (None: steady)
            surrogate._describe(recipe.data, config["data"]["n_frames"], tuple(config["data"]["grid"]))
        else:  # an older run's checkpoint: what its data, read as fit read it, says
            operator_data = _TASK.load_data(surrogate._recipe_for(Path(recipe.data.name)), allow_generate=False)
            surrogate._describe(recipe.data, operator_data.n_frames, operator_data.grid_shape)
        return surrogate

    def log_model(self, name: str = "surrogate", **kwargs: Any):
        """Log this surrogate to the active MLflow run as a pyfunc model (see :mod:`sciformer.api.surrogate_pyfunc`)."""
        from sciformer.api.surrogate_pyfunc import log_surrogate

        return log_surrogate(self, name, **kwargs)


# ------------------------------------------------------------------------------------------- helpers
class _as_path:
    """A data file path as given, or an ``xarray.Dataset`` written to a temporary NetCDF file for the one reader."""

    def __init__(self, data: Any) -> None:
        self.data = data
        self.tmp: tempfile.TemporaryDirectory[str] | None = None

    def __enter__(self) -> Path:
        if isinstance(self.data, (str, Path)):
            return user_path(self.data)
        if type(self.data).__name__ != "Dataset" or not hasattr(self.data, "data_vars"):
            raise DataError(f"expected a data file path or an xarray.Dataset, got {type(self.data).__name__}")
        from sciformer.data.xarray_io import write_netcdf

        self.tmp = tempfile.TemporaryDirectory(prefix="sciformer-surrogate-")
        path = Path(self.tmp.name) / "data.nc"
        write_netcdf(self.data, path)
        return path

    def __exit__(self, *exc: Any) -> None:
        if self.tmp is not None:
            self.tmp.cleanup()


@dataclasses.dataclass
class _Input:
    """What a field was given as: ``kind`` (torch, numpy, cupy, xarray), its device and xarray coordinates."""

    kind: str
    device: torch.device | None = None
    coords: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    batched: bool = True

    def like(self, pred: torch.Tensor, kind: str, dims: list[str], coords: dict[str, Any]) -> Any:
        """``pred`` (batched) as ``kind``: a tensor on the input's device, numpy, CuPy, or an xarray DataArray."""
        pred = pred if self.batched else pred[0]
        if kind == "torch":
            return pred.to(self.device)
        if kind == "cupy":
            import cupy

            return cupy.from_dlpack(pred.contiguous())
        if kind == "numpy":
            return pred.cpu().numpy()
        import xarray as xr

        return xr.DataArray(pred.cpu().numpy(), dims=dims, coords={k: v for k, v in coords.items() if k in dims})


def _to_tensor(u: Any) -> tuple[torch.Tensor, _Input]:
    """``u`` as a tensor (CuPy through DLPack, no copy) and what it was given as."""
    if u.is_complex() if isinstance(u, torch.Tensor) else np.iscomplexobj(getattr(u, "values", u)):
        raise DataError("the input field is complex-valued; pass its real and imaginary parts as two real channels")
    if isinstance(u, torch.Tensor):
        return u.detach(), _Input("torch", u.device)
    if type(u).__module__.split(".")[0] == "cupy":
        return torch.from_dlpack(u), _Input("cupy")
    if type(u).__name__ == "Dataset" and hasattr(u, "data_vars"):  # to_xarray's layout: one variable per channel
        names = u.attrs["channels"].split(",") if isinstance(u.attrs.get("channels"), str) else list(u.data_vars)
        u = u[[n for n in names if n in u.data_vars]].to_dataarray("channel")
    if type(u).__name__ == "DataArray":
        if "channel" not in u.dims:
            u = u.expand_dims("channel")  # one channel; put in place by the transpose below
        order = [d for d in ("sample", "t", "channel", *_SPACE) if d in u.dims]
        if set(order) != set(u.dims):
            raise DataError(f"expected an xarray field with dims among (sample, t, channel, x, y, z), got {u.dims}")
        u = u.transpose(*order)
        coords = {k: np.asarray(u.coords[k]) for k in ("t", *_SPACE) if k in u.coords}
        return torch.from_numpy(np.asarray(u.values, dtype=np.float32)), _Input("xarray", coords=coords)
    try:
        with np.errstate(over="ignore"):  # beyond float32 becomes inf, which the finite check then refuses by name
            return torch.from_numpy(np.asarray(u, dtype=np.float32)), _Input("numpy")
    except (TypeError, ValueError):
        raise DataError(f"expected a field as a torch tensor, numpy array, xarray DataArray/Dataset or CuPy array, got {type(u).__name__}") from None
