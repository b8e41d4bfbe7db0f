"""benchmarks/operator_table.py: rows over several seeds show mean ± std, and the verdicts against FNO compare means."""

import importlib.util
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "operator_table.py"


def _script():
    spec = importlib.util.spec_from_file_location("operator_table_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _run(model: str, seed: int, rel_l2: float, step50: float) -> dict:
    return {"dataset": "ns2d", "model": model, "recipe": "r", "seed": seed, "test_rel_l2": rel_l2, "test_nrmse": rel_l2,
            "rollout_nrmse_step10": 0.02, "rollout_nrmse_step50": step50, "parameters": 1000,
            "seconds_per_epoch": 2.0 + seed, "epochs": 10, "peak_memory_mb": 100.0 + seed}


def test_seeds_are_averaged_and_verdicts_compare_means():
    bench = _script()
    results = [
        _run("Galerkin Transformer", 0, 0.0030, 0.05), _run("Galerkin Transformer", 1, 0.0050, 0.03),
        _run("FNO", 0, 0.0045, 0.05), _run("FNO", 1, 0.0045, 0.01),
        _run("FNO + residual", 0, 0.0050, 0.06), _run("FNO + residual", 1, 0.0050, 0.06),
        {"dataset": "ns2d", "model": "FactFormer", "recipe": "ns2d_factformer", "seed": 2, "failed": True},
    ]
    text = bench.table(results, "header")
    galerkin = next(line for line in text.splitlines() if line.startswith("| Galerkin Transformer |"))
    assert "| 2 | 0.0040 ± 0.0014 |" in galerkin  # two seeds, mean ± sample std of 0.0030 and 0.0050
    assert galerkin.endswith("| 1,000 | 2.50 | 10 | 101 |")  # mean s/epoch, the larger peak memory
    # one step: 0.0040 < 0.0045 (a win on the mean although seed 1 is worse); 50 steps: 0.04 > 0.03
    assert "* Galerkin Transformer: loses to FNO on rollout nRMSE @50." in text
    assert "* Galerkin Transformer: beats FNO + residual on every metric." in text  # every FNO row is a bar
    assert "Failed runs: ns2d_factformer (seed 2)" in text


def test_a_single_run_shows_its_own_figures():
    bench = _script()
    text = bench.table([_run("FNO", 0, 0.0043, 0.0374)], "header")
    assert "| FNO | 1 | 0.0043 | 0.0043 | 0.0200 | 0.0374 | – |" in text
