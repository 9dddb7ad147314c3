"""Process-level settings for training on CPU.

glibc's malloc hands every large block (above its adaptive mmap threshold) back to the
kernel when it is freed, and trims the heap top above a small threshold. A training step
allocates and frees the same large activation and gradient tensors over and over, so each
step pays fresh page faults for memory it just returned. IGD's double backprop, which keeps
the most tensors alive at once, loses about 4 % of its throughput to this on the
development machine (docs/benchmark-results.md). tune_cpu_allocator() keeps that memory in
the process instead: the price is a resident size that stays at its peak, which a training
process reaches anyway.
"""

from __future__ import annotations

import ctypes
import logging
import sys

_logger = logging.getLogger(__name__)

# mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3

SETTINGS = (
    (_M_MMAP_THRESHOLD, 32 * 2**20),  # blocks below 32 MiB come from the heap (glibc's max)
    (_M_TRIM_THRESHOLD, 2**30),  # return the heap top to the kernel only above 1 GiB free
    (_M_TOP_PAD, 64 * 2**20),  # grow the heap 64 MiB at a time
)

_applied: bool | None = None


def tune_cpu_allocator() -> bool:
    """Apply SETTINGS once per process through glibc's mallopt; False where there is no
    glibc (macOS, musl) or a setting is refused. Never changes results, only speed."""
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    _applied = all(mallopt(param, value) == 1 for param, value in SETTINGS)
    if not _applied:
        _logger.info("malloc tuning refused by this C library; training runs at its defaults")
    return _applied
