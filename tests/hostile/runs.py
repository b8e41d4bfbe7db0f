"""Hostile edits of a run directory's checkpoint (``CHECKPOINT_EDITS``) and resume state (``RESUME_EDITS``)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from sciformer.engine.checkpoint import LATEST, STATE_JSON

DEEP_JSON = "[" * 200_000 + "]" * 200_000  # deeper than Python's JSON parser recurses
HUGE_INT_JSON = '{"format": ' + "1" * 5000 + "}"  # beyond Python's 4300-digit limit of int()


def _write(relative: str, content: str | bytes) -> Callable[[Path], None]:
    def edit(run: Path) -> None:
        path = run / relative
        if path.is_symlink() or path.is_file():
            path.unlink()
        path.write_bytes(content.encode() if isinstance(content, str) else content)

    return edit


def _state(content: str) -> Callable[[Path], None]:
    return lambda run: (run / "resume" / (run / "resume" / LATEST).read_text().strip() / STATE_JSON).write_text(content)


def _replace(relative: str, make: Callable[[Path], None]) -> Callable[[Path], None]:
    def edit(run: Path) -> None:
        path = run / relative
        shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
        make(path)

    return edit


def _link_to(target: str) -> Callable[[Path], None]:
    return lambda path: os.symlink(target, path)


CHECKPOINT_EDITS: dict[str, Callable[[Path], None]] = {
    "config-nested-too-deep": _write("checkpoint/config.json", DEEP_JSON),
    "config-5000-digit-int": _write("checkpoint/config.json", HUGE_INT_JSON),
    "config-nan-format": _write("checkpoint/config.json", '{"format": NaN, "model": {}}'),
    "config-truncated": lambda run: _write("checkpoint/config.json", (run / "checkpoint" / "config.json").read_bytes()[:100])(run),
    "config-link-to-dev-zero": _replace("checkpoint/config.json", _link_to("/dev/zero")),
    "config-a-fifo": _replace("checkpoint/config.json", os.mkfifo),
    "weights-a-pickle": _write("checkpoint/weights.safetensors", b"\x80\x04\x95" + b"cos\nsystem\n" + bytes(64)),
    "weights-link-to-dev-zero": _replace("checkpoint/weights.safetensors", _link_to("/dev/zero")),
    "weights-header-claims-petabytes": _write("checkpoint/weights.safetensors", (2**50).to_bytes(8, "little") + b"{}"),
    "weights-header-nested-json": _write("checkpoint/weights.safetensors", len(DEEP_JSON).to_bytes(8, "little") + DEEP_JSON.encode()),
    "checkpoint-a-file": _replace("checkpoint", lambda path: path.write_text("not a folder")),
    "checkpoint-a-link-loop": _replace("checkpoint", _link_to("checkpoint")),
    "checkpoint-empty": _replace("checkpoint", lambda path: path.mkdir()),
}


RESUME_EDITS: dict[str, Callable[[Path], None]] = {
    "state-nested-too-deep": _state(DEEP_JSON),
    "state-5000-digit-int": _state(HUGE_INT_JSON),
    "state-empty": _state(""),
    "latest-link-to-dev-zero": _replace(f"resume/{LATEST}", _link_to("/dev/zero")),
    "latest-a-folder": _replace(f"resume/{LATEST}", lambda path: path.mkdir()),
    "latest-a-fifo": _replace(f"resume/{LATEST}", os.mkfifo),
    "latest-empty": _write(f"resume/{LATEST}", b""),
    "latest-with-a-newline-and-a-path": _write(f"resume/{LATEST}", b"epoch0001-step000000\n/../../etc\n"),
    "latest-names-a-file": lambda run: _write(f"resume/{LATEST}", b"LATEST")(run),
    "resume-a-file": _replace("resume", lambda path: path.write_text("x")),
    "recipe-nested-too-deep": _write("recipe.json", DEEP_JSON),
    "recipe-5000-digit-int": _write("recipe.json", '{"seed": ' + "1" * 5000 + "}"),
    "data-nested-too-deep": _write("data.json", DEEP_JSON),
    "data-5000-digit-int": _write("data.json", '{"fingerprint": ' + "1" * 5000 + "}"),
    "recipe-missing": lambda run: (run / "recipe.json").unlink(),
    "data-missing": lambda run: (run / "data.json").unlink(),
    "data-link-to-dev-zero": _replace("data.json", _link_to("/dev/zero")),
    "recipe-a-fifo": _replace("recipe.json", os.mkfifo),
    "lock-a-folder": lambda run: (run / ".sciformer.lock").mkdir(),
}
