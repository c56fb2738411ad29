"""How closely CUDA reproduces the CPU output of every corruption (needs a CUDA device).

For each corruption and severity, on the scikit-learn sample photographs at ``--size``
pixels, prints the share of uint8 values that differ between ``corruptions.apply`` on CPU
and on CUDA, the mean absolute difference and the largest one (grey levels).
``tests/test_cuda.py`` asserts the documented bound (<= 1 % of values, <= 0.1 mean).

Usage: python benchmarks/cuda_tolerance.py --size 32 --n 256
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

import corruptions  # noqa: E402
from benchmarks.corruptions import sample_photos  # noqa: E402


def main() -> None:
    """Print one line per (corruption, severity) and the worst case per corruption."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--corruptions", default="all")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("error: no CUDA device")
    x = sample_photos(args.n, args.size)
    print(f"{args.n} photos, {args.size} px, {torch.cuda.get_device_name()}, torch {torch.__version__}")
    print(f"{'corruption':<20}{'sev':>4}{'differ %':>10}{'mean|d|':>10}{'max|d|':>8}")
    worst: dict[str, tuple[float, float]] = {}
    for name in corruptions.names(args.corruptions):
        for severity in range(1, 6):
            cpu = corruptions.apply(x, name, severity, seed=args.seed)
            gpu = corruptions.apply(x.cuda(), name, severity, seed=args.seed).cpu()
            d = (cpu.int() - gpu.int()).abs()
            frac, mad, mx = float((d > 0).float().mean()), float(d.float().mean()), int(d.max())
            w = worst.get(name, (0.0, 0.0))
            worst[name] = (max(w[0], frac), max(w[1], mad))
            print(f"{name:<20}{severity:>4}{100 * frac:>10.4f}{mad:>10.4f}{mx:>8d}", flush=True)
    print("worst per corruption (differ %, mean|d|):")
    for name, (frac, mad) in worst.items():
        print(f"  {name:<20}{100 * frac:>9.4f}{mad:>9.4f}")


if __name__ == "__main__":
    main()
