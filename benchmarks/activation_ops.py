"""Forward and backward time of each activation on ResNet-20's activation shapes, side by side.

Op-level and interleaved (every round runs every activation once; the fastest round is kept),
so this VM's drift, which moves whole training steps by +-10% between setups, mostly cancels.
Each activation is the module ``actbench`` builds (``robustbench_act.activations``; LayerAct
through its autograd Function and the default CPU kernel), run with autograd on the shapes
of ResNet-20's 19 activations at ``--batch-size`` (7 of C=16 at 32x32, 6 of 32 at 16x16, 6 of
64 at 8x8). ``per step`` sums them as one training step would run them; ``step ratio`` is
SiLU's bare training step (timed here, same rounds) over that step plus the activation's
extra time: the step ratio the op times predict, not a timed step (benchmarks/train.py).

Usage: OMP_NUM_THREADS=1 python benchmarks/activation_ops.py --threads 1 --rounds 15 --amp none,bf16 --markdown
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [str(_HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != _HERE] + [str(_HERE)]
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from _harness import add_malloc_arg, print_table, use_malloc  # noqa: E402

#: (channels, side, how many) of ResNet-20's activations
RESNET20_SHAPES = ((16, 32, 7), (32, 16, 6), (64, 8, 6))
DEFAULT_ACTS = "silu,gelu,mish,la_silu,la_hardsilu,la_gelu,la_mish"


def op_seconds(module: torch.nn.Module, x: torch.Tensor, g: torch.Tensor) -> tuple[float, float]:
    """(forward, backward) seconds of one autograd call of ``module`` on ``x``."""
    leaf = x.detach().requires_grad_(True)
    t0 = time.perf_counter()
    y = module(leaf)
    t1 = time.perf_counter()
    y.backward(g)
    return t1 - t0, time.perf_counter() - t1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--activations", default=DEFAULT_ACTS)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--amp", default="none", help="none and/or bf16 (activations on bf16 tensors, the step under bf16 autocast)")
    ap.add_argument("--markdown", action="store_true")
    add_malloc_arg(ap)
    args = ap.parse_args(argv)
    malloc = use_malloc(args.malloc)
    torch.set_num_threads(args.threads)
    names = [a.strip() for a in args.activations.split(",") if a.strip()]
    for amp in [a.strip() for a in args.amp.split(",") if a.strip()]:
        if amp not in ("none", "bf16"):
            ap.error(f"--amp: unknown {amp!r}; use none or bf16")
        table(names, args, torch.bfloat16 if amp == "bf16" else None, malloc)
    return 0


def table(names: list[str], args: argparse.Namespace, amp: torch.dtype | None, malloc: str) -> None:
    """Time every activation and SiLU's step at one precision, interleaved; print the table."""
    from robustbench_act.activations import get_activation
    from robustbench_act.models import build_model

    dtype = amp or torch.float32
    mods = {a: get_activation(a) for a in names}
    gen = torch.Generator().manual_seed(0)
    data = [(torch.randn(args.batch_size, c, s, s, generator=gen).to(dtype),
             torch.randn(args.batch_size, c, s, s, generator=gen).to(dtype), k) for c, s, k in RESNET20_SHAPES]
    model = build_model("resnet20", num_classes=10, activation="silu")
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    xb, yb = torch.randn(args.batch_size, 3, 32, 32, generator=gen), torch.randint(0, 10, (args.batch_size,), generator=gen)

    def silu_step() -> float:
        t = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=amp, enabled=amp is not None):
            loss = F.cross_entropy(model(xb).float(), yb)
        loss.backward()
        opt.step()
        return time.perf_counter() - t

    best = {a: [[float("inf")] * 2 for _ in data] for a in names}
    step = float("inf")
    for r in range(args.rounds + 1):  # round 0 warms up
        for a in names:
            for i, (x, g, _) in enumerate(data):
                f, b = op_seconds(mods[a], x, g)
                if r:
                    best[a][i] = [min(best[a][i][0], f), min(best[a][i][1], b)]
        s = silu_step()
        step = min(step, s) if r else step
    per_step = {a: sum(k * (f + b) for (f, b), (_, _, k) in zip(best[a], data, strict=True)) for a in names}
    base = per_step.get("silu", per_step[names[0]])
    print(f"\n# {args.batch_size}-image batch, ResNet-20 activation shapes, {str(dtype).removeprefix('torch.')}, "
          f"{torch.get_num_threads()} thread(s), malloc {malloc}, best of {args.rounds} interleaved rounds; "
          f"SiLU's bare step {step * 1e3:.1f} ms{' (bf16 autocast)' if amp else ''}")
    headers = ["activation", *(f"fwd+bwd {c}x{s}x{s} ms" for c, s, _ in RESNET20_SHAPES), "per step ms",
               "vs silu per step ms", "step ratio (projected)"]
    rows = [[a, *(f"{(f + b) * 1e3:.2f}" for f, b in best[a]), f"{per_step[a] * 1e3:.1f}",
             f"{(per_step[a] - base) * 1e3:+.1f}", f"{step / (step + per_step[a] - base):.2f}"] for a in names]
    print_table(headers, rows, args.markdown)


if __name__ == "__main__":
    sys.exit(main())
