"""CPU thread defaults of the ``actbench`` commands: the free cores this process may use.

Measured side by side with ``benchmarks/threads.py`` (docs/benchmarks.md) on a 2-core
machine shared with other jobs (load average 2-6): every multi-threaded setting lost to
one thread there, by up to 30x. Spinning OpenMP workers (the default wait policy) made the
corruption kernels 32x and small-batch inference 9x slower; sleeping ones
(``OMP_WAIT_POLICY=PASSIVE``) fixed those but made bf16 training 4x slower (each parallel
region waits for the OS to wake a worker on a busy core). So the commands size the
intra-op thread pool by the CPUs this process may run on (its affinity mask) minus the
ones other processes keep busy (the 1-minute load average), at least one, and leave the
wait policy alone. ``OMP_NUM_THREADS`` (or a command's ``--threads``) overrides it.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping


def allowed_cpus() -> int:
    """Number of CPUs this process may run on (its affinity mask; the core count without one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def free_cpus() -> int:
    """Allowed CPUs not kept busy by other processes (1-minute load average), at least 1."""
    allowed = allowed_cpus()
    try:
        busy = os.getloadavg()[0]
    except (AttributeError, OSError):  # no load average on this platform
        return allowed
    return max(1, min(allowed, allowed - round(busy)))


def default_threads(processes: int = 1) -> int:
    """Intra-op threads per process when ``processes`` processes share the free CPUs."""
    return max(1, free_cpus() // max(1, processes))


def set_thread_defaults(env: MutableMapping[str, str] = os.environ) -> int | None:
    """``OMP_NUM_THREADS = default_threads()`` unless set; the value set (None: left alone).

    Effective for torch only before it is first imported (its OpenMP pool reads it then).
    """
    if env.get("OMP_NUM_THREADS"):
        return None
    n = default_threads()
    env["OMP_NUM_THREADS"] = str(n)
    return n
