"""Thread settings on a CPU, side by side: intra-op threads and the OpenMP wait policy.

Each configuration runs a workload in a fresh process (the OpenMP runtime reads its
environment once, at start-up), the configurations interleaved over ``--rounds`` rounds
(best wall time kept), so that a machine whose load changes hurts all of them alike:

- ``corruptions``: all 19 corruptions (severity 3) on 256 CIFAR-size photographs;
- ``train`` / ``train-bf16``: ``--steps`` ResNet-20 training steps (batch 256,
  channels_last, SiLU; float32 / bf16 autocast);
- ``eval``: ResNet-20 inference on 20 batches of 64 (small batches: short parallel regions).

Configurations: ``T`` intra-op threads with the runtime's default (spinning) wait policy,
``T/passive`` with ``OMP_WAIT_POLICY=PASSIVE`` (idle threads sleep at once instead of
spinning, which matters when other processes want the cores). T runs over 1 and the
cores this process may use (``os.sched_getaffinity``); the header gives the count the
``actbench`` commands would pick now (``robustbench_act.cpu.default_threads``: the free
allowed cores).

Usage: python benchmarks/threads.py --workloads corruptions,train,eval --rounds 3 --markdown
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(_HERE.parent)]
sys.path.append(str(_HERE))

from _harness import print_table  # noqa: E402

ROOT = _HERE.parent

WORKLOADS = {
    "corruptions": """
import corruptions, torch
from _harness import sample_photos
x = sample_photos(256, 32)
for name in corruptions.names("all"):
    corruptions.apply(x[:8], name, 3)
t = time.perf_counter()
for name in corruptions.names("all"):
    corruptions.apply(x, name, 3)
""",
    "train": """
import torch, torch.nn.functional as F
from robustbench_act.models import build_model
torch.manual_seed(0)
m = build_model("resnet20", num_classes=10, activation="silu").to(memory_format=torch.channels_last)
opt = torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9)
x = torch.randn(256, 3, 32, 32).contiguous(memory_format=torch.channels_last)
y = torch.randint(0, 10, (256,))
def step():
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=BF16):
        loss = F.cross_entropy(m(x).float(), y)
    opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
step()
t = time.perf_counter()
for _ in range(STEPS):
    step()
""",
    "eval": """
import torch
from robustbench_act.models import build_model
m = build_model("resnet20", num_classes=10, activation="silu").eval()
x = torch.randn(64, 3, 32, 32)
with torch.no_grad():
    m(x)
    t = time.perf_counter()
    for _ in range(20):
        m(x)
""",
}


def run_once(workload: str, threads: int, passive: bool, steps: int) -> float:
    """Wall seconds of one workload run in a fresh process."""
    env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{_HERE}", OMP_NUM_THREADS=str(threads))
    env.pop("OMP_WAIT_POLICY", None)
    if passive:
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    body = WORKLOADS[workload.removesuffix("-bf16")]
    code = (f"import time, torch\ntorch.set_num_threads({threads})\n"
            + body.replace("STEPS", str(steps)).replace("BF16", str(workload.endswith("-bf16")))
            + "\nprint(time.perf_counter() - t)\n")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True, cwd=ROOT)
    return float(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    """Time every (workload, configuration) pair, interleaved, and print the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workloads", default="corruptions,train,train-bf16,eval")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=3, help="training steps of the train workload")
    ap.add_argument("--threads", default=None, help="thread counts (default: 1 and all allowed cores)")
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args(argv)
    allowed = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    counts = [int(t) for t in args.threads.split(",")] if args.threads else sorted({1, allowed})
    configs = [(t, p) for t in counts for p in (False, True)]
    workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    best = {(w, c): float("inf") for w in workloads for c in configs}
    for _ in range(args.rounds):
        for w in workloads:
            for c in configs:
                best[w, c] = min(best[w, c], run_once(w, *c, args.steps))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    from robustbench_act.cpu import default_threads

    print(f"# {allowed} cores allowed, load average {load:.1f} at the end (actbench would use "
          f"{default_threads()} thread(s) now); wall seconds, best of {args.rounds} interleaved "
          "rounds; ratio = time / time of 1 thread (default policy)")
    names = [f"{t}{'/passive' if p else ''}" for t, p in configs]
    rows = []
    for w in workloads:
        base = best[w, configs[0]]
        rows.append([w, *(f"{best[w, c]:.2f} s ({best[w, c] / base:.2f})" for c in configs)])
    print_table(["workload", *names], rows, args.markdown)


if __name__ == "__main__":
    main()
