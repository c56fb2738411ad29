"""Keep freed memory in the process for reuse: glibc's malloc otherwise returns it to the kernel.

Torch-free, so ``actbench`` sets it before anything allocates (like the thread defaults).

Batched kernels free and allocate the same multi-megabyte temporaries call after call. With
glibc's defaults, blocks above a (dynamic) mmap threshold are unmapped when freed and the
heap top is trimmed beyond twice that threshold, so the next call's buffers are fresh pages
that the kernel zero-fills on first touch: on this project's 2-core VM that was half of
defocus_blur's time at 224 px (89 vs 33 ms for 32 images, version 3) and a third of an
evaluation over all 19 corruptions (``docs/benchmarks.md``, session 25). :func:`keep_freed_memory`
raises both thresholds, as ``MALLOC_TRIM_THRESHOLD_`` and ``MALLOC_MMAP_THRESHOLD_`` would:
freed blocks stay mapped (up to :data:`KEEP_FREED_BYTES` at the heap top) and are reused.
The values computed do not change; the cost is memory the process keeps after a peak.
``ACTBENCH_KEEP_FREED_MEMORY=0`` keeps glibc's defaults.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from collections.abc import Mapping

#: freed memory at the heap top kept for reuse before trimming (glibc M_TRIM_THRESHOLD)
KEEP_FREED_BYTES = 256 * 2**20
#: blocks from this size on get their own mapping (M_MMAP_THRESHOLD)
MMAP_FROM_BYTES = 256 * 2**20
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameter numbers
#: environment variables by which a user has chosen glibc's policy already (left alone then)
MALLOC_ENV = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "GLIBC_TUNABLES")
#: "0" here keeps glibc's defaults
KEEP_FREED_ENV = "ACTBENCH_KEEP_FREED_MEMORY"


def keep_freed_memory(env: Mapping[str, str] = os.environ) -> bool:
    """Raise glibc's trim and mmap thresholds for this process; True if applied.

    Does nothing (False) off glibc (macOS, Windows, musl), where the environment sets
    glibc's malloc policy itself (:data:`MALLOC_ENV`), and with ``ACTBENCH_KEEP_FREED_MEMORY=0``.
    """
    if env.get(KEEP_FREED_ENV, "").strip() == "0" or any(env.get(name) for name in MALLOC_ENV):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # no C library with mallopt: nothing to tune
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_FROM_BYTES)) and bool(mallopt(_M_TRIM_THRESHOLD, KEEP_FREED_BYTES))
