"""PDEBench metrics against values computed by hand on small arrays, including the fRMSE bands,
and sciformer's batch-size-independent aggregation."""

from __future__ import annotations

import math

import pytest
import torch

from sciformer.engine.metrics import (PDEMetrics, brmse, crmse, frmse, frmse_spectrum, max_error, nrmse,
                                      pde_metrics, relative_l2, rmse)

F64 = torch.float64


def _pair_1d():
    # B=2, T=1, C=1, X=4
    target = torch.tensor([[[[1.0, 2.0, 3.0, 4.0]]], [[[2.0, 0.0, 0.0, 2.0]]]], dtype=F64)
    pred = torch.tensor([[[[1.0, 2.0, 3.0, 6.0]]], [[[1.0, 1.0, 1.0, 1.0]]]], dtype=F64)
    return pred, target


def test_pointwise_metrics_1d_by_hand():
    pred, target = _pair_1d()
    # sample 0: Δ = [0,0,0,2] → mean Δ² = 1, RMSE 1, ‖y‖² mean = 30/4 = 7.5
    # sample 1: Δ = [-1,1,1,-1] → mean Δ² = 1, RMSE 1, ‖y‖² mean = 8/4 = 2
    assert rmse(pred, target).item() == pytest.approx(1.0)
    assert nrmse(pred, target).item() == pytest.approx(0.5 * (1 / math.sqrt(7.5) + 1 / math.sqrt(2)))
    # Σ Δ: sample 0 → 2, sample 1 → 0 ; cRMSE = sqrt((4 + 0)/2) / 4
    assert crmse(pred, target).item() == pytest.approx(math.sqrt(2) / 4)
    assert max_error(pred, target).item() == pytest.approx(2.0)
    # boundary x=0 and x=-1: sample 0 sqrt((0+4)/2) = √2, sample 1 sqrt((1+1)/2) = 1
    assert brmse(pred, target).item() == pytest.approx(0.5 * (math.sqrt(2) + 1))
    # relative L2 per sample: 2/√30 and 2/√8
    assert relative_l2(pred, target).item() == pytest.approx(0.5 * (2 / math.sqrt(30) + 2 / math.sqrt(8)))


def test_per_channel_and_time_tables_and_initial_step():
    torch.manual_seed(0)
    target = torch.randn(3, 5, 2, 8, dtype=F64)
    pred = target.clone()
    pred[:, 3, 1] += 0.5  # one channel, one time
    tab = rmse(pred, target)
    assert tab.shape == (2, 5)
    expected = torch.zeros(2, 5, dtype=F64)
    expected[1, 3] = 0.5
    torch.testing.assert_close(tab, expected)
    assert rmse(pred, target, initial_step=4).abs().max().item() == 0.0  # frame 3 dropped
    # scalar = mean over C and T
    assert pde_metrics(pred, target)["rmse"].item() == pytest.approx(0.5 / 10)


def test_brmse_2d_and_3d_by_hand():
    err = torch.zeros(1, 1, 1, 4, 3, dtype=F64)
    err[..., 0, 0] = 3.0  # a corner: on two edge lines
    err[..., 2, 1] = 5.0  # interior: not on the boundary
    # Σ over 4 edge lines = 9 + 9 (corner counted twice); n = 2·4 + 2·3 = 14
    assert brmse(err, torch.zeros_like(err)).item() == pytest.approx(math.sqrt(18 / 14))
    err3 = torch.zeros(1, 1, 1, 3, 3, 3, dtype=F64)
    err3[..., 0, 1, 1] = 2.0  # centre of face x=0 only
    err3[..., 1, 1, 1] = 7.0  # interior
    assert brmse(err3, torch.zeros_like(err3)).item() == pytest.approx(math.sqrt(4 / (2 * 27)))


def test_frmse_1d_bands_by_hand():
    nx, a = 32, 0.8
    x = torch.arange(nx, dtype=F64) / nx
    err = (a * torch.cos(2 * math.pi * 5 * x)).expand(2, 1, 1, nx)  # B=2, one mode k=5
    # rfft bin 5 has |F| = a·nx/2 → E_5 = (a·nx/2)/nx·L = a/2; all other bins 0
    spec = frmse_spectrum(err, torch.zeros_like(err), domain_length=2.0)
    assert spec.shape == (1, 1, nx // 2 + 1)
    assert spec[0, 0, 5].item() == pytest.approx(a / 2 * 2.0)
    assert spec[0, 0].sum().item() == pytest.approx(a)
    bands = frmse(err, torch.zeros_like(err))
    assert bands["low"].item() == pytest.approx(0.0, abs=1e-12)
    assert bands["mid"].item() == pytest.approx((a / 2) / 8)  # k in [4, 12): 8 bins
    assert bands["high"].item() == pytest.approx(0.0, abs=1e-12)  # k = 12..16: 5 bins


def test_frmse_2d_shells_by_hand():
    n, a, b = 32, 1.0, 0.5
    x = torch.arange(n, dtype=F64) / n
    xx, yy = torch.meshgrid(x, x, indexing="ij")
    # mode (3, 4): shell ⌊5⌋ = 5 (mid); mode (12, 0): shell 12 (high); fftn puts a·n²/2 at (3, 4)
    err = a * torch.cos(2 * math.pi * (3 * xx + 4 * yy)) + b * torch.cos(2 * math.pi * 12 * xx)
    err = err.expand(1, 1, 1, n, n)
    spec = frmse_spectrum(err, torch.zeros_like(err))
    assert spec.shape == (1, 1, n // 2)
    assert spec[0, 0, 5].item() == pytest.approx(a / 2)
    assert spec[0, 0, 12].item() == pytest.approx(b / 2)
    bands = frmse(err, torch.zeros_like(err))
    assert bands["low"].item() == pytest.approx(0.0, abs=1e-12)
    assert bands["mid"].item() == pytest.approx((a / 2) / 8)
    assert bands["high"].item() == pytest.approx((b / 2) / 4)  # shells 12..15
    # cos(3x − 4y) lives at (3, −4) and (−3, 4): outside the i, j ≥ 0 quadrant PDEBench sums over
    neg = (a * torch.cos(2 * math.pi * (3 * xx - 4 * yy))).expand(1, 1, 1, n, n)
    assert frmse_spectrum(neg, torch.zeros_like(neg)).abs().max().item() < 1e-12


def test_frmse_3d_single_mode():
    n = 8
    x = torch.arange(n, dtype=F64) / n
    xx, yy, zz = torch.meshgrid(x, x, x, indexing="ij")
    err = torch.cos(2 * math.pi * (xx + yy + zz)).expand(1, 1, 1, n, n, n)  # shell ⌊√3⌋ = 1
    spec = frmse_spectrum(err, torch.zeros_like(err))
    assert spec.shape == (1, 1, 4)
    # fftn puts n³/2 at (1,1,1) and (−1,−1,−1); only the first is in the positive octant
    assert spec[0, 0, 1].item() == pytest.approx(0.5)
    assert spec[0, 0].sum().item() == pytest.approx(0.5)


def test_accumulation_is_batch_size_independent():
    torch.manual_seed(1)
    target = torch.randn(7, 3, 2, 16, 16, dtype=F64)
    pred = target + 0.1 * torch.randn_like(target)
    whole = pde_metrics(pred, target, initial_step=1)
    acc = PDEMetrics(initial_step=1)
    per_batch = []
    for sl in (slice(0, 3), slice(3, 6), slice(6, 7)):
        acc.update(pred[sl], target[sl])
        per_batch.append(pde_metrics(pred[sl], target[sl], initial_step=1)["rmse"])
    got = acc.compute()
    for k, v in whole.items():
        torch.testing.assert_close(got[k], v, equal_nan=True)
    # PDEBench's average (Σ per-batch means / (n_batches − 1)) would differ: sciformer does not do that
    pdebench_style = sum(per_batch) / (len(per_batch) - 1)
    assert abs(pdebench_style.item() - whole["rmse"].item()) > 0.3 * whole["rmse"].item()


def test_shape_errors():
    with pytest.raises(ValueError, match="differ"):
        rmse(torch.zeros(2, 1, 1, 4), torch.zeros(2, 1, 1, 5))
    with pytest.raises(ValueError, match=r"expected pred/target of shape \[B, T, C, \*grid\]"):
        rmse(torch.zeros(2, 4), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="before any update"):
        PDEMetrics().compute()


def test_3d_brmse_is_pdebench_over_root_channels_for_equal_channel_errors():
    """The documented difference: PDEBench's 3D bRMSE sums the squared boundary errors over channels before the
    root; with C channels of the same error it is √C times sciformer's channel mean (C = 3 here)."""
    torch.manual_seed(0)
    target = torch.randn(2, 1, 1, 4, 5, 6, dtype=F64)
    delta = torch.randn(2, 1, 1, 4, 5, 6, dtype=F64)
    pred3, target3 = (target + delta).expand(2, 1, 3, 4, 5, 6), target.expand(2, 1, 3, 4, 5, 6)
    err = (pred3 - target3)[:, 0]  # [B, C, X, Y, Z]
    faces = sum((f ** 2).flatten(1).sum(1) for f in (err[:, :, 0], err[:, :, -1], err[:, :, :, 0], err[:, :, :, -1],
                                                       err[:, :, :, :, 0], err[:, :, :, :, -1]))
    pdebench = torch.sqrt(faces / (2 * (4 * 5 + 5 * 6 + 6 * 4))).mean()  # channels summed inside the root
    assert pdebench.item() == pytest.approx(math.sqrt(3) * brmse(pred3, target3).mean().item())


def test_relative_l2_is_one_norm_per_sample_not_a_channel_average():
    """Two channels of different scale: sciformer's relative L2 takes one norm over both, neuraloperator's LpLoss
    would average the per-channel ratios (0.5·(1/1 + 1/100) here); they differ."""
    target = torch.tensor([[[[1.0] * 4, [100.0] * 4]]], dtype=F64)  # [B=1, T=1, C=2, X=4]
    pred = target + 1.0
    ours = relative_l2(pred, target).item()
    assert ours == pytest.approx(math.sqrt(8) / math.sqrt(4 + 4 * 100**2))
    assert ours != pytest.approx(0.5 * (1 / 1 + 1 / 100))


def test_nrmse_leaves_out_a_zero_field_predicted_as_zero_but_not_a_wrong_one():
    target = torch.ones(2, 1, 2, 4)
    target[1, :, 1] = 0  # sample 1 lacks channel 1 (a mixture's absent field)
    pred = target * 1.5
    metrics = PDEMetrics()
    metrics.update(pred, target)
    assert metrics.compute("none")["nrmse"].flatten().tolist() == pytest.approx([0.5, 0.5])  # channel 1: sample 0 only
    pred[1, :, 1] = 0.1
    metrics = PDEMetrics()
    metrics.update(pred, target)
    assert metrics.compute("none")["nrmse"][1].item() == math.inf
