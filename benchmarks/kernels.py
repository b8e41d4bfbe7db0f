"""Fused kernels against their PyTorch references on one GPU, and the FactFormer training-step probe.

    python benchmarks/kernels.py --out runs/kernels            # everything, < 8 minutes on one H100
    python benchmarks/kernels.py --out runs/kernels --quick    # headline sizes and the 1024² / 128³ steps only

For every op (factorised attention, Galerkin linear attention, Auto-Correlation, truncated spectral multiply), size
(2D 128²…1024², 3D 32³…128³; Auto-Correlation also a forecasting shape), head width d ∈ {64, 128} and dtype, three
implementations run forward + backward on the same inputs: the PyTorch reference in eager mode, the reference under
``torch.compile``, and the triton kernels. Reported per implementation: median time of a forward+backward step (CUDA
events, after warm-up), its speed-up over eager and over compiled, the peak memory the step allocates beyond its
inputs, and the achieved bandwidth (the op's minimal traffic: every input read and every output written once, forward
and backward, divided by the time, also as a fraction of the H100's 3.35 TB/s) and FLOP rate (the reference's
arithmetic).

Then a FactFormer (default size: dim 128, depth 4, 8 heads of 64) training step (bf16 autocast, AdamW) at 1024²
(batch 1) and 128³, with the kernels (SCIFORMER_BACKEND=triton) and without (torch), and the largest 2D and 3D grid
whose step fits in GPU memory either way.

Results are written after every case to ``OUT/kernels.json`` and ``OUT/kernels.md``, so an interrupted run keeps
what it measured; a case that fails (out of memory, or any error) is recorded and the run goes on. Headline cases
come first, then the probe, then the rest of the sweep while ``--budget-s`` lasts. Without a GPU, ``--cpu-smoke``
runs tiny shapes through the triton interpreter to check the script itself.
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import math
import os
import platform
import statistics
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing

HBM_BYTES_PER_S = 3.35e12  # H100 SXM, HBM3
HEADS = 4


# ------------------------------------------------------------------------------------------------------ cases
@dataclass
class Case:
    """One op at one size: ``build()`` returns ``(inputs, grad_shape_fn)`` lazily, so nothing is allocated until the
    case runs; ``impls`` maps eager/compiled/triton to the function of the inputs whose output is differentiated."""

    op: str
    size: str
    d: int
    dtype: str
    build: Callable[[], list]
    impls: dict[str, Callable]
    bytes: float
    flops: float | None
    headline: bool = False
    extra: dict = field(default_factory=dict)


def batch_for(points: int, cap: int = 16) -> int:
    """Batch that puts about 2^20 grid points (or time steps) in one step, at least 1."""
    return 1 if SMOKE["on"] else max(1, min(cap, 2**20 // points))


def _dtype(name: str):
    import torch

    return {"bf16": torch.bfloat16, "fp32": torch.float32}[name]


# FactFormer steps and largest-grid searches: the kernels keeping or recomputing the attention intermediates, and
# the PyTorch reference (autograd keeps what it keeps)
STEP_BACKENDS = ("triton", "triton recompute", "torch")
OPS = ("factorized_attention", "linear_attention", "autocorrelation", "spectral_multiply")
PARTS = ("headline", "steps", "largest", "sweep")


def _modules():
    import importlib

    mods = {}
    for op in OPS:
        mods[op] = importlib.import_module(f"sciformer.kernels.{op}.reference")
        try:
            mods[op + ".triton"] = importlib.import_module(f"sciformer.kernels.{op}.triton")
        except Exception as error:  # no triton: the triton rows record the error
            mods[op + ".triton"] = error
    return mods


class Compiled:
    """One ``torch.compile`` per ``key``. The key must name everything ``fn`` closes over (batch, grid, heads,
    delays): a cached function keeps the closure it was first built with, so a key shared by cases that differ in
    those values would run the first case's reshapes and delay count on the later cases' inputs."""

    def __init__(self) -> None:
        self.cache: dict[Any, Callable] = {}

    def __call__(self, key: Any, fn: Callable) -> Callable:
        import torch

        if key not in self.cache:
            self.cache[key] = torch.compile(fn)
        return self.cache[key]


def factorized_case(mods, compiled: Compiled, grid: tuple[int, ...], d: int, dtype: str, device, headline=False) -> Case:
    import torch

    ref, fast = mods["factorized_attention"], mods["factorized_attention.triton"]
    N = math.prod(grid)
    B, H, D, E = batch_for(N), HEADS, d, 2 * d  # FactFormer: kernel dim = 2 × head dim
    dt = _dtype(dtype)

    def build():
        g = torch.Generator(device=device).manual_seed(0)
        qs = [torch.randn(B, H, n, E, device=device, dtype=dt, generator=g).mul_(0.1).requires_grad_() for n in grid]
        ks = [torch.randn(B, H, n, E, device=device, dtype=dt, generator=g).mul_(0.1).requires_grad_() for n in grid]
        # [B, *grid, H, D] memory seen as [B, H, *grid, D]: the layout FactorizedAttention hands over
        v = torch.randn(B, *grid, H, D, device=device, dtype=dt, generator=g).movedim(-2, 1).requires_grad_()
        return [qs, ks, v]

    def merged(fn):  # the block merges the heads afterwards: [B, *grid, H·D]
        return lambda qs, ks, v: fn(qs, ks, v).movedim(1, -2).reshape(B, *grid, H * D)

    impls = {"eager": merged(ref.factorized_attention), "compiled": compiled(("fa", B, grid, H, D), merged(ref.factorized_attention))}
    if not isinstance(fast, Exception):
        impls["triton"] = merged(fast.factorized_attention)
        # the memory-lean mode the largest grids train with: intermediates recomputed in the backward
        impls["triton recompute"] = merged(functools.partial(fast.factorized_attention, recompute=True))
    item = torch.finfo(dt).bits // 8
    field_elems = B * H * N * D
    apply = sum(2 * n * field_elems + 2 * n * n * E * B * H for n in grid)
    size = "x".join(map(str, grid))
    return Case("factorized_attention", size, d, dtype, build, impls, bytes=5 * field_elems * item, flops=3 * apply,
                headline=headline, extra=dict(batch=B, heads=H, E=E))


def linear_case(mods, compiled: Compiled, grid: tuple[int, ...], d: int, dtype: str, device, headline=False) -> Case:
    import torch

    ref, fast = mods["linear_attention"], mods["linear_attention.triton"]
    n = math.prod(grid)
    B, H, P = batch_for(n), HEADS, len(grid)
    dt = _dtype(dtype)

    def build():
        g = torch.Generator(device=device).manual_seed(0)

        def heads():  # [B, n, H, d] memory (a Linear's output) seen as [B, H, n, d]
            return torch.randn(B, n, H, d, device=device, dtype=dt, generator=g).transpose(1, 2).requires_grad_()

        pos = torch.rand(1, n, P, device=device, dtype=dt, generator=g)
        norm = lambda: (torch.ones(H, d, device=device, dtype=dt, requires_grad=True), torch.zeros(H, d, device=device, dtype=dt, requires_grad=True))  # noqa: E731
        return [heads(), heads(), heads(), pos, norm(), norm()]

    def merged(fn):
        return lambda q, k, v, pos, kn, vn: fn(q, k, v, pos, kn, vn, 1e-5).transpose(1, 2).reshape(B, n, -1)

    impls = {"eager": merged(ref.galerkin_attention), "compiled": compiled(("la", B, n), merged(ref.galerkin_attention))}
    if not isinstance(fast, Exception):
        impls["triton"] = merged(fast.galerkin_attention)
    item = torch.finfo(dt).bits // 8
    x = B * H * n * d
    fwd = 4 * B * H * n * (d + P) * (d + P)  # the state K'ᵀV' and Q'·state
    size = "x".join(map(str, grid))
    return Case("linear_attention", size, d, dtype, build, impls, bytes=11 * x * item, flops=3 * fwd,
                headline=headline, extra=dict(batch=B, heads=H, n=n, pos_dim=P))


def autocorrelation_case(mods, compiled: Compiled, B: int, L: int, H: int, d: int, dtype: str, device, label: str, headline=False) -> Case:
    import torch

    ref, fast = mods["autocorrelation"], mods["autocorrelation.triton"]
    dt = _dtype(dtype)
    n_delays = max(1, int(math.log(L)))  # factor 1, as in Autoformer

    def build():
        g = torch.Generator(device=device).manual_seed(0)
        return [torch.randn(B, L, H, d, device=device, dtype=dt, generator=g).requires_grad_() for _ in range(3)]

    def layer(correlation, aggregate):  # training mode: delays shared by the batch
        return lambda q, k, v: ref.auto_correlation(q, k, v, n_delays, True, correlation, aggregate)

    impls = {"eager": layer(ref.correlation, ref.aggregate), "compiled": compiled(("ac", n_delays), layer(ref.correlation, ref.aggregate))}
    if not isinstance(fast, Exception):
        impls["triton"] = layer(fast.correlation, fast.aggregate)
    item = torch.finfo(dt).bits // 8
    return Case("autocorrelation", label, d, dtype, build, impls, bytes=11 * B * L * H * d * item, flops=None,
                headline=headline, extra=dict(batch=B, length=L, heads=H, delays=n_delays))


def spectral_case(mods, compiled: Compiled, grid: tuple[int, ...], d: int, device, headline=False) -> Case:
    import torch

    ref, fast = mods["spectral_multiply"], mods["spectral_multiply.triton"]
    modes = ref.kept_modes(grid, (32, 32) if len(grid) == 2 else (16, 16, 16))
    N = math.prod(grid)
    B = batch_for(N, cap=32)
    C = d

    def build():
        g = torch.Generator(device=device).manual_seed(0)
        x = torch.randn(B, C, *grid, device=device, generator=g)
        x_ft = torch.fft.rfftn(x, dim=tuple(range(-len(grid), 0))).requires_grad_()
        w = torch.randn(2 ** (len(grid) - 1), C, C, *modes, device=device, dtype=torch.complex64, generator=g).mul_(0.01).requires_grad_()
        return [x_ft, w, modes]

    impls = {"eager": ref.spectral_multiply, "compiled": compiled(("sm", len(grid)), ref.spectral_multiply)}
    if not isinstance(fast, Exception):
        impls["triton"] = fast.spectral_multiply
    kept = 2 ** (len(grid) - 1) * math.prod(modes)
    spectrum = B * C * math.prod(grid[:-1]) * (grid[-1] // 2 + 1)
    weights = C * C * kept
    fwd_bytes = (B * C * kept + weights + spectrum) * 8  # read kept x, W; write the whole output (zeros included)
    bwd_bytes = (2 * B * C * kept + weights + spectrum + weights) * 8  # read kept dout, x, W; write dx, dW
    size = "x".join(map(str, grid))
    return Case("spectral_multiply", size, d, "c64", build, impls, bytes=fwd_bytes + bwd_bytes,
                flops=3 * 8 * B * C * C * kept, headline=headline, extra=dict(batch=B, channels=C, modes=list(modes)))


# ------------------------------------------------------------------------------------------------------ timing
def _flatten(values):
    for v in values:
        if isinstance(v, (list, tuple)):
            yield from _flatten(v)
        else:
            yield v


SMOKE = dict(on=False)  # --cpu-smoke: one warm-up and one timed step (the interpreter is slow)


def measure(fn: Callable, inputs: list, device, min_time_s: float = 0.3) -> dict:
    """Median forward+backward time (ms), forward-only time and the step's peak memory beyond its inputs (MiB)."""
    import torch

    leaves = [t for t in _flatten(inputs) if isinstance(t, torch.Tensor) and t.requires_grad]
    cuda = device.type == "cuda"
    grad_holder: dict[str, Any] = {}

    def step():
        for t in leaves:
            t.grad = None
        out = fn(*inputs)
        if "g" not in grad_holder:
            grad_holder["g"] = torch.randn_like(out)
        out.backward(grad_holder["g"])

    def clock() -> Callable[[], float]:
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()

            def stop():
                end.record()
                end.synchronize()
                return start.elapsed_time(end)

            return stop
        t0 = time.perf_counter()
        return lambda: (time.perf_counter() - t0) * 1e3

    for _ in range(1 if SMOKE["on"] else 3):  # warm-up: compilation, tuning, allocator
        step()
    if cuda:
        torch.cuda.synchronize()
    for t in leaves:
        t.grad = None
    peak = None
    if cuda:
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        step()
        torch.cuda.synchronize()
        peak = (torch.cuda.max_memory_allocated() - base) / 2**20
    stop = clock()
    step()
    first = stop()
    repeats = 1 if SMOKE["on"] else max(5, min(50, int(min_time_s * 1e3 / max(first, 1e-3))))
    times = []
    for _ in range(repeats):
        stop = clock()
        step()
        times.append(stop())
    fwd_times = []
    with torch.no_grad():
        for _ in range(max(1 if SMOKE["on"] else 3, repeats // 2)):
            stop = clock()
            fn(*inputs)
            fwd_times.append(stop())
    for t in leaves:
        t.grad = None
    return dict(ms=statistics.median(times), fwd_ms=statistics.median(fwd_times), peak_mib=peak, repeats=repeats)


def _free(device) -> None:
    import torch

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _is_oom(error: BaseException) -> bool:
    import torch

    return isinstance(error, torch.cuda.OutOfMemoryError) or "out of memory" in str(error).lower()


def run_case(case: Case, device, budget: "Budget") -> list[dict]:
    rows = []
    try:
        inputs = case.build()
    except Exception as error:
        _free(device)
        return [dict(op=case.op, size=case.size, d=case.d, dtype=case.dtype, backend=b, error=_describe(error)) for b in case.impls]
    for backend, fn in case.impls.items():
        row = dict(op=case.op, size=case.size, d=case.d, dtype=case.dtype, backend=backend, headline=case.headline, **case.extra)
        if backend == "compiled" and not budget.allows_compile(case.headline):
            row["error"] = "skipped (time budget)"
            rows.append(row)
            continue
        if backend == "compiled" and device.type != "cuda":
            row["error"] = "skipped (CPU smoke run)"
            rows.append(row)
            continue
        started = time.perf_counter()
        try:
            row.update(measure(fn, inputs, device))
            row["gb_per_s"] = case.bytes / (row["ms"] * 1e-3) / 1e9
            row["hbm_fraction"] = row["gb_per_s"] * 1e9 / HBM_BYTES_PER_S
            row["tflop_per_s"] = case.flops / (row["ms"] * 1e-3) / 1e12 if case.flops else None
        except Exception as error:
            row["error"] = "out of memory" if _is_oom(error) else _describe(error)
        if backend == "compiled":
            budget.compile_spent += time.perf_counter() - started
        rows.append(row)
        _free(device)
    by_backend = {r["backend"]: r for r in rows if "ms" in r}
    for r in rows:
        if "ms" not in r:
            continue
        for ref in ("eager", "compiled"):
            if ref in by_backend:
                r[f"speedup_vs_{ref}"] = by_backend[ref]["ms"] / r["ms"]
                if r.get("peak_mib") and by_backend[ref].get("peak_mib"):
                    r[f"memory_vs_{ref}"] = r["peak_mib"] / by_backend[ref]["peak_mib"]
    del inputs
    _free(device)
    return rows


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {str(error).splitlines()[0][:200] if str(error) else ''}"


class Budget:
    def __init__(self, seconds: float, probe_reserve: float) -> None:
        self.start = time.perf_counter()
        self.seconds = seconds
        self.probe_reserve = probe_reserve
        self.compile_spent = 0.0

    def left(self) -> float:
        return self.seconds - (time.perf_counter() - self.start)

    def allows_compile(self, headline: bool) -> bool:
        # headline cases always compare with the compiled reference; the sweep only while time is plentiful
        return headline or self.left() > self.probe_reserve + 120


# ------------------------------------------------------------------------------------------------------ FactFormer probe
def factformer_step(n_dims: int, grid: tuple[int, ...], backend: str, device, steps: int = 3) -> dict:
    """Median time and peak memory of a FactFormer training step (bf16 autocast, AdamW) with ``backend``
    ("triton" or "torch", followed by " recompute" for ``recompute_attention``)."""
    import torch

    from sciformer.models.factformer import FactFormer

    name, _, mode = backend.partition(" ")
    os.environ["SCIFORMER_BACKEND"] = name
    result: dict[str, Any] = dict(grid="x".join(map(str, grid)), backend=backend)
    model = opt = u = target = None
    try:
        torch.manual_seed(0)
        model = FactFormer(1, 1, n_dims, recompute_attention=mode == "recompute").to(device)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        u = torch.randn(1, 1, *grid, device=device)
        target = torch.randn(1, 1, *grid, device=device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        times = []
        for i in range(steps + 1):
            t0 = time.perf_counter()
            with torch.autocast(device.type, dtype=torch.bfloat16):
                loss = torch.nn.functional.mse_loss(model(u).float(), target)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            if device.type == "cuda":
                torch.cuda.synchronize()
            if i:  # the first step compiles/tunes the kernels
                times.append((time.perf_counter() - t0) * 1e3)
        result.update(ok=True, ms=statistics.median(times), loss=loss.item())
        if device.type == "cuda":
            result["peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
    except Exception as error:
        result.update(ok=False, error="out of memory" if _is_oom(error) else _describe(error))
    finally:
        del model, opt, u, target
        os.environ.pop("SCIFORMER_BACKEND", None)
        _free(device)
    return result


def largest_grid(n_dims: int, sizes: list[int], backend: str, device, budget: Budget) -> dict:
    """The largest ``size^n_dims`` grid (from ``sizes``, increasing) whose training step runs."""
    tried = []
    for size in sizes:
        if budget.left() < 20:
            tried.append(dict(grid=f"{size}^{n_dims}", skipped="time budget"))
            break
        r = factformer_step(n_dims, (size,) * n_dims, backend, device, steps=1)
        tried.append(r)
        if not r["ok"]:
            break
    fits = [r for r in tried if r.get("ok")]
    return dict(n_dims=n_dims, backend=backend, largest=fits[-1]["grid"] if fits else None, tried=tried)


# ------------------------------------------------------------------------------------------------------ report
def write_report(out: Path, meta: dict, rows: list[dict], probe: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    data = dict(meta=meta, results=rows, factformer=probe)
    tmp = out / "kernels.json.tmp"
    tmp.write_text(json.dumps(data, indent=1, default=str))
    tmp.replace(out / "kernels.json")
    (out / "kernels.md").write_text(markdown(meta, rows, probe))


def _fmt(value, spec: str, empty: str = "–") -> str:
    return empty if value is None else format(value, spec)


def markdown(meta: dict, rows: list[dict], probe: dict) -> str:
    lines = [
        "# Kernel benchmark",
        "",
        f"{meta.get('gpu')}, torch {meta.get('torch')}, triton {meta.get('triton')}; `{meta.get('command')}`; "
        f"{meta.get('elapsed_s', 0):.0f} s.",
        "",
        "Forward + backward per step (median). Peak: memory the step allocates beyond its inputs. GB/s: the op's "
        "minimal traffic (inputs read and outputs written once, forward and backward) per second; % HBM: of 3.35 TB/s.",
        "",
        "| op | size | d | dtype | backend | ms | × eager | × compiled | peak MiB | mem / eager | GB/s | % HBM | TFLOP/s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "ms" not in r:
            lines.append(f"| {r['op']} | {r['size']} | {r['d']} | {r['dtype']} | {r['backend']} | {r.get('error', '?')} |||||||| ")
            continue
        lines.append(
            f"| {r['op']} | {r['size']} | {r['d']} | {r['dtype']} | {r['backend']} | {r['ms']:.3f} | "
            f"{_fmt(r.get('speedup_vs_eager'), '.2f')} | {_fmt(r.get('speedup_vs_compiled'), '.2f')} | "
            f"{_fmt(r.get('peak_mib'), '.0f')} | {_fmt(r.get('memory_vs_eager'), '.2f')} | {r['gb_per_s']:.0f} | "
            f"{100 * r['hbm_fraction']:.1f} | {_fmt(r.get('tflop_per_s'), '.1f')} |"
        )
    lines += ["", "## FactFormer training step (dim 128, depth 4, 8 heads × 64, batch 1, bf16 autocast, AdamW)", ""]
    lines += ["| grid | backend | ok | ms / step | peak GiB | note |", "|---|---|---|---|---|---|"]
    for r in probe.get("steps", []):
        lines.append(f"| {r['grid']} | {r['backend']} | {r.get('ok')} | {_fmt(r.get('ms'), '.1f')} | {_fmt(r.get('peak_gib'), '.1f')} | {r.get('error', '')} |")
    if probe.get("largest"):
        lines += ["", "| grid family | backend | largest grid that trains | tried |", "|---|---|---|---|"]
        for r in probe["largest"]:
            tried = ", ".join(f"{t['grid']}:{'ok' if t.get('ok') else t.get('error', t.get('skipped', 'no'))}" for t in r["tried"])
            lines.append(f"| {r['n_dims']}D | {r['backend']} | {r['largest']} | {tried} |")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------------ main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/kernels"), help="directory for kernels.json and kernels.md")
    parser.add_argument("--quick", action="store_true", help="headline sizes and the 1024² / 128³ training steps only")
    parser.add_argument("--budget-s", type=float, default=420.0, help="stop starting new sweep cases after this many seconds (the whole run stays under 8 minutes)")
    parser.add_argument("--cpu-smoke", action="store_true", help="no GPU: tiny shapes through the triton interpreter")
    parser.add_argument("--ops", nargs="+", choices=OPS, default=list(OPS), help="ops of the headline and sweep cases")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS),
                        help="headline cases, FactFormer steps at 1024² / 128³, largest-grid search, size sweep")
    args = parser.parse_args()
    parts = set(args.parts) - ({"largest", "sweep"} if args.quick else set())

    if args.cpu_smoke:
        os.environ["TRITON_INTERPRET"] = "1"  # before any kernel module is imported
        SMOKE["on"] = True
    # fewer false out-of-memory failures after a failed large grid (set before torch initialises CUDA)
    os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")
    import torch

    if not torch.cuda.is_available() and not args.cpu_smoke:
        sys.exit("benchmarks/kernels.py needs a CUDA GPU (or --cpu-smoke to check the script on CPU)")
    device = torch.device("cuda" if torch.cuda.is_available() and not args.cpu_smoke else "cpu")
    torch._dynamo.config.cache_size_limit = 64
    mods = _modules()
    compiled = Compiled()
    try:
        import triton

        triton_version = triton.__version__
    except Exception:
        triton_version = None
    meta = dict(
        command=" ".join([Path(sys.executable).name, *sys.argv]),
        gpu=torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({platform.processor()}), triton interpreter",
        torch=torch.__version__, triton=triton_version, python=platform.python_version(),
        started=time.strftime("%Y-%m-%d %H:%M:%S"), allow_tf32=torch.backends.cuda.matmul.allow_tf32,
    )
    budget = Budget(args.budget_s, probe_reserve=150 if "largest" in parts else 0)
    rows: list[dict] = []
    probe: dict[str, Any] = dict(steps=[], largest=[])

    def save():
        meta["elapsed_s"] = time.perf_counter() - budget.start
        write_report(args.out, meta, rows, probe)

    def run(case: Case):
        label = f"{case.op} {case.size} d={case.d} {case.dtype}"
        print(f"[{time.perf_counter() - budget.start:6.0f}s] {label}", flush=True)
        try:
            new = run_case(case, device, budget)
        except Exception as error:  # never lose the other cases
            traceback.print_exc()
            new = [dict(op=case.op, size=case.size, d=case.d, dtype=case.dtype, backend="all", error=_describe(error))]
        for r in new:
            print(f"    {r['backend']:9s} " + (f"{r['ms']:.3f} ms, peak {_fmt(r.get('peak_mib'), '.0f')} MiB, x eager {_fmt(r.get('speedup_vs_eager'), '.2f')}, x compiled {_fmt(r.get('speedup_vs_compiled'), '.2f')}" if "ms" in r else r.get("error", "")), flush=True)
        rows.extend(new)
        save()

    if args.cpu_smoke:
        headline = [factorized_case(mods, compiled, (12, 10), 16, "bf16", device, True),
                    factorized_case(mods, compiled, (6, 5, 4), 16, "fp32", device, True),
                    linear_case(mods, compiled, (12, 10), 16, "bf16", device, True),
                    autocorrelation_case(mods, compiled, 2, 48, 2, 16, "bf16", device, "2x48", True),
                    spectral_case(mods, compiled, (12, 10), 8, device, True)]
        sweep = []
        probe_grids = [(2, (8, 8)), (3, (4, 4, 4))]
        searches = [(2, [8, 12])]
    else:
        headline = [
            factorized_case(mods, compiled, (256, 256), 64, "bf16", device, True),
            factorized_case(mods, compiled, (64, 64, 64), 64, "bf16", device, True),
            factorized_case(mods, compiled, (256, 256), 64, "fp32", device, True),
            factorized_case(mods, compiled, (64, 64, 64), 64, "fp32", device, True),
            linear_case(mods, compiled, (256, 256), 64, "bf16", device, True),
            linear_case(mods, compiled, (256, 256), 64, "fp32", device, True),
            autocorrelation_case(mods, compiled, 32, 720, 8, 64, "bf16", device, "32x720", True),
            autocorrelation_case(mods, compiled, 32, 720, 8, 64, "fp32", device, "32x720", True),
            autocorrelation_case(mods, compiled, batch_for(256 * 256), 256 * 256, HEADS, 64, "bf16", device, "L=256^2", True),
            spectral_case(mods, compiled, (256, 256), 64, device, True),
        ]
        grids = [(128, 128), (256, 256), (512, 512), (1024, 1024), (32, 32, 32), (64, 64, 64), (128, 128, 128)]
        sweep = []
        for grid in grids:
            for d in (64, 128):
                sweep.append(factorized_case(mods, compiled, grid, d, "bf16", device))
                sweep.append(linear_case(mods, compiled, grid, d, "bf16", device))
                sweep.append(autocorrelation_case(mods, compiled, batch_for(math.prod(grid)), math.prod(grid), HEADS, d, "bf16", device, f"L={'x'.join(map(str, grid))}"))
                sweep.append(spectral_case(mods, compiled, grid, d, device))
        done = {(c.op, c.size, c.d, c.dtype) for c in headline}
        sweep = [c for c in sweep if (c.op, c.size, c.d, c.dtype) not in done]
        probe_grids = [(2, (1024, 1024)), (3, (128, 128, 128))]
        searches = [(2, [1024, 1536, 2048, 2560, 3072, 4096]), (3, [128, 160, 192, 224, 256])]

    headline = [c for c in headline if c.op in args.ops] if "headline" in parts else []
    sweep = [c for c in sweep if c.op in args.ops] if "sweep" in parts else []
    probe_grids = probe_grids if "steps" in parts else []
    searches = searches if "largest" in parts else []
    for case in headline:
        run(case)
    for n_dims, grid in probe_grids:
        for backend in STEP_BACKENDS:
            print(f"[{time.perf_counter() - budget.start:6.0f}s] FactFormer step {grid} {backend}", flush=True)
            r = factformer_step(n_dims, grid, backend, device, steps=1 if args.cpu_smoke else 3)
            print(f"    {r}", flush=True)
            probe["steps"].append(r)
            save()
    for n_dims, sizes in searches:
        for backend in STEP_BACKENDS:
            print(f"[{time.perf_counter() - budget.start:6.0f}s] largest {n_dims}D grid, {backend}", flush=True)
            r = largest_grid(n_dims, sizes, backend, device, budget)
            print(f"    largest: {r['largest']}", flush=True)
            probe["largest"].append(r)
            save()
    for case in sweep:
        if budget.left() < 30:
            rows.append(dict(op=case.op, size=case.size, d=case.d, dtype=case.dtype, backend="all", error="skipped (time budget)"))
            continue
        run(case)
    save()
    print(f"wrote {args.out / 'kernels.json'} and {args.out / 'kernels.md'}")


if __name__ == "__main__":
    main()
