"""Trajectory sources: every format behind one protocol, and hostile files refused in one line naming the file,
the dataset and the first bad sample."""

from __future__ import annotations

import os
import pickle

import h5py
import numpy as np
import pytest
import torch

from sciformer.data.sources import ArraySource, TheWellSource, XarraySource, open_source
from sciformer.errors import DataError

RNG = np.random.default_rng(0)


def _single(path, n=6, t=5, space=(8, 8), chunks=None, compression=None, fill=None):
    data = RNG.standard_normal((n, t, *space)).astype(np.float32)
    with h5py.File(path, "w") as f:
        if fill is not None:  # allocate the dataset but write only the samples in `fill`
            ds = f.create_dataset("tensor", shape=data.shape, dtype="f4", chunks=(1, t, *space))
            for i in fill:
                ds[i] = data[i]
        else:
            f.create_dataset("tensor", data=data, chunks=chunks, compression=compression)
        for ax, size in zip("xyz", space):
            f[f"{ax}-coordinate"] = np.linspace(0, 1, size, dtype=np.float32)
        f["t-coordinate"] = np.arange(t + 1, dtype=np.float32)
    return data


def _one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


def test_pdebench_source_protocol_reads_pickles_and_fingerprints(tmp_path):
    data = _single(tmp_path / "a.h5")
    src = open_source(tmp_path / "a.h5")
    assert (src.kind, src.n_samples, src.n_frames, src.channels, src.grid_shape) == ("pdebench-single", 6, 5, ["tensor"], (8, 8))
    np.testing.assert_array_equal(src.read(slice(1, 3), slice(0, 5, 2), stride=2)[:, :, 0], data[1:3, ::2, ::2, ::2])
    np.testing.assert_array_equal(src.read([0, 4])[:, :, 0], data[[0, 4]])
    np.testing.assert_allclose(src.times, np.arange(5))
    again = pickle.loads(pickle.dumps(src))  # a DataLoader worker's copy opens its own handle
    np.testing.assert_array_equal(again.read([5])[0, :, 0], data[5])
    stamp = src.fingerprint()
    assert stamp["shape"] == [6, 5, 1, 8, 8] and stamp["size"] == os.path.getsize(tmp_path / "a.h5")
    src.check_unchanged(stamp)
    src.close(), again.close()
    with h5py.File(tmp_path / "a.h5", "a") as f:
        f.attrs["edited"] = 1
    os.utime(tmp_path / "a.h5", ns=(stamp["mtime_ns"] + 10**9, stamp["mtime_ns"] + 10**9))
    with pytest.raises(DataError, match=r"a\.h5: the data file changed while it was in use \(.*mtime_ns") as exc:
        src.check_unchanged(stamp)
    _one_line(exc)


def _the_well(path, n=3, t=4, w=6, h=5):
    rng = np.random.default_rng(1)
    density = rng.standard_normal((n, t, w, h)).astype(np.float32)
    velocity = rng.standard_normal((n, t, w, h, 2)).astype(np.float32)
    stress = rng.standard_normal((n, t, w, h, 2, 2)).astype(np.float32)
    with h5py.File(path, "w") as f:
        f.attrs.update({"n_spatial_dims": 2, "n_trajectories": n, "dataset_name": "toy", "simulation_parameters": ["Re"], "Re": 100.0})
        dims = f.create_group("dimensions")
        dims.attrs["spatial_dims"] = ["x", "y"]
        dims["time"], dims["x"], dims["y"] = np.arange(t, dtype=np.float32) * 0.5, np.linspace(0, 1, w), np.linspace(0, 2, h)
        for group, name, arr in (("t0_fields", "density", density), ("t1_fields", "velocity", velocity), ("t2_fields", "stress", stress)):
            g = f.create_group(group)
            g.attrs["field_names"] = [name]
            g[name] = arr
            g[name].attrs.update({"sample_varying": True, "time_varying": True, "dim_varying": [True, True]})
    return density, velocity, stress


def test_the_well_layout_scalars_vectors_tensors_as_channels(tmp_path):
    density, velocity, stress = _the_well(tmp_path / "well.hdf5")
    src = open_source(tmp_path / "well.hdf5")
    assert isinstance(src, TheWellSource)
    assert src.channels == ["density", "velocity_x", "velocity_y", "stress_xx", "stress_xy", "stress_yx", "stress_yy"]
    assert (src.n_samples, src.n_frames, src.grid_shape) == (3, 4, (6, 5)) and src.params == {"n_spatial_dims": 2.0, "n_trajectories": 3.0, "Re": 100.0}
    block = src.read(slice(1, 3), slice(1, 4))
    np.testing.assert_array_equal(block[:, :, 0], density[1:3, 1:4])
    np.testing.assert_array_equal(block[:, :, 2], velocity[1:3, 1:4, ..., 1])
    np.testing.assert_array_equal(block[:, :, 4], stress[1:3, 1:4, ..., 0, 1])
    np.testing.assert_allclose(src.times, [0, 0.5, 1.0, 1.5])
    np.testing.assert_allclose(src.coords["y"], np.linspace(0, 2, 5))


def test_neuralop_npz_and_pt_and_netcdf_through_one_protocol(tmp_path):
    y = RNG.standard_normal((4, 6, 16)).astype(np.float32)
    np.savez(tmp_path / "burgers.npz", x=y[:, 0], y=y)
    torch.save({"x": torch.from_numpy(y[:, 0]), "y": torch.from_numpy(y)}, tmp_path / "burgers.pt")
    for name in ("burgers.npz", "burgers.pt"):
        src = open_source(tmp_path / name)
        assert (src.n_samples, src.n_frames, src.channels, src.grid_shape) == (4, 6, ["u"], (16,))
        np.testing.assert_array_equal(src.read([2])[0, :, 0], y[2])
    a = (RNG.random((5, 8, 8)) > 0.5).astype(np.float32)
    np.savez(tmp_path / "darcy.npz", x=a, y=2 * a)
    darcy = open_source(tmp_path / "darcy.npz")
    assert darcy.coefficient == "x" and darcy.n_frames == 1
    np.testing.assert_array_equal(darcy.read_coefficient([1])[0, 0], a[1])
    from sciformer.data.xarray_io import to_xarray, write_netcdf

    write_netcdf(to_xarray(y[:, :, None], coords={"t": np.arange(6) * 0.1}), tmp_path / "b.nc")
    nc = open_source(tmp_path / "b.nc")
    assert isinstance(nc, XarraySource) and nc.channels == ["u"]
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(nc)).read(slice(1, 3), slice(2, 4))[:, :, 0], y[1:3, 2:4])
    np.testing.assert_allclose(nc.times, np.arange(6) * 0.1)


def test_open_source_sniffs_content_and_refuses_what_is_not_a_file(tmp_path):
    _single(tmp_path / "a.h5")
    (tmp_path / "data.bin").write_bytes((tmp_path / "a.h5").read_bytes())
    assert open_source(tmp_path / "data.bin").kind == "pdebench-single"
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DataError, match=r"notes\.txt': unrecognised format; expected HDF5"):
        open_source(tmp_path / "notes.txt")
    os.mkfifo(tmp_path / "pipe.h5")
    with pytest.raises(DataError, match=r"pipe\.h5' is a FIFO"):
        open_source(tmp_path / "pipe.h5")  # never opened: reading a FIFO would block


# ------------------------------------------------------------------------------------------- hostile files


def test_nan_and_inf_are_refused_naming_file_dataset_and_first_bad_sample(tmp_path):
    data = RNG.standard_normal((6, 5, 8)).astype(np.float32)
    data[4, 2, 3] = np.nan
    data[5, 0, 0] = np.inf
    with h5py.File(tmp_path / "nan.h5", "w") as f:
        f["tensor"], f["x-coordinate"] = data, np.linspace(0, 1, 8)
    src = open_source(tmp_path / "nan.h5")
    src.read(slice(0, 4))  # clean samples read fine
    with pytest.raises(DataError, match=r"nan\.h5: dataset 'tensor' holds nan at sample 4, frame 2; .*refused") as exc:
        src.read(slice(2, 6))
    _one_line(exc)
    with pytest.raises(DataError, match=r"dataset 'u' holds inf at sample 1, frame 0"):
        ArraySource(np.array([[[[0.0]]], [[[np.inf]]]])).read(slice(None))


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda f: f.create_dataset("tensor", data=np.ones((4, 3, 8), np.complex64)), r"'tensor' is complex-valued .*two real channels"),
        (lambda f: f.create_dataset("tensor", data=np.array([[["a"] * 8] * 3] * 4, dtype="S1")), r"'tensor' has dtype \|S1; expected real numbers"),
        (lambda f: f.create_dataset("tensor", shape=(0, 3, 8), dtype="f4"), r"'tensor' has an empty axis"),
        (lambda f: f.create_dataset("tensor", shape=(4, 3, 8), dtype="f4", external=[(f.filename + ".raw", 0, 4 * 3 * 8 * 4)]),
         r"'tensor' keeps its data in external files"),
        (lambda f: f.create_dataset("tensor", shape=(4, 3, 8), dtype="f4"), r"'tensor' was never written"),
    ],
    ids=["complex", "strings", "empty-axis", "external", "unallocated"],
)
def test_fields_that_would_read_back_wrong_are_refused(tmp_path, make, message):
    with h5py.File(tmp_path / "bad.h5", "w") as f:
        make(f)
        f["x-coordinate"] = np.linspace(0, 1, 8)
    (tmp_path / "bad.h5.raw").write_bytes(bytes(4 * 3 * 8 * 4))
    with pytest.raises(DataError, match=r"bad\.h5: dataset " + message) as exc:
        open_source(tmp_path / "bad.h5")
    _one_line(exc)


def test_never_written_chunks_are_refused_naming_the_first(tmp_path):
    _single(tmp_path / "holes.h5", fill=[0, 1, 2, 4, 5])
    with pytest.raises(DataError, match=r"holes\.h5: dataset 'tensor' has 1 of 6 chunks never written \(the first at sample 3\)"):
        open_source(tmp_path / "holes.h5")


def test_link_cycles_and_external_links_are_refused(tmp_path):
    with h5py.File(tmp_path / "cycle.h5", "w") as f:
        f["tensor"] = h5py.SoftLink("/loop")
        f["loop"] = h5py.SoftLink("/tensor")
    with pytest.raises(DataError, match=r"cycle\.h5: key '(tensor|loop)' cannot be opened .*link cycle") as exc:
        open_source(tmp_path / "cycle.h5")
    _one_line(exc)
    _single(tmp_path / "real.h5")
    with h5py.File(tmp_path / "ext.h5", "w") as f:
        f["tensor"] = h5py.ExternalLink(str(tmp_path / "real.h5"), "/tensor")
    with pytest.raises(DataError, match=r"ext\.h5: key 'tensor' is an external link to .*real\.h5"):
        open_source(tmp_path / "ext.h5")


def test_a_corrupted_chunk_mid_file_names_file_dataset_and_sample(tmp_path):
    _single(tmp_path / "c.h5", n=8, t=4, space=(32, 32), chunks=(1, 4, 32, 32), compression="gzip")
    with h5py.File(tmp_path / "c.h5", "r") as f:
        info = f["tensor"].id.get_chunk_info_by_coord((5, 0, 0, 0))
    with open(tmp_path / "c.h5", "r+b") as raw:  # scribble over the middle of sample 5's compressed chunk
        raw.seek(info.byte_offset + info.size // 2)
        raw.write(b"\xff" * 64)
    src = open_source(tmp_path / "c.h5")
    src.read(slice(0, 5))
    with pytest.raises(DataError, match=r"c\.h5: cannot read dataset 'tensor' at sample 5 \(.*\); the file may be truncated or corrupt") as exc:
        src.read(slice(2, 8))
    _one_line(exc)


def test_the_well_constant_in_time_fields_are_repeated_over_frames(tmp_path):
    _the_well(tmp_path / "well.hdf5")
    mask = np.random.default_rng(2).standard_normal((3, 6, 5)).astype(np.float32)
    with h5py.File(tmp_path / "well.hdf5", "a") as f:
        g = f["t0_fields"]
        g.attrs["field_names"] = ["density", "mask"]
        g["mask"] = mask
        g["mask"].attrs.update({"sample_varying": True, "time_varying": False})
    src = open_source(tmp_path / "well.hdf5")
    assert src.channels[:2] == ["density", "mask"] and src.dataset_name(1, 0) == "t0_fields/mask"
    block = src.read([0, 2], slice(0, 3))
    np.testing.assert_array_equal(block[:, 2, 1], mask[[0, 2]])
    np.testing.assert_array_equal(block[:, 0, 1], block[:, 2, 1])
