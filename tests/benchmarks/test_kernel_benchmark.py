"""benchmarks/kernels.py: the compiled references it compares against belong to the case they are timed in."""

import importlib.util

import torch
from benchmark_script import load_benchmark


def _script():
    return load_benchmark("kernels")


def test_compiled_references_are_not_shared_between_cases_that_close_over_different_shapes():
    bench = _script()
    mods = {op: importlib.import_module(f"sciformer.kernels.{op}.reference") for op in bench.OPS}
    mods.update({f"{op}.triton": ImportError("not needed") for op in bench.OPS})
    compiled, cpu = bench.Compiled(), torch.device("cpu")
    small, large, again = (bench.factorized_case(mods, compiled, grid, 16, "bf16", cpu) for grid in ((8, 8), (12, 10), (8, 8)))
    assert small.impls["compiled"] is not large.impls["compiled"]
    assert small.impls["compiled"] is again.impls["compiled"]  # the same shapes reuse one compilation
    short, long = (bench.autocorrelation_case(mods, compiled, 2, L, 2, 8, "bf16", cpu, str(L)) for L in (48, 4096))
    assert short.impls["compiled"] is not long.impls["compiled"]  # ln(L) delays differ
