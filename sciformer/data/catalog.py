"""Named datasets: one YAML manifest each in the project's ``datasets/`` folder.

A manifest gives the file name, its canonical download URL and sha256, the sampling frequency and the
split rule. Files are looked up in ``$SCIFORMER_DATA_DIR``, then ``./data/``; a missing file is downloaded
into the first of those and verified against its sha256. Readers never touch the network: only
:func:`download` does.
"""

from __future__ import annotations

import functools
import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from sciformer.data.series_files import XARRAY_SUFFIXES, data_file
from sciformer.errors import ConfigError, DataError, did_you_mean, user_path

MANIFEST_DIR = Path(__file__).resolve().parents[2] / "datasets"
SPLIT_RULES = ("ett_hour", "ett_minute", "ratio")


@dataclass(frozen=True)
class Manifest:
    name: str
    file: str  # path relative to a data dir, e.g. "ETT-small/ETTh1.csv"
    url: str | None
    sha256: str | None
    kind: str = "timeseries"
    freq: str | None = None  # sampling frequency as a pandas offset alias ("h", "15min", "10min")
    time_features: str = "h"  # frequency code of the time features (TSLib passes 'h' for every dataset)
    time_col: str = "date"
    target: str | None = None
    split: str = "ratio"
    rows: int | None = None
    columns: int | None = None
    description: str = ""
    also: tuple = ()  # further files of the dataset: mappings with file, url, sha256 (e.g. test splits)


@functools.cache
def manifests() -> dict[str, Manifest]:
    """Every manifest in ``datasets/``, by name."""
    if not MANIFEST_DIR.is_dir():
        raise DataError(f"the dataset manifests folder '{MANIFEST_DIR}' is missing; install sciformer from a source checkout (pip install -e .)")
    found = {}
    fields = set(Manifest.__dataclass_fields__)
    for path in sorted(MANIFEST_DIR.glob("*.yaml")):
        raw: dict[str, Any] = yaml.safe_load(path.read_text())
        unknown = set(raw) - fields
        if unknown:
            raise DataError(f"dataset manifest '{path}' has unknown keys {sorted(unknown)}; valid keys: {sorted(fields)}")
        raw["also"] = tuple(raw.get("also") or ())
        manifest = Manifest(**raw)
        if manifest.kind == "timeseries" and manifest.split not in SPLIT_RULES:
            raise DataError(f"dataset manifest '{path}': split must be one of {SPLIT_RULES}, got {manifest.split!r}")
        found[manifest.name] = manifest
    return found


def is_path_like(name: str) -> bool:
    return "/" in name or os.sep in name or Path(name).suffix.lower() in (".csv", ".h5", ".hdf5", ".npz", *XARRAY_SUFFIXES)


def check_dataset_name(name: str) -> None:
    """Fail early on a dataset name that is neither registered nor an existing file."""
    if name in manifests():
        return
    if is_path_like(name):
        try:
            data_file(name)
        except DataError as exc:
            raise ConfigError(f"recipe key 'data.name': {exc}") from None
        return
    raise ConfigError(
        f"recipe key 'data.name': unknown dataset {name!r}{did_you_mean(name, manifests())}; "
        f"registered datasets: {', '.join(sorted(manifests()))} (or give a path to a CSV file)"
    )


def get_manifest(name: str) -> Manifest:
    try:
        return manifests()[name]
    except KeyError:
        raise ConfigError(f"unknown dataset {name!r}{did_you_mean(name, manifests())}; registered: {', '.join(sorted(manifests()))}") from None


def data_dirs() -> list[Path]:
    """Folders searched for data files, in order: ``$SCIFORMER_DATA_DIR``, then ``./data``."""
    dirs = []
    if os.environ.get("SCIFORMER_DATA_DIR"):
        folder = user_path(os.environ["SCIFORMER_DATA_DIR"])
        if folder.exists() and not folder.is_dir():
            raise DataError(f"SCIFORMER_DATA_DIR='{folder}' is a file, not a folder; point it at the folder that holds the data files")
        dirs.append(folder)
    dirs.append(Path("data"))
    return dirs


def find_file(manifest: Manifest) -> Path | None:
    return _find(manifest.file)


def resolve(name: str, download_missing: bool = True) -> Path:
    """Local path of a named dataset's file, downloading (and verifying) it when missing."""
    manifest = get_manifest(name)
    path = find_file(manifest)
    if path is not None:
        return path
    searched = ", ".join(f"'{d}'" for d in data_dirs())
    if not download_missing:
        raise DataError(f"dataset '{name}': file '{manifest.file}' not found in {searched}; run `sciformer datasets download {name}`")
    return download(name)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download(name: str, timeout: float = 30.0) -> Path:
    """Download a named dataset's files into the first data dir, verify their sha256; return the main file."""
    manifest = get_manifest(name)
    for extra in manifest.also:
        _download_file(name, extra["file"], extra.get("url"), extra.get("sha256"), timeout)
    return _download_file(name, manifest.file, manifest.url, manifest.sha256, timeout)


def _find(relative: str) -> Path | None:
    for folder in data_dirs():
        for candidate in (folder / relative, folder / Path(relative).name):
            if candidate.is_file():
                return candidate
    return None


def _download_file(name: str, relative: str, url: str | None, sha256: str | None, timeout: float) -> Path:
    existing = _find(relative)
    if existing is not None:
        return existing
    target = data_dirs()[0] / relative
    searched = ", ".join(f"'{d}'" for d in data_dirs())
    how_to_fix = (
        f"place '{Path(relative).name}' in one of those folders (or point SCIFORMER_DATA_DIR at a folder holding "
        f"'{relative}'), or run `sciformer datasets download {name}` on a machine with network access"
    )
    if not url:
        raise DataError(f"dataset '{name}': file '{relative}' not found in {searched} and it has no download URL; {how_to_fix}")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            for chunk in iter(lambda: response.read(1 << 20), b""):
                out.write(chunk)
        if sha256:
            actual = sha256_of(tmp)
            if actual != sha256:
                raise DataError(
                    f"dataset '{name}': the file downloaded from {url} has sha256 {actual}, expected {sha256}; "
                    "the download is corrupt or the upstream file changed, so it was not kept"
                )
        os.replace(tmp, target)
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise DataError(f"dataset '{name}': file '{relative}' not found in {searched}, and downloading it from {url} failed ({exc}); {how_to_fix}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return target
