"""Process-wide settings that make PyTorch faster on the CPU.

`reuse_freed_memory()`: by default glibc's malloc serves every block over 32 MiB (and,
until it adapts, every block over 128 KiB) with a fresh `mmap`, and gives it back to the
kernel on `free`. A Mask R-CNN forward pass allocates and frees feature maps of 10-60 MB
at every layer, so each one is page-faulted in again, zero-filled by the kernel: on the
2-core test machine a 62 MB tensor was written at 4.7 GB/s when freshly allocated against
23 GB/s when the memory was reused, and a 1x1 conv at stride 4 took 37 ms instead of
16 ms (measured with `mallopt` toggled in one process; the whole model: 3.74 s -> 3.46 s
on chelsea). Telling malloc never to use `mmap` and to keep up to 1 GiB of freed memory
makes the second and later forward passes reuse the same pages. The cost: the process
keeps its peak memory instead of returning it between images.

Set the environment variable MASKRCNN_SYSTEM_MALLOC=1 to leave malloc as it is (the
process then gives memory back between images, and runs slower). The test suite sets it,
because the setting cannot be undone within a process: otherwise the first test that
built a CPU Predictor would change the memory behaviour of every test after it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

_M_TRIM_THRESHOLD = -1  # mallopt parameter numbers from glibc's <malloc.h>
_M_MMAP_MAX = -4
_KEEP_FREED_BYTES = 1 << 30
SYSTEM_MALLOC_ENV = "MASKRCNN_SYSTEM_MALLOC"

_applied = False


def reuse_freed_memory() -> bool:
    """Make glibc malloc keep freed large blocks for reuse (see the module docstring).

    Process-wide and idempotent. Returns True when applied (Linux with glibc), False where
    it does not apply (other C libraries, macOS, Windows) or MASKRCNN_SYSTEM_MALLOC is set
    to anything but "" or "0": nothing changes then.
    """
    global _applied
    if _applied:
        return True
    if os.environ.get(SYSTEM_MALLOC_ENV, "") not in ("", "0"):
        return False
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    _applied = bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, _KEEP_FREED_BYTES))
    return _applied
