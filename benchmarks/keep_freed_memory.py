"""glibc's malloc defaults vs keeping freed memory (robustbench_act/memory.py), side by side.

Each configuration runs one real ``actbench`` command in a fresh process (the policy is set
at start-up), the two interleaved over ``--rounds`` rounds (best kept, per column), so a
machine whose load changes hurts both alike. The command evaluates a committed CIFAR
checkpoint on the first ``--limit`` test images, clean and all 19 corruptions at severity 3,
without probes, on one thread: the corruption kernels and the model's forward passes
allocate and free the same multi-megabyte buffers batch after batch. ``user`` and ``sys``
are the child's CPU seconds; ``sys`` is mostly the kernel zero-filling fresh pages.

Usage: python benchmarks/keep_freed_memory.py --data data/cifar10-jpeg-q75 --rounds 2 --markdown
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent
CHECKPOINT = _ROOT / "results/cifar10jpeg-resnet20/resnet20-relu-conventional-s0/train"
CONFIGS = {"glibc defaults": "0", "keep freed memory": "1"}


def run_once(data: str, limit: int, keep: str) -> tuple[float, float, float]:
    """(wall, user, sys) seconds of one evaluation in a fresh process."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACTBENCH_KEEP_FREED_MEMORY": keep}
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "robustbench_act", "run", "--checkpoint", str(CHECKPOINT), "--dataset",
               f"imagefolder:{data}", "--corruptions", "all", "--severities", "3", "--limit", str(limit),
               "--probes", "none", "--device", "cpu", "--out", str(Path(tmp) / "run"), "--quiet"]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run(cmd, env=env, check=True, capture_output=True)
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="data/cifar10-jpeg-q75", help="CIFAR-10 ImageFolder root (train/ and test/)")
    ap.add_argument("--limit", type=int, default=1000, help="test images evaluated")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args(argv)
    best: dict[str, list[float]] = {name: [float("inf")] * 3 for name in CONFIGS}
    for _ in range(args.rounds):
        for name, keep in CONFIGS.items():
            got = run_once(args.data, args.limit, keep)
            best[name] = [min(a, b) for a, b in zip(best[name], got, strict=True)]
            print(f"{name}: wall {got[0]:.1f} s, user {got[1]:.1f} s, sys {got[2]:.1f} s", flush=True)
    base = best["glibc defaults"][0]
    print(f"\n# actbench run, ResNet-20 relu checkpoint, {args.limit} CIFAR test images, clean + 19 corruptions "
          f"at severity 3, no probes, 1 thread; best of {args.rounds} per column")
    if args.markdown:
        print("| malloc policy | wall s | user s | sys s | speed-up (wall) |\n|---|---|---|---|---|")
    for name, (wall, user, sys_s) in best.items():
        row = (name, f"{wall:.1f}", f"{user:.1f}", f"{sys_s:.1f}", f"{base / wall:.2f}x")
        print("| " + " | ".join(row) + " |" if args.markdown else "  ".join(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
