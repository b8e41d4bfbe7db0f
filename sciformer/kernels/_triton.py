"""Helpers shared by the triton kernels (imported only by ``sciformer/kernels/*/triton.py``)."""

from __future__ import annotations

from functools import cache

import torch
import triton
import triton.language as tl

from sciformer.kernels import register_cache
from sciformer.kernels.dispatch import interpreting

FLOAT_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def upcast() -> bool:
    """Whether kernels must do their arithmetic on float32 copies of bf16/fp16 tiles.

    On a GPU ``tl.dot`` takes bf16 operands directly (tensor cores, fp32 accumulation). Triton's CPU interpreter
    computes bf16 ``tl.dot`` and bf16 arithmetic wrongly, while conversions are exact, so there every tile is
    rounded to its storage dtype first and then converted: the same numbers, in float32.
    """
    return interpreting()


def precision(dtype: torch.dtype) -> str:
    """``tl.dot`` input precision for float32 operands, following PyTorch's own matmul setting: TF32 where
    ``torch.backends.cuda.matmul.allow_tf32`` allows it, else "tf32x3" (three TF32 tensor-core products, float32
    accuracy), so that fast path and reference round alike. The interpreter computes in IEEE float32."""
    if dtype != torch.float32 or interpreting():
        return "ieee"
    return "tf32" if torch.backends.cuda.matmul.allow_tf32 else "tf32x3"


def cdiv(a: int, b: int) -> int:
    """``ceil(a / b)`` for launch grids: plain ints, since calling ``triton.cdiv`` from Python goes through triton's
    JIT-function machinery, about 10 µs a call."""
    return -(-a // b)


def pow2(n: int, minimum: int = 16) -> int:
    """Smallest power of two ``>= max(n, minimum)`` (tile widths; ``tl.dot`` needs at least 16)."""
    return max(minimum, 1 << max(int(n) - 1, 0).bit_length())  # plain int arithmetic: called per launch


def empty(*shape, like: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """An uninitialised output on ``like``'s device; NaN-filled under the interpreter, so that any element a
    kernel fails to write shows up in the tests."""
    if interpreting():
        return torch.full(shape, float("nan"), device=like.device, dtype=dtype or like.dtype)
    return torch.empty(shape, device=like.device, dtype=dtype or like.dtype)


def empty_like(x: torch.Tensor) -> torch.Tensor:
    """``torch.empty_like`` (same layout), NaN-filled under the interpreter."""
    y = torch.empty_like(x)
    return y.fill_(float("nan")) if interpreting() else y


@cache
def _device_facts(index: int) -> tuple[int, int]:
    """``(multiprocessors, shared memory per block in bytes)`` of CUDA device ``index``, as triton's driver reads them."""
    props = triton.runtime.driver.active.utils.get_device_properties(index)
    return props["multiprocessor_count"], props["max_shared_mem"]


register_cache(_device_facts.cache_clear)


def _cuda_index(where: torch.Tensor | torch.device) -> int | None:
    device = where.device if isinstance(where, torch.Tensor) else torch.device(where)
    if device.type != "cuda":
        return None
    return device.index if device.index is not None else torch.cuda.current_device()


def sm_count(where: torch.Tensor | torch.device) -> int:
    """Multiprocessors of the GPU of a tensor or device (4 under the interpreter): split reductions aim at a few
    programs per multiprocessor."""
    index = _cuda_index(where)
    return 4 if index is None else _device_facts(index)[0]


def shared_memory(where: torch.Tensor | torch.device) -> int:
    """Shared memory per block of the GPU of a tensor or device, in bytes (the fits bound their staged tiles by it).
    The interpreter has no such limit; it gets an H100's 227 KiB so that its tiles are ones a GPU could run."""
    index = _cuda_index(where)
    return 227 * 1024 if index is None else _device_facts(index)[1]


def device_guard(tensor: torch.Tensor):
    """Launch on the tensor's device (several GPUs); a no-op where that is the current device already (entering a
    device context costs several µs of host time per launch) and on the CPU interpreter."""
    index = tensor.get_device()  # -1 on the CPU
    return torch.cuda.device(index) if index >= 0 and index != torch.cuda.current_device() else _NULL


def geometry(t: torch.Tensor) -> tuple:
    """What a compiled launch depends on besides the data: shape, strides, dtype, device, and whether the address
    is 16-byte aligned (triton specialises pointers on that). A :class:`Replay`'s cache key holds it per tensor."""
    return t.shape, t.stride(), t.dtype, t.device, t.data_ptr() % 16 == 0


class Replay:
    """One launch of a compiled kernel, kept to be repeated on new tensors.

    ``fn[grid](*args)`` binds and specialises every argument on every call (with our own Python around it, 0.07-0.1
    ms of host time per launch on the H100 machine; the GPU waits that long at the start of a step).
    A replay launches the compiled kernel directly with the grid and integer arguments of its first launch; only the
    tensors and float scalars change, in the order they appear in the arguments. It is valid for the tensors'
    :func:`geometry` of that launch (which fixes the integers too), so it is cached under a key that holds them.
    The launch hooks triton's profilers set are honoured (``CompiledKernel.__getitem__`` runs them)."""

    def __init__(self, compiled, grid: tuple[int, ...], args: tuple) -> None:
        self._runner = compiled[(*grid, 1, 1)[:3]]  # the compiled kernel's launcher takes all three dimensions
        self._slots = [i for i, a in enumerate(args) if isinstance(a, (torch.Tensor, float))]
        # the template keeps no tensor alive
        self._args = [None if i in self._slots else a for i, a in enumerate(args)]

    def __call__(self, *values) -> None:
        args = self._args.copy()
        for slot, value in zip(self._slots, values, strict=True):
            args[slot] = value
        self._runner(*args)


def launch(fn, grid: tuple[int, ...], args: tuple, num_warps: int, num_stages: int) -> Replay | None:
    """``fn[grid](*args)`` (constexprs passed in position, so that ``args`` is the whole signature) and its
    :class:`Replay`; ``None`` under the interpreter, which compiles nothing."""
    compiled = fn[grid](*args, num_warps=num_warps, num_stages=num_stages)
    return None if INTERPRETED or compiled is None else Replay(compiled, grid, args)


class _Null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


_NULL = _Null()


@triton.jit
def mm(a, b, acc, UPCAST: tl.constexpr, PRECISION: tl.constexpr):
    """``acc + a @ b`` with float32 accumulation (``a``, ``b`` of one dtype)."""
    if UPCAST:
        out = tl.dot(a.to(tl.float32), b.to(tl.float32), acc, input_precision="ieee")
    else:
        out = tl.dot(a, b, acc, input_precision=PRECISION)
    return out


INTERPRETED = interpreting()  # the mode the kernels of this process were decorated in (triton reads it then)
