"""Provenance for every output: versions, git commit, device, command line, times."""

from __future__ import annotations

import datetime as _dt
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import robustbench_act

#: What "dirty" looks at, relative to the package folder: the code, not results or docs.
_SOURCE_PATHS = (".", "../corruptions", "../pyproject.toml")


def git_commit(path: str | Path | None = None) -> str | None:
    """The git commit of the project source (with '-dirty' when modified), or None outside git.

    Dirty means a tracked change to the code (robustbench_act/, corruptions/, pyproject.toml);
    changed result or documentation files do not change what a run computes.
    """
    where = Path(path) if path else Path(robustbench_act.__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=5
        )
        if sha.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", *_SOURCE_PATHS],
            cwd=where, capture_output=True, text=True, timeout=5,
        )  # fmt: skip
        return sha.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def versions() -> dict[str, str]:
    """Versions of Python and of the libraries that change numbers."""
    out = {"python": platform.python_version(), "robustbench_act": robustbench_act.__version__}
    for mod, key in (("torch", "torch"), ("torchvision", "torchvision"), ("timm", "timm"),
                     ("numpy", "numpy"), ("pandas", "pandas"), ("PIL", "pillow"),
                     ("corruptions", "corruptions")):  # fmt: skip
        try:
            out[key] = __import__(mod).__version__
        except Exception:  # a missing optional library is simply not listed
            continue
    return out


def device_description(device: Any = None) -> str:
    """Human-readable device name (GPU model or CPU architecture)."""
    import torch

    dev = torch.device(device) if device is not None else torch.device("cpu")
    if dev.type == "cuda" and torch.cuda.is_available():
        return f"cuda:{torch.cuda.get_device_name(dev)}"
    return f"cpu:{platform.machine()} ({torch.get_num_threads()} threads)"


def numerics() -> dict[str, Any]:
    """Everything besides versions and seeds that changes floating-point results: thread counts
    (reduction order on CPU), the CPU kernel ISA oneDNN/ATen dispatch to, determinism flags."""
    import os

    import torch

    from corruptions.native import kernels as corruption_kernels
    from robustbench_act.layeract import cpu_kernel

    out: dict[str, Any] = {
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "mkldnn": bool(torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled),
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "cudnn_deterministic": bool(torch.backends.cudnn.deterministic),
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
        "cuda_matmul_tf32": bool(torch.backends.cuda.matmul.allow_tf32),
        "cudnn_tf32": bool(torch.backends.cudnn.allow_tf32),
        "layeract_cpu_kernel": cpu_kernel(),
        "corruption_kernels": corruption_kernels(),  # same bits either way; built now, before outputs
    }
    env = {k: os.environ[k] for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY",
                                      "KMP_BLOCKTIME", "CUBLAS_WORKSPACE_CONFIG",
                                      "ACTBENCH_LAYERACT_KERNEL", "CORRUPTIONS_KERNELS") if k in os.environ}  # fmt: skip
    if env:
        out["environment"] = env
    return out


def now_iso() -> str:
    """Current UTC time, ISO 8601."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def base_manifest(*, seed: int | None, config: dict[str, Any], device: Any = None) -> dict[str, Any]:
    """The common manifest block: command, config, seed, versions, git commit, device, start time."""
    return {
        "command": " ".join(["actbench", *sys.argv[1:]]) if sys.argv else "",
        "config": config,
        "seed": seed,
        "versions": versions(),
        "git_commit": git_commit(),
        "device": device_description(device),
        "numerics": numerics(),
        "started": now_iso(),
    }
