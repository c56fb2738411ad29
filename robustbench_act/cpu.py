"""CPU thread defaults of the ``actbench`` commands: the cores this process may run on.

The thread count changes floating-point results (reduction order), so the default is a
property of the machine, not of the moment: the CPUs of the process's affinity mask,
split between ``--parallel`` workers, whatever else is running. Measured side by side
with ``benchmarks/threads.py`` (docs/benchmarks.md) on a 2-core machine shared with other
jobs, one thread was often much faster (spinning OpenMP workers lose their cores); on such
a machine set ``OMP_NUM_THREADS=1`` (it always wins, and the manifest records the count).
:func:`free_cpus` (allowed CPUs minus the load average) is there for scripts that prefer
speed over run-to-run identity; no command uses it by default. The wait policy is left
alone (passive workers made bf16 training 4x slower under load).
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
    """Intra-op threads per process when ``processes`` processes share the allowed CPUs."""
    return max(1, allowed_cpus() // max(1, processes))


def set_thread_defaults(env: MutableMapping[str, str] = os.environ) -> int | None:
    """``OMP_NUM_THREADS = default_threads()`` unless set; the value set (None: left alone).

    Effective for torch only before it is first imported (its OpenMP pool reads it then).
    """
    if env.get("OMP_NUM_THREADS"):
        return None
    n = default_threads()
    env["OMP_NUM_THREADS"] = str(n)
    return n


#: Environment variable choosing LayerAct's CPU kernel (robustbench_act/layeract.py).
LAYERACT_KERNEL_ENV = "ACTBENCH_LAYERACT_KERNEL"
#: auto: the per-sample C++ kernel when a C++ compiler is there, else eager; cpp; inductor; eager.
LAYERACT_KERNELS = ("auto", "cpp", "inductor", "eager")


def _requested(env: MutableMapping[str, str], name: str, choices: tuple[str, ...], what: str) -> str:
    """The value of environment variable ``name`` (default auto) if one of ``choices``, else a UserError."""
    from robustbench_act.errors import UserError, closest

    value = env.get(name, "").strip().lower() or "auto"
    if value not in choices:
        near = closest(value, choices)
        hint = f"; closest: {', '.join(near)}" if near else ""
        raise UserError(f"{name}={value!r} is not {what}{hint} (valid: {', '.join(choices)})")
    return value


def requested_layeract_kernel(env: MutableMapping[str, str] = os.environ) -> str:
    """The LayerAct CPU kernel the environment asks for (default auto); bad values raise.

    Torch-free, so the CLI checks it before any command starts writing output.
    """
    return _requested(env, LAYERACT_KERNEL_ENV, LAYERACT_KERNELS, "a LayerAct kernel")


#: Environment variable choosing the corruptions' random-stream CPU kernels (corruptions/native.py).
CORRUPTION_KERNELS_ENV = "CORRUPTIONS_KERNELS"
#: auto: native C++ when a compiler is there, else eager; native; eager (corruptions.native.KERNEL_CHOICES).
CORRUPTION_KERNELS = ("auto", "native", "eager")


def requested_corruption_kernels(env: MutableMapping[str, str] = os.environ) -> str:
    """The corruptions' CPU kernels the environment asks for (default auto); bad values raise.

    Torch-free like :func:`requested_layeract_kernel`; both kernels give the same bits.
    """
    return _requested(env, CORRUPTION_KERNELS_ENV, CORRUPTION_KERNELS, "a corruption kernel choice")


#: /proc/cpuinfo flags of CPUs with bf16 arithmetic (x86 AVX512-BF16 or AMX, Arm's BF16)
_BF16_FLAGS = {"avx512_bf16", "amx_bf16", "bf16"}


def native_bf16(cpuinfo: str | None = None) -> bool | None:
    """Whether this CPU does bf16 arithmetic natively (None: unknown, no /proc/cpuinfo).

    Without it torch emulates bf16 through float32 conversions: on an AVX2 machine a ResNet-20
    step under bf16 autocast ran 11x slower than in float32 (benchmarks/train.py).
    """
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo") as f:
                cpuinfo = f.read()
        except OSError:
            return None
    flags = {w for ln in cpuinfo.splitlines() if ln.startswith(("flags", "Features")) for w in ln.split()}
    return bool(flags & _BF16_FLAGS)


_WARNED: set[str] = set()  # what this process has been warned about already


def warn_if_emulated_bf16(device_type: str) -> None:
    """Warn, once per process, that bf16 autocast is emulated (slow) here: a CPU without
    native bf16 arithmetic."""
    import warnings

    if device_type == "cpu" and "bf16" not in _WARNED and native_bf16() is False:
        _WARNED.add("bf16")
        warnings.warn("this CPU has no native bf16 arithmetic (AVX512-BF16, AMX): bf16 autocast is "
                      "emulated and was 11x slower than float32 on such a machine; --amp none is faster here",
                      stacklevel=3)
