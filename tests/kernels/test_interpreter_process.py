"""The interpreter tests of the kernels in a fresh Python when this session cannot run them (triton was imported for
compilation before the interpreter was switched on, e.g. by ``torch.compile`` in another test)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from kernel_checks import HAS_TRITON, interpreter_usable

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


@pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed")
def test_kernel_tests_pass_in_a_fresh_interpreter_process():
    if interpreter_usable() or os.environ.get("SCIFORMER_KERNEL_TESTS_CHILD"):
        pytest.skip("the kernel tests run in this process")
    env = {**os.environ, "TRITON_INTERPRET": "1", "SCIFORMER_KERNEL_TESTS_CHILD": "1"}
    env.pop("SCIFORMER_BACKEND", None)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(HERE)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    summary = result.stdout.strip().splitlines()[-1]
    skipped = re.search(r"(\d+) skipped", summary)
    assert " passed" in summary and (skipped is None or int(skipped.group(1)) == 1), result.stdout[-2000:]  # only this test
