"""Hostile data files: CSV (``CSV_CASES``) and PDE files (``H5_CASES``). Each case writes its file into the test's
folder (or names a special path) and returns the path."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
from conftest import FIXTURES, write_csv


def _series_text(rows: int = 160, edit: Callable[[pd.DataFrame], pd.DataFrame] | None = None) -> Callable[[Path], Path]:
    def make(ws: Path) -> Path:
        path = write_csv(ws / "d.csv", n_rows=rows)
        if edit is not None:
            edit(pd.read_csv(path)).to_csv(path, index=False)
        return path

    return make


def csv_cell(value: str, row: int = 100, column: str = "OT") -> Callable[[Path], Path]:
    def make(ws: Path) -> Path:
        path = write_csv(ws / "d.csv", n_rows=160)
        lines = path.read_text().splitlines()
        header = lines[0].split(",")
        cells = lines[row + 1].split(",")
        cells[header.index(column)] = value
        lines[row + 1] = ",".join(cells)
        path.write_text("\n".join(lines) + "\n")
        return path

    return make


def raw_file(content: bytes, name: str = "d.csv") -> Callable[[Path], Path]:
    def make(ws: Path) -> Path:
        (ws / name).write_bytes(content)
        return ws / name

    return make


def _fifo(ws: Path) -> Path:
    os.mkfifo(ws / "pipe.csv")
    return ws / "pipe.csv"


def _directory(ws: Path) -> Path:
    (ws / "folder.csv").mkdir()
    return ws / "folder.csv"


def _link_loop(ws: Path) -> Path:
    os.symlink("loop-b.csv", ws / "loop-a.csv")
    os.symlink("loop-a.csv", ws / "loop-b.csv")
    return ws / "loop-a.csv"


HEADER = b"date,v0,v1,OT\n"
CSV_CASES: dict[str, Callable[[Path], Path]] = {
    "inf": csv_cell("inf"),
    "minus-inf": csv_cell("-inf"),
    "1e999": csv_cell("1e999"),
    "1e308": csv_cell("1e308"),
    "minus-1e308": csv_cell("-1e308", column="v0"),
    "Infinity": csv_cell("Infinity"),
    "nan-word": csv_cell("nan"),
    "text-in-a-number-column": csv_cell("abc"),
    "inf-in-the-first-row": csv_cell("inf", row=0, column="v1"),
    "inf-in-the-last-row": csv_cell("inf", row=159),
    "bad-timestamp": csv_cell("2020-13-45 99:00:00", column="date"),
    "duplicate-timestamps": _series_text(edit=lambda f: f.assign(date=f["date"].where(f.index != 50, f["date"].iloc[49]))),
    "gap-in-time": _series_text(edit=lambda f: f.drop(index=range(60, 64))),
    "unsorted-time": _series_text(edit=lambda f: f.iloc[::-1]),
    "irregular-time": _series_text(
        edit=lambda f: f.assign(date=pd.date_range("2020", periods=len(f), freq="h") + pd.to_timedelta(np.arange(len(f)) ** 2, "s"))
    ),
    "too-few-rows-for-the-windows": _series_text(rows=30),
    "no-numeric-columns": _series_text(edit=lambda f: f[["date"]]),
    "zero-rows": raw_file(HEADER),
    "one-row": raw_file(HEADER + b"2020-01-01 00:00:00,1,2,3\n"),
    "two-rows": raw_file(HEADER + b"2020-01-01 00:00:00,1,2,3\n2020-01-01 01:00:00,1,2,3\n"),
    "empty-file": raw_file(b""),
    "only-newlines": raw_file(b"\n" * 1000),
    "nul-bytes": raw_file(b"\x00" * 100_000),
    "nul-inside-the-text": raw_file(HEADER + b"2020-01-01 00:00:00,1,\x002,3\n" * 50),
    "one-huge-line": raw_file(b"1," * 2_000_000),
    "a-5000-digit-number": csv_cell("1" * 5000),
    "utf16": raw_file((HEADER + b"2020-01-01 00:00:00,1,2,3\n" * 50).decode().encode("utf-16")),
    "binary-garbage": raw_file(bytes(range(256)) * 200),
    "gzip-bytes": raw_file(b"\x1f\x8b\x08\x00" + bytes(500)),
    "hdf5-named-csv": lambda ws: Path(shutil.copyfile(FIXTURES / "burgers1d_tiny.h5", ws / "d.csv")),
    "a-directory": _directory,
    "a-fifo": _fifo,
    "dev-null": lambda ws: Path("/dev/null"),
    "dev-zero": lambda ws: Path("/dev/zero"),
    "home-missing": lambda ws: Path("~/no-such-sciformer-file.csv"),
    "missing": lambda ws: ws / "missing.csv",
    "link-loop": _link_loop,
    "etc-shadow-like": raw_file(b"root:$6$secret$hash:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\n"),
}


# ------------------------------------------------------------------------------------------ PDE HDF5 files
def _h5(fill: Callable[[h5py.File], None], coordinates: bool = True) -> Callable[[Path], Path]:
    """A PDEBench single-file layout (``tensor [4, 6, 16]`` + coordinates) whose tensor ``fill`` writes."""

    def make(ws: Path) -> Path:
        with h5py.File(ws / "d.h5", "w") as f:
            fill(f)
            if coordinates:
                f["x-coordinate"] = np.linspace(0, 1, 16, dtype=np.float32)
                f["t-coordinate"] = np.arange(7, dtype=np.float32)
        return ws / "d.h5"

    return make


def _tensor(poison: float | None = None, at: tuple = (2, 3, 5), dtype="f4") -> Callable[[h5py.File], None]:
    def fill(f: h5py.File) -> None:
        data = np.random.default_rng(0).standard_normal((4, 6, 16)).astype(dtype)
        if poison is not None:
            data[at] = poison
        f.create_dataset("tensor", data=data)

    return fill


def _holes(f: h5py.File) -> None:
    ds = f.create_dataset("tensor", shape=(4, 6, 16), dtype="f4", chunks=(1, 6, 16))
    for i in (0, 1, 3):  # sample 2 is never written: it would read back as the fill value
        ds[i] = np.ones((6, 16), np.float32)


def _link_cycle(f: h5py.File) -> None:
    f["tensor"] = h5py.SoftLink("/loop")
    f["loop"] = h5py.SoftLink("/tensor")


def truncated_h5(ws: Path) -> Path:
    data = (FIXTURES / "burgers1d_tiny.h5").read_bytes()
    (ws / "d.h5").write_bytes(data[: len(data) // 2])
    return ws / "d.h5"


def _external_link(ws: Path) -> Path:
    with h5py.File(ws / "d.h5", "w") as f:
        f["tensor"] = h5py.ExternalLink(str(FIXTURES / "burgers1d_tiny.h5"), "/tensor")
    return ws / "d.h5"


class Payload:
    """Runs a command when unpickled: a loader that unpickles would execute it."""

    def __reduce__(self):
        return (os.system, ("touch pwned",))


def _pickled_pt(ws: Path) -> Path:
    import torch

    torch.save({"x": Payload(), "tensor": torch.zeros(2, 3, 8)}, ws / "d.pt")
    return ws / "d.pt"


def _pickled_npz(ws: Path) -> Path:
    np.savez(ws / "d.npz", x=np.array([{"a": 1}, None], dtype=object), y=np.zeros((2, 4, 4)))
    return ws / "d.npz"


H5_CASES: dict[str, Callable[[Path], Path]] = {
    "nan": _h5(_tensor(np.nan)),
    "inf": _h5(_tensor(np.inf)),
    "minus-inf": _h5(_tensor(-np.inf, at=(0, 0, 0))),
    "nan-in-the-last-sample": _h5(_tensor(np.nan, at=(3, 5, 15))),
    "float64-overflow": _h5(_tensor(1e300, dtype="f8")),
    "never-written-chunks": _h5(_holes),
    "never-written-at-all": _h5(lambda f: f.create_dataset("tensor", shape=(4, 6, 16), dtype="f4")),
    "string-dtype": _h5(lambda f: f.create_dataset("tensor", data=np.full((4, 6, 16), b"a", dtype="S1"))),
    "complex-field": _h5(lambda f: f.create_dataset("tensor", data=np.ones((4, 6, 16), np.complex64))),
    "bool-field": _h5(lambda f: f.create_dataset("tensor", data=np.ones((4, 6, 16), bool))),
    "empty-sample-axis": _h5(lambda f: f.create_dataset("tensor", shape=(0, 6, 16), dtype="f4")),
    "empty-space-axis": _h5(lambda f: f.create_dataset("tensor", shape=(4, 6, 0), dtype="f4")),
    "one-dimensional-tensor": _h5(lambda f: f.create_dataset("tensor", data=np.ones(16, np.float32))),
    "scalar-tensor": _h5(lambda f: f.create_dataset("tensor", data=np.float32(1))),
    "tensor-a-group": _h5(lambda f: f.create_group("tensor")),
    "link-cycle": _h5(_link_cycle),
    "dangling-link": _h5(lambda f: f.__setitem__("tensor", h5py.SoftLink("/nowhere"))),
    "external-link": _external_link,
    "no-known-keys": _h5(lambda f: f.create_dataset("velocity", data=np.ones((4, 6, 16), np.float32))),
    "empty-file": _h5(lambda f: None, coordinates=False),
    "truncated": truncated_h5,
    "zero-bytes": raw_file(b"", "d.h5"),
    "text-named-h5": raw_file(b"date,OT\n2020-01-01,1\n", "d.h5"),
    "hdf5-signature-then-garbage": raw_file(b"\x89HDF\r\n\x1a\n" + bytes(range(256)) * 8, "d.h5"),
    "pickled-object-npz": _pickled_npz,
    "a-directory": lambda ws: (ws / "folder.h5").mkdir() or ws / "folder.h5",
    "huge-shape-one-sample-written": _h5(lambda f: f.create_dataset("tensor", shape=(10**8, 6, 16), dtype="f4", chunks=(1, 6, 16)).__setitem__(0, 1.0)),
    "pickle-in-a-pt": _pickled_pt,
    "text-named-nc": raw_file(b"netcdf nothing {}\n", "d.nc"),
    "text-named-npz": raw_file(b"PK\x03\x04 not really a zip", "d.npz"),
    "a-fifo": lambda ws: os.mkfifo(ws / "pipe.h5") or ws / "pipe.h5",
}
