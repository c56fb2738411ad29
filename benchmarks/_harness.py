"""Shared pieces of the benchmark scripts: inputs, clocks, interleaved timing, tables.

The scripts keep torch's thread defaults unless told (``--threads``, ``OMP_NUM_THREADS``,
``OMP_WAIT_POLICY``); ``benchmarks/threads.py`` compares those settings.

Timing rounds interleave every contender (ours, the reference, per corruption), so that a
machine whose speed drifts hurts all of them alike; each contender keeps its best round.
On a loaded machine, ``--clock cpu`` (this process's CPU time) is steadier than the wall
clock for single-threaded runs; it counts every thread's CPU time, so it is wrong for
multi-threaded ones (the scripts refuse that combination).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}


def sample_photos(n: int, size: int, seed: int = 0) -> torch.Tensor:
    """``n`` uint8 RGB crops (n, 3, size, size) of the two scikit-learn sample photographs."""
    from PIL import Image

    folder = Path(importlib.util.find_spec("sklearn").origin).parent / "datasets" / "images"
    photos = [np.array(Image.open(folder / f).convert("RGB")) for f in ("china.jpg", "flower.jpg")]
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        p = photos[i % 2]
        side = int(rng.integers(min(p.shape[:2]) // 3, min(p.shape[:2])))
        top = int(rng.integers(0, p.shape[0] - side + 1))
        left = int(rng.integers(0, p.shape[1] - side + 1))
        crop = Image.fromarray(p[top : top + side, left : left + side]).resize(
            (size, size), Image.BILINEAR
        )
        out.append(np.array(crop))
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).contiguous()


def check_clock(clock: str, threads: int) -> Callable[[], float]:
    """The clock function; the CPU clock only for single-threaded runs."""
    if clock == "cpu" and threads != 1:
        raise SystemExit("--clock cpu sums the CPU time of all threads: use it with --threads 1")
    return CLOCKS[clock]


def interleaved(
    tasks: dict[str, Callable[[], object]], rounds: int, clock: Callable[[], float],
    sync: Callable[[], None] = lambda: None,
) -> dict[str, float]:
    """Best seconds per task over ``rounds`` rounds, every round running each task once."""
    best = dict.fromkeys(tasks, math.inf)
    for _ in range(rounds):
        for key, fn in tasks.items():
            sync()
            t0 = clock()
            fn()
            sync()
            best[key] = min(best[key], clock() - t0)
    return best


def ratio(a: float, b: float) -> str:
    """``a / b`` formatted like 2.3x (or - when undefined)."""
    return f"{a / b:.2f}x" if b and math.isfinite(a) and math.isfinite(b) else "-"


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]], markdown: bool) -> None:
    """Rows as a markdown table or as aligned plain text."""
    cells = [[str(c) for c in headers]] + [[str(c) for c in r] for r in rows]
    if markdown:
        print("| " + " | ".join(cells[0]) + " |")
        print("|" + "|".join("---" for _ in headers) + "|")
        for r in cells[1:]:
            print("| " + " | ".join(r) + " |")
        return
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for r in cells:
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))


#: activation-name suffixes that run a LayerAct on one named CPU kernel ("la_silu[eager]")
LAYERACT_KERNEL_SUFFIXES = ("eager", "inductor", "cpp")


def split_kernel(name: str) -> tuple[str, str | None]:
    """("la_silu", "eager") for "la_silu[eager]"; (name, None) without a kernel suffix."""
    for kernel in LAYERACT_KERNEL_SUFFIXES:
        if name.endswith(f"[{kernel}]"):
            return name.removesuffix(f"[{kernel}]"), kernel
    return name, None


@contextlib.contextmanager
def layeract_kernel_env(kernel: str | None) -> Iterator[None]:
    """ACTBENCH_LAYERACT_KERNEL=kernel inside the block (LayerAct reads it per call); None: as is."""
    before = os.environ.get("ACTBENCH_LAYERACT_KERNEL")
    if kernel is not None:
        os.environ["ACTBENCH_LAYERACT_KERNEL"] = kernel
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("ACTBENCH_LAYERACT_KERNEL", None)
        else:
            os.environ["ACTBENCH_LAYERACT_KERNEL"] = before


def with_layeract_kernel(kernel: str | None, fn: Callable[..., object]) -> Callable[..., object]:
    """``fn`` run with ACTBENCH_LAYERACT_KERNEL=kernel (read per call); ``fn`` itself for None."""
    if kernel is None:
        return fn

    def run(*args: object, **kwargs: object) -> object:
        with layeract_kernel_env(kernel):
            return fn(*args, **kwargs)

    return run


#: the random-stream kernels a corruption benchmark can time ours with (one column each)
STREAM_KERNELS = ("native", "eager", "compiled")


def parse_stream_kernels(text: str) -> list[str]:
    """"native,eager" -> ["native", "eager"]; "auto" is this process's default (native or eager)."""
    import corruptions.native

    kernels = [k.strip().lower() for k in text.split(",") if k.strip()]
    bad = [k for k in kernels if k not in (*STREAM_KERNELS, "auto")]
    if bad or not kernels:
        raise SystemExit(f"--kernels: unknown {', '.join(bad) or 'empty list'} (valid: auto, {', '.join(STREAM_KERNELS)})")
    return [corruptions.native.kernels() if k == "auto" else k for k in kernels]


def use_stream_kernels(kernel: str) -> None:
    """Make ``kernel`` (native, eager, compiled = eager kernels with the torch.compile'd hash)
    the one corruptions draws with."""
    import corruptions
    import corruptions.native

    corruptions.native.set_kernels("eager" if kernel == "compiled" else kernel)
    corruptions.set_compiled_hash(kernel == "compiled")


MALLOC_CHOICES = ("keep", "glibc")


def add_malloc_arg(ap: argparse.ArgumentParser) -> None:
    """``--malloc keep|glibc``: the allocator policy of the benchmark process (both sides)."""
    ap.add_argument("--malloc", choices=MALLOC_CHOICES, default="keep",
                    help="keep: freed memory is reused, as the actbench commands set it (robustbench_act/memory.py); "
                         "glibc: glibc's defaults, what a plain Python process gets")


def use_malloc(choice: str) -> str:
    """Apply ``--malloc``; the label for the table header ("glibc" where keeping is not possible)."""
    from robustbench_act.memory import keep_freed_memory

    return "keep" if choice == "keep" and keep_freed_memory() else "glibc"
