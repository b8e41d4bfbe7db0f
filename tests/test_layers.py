"""The import contract in pyproject.toml ([tool.importlinter]): layers import downward only and sibling modules
form no cycles. It must pass on the tree (checked in this process) and must catch an upward import planted in a
copy of the package (checked by ``lint-imports`` in a fresh interpreter, which finds the copy first)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("importlinter", reason="import-linter is in the dev extra")

REPO = Path(__file__).resolve().parents[1]


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    """``lint-imports`` over the ``sciformer`` package found in ``root``, with ``root``'s pyproject.toml (read from the
    working directory)."""
    env = {**os.environ, "PYTHONPATH": str(root)}  # found before the editable install's finder
    command = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"
    return subprocess.run(
        [sys.executable, "-c", command, "--no-cache"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def copy_package(destination: Path) -> Path:
    shutil.copytree(REPO / "sciformer", destination / "sciformer", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", destination / "pyproject.toml")
    return destination


def test_the_tree_keeps_the_import_contract(capsys):
    from importlinter import configuration
    from importlinter.application import use_cases

    configuration.configure()
    kept = use_cases.lint_imports(config_filename=str(REPO / "pyproject.toml"), cache_dir=None, no_logo=True)
    assert kept, capsys.readouterr().out[-3000:]


@pytest.mark.integration  # lint-imports over a copy of the package, in a fresh interpreter
@pytest.mark.parametrize(
    ("module", "planted", "expected"),
    [
        ("data/__init__.py", "import sciformer.api", "sciformer.data is not allowed to import sciformer.api"),
        ("models/__init__.py", "import sciformer.engine.runner", "sciformer.models is not allowed to import sciformer.engine"),
        ("kernels/__init__.py", "from sciformer.nn import attention", "sciformer.kernels is not allowed to import sciformer.nn"),
    ],
)
def test_a_planted_upward_import_breaks_the_contract(tmp_path, module, planted, expected):
    root = copy_package(tmp_path)
    target = root / "sciformer" / module
    target.write_text(target.read_text() + f"\n{planted}  # planted by the test\n")
    result = lint_imports(root)
    assert result.returncode != 0
    assert expected in " ".join(result.stdout.split())  # the report wraps long lines
