"""How much memory this process may fill, and the ``data.in_memory`` rule built on it.

Physical RAM alone overstates it: a container's cgroup limit (``/sys/fs/cgroup/memory.max``, or v1's
``memory.limit_in_bytes``) and an address-space limit (``ulimit -v``, ``RLIMIT_AS``) end a process long
before RAM runs out. :func:`available_memory` is the least of the three, each limit less what is already
used under it.
"""

from __future__ import annotations

import os
import resource
from pathlib import Path

import torch

from sciformer.errors import DataError

CGROUP_FILES = (
    ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
    ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),
)
IN_MEMORY_SHARE = 4  # auto: in memory when the data is under a quarter of the available memory


def _read_int(path: str) -> int | None:
    try:
        text = Path(path).read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None  # "max": no limit


def _physical() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # not a POSIX system
        return None


def _cgroup_headroom() -> int | None:
    for limit_file, usage_file in CGROUP_FILES:
        limit = _read_int(limit_file)
        if limit is not None and limit < 2**60:  # v1 writes a huge number for "no limit"
            return max(0, limit - (_read_int(usage_file) or 0))
    return None


def _address_space_headroom() -> int | None:
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        return None
    try:
        with open("/proc/self/statm") as f:
            used = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        used = 0
    return max(0, soft - used)


def available_memory() -> int | None:
    """Bytes this process may still allocate: the least of physical RAM, the cgroup limit less the cgroup's
    usage and ``RLIMIT_AS`` less the address space in use. None when nothing is known."""
    known = [v for v in (_physical(), _cgroup_headroom(), _address_space_headroom()) if v is not None]
    return min(known) if known else None


def keep_in_memory(setting: bool | str, nbytes: int, what: str) -> bool:
    """``data.in_memory``: ``True`` (refused when the data cannot fit at all), ``False``, or ``"auto"``: in memory
    when ``nbytes`` is under a quarter of :func:`available_memory`."""
    if setting is False:
        return False
    available = available_memory()
    if setting is True:
        if available is not None and nbytes > available:
            raise DataError(
                f"{what} needs {nbytes / 2**30:.1f} GiB in memory, more than the {available / 2**30:.1f} GiB this process "
                "may use; set data.in_memory=false (or auto) to stream it from disk"
            )
        return True
    return available is None or nbytes * IN_MEMORY_SHARE <= available


def fill(shape: tuple[int, ...], blocks, what: str) -> torch.Tensor:
    """One float32 tensor ``shape`` filled from ``blocks`` (chunks along the first axis), holding the result plus
    one chunk rather than twice the result; refused up front when it cannot fit in the available memory."""
    nbytes = 4 * int(torch.Size(shape).numel())
    available = available_memory()
    if available is not None and nbytes > available:
        raise DataError(
            f"{what} needs {nbytes / 2**30:.1f} GiB in memory, more than the {available / 2**30:.1f} GiB this process may use; "
            "stream it (data.in_memory=false), or read fewer samples (data.num_samples) or a coarser grid "
            "(data.reduced_resolution, data.reduced_resolution_t)"
        )
    out = torch.empty(shape, dtype=torch.float32)
    filled = 0
    for block in blocks:
        out[filled : filled + block.shape[0]] = block
        filled += block.shape[0]
    return out
