"""Wall time of the embedded default (`actbench run` with no arguments), as a user runs it.

Runs the console script in a fresh process per repeat (training 3 seeds x 6 activations on
digits, evaluating all on 19 corruptions x 5 severities with probes), with the thread count
given, into a temporary folder, and prints the wall time of each repeat, the median, and
the time of one seed (``--seeds 0``) side by side in the same rounds for the ratio.

Usage: ``python benchmarks/default_run.py [--threads 2] [--repeats 2] [--markdown]``
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _time(args: list[str], threads: int) -> float:
    exe = Path(sys.executable).with_name("actbench")
    out = Path(tempfile.mkdtemp(prefix="actbench-default-"))
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    t0 = time.perf_counter()
    try:
        subprocess.run([str(exe), "run", "--quiet", "--out", str(out / "run"), *args], check=True, env=env)
        return time.perf_counter() - t0
    finally:
        shutil.rmtree(out, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--markdown", action="store_true", help="print a markdown table")
    a = ap.parse_args()
    rows: dict[str, list[float]] = {"default (3 seeds)": [], "one seed (--seeds 0)": []}
    for _ in range(a.repeats):  # interleaved: drifting load hits both alike
        rows["default (3 seeds)"].append(_time([], a.threads))
        rows["one seed (--seeds 0)"].append(_time(["--seeds", "0"], a.threads))
    base = statistics.median(rows["one seed (--seeds 0)"])
    print(f"# actbench run (embedded default), {a.threads} threads, {a.repeats} repeats, wall seconds")
    if a.markdown:
        print("| run | median s | runs (s) | vs one seed |\n|---|---|---|---|")
    for name, times in rows.items():
        med = statistics.median(times)
        runs = ", ".join(f"{t:.1f}" for t in times)
        if a.markdown:
            print(f"| {name} | {med:.1f} | {runs} | {med / base:.2f} |")
        else:
            print(f"{name:24s} median {med:7.1f} s  ({runs})  x{med / base:.2f}")


if __name__ == "__main__":
    main()
