"""Host memory for training on a CPU: freed blocks are kept for reuse, not handed back.

glibc's malloc serves a block above its mmap threshold (128 KiB at first, raised as such blocks
are freed) with a fresh ``mmap`` and gives it back on free; it also trims the heap's free top
back to the system past a trim threshold. A packed trial's activations, gradients and
diagnostics temporaries are such blocks ((16, 100, 100) float32 is 640 KiB), so every step
maps them again and touches each page for the first time, a page fault each.
``reuse_freed_memory`` raises both thresholds once per process, so those blocks come from the
heap and stay there (``tests/lcw/test_allocator.py`` counts the faults of a pack with and
without it). Results do not change (only where memory comes from); the process keeps its peak
heap instead of returning it.

It is a no-op where malloc is not glibc's (macOS, musl) and when ``LCW_MALLOC_TUNING=0``.
``lcw.trainer`` calls it before training on a CPU, so every caller of ``lcw.train`` (a sweep's
actors and a plain process pool alike) trains under the same allocator.
"""

from __future__ import annotations

import ctypes
import functools
import os
import platform

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20  # glibc's largest allowed (HEAP_MAX_SIZE / 2 on 64-bit)
TRIM_THRESHOLD = 256 << 20  # free heap kept before trimming: more than a pack's peak


@functools.cache
def reuse_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds (see the module docstring), once per process;
    True when both were set."""
    if os.environ.get("LCW_MALLOC_TUNING", "1") == "0" or platform.libc_ver()[0] != "glibc":
        return False
    mallopt = ctypes.CDLL(None).mallopt  # the process's own C library
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
