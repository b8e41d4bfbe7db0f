"""Checkpoints: a model checkpoint directory, and the training state a run resumes from.

A model checkpoint is a directory holding ``weights.safetensors`` and ``config.json``. ``config.json`` carries
everything needed to rebuild the model without the recipe file: registry name and full constructor arguments,
the resolved recipe, sciformer's version, the scaler statistics, a fingerprint of the training data and the
sha256 of each tensor file. Writing is atomic (a temporary sibling directory renamed into place), and loading
never unpickles: a damaged file raises :class:`~sciformer.errors.CheckpointError` naming it. A checkpoint is
written only into a new or empty folder or over a checkpoint of sciformer's; anything else at the destination (a
file, a folder of the user's) is refused with :class:`~sciformer.errors.StorageError` and left untouched, and so
is a failed write (a full disk), which names the destination.

The training state (:func:`save_training_state`) is everything a run needs to continue exactly where it stopped:
weights, optimiser, RNG states, counters. It is a nested mapping of JSON values and tensors, stored as
``state.json`` + ``state.safetensors`` in a versioned folder; a ``LATEST`` file, replaced atomically after the
folder is complete, names the folder to resume from, so a crash at any moment leaves the previous state intact.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from contextlib import suppress
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sciformer import __version__
from sciformer.errors import CheckpointError, StorageError, describe_kind, storage_error, user_path

WEIGHTS = "weights.safetensors"
EXTRAS = "extras.safetensors"  # tensors beside the weights: conformal calibration scores, the last lookback rows
CONFIG = "config.json"
CHECKPOINT_FILES = frozenset({WEIGHTS, EXTRAS, CONFIG})
FORMAT_VERSION = 1

STATE_JSON = "state.json"
STATE_TENSORS = "state.safetensors"
LATEST = "LATEST"
STATE_FORMAT = 1


# ------------------------------------------------------------------------------------------- writing
def _cpu_tensors(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # copies, so that tensors sharing storage (tied weights) serialise separately
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in tensors.items()}


def _write_bytes(path: Path, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _write_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> str:
    """Write a safetensors file; returns its sha256."""
    from safetensors.torch import save

    data = save(_cpu_tensors(tensors))
    _write_bytes(path, data)
    return hashlib.sha256(data).hexdigest()


def write_json(path: Path, payload: Any, **dumps: Any) -> None:
    """Write ``payload`` as JSON atomically: a crash leaves the old file or the new one, never a truncated one.

    A failed write (no space left, read-only) raises :class:`StorageError` naming ``path`` and leaves the old file."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        _write_bytes(tmp, json.dumps(payload, **dumps).encode())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise storage_error(exc, path) from None


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory handles
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_checkpoint(
    directory: str | Path, model: nn.Module | Mapping[str, torch.Tensor], config: dict[str, Any], extras: dict[str, torch.Tensor] | None = None
) -> Path:
    """Write ``model``'s weights (a module or its state dict), ``config`` and optional ``extras`` tensors to
    ``directory`` atomically (see :func:`check_checkpoint_destination` for where it may go)."""
    weights = dict(model.state_dict() if isinstance(model, nn.Module) else model)
    directory = user_path(directory)
    check_checkpoint_destination(directory)
    tmp: Path | None = None
    try:
        directory.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}.tmp"))
        digests = {WEIGHTS: _write_tensors(tmp / WEIGHTS, weights)}
        if extras:
            digests[EXTRAS] = _write_tensors(tmp / EXTRAS, extras)
        payload = {"format": FORMAT_VERSION, "sciformer_version": __version__, **config, "sha256": digests}
        _write_bytes(tmp / CONFIG, json.dumps(payload, indent=2, default=str).encode())
        _fsync_dir(tmp)
        _replace_checkpoint(tmp, directory)
        _fsync_dir(directory.parent)
    except OSError as exc:
        raise storage_error(exc, directory) from None
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return directory


def _replace_checkpoint(new: Path, directory: Path) -> None:
    """Rename the complete folder ``new`` to ``directory``, over an empty folder or an older checkpoint."""
    if not directory.exists() or not any(directory.iterdir()):
        os.replace(new, directory)  # rename(2) replaces an empty folder atomically
        return
    # two renames: a crash between them leaves the previous checkpoint as .NAME.old (see find_checkpoint)
    old = directory.with_name(f".{directory.name}.old")
    if old.exists() or old.is_symlink():
        if not is_checkpoint_dir(old):
            raise StorageError(f"cannot replace the checkpoint '{directory}': '{old}' is in the way and was not written by sciformer")
        _remove(old)
    os.replace(directory, old)
    os.replace(new, directory)
    with suppress(OSError):
        _remove(old)


def _remove(path: Path) -> None:
    """Delete a checkpoint folder of sciformer's; a link to one loses only the link."""
    if path.is_symlink():
        path.unlink()
    else:
        shutil.rmtree(path)


def check_destination(path: Path, what: str, ours: Callable[[Path], bool] | None = None, foreign: str = "") -> None:
    """Refuse ``path`` as a folder to write ``what`` into when something other than a folder is there, or when a
    component above it is not a folder (``file.txt/out``); a missing path or an empty folder passes, and so does a
    non-empty folder that ``ours`` recognises as sciformer's own output. The refusal of any other folder says that
    it holds files ``foreign`` (e.g. "that sciformer did not write") and names a few of them."""
    kind = describe_kind(path)
    if kind == "a directory":
        _check_folder(path, what, ours, foreign)
        return
    if kind != "missing" and not (kind or "").startswith("unreadable"):
        raise StorageError(f"cannot write {what} into '{path}': it is {kind or 'a regular file'}; give a folder")
    for parent in path.parents:
        kind = describe_kind(parent)
        if kind == "a directory":
            return
        if kind != "missing" and not (kind or "").startswith("unreadable"):
            raise StorageError(f"cannot write {what} into '{path}': '{parent}' is {kind or 'a regular file'}, not a folder")


def _check_folder(path: Path, what: str, ours: Callable[[Path], bool] | None, foreign: str) -> None:
    if ours is None or ours(path):
        return
    try:
        entries = sorted(p.name for p in path.iterdir())
    except OSError as exc:
        raise storage_error(exc, path) from None
    if entries:
        shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
        raise StorageError(f"cannot write {what} into '{path}': the folder holds files {foreign} ({shown}); give a new or empty folder")


def is_checkpoint_dir(path: Path) -> bool:
    """Whether ``path`` is a folder holding a checkpoint of sciformer's and nothing else."""
    try:
        entries = {p.name for p in path.iterdir()}
        config = json.loads((path / CONFIG).read_text()) if (path / CONFIG).stat().st_size < 2**24 else None
    except (OSError, ValueError, RecursionError):
        return False
    marked = isinstance(config, dict) and {"format", "sciformer_version", "model"} <= config.keys()
    return marked and entries <= CHECKPOINT_FILES


def check_checkpoint_destination(directory: Path) -> None:
    """A checkpoint goes into a new or empty folder, or over a checkpoint of sciformer's (replaced atomically);
    anything else is refused with :class:`StorageError`, so that no file of the user's is ever removed."""
    if directory.name in ("", ".", "..") or directory.resolve() == Path.cwd().resolve():
        raise StorageError(f"cannot write a checkpoint into '{directory}': a checkpoint needs a folder of its own, e.g. '{directory / 'model'}'")
    check_destination(directory, "a checkpoint", is_checkpoint_dir, "that are not a sciformer checkpoint")


def find_checkpoint(path: str | Path, name: str = "checkpoint") -> Path:
    """The model checkpoint of a run directory (``RUN/checkpoint``), or ``path`` itself if it is one.

    A run killed in the instant between the two renames of :func:`save_checkpoint` has only ``RUN/.checkpoint.old``,
    the previous complete checkpoint; it is used then.
    """
    path = Path(path)
    for candidate in (path / name, path / f".{name}.old"):
        if (candidate / CONFIG).is_file():
            return candidate
    return path


def read_config(directory: str | Path) -> dict[str, Any]:
    directory = Path(directory)
    path = directory / CONFIG
    if not path.is_file():
        raise CheckpointError(f"checkpoint '{directory}' has no {CONFIG}; expected a directory written by sciformer (weights.safetensors + config.json)")
    try:
        config = json.loads(path.read_text())
    except (ValueError, RecursionError) as exc:  # also nesting too deep for the parser, integers of > 4300 digits
        raise CheckpointError(f"checkpoint file '{path}' is corrupt: not valid JSON ({exc})") from None
    if not isinstance(config, dict) or "model" not in config:
        raise CheckpointError(f"checkpoint file '{path}' has no 'model' entry; it was not written by sciformer")
    if not isinstance(config.get("format", 0), int):
        raise CheckpointError(f"checkpoint file '{path}' is damaged: its format is {config['format']!r}, not a number")
    if config.get("format", 0) > FORMAT_VERSION:
        raise CheckpointError(f"checkpoint '{directory}' has format {config['format']}, newer than this sciformer ({__version__}) reads; upgrade sciformer")
    problem = _config_problem(config)
    if problem:
        raise CheckpointError(f"checkpoint file '{path}' is damaged or was not written by sciformer: {problem}")
    return config


# entries of config.json and what each must be; a run's checkpoint has them all (the model alone suffices to load it)
_RUN_DATA_KEYS = {"operator": ("mode", "initial_step", "grid"), "timeseries": ("columns", "scaler", "fingerprint")}


def _config_problem(config: dict[str, Any]) -> str | None:
    """What is wrong with a config.json's structure, or ``None``; checked before anything indexes into it."""
    model = config["model"]
    if not isinstance(model, dict) or not isinstance(model.get("name"), str):
        return "'model' must be a mapping with a string 'name'"
    for key in ("args", "data_sizes"):
        if not isinstance(model.get(key, {}), dict):
            return f"'model.{key}' must be a mapping"
    for key in ("recipe", "data"):
        if not isinstance(config.get(key, {}), dict):
            return f"'{key}' must be a mapping"
    data = config.get("data")
    if data:
        kind = "operator" if data.get("kind") == "operator" else "timeseries"
        missing = [k for k in _RUN_DATA_KEYS[kind] if k not in data]
        if missing:
            return f"the {kind} data entry lacks {missing}"
        if kind == "timeseries" and not (isinstance(data["scaler"], dict) and {"mean", "std"} <= data["scaler"].keys()):
            return "'data.scaler' must hold 'mean' and 'std'"
    return None


def read_run_config(directory: str | Path) -> dict[str, Any]:
    """The config of a checkpoint that ``sciformer fit`` wrote: :func:`read_config` plus the run's recipe and data."""
    config = read_config(directory)
    missing = [key for key in ("recipe", "data") if key not in config]
    if missing:
        raise CheckpointError(f"checkpoint '{directory}' has no {missing} entry: it is a bare model, not the checkpoint of a run")
    return config


def _load_tensors(path: Path, expected_sha256: str | None = None) -> dict[str, torch.Tensor]:
    """A safetensors file's tensors; a missing, truncated, altered or foreign file raises CheckpointError."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"checkpoint file '{path}' cannot be read ({exc})") from None
    if expected_sha256 is not None and hashlib.sha256(data).hexdigest() != expected_sha256:
        raise CheckpointError(f"checkpoint file '{path}' is corrupt or truncated (its sha256 differs from the one recorded when it was written)")
    try:
        return load(data)
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"checkpoint file '{path}' is corrupt or truncated ({exc})") from None


def read_weights(directory: str | Path, name: str = WEIGHTS, expected_sha256: str | None = None) -> dict[str, torch.Tensor]:
    """The tensors of ``weights.safetensors`` (or of another safetensors file of the checkpoint)."""
    path = Path(directory) / name
    if not path.is_file():
        raise CheckpointError(f"checkpoint '{directory}' has no {name}")
    return _load_tensors(path, expected_sha256)


def _digest(config: dict[str, Any], name: str) -> str | None:
    digests = config.get("sha256")
    return digests.get(name) if isinstance(digests, dict) else None  # checkpoints from before 0.1.1 have none


def read_extras(directory: str | Path) -> dict[str, torch.Tensor]:
    """The extra tensors saved beside the weights (empty when there are none)."""
    if not (Path(directory) / EXTRAS).is_file():
        return {}
    return read_weights(directory, EXTRAS, _digest(read_config(directory), EXTRAS))


def load_model(directory: str | Path, device: torch.device | str = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model recorded in a checkpoint and load its weights; returns ``(model, config)``."""
    from sciformer.registry import build_model

    config = read_config(directory)
    spec = config["model"]
    model = build_model(spec["name"], spec.get("args", {}), **spec.get("data_sizes", {}))
    try:
        model.load_state_dict(read_weights(directory, WEIGHTS, _digest(config, WEIGHTS)), strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"checkpoint '{directory}' does not match model '{spec['name']}': {exc}") from None
    return model.to(device).eval(), config


# ------------------------------------------------------------------------------------ training state
# JSON has no tensors, tuples or non-string keys; these markers carry them through (optimiser state dicts are
# keyed by parameter index, Adam's betas are a tuple).
_TENSOR, _TUPLE, _ITEMS = "__tensor__", "__tuple__", "__items__"


def _encode(value: Any, tensors: dict[str, torch.Tensor], path: str) -> Any:
    if isinstance(value, torch.Tensor):
        tensors[path] = value
        return {_TENSOR: path}
    if isinstance(value, dict):
        if all(isinstance(k, str) for k in value):
            return {k: _encode(v, tensors, f"{path}.{k}") for k, v in value.items()}
        return {_ITEMS: [[k, _encode(v, tensors, f"{path}.{k}")] for k, v in value.items()]}
    if isinstance(value, tuple):
        return {_TUPLE: [_encode(v, tensors, f"{path}.{i}") for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [_encode(v, tensors, f"{path}.{i}") for i, v in enumerate(value)]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if hasattr(value, "item"):  # NumPy scalars
        return value.item()
    raise TypeError(f"training state entry '{path}' has type {type(value).__name__}, which a checkpoint cannot store")


def _decode(value: Any, tensors: dict[str, torch.Tensor], where: Path) -> Any:
    if isinstance(value, dict):
        if _TENSOR in value:
            try:
                return tensors[value[_TENSOR]]
            except KeyError:
                raise CheckpointError(f"checkpoint file '{where}' has no tensor '{value[_TENSOR]}'; the checkpoint is incomplete") from None
        if _TUPLE in value:
            return tuple(_decode(v, tensors, where) for v in value[_TUPLE])
        if _ITEMS in value:
            return {k: _decode(v, tensors, where) for k, v in value[_ITEMS]}
        return {k: _decode(v, tensors, where) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v, tensors, where) for v in value]
    return value


def save_training_state(directory: str | Path, name: str, state: dict[str, Any]) -> Path:
    """Write ``state`` (nested dicts/lists/tuples of JSON values and tensors) as ``directory/name`` and make it
    the one :func:`load_training_state` returns.

    Order of operations, so that a crash anywhere leaves a complete state behind: write a temporary folder and
    fsync it, rename it to ``name``, atomically replace ``LATEST`` with ``name``, then delete older folders.
    """
    directory = Path(directory)
    tensors: dict[str, torch.Tensor] = {}
    skeleton = _encode(state, tensors, "state")
    try:
        return _save_state(directory, name, skeleton, tensors)
    except OSError as exc:
        raise storage_error(exc, directory) from None


def _save_state(directory: Path, name: str, skeleton: Any, tensors: dict[str, torch.Tensor]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=directory, prefix=f".{name}.tmp"))
    try:
        digest = _write_tensors(tmp / STATE_TENSORS, tensors)
        payload = {"format": STATE_FORMAT, "sciformer_version": __version__, "sha256": {STATE_TENSORS: digest}, "state": skeleton}
        _write_bytes(tmp / STATE_JSON, json.dumps(payload).encode())
        _fsync_dir(tmp)
        final, n = directory / name, 1
        while final.exists():  # never touch the folder LATEST may still name
            n += 1
            final = directory / f"{name}-{n}"
        os.replace(tmp, final)
        _fsync_dir(directory)  # the folder's rename is durable before LATEST can name it
        pointer = directory / f".{LATEST}.tmp"
        _write_bytes(pointer, final.name.encode())
        os.replace(pointer, directory / LATEST)
        _fsync_dir(directory)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for old in directory.iterdir():  # older states, and temporaries of writes that a crash interrupted
        if old.is_dir() and old.name != final.name:
            shutil.rmtree(old, ignore_errors=True)
    return final


def _latest_name(directory: Path) -> str | None:
    kind = describe_kind(directory / LATEST)
    if kind == "missing":
        return None
    if kind is not None:  # a folder, a device, a FIFO (opening it would wait forever): damaged, not absent
        raise CheckpointError(f"checkpoint file '{directory / LATEST}' is {kind}, not a regular file")
    try:
        with open(directory / LATEST, "rb") as pointer:  # bounded: a few bytes name the state folder
            name = pointer.read(4096).decode("utf-8", errors="replace").strip()
    except OSError as exc:
        raise CheckpointError(f"checkpoint file '{directory / LATEST}' cannot be read ({exc.strerror or exc})") from None
    if not name or len(name) > 255 or Path(name).name != name or name in (".", ".."):  # LATEST is replaced whole: empty is damaged
        raise CheckpointError(f"checkpoint file '{directory / LATEST}' is damaged: it must name a state folder beside it, got {name[:40]!r}")
    return name


def load_training_state(directory: str | Path) -> dict[str, Any] | None:
    """The state last written by :func:`save_training_state` into ``directory``; None when there is none yet.

    Raises :class:`CheckpointError` naming the file when the state is damaged (unreadable JSON, a tensor file
    whose sha256 differs from the recorded one, missing entries) or written by a newer sciformer.
    """
    directory = Path(directory)
    name = _latest_name(directory)
    if name is None:
        return None
    folder = directory / name
    path = folder / STATE_JSON
    if not path.is_file():
        raise CheckpointError(f"checkpoint '{directory / LATEST}' names '{name}', but '{path}' does not exist")
    try:
        payload = json.loads(path.read_text())
    except (ValueError, RecursionError, OSError) as exc:  # also nesting too deep for the parser, integers of > 4300 digits
        raise CheckpointError(f"checkpoint file '{path}' is corrupt: not valid JSON ({exc})") from None
    if not isinstance(payload, dict) or "state" not in payload or not isinstance(payload.get("sha256"), dict):
        raise CheckpointError(f"checkpoint file '{path}' has no training state; it was not written by sciformer")
    if not isinstance(payload.get("format", 0), int):
        raise CheckpointError(f"checkpoint file '{path}' is damaged: its format is {payload['format']!r}, not a number")
    if payload.get("format", 0) > STATE_FORMAT:
        raise CheckpointError(f"checkpoint '{folder}' has format {payload['format']}, newer than this sciformer ({__version__}) reads; upgrade sciformer")
    tensors_path = folder / STATE_TENSORS
    if not tensors_path.is_file():
        raise CheckpointError(f"checkpoint '{folder}' has no {STATE_TENSORS}")
    tensors = _load_tensors(tensors_path, payload["sha256"].get(STATE_TENSORS))
    return _decode(payload["state"], tensors, tensors_path)
