"""Shared pieces of the PDE generators: the generator base class with its parameter checks, seeding,
float64 random draws, the MUSCL limiter and PDEBench's random initial conditions.

Every generator is a :class:`PDEGenerator`: ``plan(res, **params)`` says what the file holds
(fields, frames, grid, coordinates, attributes) and ``simulate(b, res, gen, ...)`` yields the saved
frames of one batch of samples, vectorised over the batch in PyTorch (so ``device="cuda"`` runs on a
GPU). :mod:`sciformer.data.generators.writer` drives the batches and writes the file.

Random numbers are always drawn in float64 and then cast to the simulation dtype, so a float32 and a
float64 file of the same seed start from the same samples (torch's float32 and float64 draws consume
the generator differently and would give unrelated fields).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from numbers import Integral, Real
from typing import Any, ClassVar

import numpy as np
import torch

from sciformer.errors import ConfigError

__all__ = ["FilePlan", "PDEGenerator", "batch_generator", "init_multi", "mc_slope", "rand64", "randn64"]

MAX_STEPS = 10**9  # time steps per sample above which a parameter choice is refused (days of work per batch)

# ------------------------------------------------------------------------------- parameter rules
# A rule maps a value to None (accepted) or to what was expected ("a number > 0").
Rule = Callable[[Any], "str | None"]


def _is_number(v) -> bool:
    return isinstance(v, Real) and not isinstance(v, bool) and math.isfinite(v)


def positive(v) -> str | None:
    return None if _is_number(v) and v > 0 else "a finite number > 0"


def nonnegative(v) -> str | None:
    return None if _is_number(v) and v >= 0 else "a finite number >= 0"


def finite(v) -> str | None:
    return None if _is_number(v) else "a finite number"


def courant(v) -> str | None:
    return None if _is_number(v) and 0 < v <= 1 else "a number in (0, 1]"


def whole(low: int) -> Rule:
    return lambda v: None if isinstance(v, Integral) and not isinstance(v, bool) and int(v) >= low else f"an integer >= {low}"


def choice(*options: str) -> Rule:
    return lambda v: None if v in options else f"one of {', '.join(map(repr, options))}"


def optional(rule: Rule) -> Rule:
    return lambda v: None if v is None else rule(v)


def check_value(what: str, value, rule: Rule) -> None:
    expected = rule(value)
    if expected is not None:
        raise ConfigError(f"{what} must be {expected}, got {value!r}")


@dataclass
class FilePlan:
    """What one generated file holds (sizes are per sample)."""

    fields: list[str]  # time-dependent fields, channel order, each [N, T, *space]
    n_t: int
    space: tuple[int, ...]
    coords: dict[str, np.ndarray]  # "x", "y", "t" (t has n_t entries)
    attrs: dict[str, Any]
    static: list[str] = field(default_factory=list)  # per-sample fields [N, *space] (Darcy "nu")


class PDEGenerator:
    """Base class: subclasses set ``name``, ``defaults`` and ``rules`` (one per parameter) and implement
    ``plan`` and ``simulate``; ``min_steps`` bounds the work of a parameter choice from below."""

    name = ""
    defaults: ClassVar[dict[str, Any]] = {}
    rules: ClassVar[dict[str, Rule]] = {}
    single_only = False  # True: the group layout does not apply (Darcy has no trajectory)

    def params(self, **overrides) -> dict[str, Any]:
        """The defaults with ``overrides`` applied (``None`` = unset), every value checked against its rule."""
        unknown = {k for k, v in overrides.items() if v is not None} - set(self.defaults)
        if unknown:
            raise ConfigError(f"generator '{self.name}' has no parameter(s) {sorted(unknown)}; its parameters: {sorted(self.defaults)}")
        p = {**self.defaults, **{k: v for k, v in overrides.items() if v is not None}}
        for key, rule in self.rules.items():
            check_value(f"{self.name}: {key}", p[key], rule)
        if "t_end" in p and p["dt_save"] > p["t_end"]:
            raise ConfigError(f"{self.name}: dt_save must be <= t_end, got dt_save={p['dt_save']!r}, t_end={p['t_end']!r}")
        if "x_left" in p and not p["x_left"] < p["x_right"]:
            raise ConfigError(f"{self.name}: x_left must be < x_right, got [{p['x_left']!r}, {p['x_right']!r}]")
        return p

    def check_work(self, res: int, p: dict[str, Any]) -> None:
        steps = self.min_steps(res, p)
        if steps > MAX_STEPS:
            raise ConfigError(
                f"{self.name} at res={res} with {p} needs at least {steps:.3g} time steps per sample "
                f"(the limit is {MAX_STEPS:.0e}); use a coarser grid or a less stiff setting"
            )

    def min_steps(self, res: int, p: dict[str, Any]) -> float:
        """A lower bound on the time steps one sample takes (0: unknown or none)."""
        return 0.0

    def plan(self, res: int, **p) -> FilePlan:
        raise NotImplementedError

    def simulate(self, b: int, res: int, gen: torch.Generator, device, dtype, **p) -> tuple[dict[str, torch.Tensor], Iterator[dict[str, torch.Tensor]]]:
        """``(static {name: [b, *space]}, frames)`` where ``frames`` yields ``{name: [b, *space]}``
        once per saved time."""
        raise NotImplementedError


# ------------------------------------------------------------------------------- random numbers
def batch_generator(seed: int, batch_index: int, device) -> torch.Generator:
    """An independent, reproducible stream per (seed, batch): results depend on (seed, batch_size)."""
    s = int(np.random.SeedSequence([int(seed), int(batch_index)]).generate_state(1, np.uint64)[0])
    g = torch.Generator(device=device)
    g.manual_seed(s & (2**63 - 1))
    return g


def rand64(gen: torch.Generator, *shape: int, device=None) -> torch.Tensor:
    """U(0, 1) in float64, whatever the simulation dtype (see the module docstring)."""
    return torch.rand(*shape, generator=gen, device=device or gen.device, dtype=torch.float64)


def randn64(gen: torch.Generator, *shape: int, device=None) -> torch.Tensor:
    """N(0, 1) in float64, whatever the simulation dtype."""
    return torch.randn(*shape, generator=gen, device=device or gen.device, dtype=torch.float64)


# ------------------------------------------------------------------------------- numerics
def mc_slope(u: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Monotonised-central limited slope of periodic cell averages along ``dim`` (PDEBench's limiter):
    ``sign(c)·[ab > 0]·min(2·min(|a|, |b|), |c|)``, ``a``/``b`` one-sided, ``c`` the central difference / 2.
    """
    a = u - torch.roll(u, 1, dim)
    b = torch.roll(u, -1, dim) - u
    c = 0.5 * (a + b)
    lim = torch.minimum(2.0 * torch.minimum(a.abs(), b.abs()), c.abs())
    return torch.sign(c) * (a * b > 0) * lim


def init_multi(x: torch.Tensor, b: int, gen: torch.Generator, *, k_tot: int = 4, num_k: int = 2, p_abs: float = 0.1, p_window: float = 0.1) -> torch.Tensor:
    """PDEBench's random initial condition (``data_gen_NLE/utils.py``, ``init_multi``; 1D Burgers and
    advection call it with ``k_tot=4``), vectorised: ``u0 [b, X]`` in ``x``'s dtype.

    Every one of the ``k_tot`` modes n = 1..k_tot has an amplitude A_n ~ U(0, 1) and a phase
    φ_n ~ U(0, 2π); ``num_k`` draws with replacement pick which modes oscillate, and mode n's
    wavenumber is k_n = 2π·n·c_n/(x[-1] − x[0]) with c_n the times it was drawn. So
    u0 = Σ_n A_n sin(k_n x + φ_n) holds a random constant offset A_n sin φ_n for every mode not drawn
    (c_n = 0) and a doubled wavenumber where one mode was drawn twice (c_n = 2). Then with probability
    ``p_abs`` u0 → |u0|, a random sign ±1, and with probability ``p_window`` a tanh window of width
    0.01 on [x_L, x_R], x_L ~ U(0.1, 0.45), x_R ~ U(0.55, 0.9) (fractions of the domain; PDEBench's
    absolute values on its [0, 1] domain). PDEBench draws several of these from one reused JAX key,
    which correlates them; here every draw is independent. Computed in float64 (dtype-independent).
    """
    dev, f64 = x.device, torch.float64
    xd = x.to(f64)
    picks = torch.randint(k_tot, (b, num_k), generator=gen, device=dev)
    count = torch.nn.functional.one_hot(picks, k_tot).sum(1).to(f64)  # [b, k_tot]: 0, 1, .. num_k
    n = torch.arange(1, k_tot + 1, device=dev, dtype=f64)
    k = 2 * math.pi * n * count / (xd[-1] - xd[0])  # [b, k_tot]; 0 for a mode not drawn
    amp, phs = rand64(gen, b, k_tot, device=dev), 2 * math.pi * rand64(gen, b, k_tot, device=dev)
    u = (amp[..., None] * torch.sin(k[..., None] * xd + phs[..., None])).sum(1)  # [b, X]
    u = torch.where(rand64(gen, b, 1, device=dev) < p_abs, u.abs(), u)
    u = u * torch.where(rand64(gen, b, 1, device=dev) < 0.5, -1.0, 1.0)
    lo, length = xd[0], xd[-1] - xd[0]
    use_window = rand64(gen, b, 1, device=dev) < p_window
    xl = lo + length * (0.1 + 0.35 * rand64(gen, b, 1, device=dev))
    xr = lo + length * (0.55 + 0.35 * rand64(gen, b, 1, device=dev))
    window = 0.5 * (torch.tanh((xd - xl) / 0.01) - torch.tanh((xd - xr) / 0.01))
    return torch.where(use_window, u * window, u).to(x.dtype)


def cell_centers(res: int, p: dict) -> tuple[np.ndarray, float]:
    """Finite-volume cell centres ``[res]`` of ``[p["x_left"], p["x_right"]]`` and the cell width."""
    dx = (p["x_right"] - p["x_left"]) / res
    return p["x_left"] + (np.arange(res) + 0.5) * dx, dx


def save_times(t_end: float, dt_save: float) -> np.ndarray:
    """Saved times 0, dt_save, ..., t_end (inclusive, rounded to the nearest whole number of saves)."""
    return np.arange(round(t_end / dt_save) + 1, dtype=np.float64) * dt_save
