"""PDEBench readers: both layouts in 1D/2D/3D against files written here with plain h5py in PDEBench's
exact layout, PDEBench's split/striding/window conventions, chunked streaming, bad-input errors, and
neuraloperator's small sets."""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from sciformer.data.neuralop import load_neuralop_small
from sciformer.data.pde import describe, detect_layout, gather_windows, open_pdebench, windows_per_trajectory
from sciformer.errors import DataError

RNG = np.random.default_rng(0)
SPACES = {1: (12,), 2: (8, 6), 3: (6, 4, 4)}


def _data_dir() -> Path | None:
    env = os.environ.get("SCIFORMER_DATA_DIR")  # tests/conftest.py points it at ../shared/datasets
    return Path(env) if env else None


def write_single(path, n=20, t=7, space=(12,), fields=("tensor",), attrs=None, t_extra=1):
    """PDEBench single-file layout, exactly as its Data_Merge.py writes it (t has T+1 entries)."""
    arrays = {k: RNG.standard_normal((n, t, *space)).astype(np.float32) for k in fields}
    with h5py.File(path, "w") as f:
        for k, a in arrays.items():
            f.create_dataset(k, data=a)
        for ax, size in zip("xyz", space):
            f.create_dataset(f"{ax}-coordinate", data=np.linspace(0, 1, size, dtype=np.float32))
        f.create_dataset("t-coordinate", data=np.arange(t + t_extra, dtype=np.float32) * 0.1)
        for k, v in (attrs or {}).items():
            f.attrs[k] = v
    return arrays


def write_group(path, n=20, t=7, space=(12,), c=2, order=None):
    """PDEBench group layout as gen_diff_react.py writes it: f"{seed:04d}/data" [T, *space, C] + grid."""
    data = {f"{i:04d}": RNG.standard_normal((t, *space, c)).astype(np.float32) for i in range(n)}
    with h5py.File(path, "w") as f:
        for key in (order or list(data)):
            g = f.create_group(key)
            g.create_dataset("data", data=data[key])
            grid = g.create_group("grid")
            for ax, size in zip("xyz", space):
                grid.create_dataset(ax, data=np.linspace(-1, 1, size, dtype=np.float32))
            grid.create_dataset("t", data=np.linspace(0, 5, t, dtype=np.float32))
    return data


@pytest.mark.parametrize("d", [1, 2, 3])
def test_single_file_split_stride_windows(tmp_path, d):
    space = SPACES[d]
    arr = write_single(tmp_path / "a.hdf5", n=20, t=7, space=space, attrs={"beta": 0.4})["tensor"]
    sp = (slice(None, None, 2),) * d
    ds = open_pdebench(tmp_path / "a.hdf5", "train", reduced_resolution=2, reduced_resolution_t=2,
                       initial_step=2)
    strided = arr[(slice(None), slice(None, None, 2), *sp)]  # [20, 4, *space/2]
    # first 10% = test; train = samples 2..19
    assert ds.layout == "single" and ds.n_samples == 18 and ds.n_frames == 4
    assert ds.spatial_shape == strided.shape[2:]
    assert len(ds) == 18 * (4 - 2)
    u_in, u_out = ds[3]  # sample 2+1, target frame 2+1
    assert u_in.shape == (2, *strided.shape[2:]) and u_out.shape == (1, *strided.shape[2:])
    np.testing.assert_array_equal(u_in.numpy(), strided[3, 1:3])
    np.testing.assert_array_equal(u_out[0].numpy(), strided[3, 3])
    test = open_pdebench(tmp_path / "a.hdf5", "test", mode="trajectory")
    assert len(test) == 2
    np.testing.assert_array_equal(test[1][:, 0].numpy(), arr[1])
    # t-coordinate has T+1 entries in PDEBench files: trimmed to T, then strided
    np.testing.assert_allclose(ds.grid["t"].numpy(), np.arange(0, 7, 2) * 0.1, rtol=1e-6)
    assert ds.coords().shape == (d, *strided.shape[2:])
    assert ds.params == {"beta": pytest.approx(0.4)}


@pytest.mark.parametrize("d", [1, 2, 3])
def test_group_file_split_sorted_keys_last_ten_percent(tmp_path, d):
    space = SPACES[d]
    keys = [f"{i:04d}" for i in range(20)]
    shuffled = list(RNG.permutation(keys))
    data = write_group(tmp_path / "g.h5", n=20, t=7, space=space, c=2, order=shuffled)
    ds = open_pdebench(tmp_path / "g.h5", "test", initial_step=3, reduced_resolution_t=1)
    assert ds.layout == "group" and ds.n_samples == 2 and ds.channels == ["c0", "c1"]
    # last 10% of the sorted keys: '0018', '0019'
    u_in, u_out = ds[len(ds) - 1]  # sample '0019', target frame 6
    want = np.moveaxis(data["0019"], -1, 1)  # [T, C, *space]
    assert u_in.shape == (3 * 2, *space)
    np.testing.assert_array_equal(u_in.numpy(), want[3:6].reshape(6, *space))
    np.testing.assert_array_equal(u_out.numpy(), want[6])
    train = open_pdebench(tmp_path / "g.h5", "train", mode="trajectory", reduced_resolution=2)
    assert train.n_samples == 18
    sp = (slice(None, None, 2),) * d
    np.testing.assert_array_equal(train[0].numpy(), np.moveaxis(data["0000"], -1, 1)[(slice(None), slice(None), *sp)])
    np.testing.assert_allclose(train.grid["x"].numpy(), np.linspace(-1, 1, space[0])[::2], rtol=1e-6)


def test_num_samples_max_and_reduced_batch_before_split(tmp_path):
    arr = write_single(tmp_path / "a.hdf5", n=40, t=3)["tensor"]
    ds = open_pdebench(tmp_path / "a.hdf5", "test", reduced_batch=2, num_samples_max=10, mode="trajectory")
    # strided samples 0,2,..,38 → first 10 → test = first int(10*0.1) = 1 sample: file row 0
    assert ds.n_samples == 1
    np.testing.assert_array_equal(ds[0][:, 0].numpy(), arr[0])
    tr = open_pdebench(tmp_path / "a.hdf5", "train", reduced_batch=2, num_samples_max=10, mode="trajectory")
    assert tr.n_samples == 9
    np.testing.assert_array_equal(tr[8][:, 0].numpy(), arr[18])


def test_darcy_pairs_coefficient_to_solution(tmp_path):
    n, s = 10, (16, 16)
    u = RNG.standard_normal((n, 1, *s)).astype(np.float32)
    nu = RNG.uniform(0.1, 1, (n, *s)).astype(np.float32)
    with h5py.File(tmp_path / "2D_DarcyFlow_beta1.0_Train.hdf5", "w") as f:
        f["tensor"], f["nu"] = u, nu
        f["x-coordinate"] = np.linspace(0, 1, 16, dtype=np.float32)
        f["y-coordinate"] = np.linspace(0, 1, 16, dtype=np.float32)
        f["t-coordinate"] = np.linspace(0, 2, 10, dtype=np.float32)  # PDEBench: 10 entries, 1 frame
        f.attrs["beta"] = 1.0
    ds = open_pdebench(tmp_path / "2D_DarcyFlow_beta1.0_Train.hdf5", "train", reduced_resolution=2)
    assert ds.is_darcy and len(ds) == 9 and ds.in_channels == 1 and ds.out_channels == 1
    a, sol = ds[0]
    np.testing.assert_array_equal(a[0].numpy(), nu[1, ::2, ::2])
    np.testing.assert_array_equal(sol[0].numpy(), u[1, 0, ::2, ::2])
    batches = list(ds.iter_batches(4))
    assert [b[0].shape[0] for b in batches] == [4, 4, 1]
    np.testing.assert_array_equal(batches[2][1][0, 0].numpy(), u[9, 0, ::2, ::2])


@pytest.mark.parametrize("d", [1, 2, 3])
def test_compressible_ns_fields_are_channels_in_order(tmp_path, d):
    fields = ("density", "pressure", "Vx", "Vy", "Vz")[: 2 + d]
    arrays = write_single(tmp_path / "cfd.hdf5", n=10, t=4, space=SPACES[d], fields=fields[::-1],
                          attrs={"eta": 1e-8, "zeta": 1e-8})
    ds = open_pdebench(tmp_path / "cfd.hdf5", "all", mode="trajectory")
    assert ds.channels == list(fields)
    traj = ds[5].numpy()  # [T, C, *space]
    for c, k in enumerate(fields):
        np.testing.assert_array_equal(traj[:, c], arrays[k][5])


def test_iter_batches_equals_items_and_reads_in_bounded_chunks(tmp_path):
    write_single(tmp_path / "a.hdf5", n=30, t=6, space=(8, 8))
    ds = open_pdebench(tmp_path / "a.hdf5", "train", initial_step=2)
    reads = []
    orig = ds.source._read

    def spy(f, rows, t, s):
        out = orig(f, rows, t, s)
        reads.append(out.shape[0])
        return out

    ds.source._read = spy
    got_in, got_out = zip(*ds.iter_batches(batch_size=5, chunk_size=4))
    assert max(reads) == 4 and sum(reads) == ds.n_samples  # never more than one chunk per read
    got_in, got_out = torch.cat(got_in), torch.cat(got_out)
    assert got_in.shape == (len(ds), 2, 8, 8)
    for i in (0, 7, len(ds) - 1):
        x, y = ds[i]
        torch.testing.assert_close(got_in[i], x, rtol=0, atol=0)
        torch.testing.assert_close(got_out[i], y, rtol=0, atol=0)


def test_dataloader_workers_open_their_own_handle(tmp_path):
    write_single(tmp_path / "a.hdf5", n=10, t=4, space=(8,))
    ds = open_pdebench(tmp_path / "a.hdf5", "train", initial_step=1)
    ds[0]  # opens the handle in this process; workers must not inherit it
    loader = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=1, shuffle=False)
    xs = torch.cat([x for x, _ in loader])
    assert xs.shape == (len(ds), 1, 8)
    torch.testing.assert_close(xs[5], ds[5][0])


def test_describe_lists_layout_keys_shapes_attrs(tmp_path):
    write_single(tmp_path / "a.hdf5", n=10, t=4, space=(8, 8), attrs={"Nu": 0.01})
    text = describe(tmp_path / "a.hdf5")
    assert "layout: single" in text and "tensor: (10, 4, 8, 8) float32" in text
    assert "Nu=0.01" in text and "9 train / 1 test" in text
    write_group(tmp_path / "g.h5", n=10, t=4, space=(8, 8), c=2)
    text = describe(tmp_path / "g.h5")
    assert "layout: group" in text and "0000/data: (4, 8, 8, 2) float32" in text and "10 ('0000' .. '0009')" in text
    assert detect_layout(tmp_path / "g.h5") == "group"


# ---------------------------------------------------------------------------------------- bad input


def test_neither_layout_names_file_and_expectation(tmp_path):
    with h5py.File(tmp_path / "x.h5", "w") as f:
        f["foo"] = np.zeros((3, 4))
    with pytest.raises(DataError, match=r"x\.h5.*neither PDEBench layout.*'tensor'.*found keys \['foo'\]"):
        open_pdebench(tmp_path / "x.h5")
    assert "layout: unrecognised" in describe(tmp_path / "x.h5")


def test_missing_coordinate_key(tmp_path):
    with h5py.File(tmp_path / "a.hdf5", "w") as f:
        f["tensor"] = np.zeros((4, 3, 8, 8), np.float32)
        f["x-coordinate"] = np.zeros(8, np.float32)
    with pytest.raises(DataError, match=r"a\.hdf5: missing key 'y-coordinate'"):
        open_pdebench(tmp_path / "a.hdf5")


def test_missing_group_data_key(tmp_path):
    write_group(tmp_path / "g.h5", n=3, t=4, space=(8,), c=1)
    with h5py.File(tmp_path / "g.h5", "a") as f:
        f.create_group("0003").create_dataset("other", data=np.zeros(3))
    with pytest.raises(DataError, match=r"g\.h5: group '0003' has no key '0003/data'"):
        open_pdebench(tmp_path / "g.h5")


def test_missing_cfd_field(tmp_path):
    write_single(tmp_path / "cfd.hdf5", n=4, t=3, space=(8, 8), fields=("density", "pressure", "Vx"))
    with pytest.raises(DataError, match=r"cfd\.hdf5: compressible-NS file of rank 4 is missing key 'Vy'"):
        open_pdebench(tmp_path / "cfd.hdf5")


@pytest.mark.parametrize("shape", [(10, 8), (2, 3, 4, 4, 4, 4)])
def test_wrong_rank_tensor(tmp_path, shape):
    with h5py.File(tmp_path / "a.hdf5", "w") as f:
        f["tensor"] = np.zeros(shape, np.float32)
    with pytest.raises(DataError, match=r"a\.hdf5: key 'tensor' has shape .*expected \[N, T, X\]"):
        open_pdebench(tmp_path / "a.hdf5")


def test_wrong_rank_group_data(tmp_path):
    with h5py.File(tmp_path / "g.h5", "w") as f:
        f.create_group("0000").create_dataset("data", data=np.zeros((4, 8)))
    with pytest.raises(DataError, match=r"g\.h5: key '0000/data' has shape \(4, 8\)"):
        open_pdebench(tmp_path / "g.h5")


def test_darcy_nu_shape_mismatch(tmp_path):
    with h5py.File(tmp_path / "d.hdf5", "w") as f:
        f["tensor"] = np.zeros((4, 1, 8, 8), np.float32)
        f["nu"] = np.zeros((4, 8, 7), np.float32)
        f["x-coordinate"] = f["y-coordinate"] = np.zeros(8, np.float32)
    with pytest.raises(DataError, match=r"d\.hdf5: Darcy key 'nu' has shape \(4, 8, 7\)"):
        open_pdebench(tmp_path / "d.hdf5")


def test_truncated_file(tmp_path):
    write_single(tmp_path / "a.hdf5", n=50, t=10, space=(64,))
    raw = (tmp_path / "a.hdf5").read_bytes()
    (tmp_path / "cut.hdf5").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match=r"cut\.hdf5: cannot open as HDF5 .*truncated"):
        open_pdebench(tmp_path / "cut.hdf5")
    (tmp_path / "junk.h5").write_bytes(b"not hdf5 at all")
    with pytest.raises(DataError, match=r"junk\.h5: cannot open as HDF5"):
        describe(tmp_path / "junk.h5")


def test_missing_file_and_too_few_frames(tmp_path):
    with pytest.raises(DataError, match=r"nope\.h5: file not found"):
        open_pdebench(tmp_path / "nope.h5")
    write_single(tmp_path / "a.hdf5", n=4, t=5, space=(8,))
    with pytest.raises(DataError, match=r"a\.hdf5: 3 frames after striding .*initial_step=3"):
        open_pdebench(tmp_path / "a.hdf5", reduced_resolution_t=2, initial_step=3)


def test_empty_split_and_bad_test_ratio_name_the_file(tmp_path):
    write_single(tmp_path / "small.h5", n=5, t=4, space=(8,))
    assert open_pdebench(tmp_path / "small.h5", "train").n_samples == 5
    with pytest.raises(DataError, match=r"small\.h5: the test split is empty: 5 samples .* test_ratio=0\.1; keep at least 10"):
        open_pdebench(tmp_path / "small.h5", "test")
    with pytest.raises(DataError, match=r"test_ratio must lie strictly between 0 and 1, got 2"):
        open_pdebench(tmp_path / "small.h5", "train", test_ratio=2)
    with pytest.raises(DataError, match=r"reduced_resolution must be >= 1, got 0"):
        open_pdebench(tmp_path / "small.h5", "train", reduced_resolution=0)
    with pytest.raises(DataError, match=r"t_train must be >= 1 \(frames to keep\) or None \(all\), got -1"):
        open_pdebench(tmp_path / "small.h5", "train", t_train=-1)  # -1 used to drop the last frame silently


# ------------------------------------------------------------------------------ neuraloperator sets


@pytest.fixture(scope="module")
def neuralop_dir():
    d = _data_dir()
    if d is None or not (d / "neuralop_small").is_dir():
        pytest.skip("real small sets absent: set SCIFORMER_DATA_DIR to shared/datasets")
    return d


def test_darcy_small_npz_and_pt_agree(neuralop_dir):
    tr = load_neuralop_small("darcy_small", "train", data_dir=neuralop_dir)
    assert len(tr) == 1000 and tr.u_in.shape == (1000, 1, 16, 16) and tr.u_in.dtype == torch.float32
    assert set(torch.unique(tr.u_in).tolist()) == {0.0, 1.0}
    assert abs(tr.u_out.mean().item() - 0.386) < 1e-3  # README: mean 0.386
    te32 = load_neuralop_small("darcy_small", "test", 32, data_dir=neuralop_dir, prefer="pt")
    assert te32.u_out.shape == (50, 1, 32, 32)
    te32_npz = load_neuralop_small("darcy_small", "test", 32, data_dir=neuralop_dir)
    torch.testing.assert_close(te32.u_out, te32_npz.u_out, rtol=0, atol=0)
    torch.testing.assert_close(te32.u_in, te32_npz.u_in, rtol=0, atol=0)


def test_burgers_small_spacetime_and_trajectory(neuralop_dir):
    te = load_neuralop_small("burgers_small", "test", data_dir=neuralop_dir, prefer="pt")
    assert te.u_in.shape == (400, 1, 17, 16) and te.u_out.shape == (400, 1, 17, 16)
    torch.testing.assert_close(te.u_in[:, :, 5], te.u_out[:, :, 0])  # u0 repeated; y[:, 0] == x
    assert te.attrs["visc"] == pytest.approx(0.01)
    traj = load_neuralop_small("burgers_small", "train", data_dir=neuralop_dir, mode="trajectory", initial_step=4)
    assert traj.n_samples == 800 and len(traj) == 800 * 13
    x, y = traj[0]
    assert x.shape == (4, 16) and y.shape == (1, 16)


def test_unknown_named_dataset_and_missing_file(tmp_path, monkeypatch):
    monkeypatch.delenv("SCIFORMER_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match="did you mean 'darcy_small'"):
        load_neuralop_small("darcy_smal")
    with pytest.raises(DataError, match=r"file 'burgers_test_16\.npz' not found; searched"):
        load_neuralop_small("burgers_small", "test", data_dir=tmp_path)


def test_missing_neuralop_set_is_downloaded_and_verified_like_the_time_series(neuralop_dir, tmp_path, monkeypatch):
    import dataclasses

    from sciformer.data import catalog

    real = catalog.get_manifest("burgers_small")
    local = lambda entry: {**entry, "url": (neuralop_dir / entry["file"]).as_uri()}
    upstream = dataclasses.replace(real, url=(neuralop_dir / real.file).as_uri(), also=tuple(local(e) for e in real.also))
    monkeypatch.setattr(catalog, "manifests", lambda: {"burgers_small": upstream})
    monkeypatch.setenv("SCIFORMER_DATA_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    test = load_neuralop_small("burgers_small", "test")
    assert (tmp_path / "cache" / real.file).is_file() and test.u_in.shape == (400, 1, 17, 16)
    offline = dataclasses.replace(upstream, url="http://127.0.0.1:9/burgers_train_16.pt", also=())
    monkeypatch.setattr(catalog, "manifests", lambda: {"burgers_small": offline})
    monkeypatch.setenv("SCIFORMER_DATA_DIR", str(tmp_path / "empty"))
    with pytest.raises(DataError, match=r"downloading it from http://127\.0\.0\.1:9/burgers_train_16\.pt failed"):
        load_neuralop_small("burgers_small", "train")


def test_operator_splits_are_read_into_one_tensor_and_refused_when_larger_than_memory(tmp_path, monkeypatch):
    from sciformer.data import operator
    from sciformer.data.sources import memory

    write_single(tmp_path / "traj.h5", n=30, t=6, space=(8, 8))
    with open_pdebench(tmp_path / "traj.h5", "train", mode="trajectory") as ds:
        whole = operator.read_split(ds)
        assert torch.equal(whole, torch.cat(list(ds.iter_trajectories(chunk_size=7))))  # same as chunks, in order
        assert whole.shape == (27, 6, 1, 8, 8)
        monkeypatch.setattr(memory, "available_memory", lambda: 4096)  # the split is 41 kB
        with pytest.raises(DataError, match=r"traj\.h5.*needs 0\.0 GiB in memory, more than .*data\.num_samples"):
            operator.read_split(ds)


@pytest.mark.parametrize("initial_step, ahead", [(1, 1), (3, 1), (2, 4)])
def test_gather_windows_matches_the_window_definition(initial_step, ahead):
    """Window k of sample n: frames k .. k+initial_step-1 stacked on channels, target frame k+initial_step+ahead-1."""
    traj = torch.randn(3, 9, 2, 5, 4)  # [N, T, C, *grid]
    per_sample = windows_per_trajectory(9, initial_step, ahead)
    idx = torch.tensor([0, per_sample - 1, per_sample, 3 * per_sample - 1])
    u, y = gather_windows(traj, idx, initial_step, ahead)
    for row, i in enumerate(idx.tolist()):
        n, k = divmod(i, per_sample)
        torch.testing.assert_close(u[row], traj[n, k : k + initial_step].reshape(-1, 5, 4), rtol=0, atol=0)
        torch.testing.assert_close(y[row], traj[n, k + initial_step + ahead - 1], rtol=0, atol=0)
    assert per_sample == 9 - initial_step - ahead + 1
