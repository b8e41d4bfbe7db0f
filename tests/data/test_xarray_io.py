"""xarray / NetCDF round trips for PDE sample sets: named dims and coordinates, attributes, channel
order, Darcy coefficients, and back into a PDEDataset with the same pairs."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

from sciformer.data.pde import open_pdebench
from sciformer.data.xarray_io import from_xarray, read_netcdf, to_xarray, write_netcdf
from sciformer.errors import DataError

RNG = np.random.default_rng(1)


def _cfd2d(path, n=10, t=5, nx=8, ny=6):
    fields = {k: RNG.standard_normal((n, t, nx, ny)).astype(np.float32) for k in ("density", "pressure", "Vx", "Vy")}
    with h5py.File(path, "w") as f:
        for k, v in fields.items():
            f[k] = v
        f["x-coordinate"] = np.linspace(0, 1, nx, dtype=np.float32)
        f["y-coordinate"] = np.linspace(0, 2, ny, dtype=np.float32)
        f["t-coordinate"] = np.arange(t + 1, dtype=np.float32) * 0.05
        f.attrs["eta"], f.attrs["zeta"], f.attrs["M"] = 0.1, 0.01, 1.0
    return fields


def test_dataset_to_xarray_named_dims_coords_attrs(tmp_path):
    fields = _cfd2d(tmp_path / "cfd.hdf5")
    ds = open_pdebench(tmp_path / "cfd.hdf5", "train", reduced_resolution=2)
    xds = to_xarray(ds)
    assert list(xds.data_vars) == ["density", "pressure", "Vx", "Vy"]
    assert xds["Vx"].dims == ("sample", "t", "x", "y") and xds["Vx"].shape == (9, 5, 4, 3)
    np.testing.assert_array_equal(xds["sample"].values, np.arange(1, 10))  # file rows of the train split
    np.testing.assert_allclose(xds["y"].values, np.linspace(0, 2, 6)[::2], rtol=1e-6)
    np.testing.assert_allclose(xds["t"].values, np.arange(5) * 0.05, rtol=1e-6)
    np.testing.assert_array_equal(xds["pressure"].sel(sample=3).values, fields["pressure"][3][:, ::2, ::2])
    assert xds.attrs["eta"] == pytest.approx(0.1) and xds.attrs["channels"] == "density,pressure,Vx,Vy"


def test_netcdf_round_trip_and_back_to_pairs(tmp_path):
    _cfd2d(tmp_path / "cfd.hdf5")
    ds = open_pdebench(tmp_path / "cfd.hdf5", "all", initial_step=2)
    xds = to_xarray(ds)
    back = read_netcdf(write_netcdf(xds, tmp_path / "cfd.nc"))
    for k in ds.channels:
        np.testing.assert_array_equal(back[k].values, xds[k].values)
        assert back[k].dims == xds[k].dims
    np.testing.assert_allclose(back["x"].values, xds["x"].values)
    assert back.attrs["M"] == pytest.approx(1.0)
    ds2 = from_xarray(back, "all", initial_step=2)
    assert len(ds2) == len(ds) and ds2.channels == ds.channels
    for i in (0, 13, len(ds) - 1):
        for a, b in zip(ds[i], ds2[i]):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.testing.assert_close(ds2.grid["t"], ds.grid["t"])


def test_darcy_coefficient_round_trip(tmp_path):
    u = RNG.standard_normal((5, 1, 8, 8)).astype(np.float32)
    nu = RNG.uniform(0.1, 1, (5, 8, 8)).astype(np.float32)
    with h5py.File(tmp_path / "darcy.hdf5", "w") as f:
        f["tensor"], f["nu"] = u, nu
        f["x-coordinate"] = f["y-coordinate"] = np.linspace(0, 1, 8, dtype=np.float32)
        f.attrs["beta"] = 10.0
    ds = open_pdebench(tmp_path / "darcy.hdf5", "all")
    xds = to_xarray(ds)
    assert xds["nu"].dims == ("sample", "x", "y") and xds.attrs["coefficient"] == "nu"
    back = from_xarray(read_netcdf(write_netcdf(xds, tmp_path / "d.nc")), "all")
    assert back.is_darcy and back.params["beta"] == 10.0
    a, sol = back[4]
    np.testing.assert_array_equal(a[0].numpy(), nu[4])
    np.testing.assert_array_equal(sol[0].numpy(), u[4, 0])


def test_array_1d_to_xarray_and_errors(tmp_path):
    u = torch.randn(3, 4, 1, 16)
    xds = to_xarray(u, coords={"x": np.linspace(0, 1, 16), "t": np.arange(4.0)}, attrs={"Nu": 0.01})
    assert xds["u"].dims == ("sample", "t", "x")
    np.testing.assert_array_equal(xds["u"].values, u[:, :, 0].numpy())
    with pytest.raises(DataError, match="coordinate 'x' has 3 entries; expected 16"):
        to_xarray(u, coords={"x": np.arange(3.0)})
    with pytest.raises(DataError, match=r"expected u of shape \[N, T, C, \*grid\]"):
        to_xarray(torch.randn(3, 16))
    with pytest.raises(DataError, match=r"nothing\.nc: file not found"):
        read_netcdf(tmp_path / "nothing.nc")


def test_recipe_reads_a_netcdf_file_like_its_hdf5_original(tmp_path):
    from sciformer.config import recipe_from_dict
    from sciformer.data.operator import load_operator_data

    _cfd2d(tmp_path / "cfd.hdf5", n=20)
    write_netcdf(to_xarray(open_pdebench(tmp_path / "cfd.hdf5", "all")), tmp_path / "cfd.nc")
    loaded = {}
    for name in ("cfd.hdf5", "cfd.nc"):
        recipe = recipe_from_dict({"data": {"name": str(tmp_path / name)}, "model": {"name": "fno"}})
        loaded[name] = load_operator_data(recipe.data, recipe.train, allow_generate=False)
    for split in ("train", "val", "test"):
        torch.testing.assert_close(loaded["cfd.nc"].splits[split].trajectories, loaded["cfd.hdf5"].splits[split].trajectories,
                                   rtol=0, atol=0)
