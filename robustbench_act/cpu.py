"""CPU thread defaults of the ``actbench`` commands: the cores this process may use, no spinning.

Measured side by side with ``benchmarks/threads.py`` (docs/benchmarks.md): on a 2-core
machine shared with other jobs, OpenMP worker threads that spin while they wait for work
(libgomp's default) made 2-thread runs 2-30x slower than 1 thread (corruptions 32x, small
inference batches 9x, ResNet-20 training 2.3x); with ``OMP_WAIT_POLICY=PASSIVE`` idle
workers sleep at once, and 2 threads ran as fast as 1 (training) or faster (inference).
So the commands set that policy unless the environment already names one, and size
thread pools by the CPUs this process may run on (its affinity mask, e.g. under taskset
or a cpuset), not by the machine's core count.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping


def allowed_cpus() -> int:
    """Number of CPUs this process may run on (its affinity mask; the core count without one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def default_threads(processes: int = 1) -> int:
    """Intra-op threads per process when ``processes`` processes share the allowed CPUs."""
    return max(1, allowed_cpus() // max(1, processes))


def set_openmp_defaults(env: MutableMapping[str, str] = os.environ) -> None:
    """``OMP_WAIT_POLICY=PASSIVE`` unless set; effective only before torch is first imported."""
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
