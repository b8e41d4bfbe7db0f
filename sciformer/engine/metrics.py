"""PDE metrics as PDEBench defines them (Takamoto et al., "PDEBench: An Extensive Benchmark for
Scientific Machine Learning", arXiv 2210.07182; ``pdebench/models/metrics.py::metric_func``;
formulas in ``shared/reference/PDE.md`` §1.5), re-implemented in torch.

Shapes: ``pred`` and ``target`` are trajectories ``[B, T, C, *grid]`` with ``grid`` = ``(X,)``,
``(X, Y)`` or ``(X, Y, Z)`` (one step: ``u.unsqueeze(1)``). Δ = pred − target, S = the flattened
grid, |S| its size. Per sample b, channel c and time t:

=============  ============================================================================
RMSE           mean_b sqrt(mean_S Δ²)
nRMSE          mean_b [sqrt(mean_S Δ²) / sqrt(mean_S target²)]   (per sample, channel, time)
cRMSE          sqrt(mean_b (Σ_S pred − Σ_S target)²) / |S|        (error of the conserved mean)
max error      max_b max_S |Δ|
bRMSE          mean_b sqrt(Σ_boundary Δ² / n_boundary), per channel: 1D both end points (n = 2); 2D the
               four edge lines (n = 2X + 2Y, corners counted twice); 3D the six faces
               (n = 2(XY + YZ + ZX)). PDEBench's 3D code differs with several channels: it sums the
               squares over channels before the root (one value per time, mean_b sqrt(Σ_c Σ_faces Δ² / n)),
               so for C channels of equal error it is √C times sciformer's channel mean
fRMSE          1D: E_k = sqrt(mean_b |F̂Δ_k|²) / X · L_x over the rfft bins k = 0..X/2;
               2D: |F̂Δ|² of fftn over (x, y) summed into shells k = ⌊√(i² + j²)⌋ for
               0 ≤ i < X/2, 0 ≤ j < Y/2, k < min(X, Y)/2; E_k = sqrt(mean_b shell_k) / (XY) · L_x L_y;
               3D likewise. Bands: low = mean_k E_k over [0, 4), mid [4, 12), high k ≥ 12
               (NaN when the grid has no mode in a band)
relative L2    mean_b ‖Δ_b‖₂ / ‖target_b‖₂, one norm over all channels, times and points of sample b
               (neuraloperator's LpLoss instead takes the ratio per channel and averages it; the two agree
               for one channel, and per (c, t) the ratio would equal nRMSE)
=============  ============================================================================

Each is a ``[C, T]`` table (``reduce="none"``); the scalar is its mean over channels and times
(PDEBench's ``if_mean``). The first ``initial_step`` frames (the model's input) are dropped.

Aggregation over batches: PDEBench sums per-batch values and divides by ``n_batches − 1`` (the last
``enumerate`` index), which inflates results by n/(n−1) and fails for one batch. sciformer does
not: :class:`PDEMetrics` accumulates per-sample sums (and, for cRMSE / fRMSE, per-sample squares
under the square root) over all batches and divides by the total sample count, so the result equals
a single call on the concatenated data whatever the batch size. For Darcy, PDEBench also appends the
input coefficient as an extra "frame" to both pred and target; sciformer compares solutions only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

__all__ = ["FRMSE_BANDS", "PDEMetrics", "brmse", "crmse", "frmse", "frmse_spectrum", "max_error", "nrmse", "pde_metrics", "relative_l2", "rmse"]

FRMSE_BANDS = (4, 12)  # PDEBench's iLow, iHigh


def _check(pred: torch.Tensor, target: torch.Tensor, initial_step: int = 0):
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ")
    if not 4 <= pred.ndim <= 6:
        raise ValueError(f"expected pred/target of shape [B, T, C, *grid] with a 1-3D grid, got {tuple(pred.shape)}")
    if initial_step:
        pred, target = pred[:, initial_step:], target[:, initial_step:]
    return pred, target, pred.ndim - 3


def _lengths(domain_length: float | Sequence[float], d: int) -> list[float]:
    if isinstance(domain_length, (int, float)):
        return [float(domain_length)] * d
    if len(domain_length) != d:
        raise ValueError(f"domain_length needs {d} entries for a {d}D grid, got {domain_length}")
    return [float(v) for v in domain_length]


def _boundary_sq(err: torch.Tensor, d: int) -> tuple[torch.Tensor, int]:
    """Σ of Δ² over the boundary points ``[B, T, C]`` and their count (PDEBench's bRMSE)."""
    if d == 1:
        return err[..., 0] ** 2 + err[..., -1] ** 2, 2
    if d == 2:
        nx, ny = err.shape[-2:]
        s = (err[..., 0, :] ** 2).sum(-1) + (err[..., -1, :] ** 2).sum(-1) + (err[..., :, 0] ** 2).sum(-1) + (err[..., :, -1] ** 2).sum(-1)
        return s, 2 * nx + 2 * ny
    nx, ny, nz = err.shape[-3:]
    s = torch.stack(
        [
            (face**2).sum(dim=(-2, -1))
            for face in (err[..., 0, :, :], err[..., -1, :, :], err[..., :, 0, :], err[..., :, -1, :], err[..., :, :, 0], err[..., :, :, -1])
        ]
    ).sum(0)
    return s, 2 * (nx * ny + ny * nz + nz * nx)


def _shells(shape: Sequence[int], device) -> tuple[torch.Tensor, torch.Tensor, int]:
    """For 2D/3D: (index into the flattened non-negative-quadrant modes, shell number, n_shells)."""
    halves = [n // 2 for n in shape]
    grids = torch.meshgrid(*[torch.arange(h, device=device) for h in halves], indexing="ij")
    k = torch.floor(torch.stack([g.double() ** 2 for g in grids]).sum(0).sqrt()).long().reshape(-1)
    n_shell = min(halves)
    keep = k < n_shell
    return torch.nonzero(keep).squeeze(1), k[keep], n_shell


def _fourier_sq(err: torch.Tensor, d: int) -> torch.Tensor:
    """Per-sample |F̂Δ|² per wavenumber shell: ``[B, T, C, K]`` (1D: the rfft bins)."""
    if d == 1:
        return torch.fft.rfft(err.double(), dim=-1).abs() ** 2
    spec = torch.fft.fftn(err.double(), dim=tuple(range(-d, 0))).abs() ** 2
    halves = [n // 2 for n in err.shape[-d:]]
    quad = spec[(..., *[slice(0, h) for h in halves])].flatten(-d)  # [B, T, C, prod(halves)]
    idx, shell, n_shell = _shells(err.shape[-d:], err.device)
    out = torch.zeros(*quad.shape[:-1], n_shell, dtype=quad.dtype, device=quad.device)
    return out.index_add_(-1, shell, quad[..., idx])


class PDEMetrics:
    """Accumulate PDEBench metrics over batches; ``compute()`` → dict of scalars (or ``[C, T]``).

    ``update(pred, target)`` takes ``[B, T, C, *grid]``. ``domain_length``: L per axis for fRMSE
    (PDEBench's Lx, Ly, Lz; default 1). ``initial_step``: leading frames to drop. nRMSE averages over the
    samples that have one: a field that is zero and predicted as zero (a mixture sample's absent field) has none.
    """

    def __init__(self, initial_step: int = 0, domain_length: float | Sequence[float] = 1.0):
        self.initial_step = initial_step
        self.domain_length = domain_length
        self.n = 0
        self._sums: dict[str, torch.Tensor] = {}
        self._max: torch.Tensor | None = None
        self._scored: torch.Tensor | None = None  # [T, C]: samples with an nRMSE
        self._norm = 1.0

    @torch.no_grad()
    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        pred, target, d = _check(pred, target, self.initial_step)
        pred, target = pred.double(), target.double()
        err = pred - target
        size = math.prod(err.shape[-d:])
        mse = (err**2).flatten(3).mean(-1)  # [B, T, C]
        tgt = (target**2).flatten(3).mean(-1)
        scored = (tgt > 0) | (mse > 0)  # a zero field predicted as zero (a mixture's absent field) has no nRMSE
        bsq, nb = _boundary_sq(err, d)
        stats = {
            "rmse": mse.sqrt(),
            "nrmse": torch.where(scored, mse.sqrt() / tgt.sqrt(), 0.0),
            "csq": (err.flatten(3).sum(-1) / size) ** 2,
            "brmse": (bsq / nb).sqrt(),
            "fsq": _fourier_sq(err, d),
            "rel_l2": ((err**2).flatten(1).sum(-1).sqrt() / (target**2).flatten(1).sum(-1).sqrt()),
        }
        for k, v in stats.items():
            s = v.sum(0)
            self._sums[k] = s if k not in self._sums else self._sums[k] + s
        mx = err.abs().flatten(3).amax(-1).amax(0)  # [T, C]
        self._max = mx if self._max is None else torch.maximum(self._max, mx)
        self._norm = math.prod(_lengths(self.domain_length, d)) / size
        self.n += err.shape[0]
        self._scored = scored.sum(0) if self._scored is None else self._scored + scored.sum(0)

    def compute(self, reduce: str = "mean") -> dict[str, torch.Tensor]:
        """``reduce="mean"``: scalars (mean over channels and times). ``"none"``: ``[C, T]`` tables
        (``rel_l2`` stays a scalar; ``frmse`` is the spectrum ``[C, T, K]``)."""
        if self.n == 0 or self._max is None or self._scored is None:
            raise ValueError("PDEMetrics.compute() before any update()")
        n = self.n
        tab = {
            "rmse": self._sums["rmse"] / n,
            "nrmse": self._sums["nrmse"] / self._scored,
            "crmse": (self._sums["csq"] / n).sqrt(),
            "max_error": self._max,
            "brmse": self._sums["brmse"] / n,
        }
        tab = {k: v.transpose(0, 1) for k, v in tab.items()}  # [T, C] -> [C, T]
        spec = ((self._sums["fsq"] / n).sqrt() * self._norm).permute(1, 0, 2)  # [C, T, K]
        lo, hi = FRMSE_BANDS
        bands = {"frmse_low": spec[..., :lo].mean(-1), "frmse_mid": spec[..., lo:hi].mean(-1), "frmse_high": spec[..., hi:].mean(-1)}
        tab.update(bands)
        rel = self._sums["rel_l2"] / n
        if reduce == "none":
            return {**tab, "frmse": spec, "rel_l2": rel}
        if reduce != "mean":
            raise ValueError(f"reduce must be 'mean' or 'none', got {reduce!r}")
        out = {k: v.mean() for k, v in tab.items()}
        out["rel_l2"] = rel
        return out


def pde_metrics(
    pred: torch.Tensor, target: torch.Tensor, *, initial_step: int = 0, domain_length: float | Sequence[float] = 1.0, reduce: str = "mean"
) -> dict[str, torch.Tensor]:
    """All PDEBench metrics of one set ``[B, T, C, *grid]`` (see the module docstring)."""
    m = PDEMetrics(initial_step, domain_length)
    m.update(pred, target)
    return m.compute(reduce)


def _one(name: str, pred, target, initial_step: int = 0, **kw) -> torch.Tensor:
    return pde_metrics(pred, target, initial_step=initial_step, reduce="none", **kw)[name]


def rmse(pred: torch.Tensor, target: torch.Tensor, initial_step: int = 0) -> torch.Tensor:
    """RMSE per channel and time ``[C, T]``: mean_b sqrt(mean_S Δ²)."""
    return _one("rmse", pred, target, initial_step)


def nrmse(pred: torch.Tensor, target: torch.Tensor, initial_step: int = 0) -> torch.Tensor:
    """nRMSE ``[C, T]``: mean_b sqrt(mean_S Δ²)/sqrt(mean_S target²), normalised per b, c, t."""
    return _one("nrmse", pred, target, initial_step)


def crmse(pred: torch.Tensor, target: torch.Tensor, initial_step: int = 0) -> torch.Tensor:
    """cRMSE ``[C, T]``: sqrt(mean_b (Σ_S pred − Σ_S target)²) / |S|."""
    return _one("crmse", pred, target, initial_step)


def max_error(pred: torch.Tensor, target: torch.Tensor, initial_step: int = 0) -> torch.Tensor:
    """Max error ``[C, T]``: max_b max_S |Δ|."""
    return _one("max_error", pred, target, initial_step)


def brmse(pred: torch.Tensor, target: torch.Tensor, initial_step: int = 0) -> torch.Tensor:
    """Boundary RMSE ``[C, T]`` (end points / edge lines / faces, per channel; in 3D PDEBench's own code gives
    the root of the channel sum instead, see the module docstring)."""
    return _one("brmse", pred, target, initial_step)


def frmse_spectrum(pred: torch.Tensor, target: torch.Tensor, initial_step: int = 0, domain_length: float | Sequence[float] = 1.0) -> torch.Tensor:
    """Fourier-space error per shell ``E_k``: ``[C, T, K]``."""
    return _one("frmse", pred, target, initial_step, domain_length=domain_length)


def frmse(pred: torch.Tensor, target: torch.Tensor, initial_step: int = 0, domain_length: float | Sequence[float] = 1.0) -> dict[str, torch.Tensor]:
    """fRMSE bands ``{"low", "mid", "high"}``, each ``[C, T]`` (k in [0,4), [4,12), ≥ 12)."""
    r = pde_metrics(pred, target, initial_step=initial_step, domain_length=domain_length, reduce="none")
    return {"low": r["frmse_low"], "mid": r["frmse_mid"], "high": r["frmse_high"]}


def relative_l2(pred: torch.Tensor, target: torch.Tensor, initial_step: int = 0) -> torch.Tensor:
    """mean_b ‖Δ_b‖₂/‖target_b‖₂, one norm over each sample's channels, times and points (a scalar; not
    neuraloperator's per-channel ratio, see the module docstring)."""
    return _one("rel_l2", pred, target, initial_step)
