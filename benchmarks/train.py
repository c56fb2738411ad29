"""Training throughput and memory per activation: ResNet-20 on 32x32 images, side by side.

For each activation the same loop runs (uint8 batch -> crop+flip on the device ->
normalise -> forward -> cross-entropy -> backward -> SGD step, i.e. robustbench_act.train's
per-iteration work) on synthetic CIFAR-sized data, after warm-up iterations.  Reported:

- images/s (median over ``--repeats`` timed windows, activations interleaved per repeat so
  drifting machine load hits all of them alike) and the ratio to relu;
- saved MB: bytes autograd keeps for the backward pass of one batch (tensors deduplicated
  by storage) -- the activation memory, the same number on every device;
- peak MB: ``torch.cuda.max_memory_allocated`` on CUDA (model, optimizer, batch and
  activations), or the growth of the process's peak RSS on CPU (first activation measured
  carries the allocator's warm-up; read it with care).

- with ``--epoch``: images/s of a real training epoch (``robustbench_act.train.train``, the
  code ``actbench train`` runs: data feeding, crop+flip, the loss and accuracy sums, the
  ``fast`` recipe's optimizer and schedule) on ``--epoch-images`` synthetic in-memory
  images, one run per repeat after the step windows, and its ratio to the bare step.

Usage: ``python benchmarks/train.py [--device auto] [--batch-size 128] [--steps 10]
[--repeats 3] [--amp bf16] [--channels-last] [--compile] [--epoch] [--markdown]
[--activations relu,silu,...]`` (``--compile`` adds an ``ACT+compile`` row per activation,
timed in the same rounds; ``--markdown`` prints the table of docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

_HERE = Path(__file__).resolve().parent  # this checkout's packages first, then the helpers
sys.path[:] = [str(_HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != _HERE] + [str(_HERE)]
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from _harness import add_malloc_arg, layeract_kernel_env, print_table, split_kernel, use_malloc  # noqa: E402

DEFAULT_ACTS = "relu,silu,gelu,la_silu,la_hardsilu,an_silu"


def saved_bytes(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
                amp: torch.dtype | None = None) -> int:
    """Bytes of the tensors autograd saves for backward in one training forward pass."""
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        try:
            st = t.untyped_storage()
            seen[st.data_ptr()] = max(seen.get(st.data_ptr(), 0), st.nbytes())
        except (RuntimeError, NotImplementedError):
            seen[id(t)] = t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), torch.autocast(
        x.device.type, dtype=amp, enabled=amp is not None
    ):
        loss = F.cross_entropy(model(x).float(), y)
    loss.backward()
    model.zero_grad(set_to_none=True)
    return sum(seen.values())


def parse_args() -> argparse.Namespace:
    """The command-line flags."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--model", default="resnet20")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--steps", type=int, default=10, help="timed iterations per repeat")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--amp", default="none",
                    help="none, bf16 or fp16, or a list timed side by side (none,bf16)")
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--layouts", default=None,
                    help="nchw, nhwc (channels_last) or both side by side: nchw,nhwc "
                         "[default: nhwc with --channels-last, else nchw]")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--activations", default=DEFAULT_ACTS)
    ap.add_argument("--compile", action="store_true",
                    help="also time every activation through torch.compile, side by side with eager")
    ap.add_argument("--epoch", action="store_true",
                    help="also time a real training epoch (robustbench_act.train.train) per activation")
    ap.add_argument("--epoch-images", type=int, default=None,
                    help="images of the --epoch runs (default: 10 batches)")
    ap.add_argument("--markdown", action="store_true", help="print a markdown table")
    ap.add_argument("--stat", choices=("median", "best"), default="median",
                    help="per setup: the median timed window, or the fastest (load only ever slows a window)")
    add_malloc_arg(ap)
    args = ap.parse_args()
    args.malloc = use_malloc(args.malloc)
    args.amps = [a.strip().lower() for a in str(args.amp).split(",") if a.strip()]
    args.layouts = [v.strip().lower() for v in (args.layouts or ("nhwc" if args.channels_last else "nchw")).split(",")]
    if not set(args.layouts) <= {"nchw", "nhwc"}:
        ap.error("--layouts takes nchw and/or nhwc")
    bad = [a for a in args.amps if a not in AMPS]
    if bad:
        ap.error(f"--amp: unknown {bad}; use {', '.join(AMPS)}")
    return args


AMPS = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def main() -> None:
    """Time every (activation, amp[, compile]) setup side by side and print the table."""
    args = parse_args()
    from robustbench_act.models import build_model
    from robustbench_act.train import _crop_flip, resolve_device

    if args.threads:
        torch.set_num_threads(args.threads)
    dev = resolve_device(args.device)
    acts = [a.strip() for a in args.activations.split(",") if a.strip()]
    b = args.batch_size
    gen = torch.Generator().manual_seed(0)
    pool = torch.randint(0, 256, (8 * b, 3, 32, 32), dtype=torch.uint8, generator=gen).to(dev)
    labels = torch.randint(0, 10, (8 * b,), generator=gen).to(dev)
    mean = torch.tensor([0.49, 0.48, 0.45], device=dev).view(1, 3, 1, 1)
    std = torch.tensor([0.25, 0.24, 0.26], device=dev).view(1, 3, 1, 1)
    formats = {"nchw": torch.contiguous_format, "nhwc": torch.channels_last}

    def batch(k: int, mf: torch.memory_format) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.randint(0, len(pool), (b,), generator=gen).to(dev)
        off = torch.randint(0, 9, (b, 2), generator=gen)
        flip = torch.rand(b, generator=gen) < 0.5
        x = _crop_flip(pool[idx], off, flip, 4)
        x = ((x.float() / 255.0 - mean) / std).contiguous(memory_format=mf)
        return x, labels[idx]

    setups = {}  # label -> (model, optimizer, autocast dtype, activation, amp, compiled, layout)
    kernels: dict[int, str | None] = {}  # id(model) -> its LayerAct CPU kernel (None: the default)
    for layout in args.layouts:
        mf = formats[layout]
        for amp in args.amps:
            for a in acts:
                for compiled in (False, True) if args.compile else (False,):
                    torch.manual_seed(0)
                    spec, kernel = split_kernel(a)  # "la_silu[cpp]": that LayerAct CPU kernel
                    m = build_model(args.model, num_classes=10, activation=spec).to(dev).to(memory_format=mf)
                    kernels[id(m)] = kernel
                    opt = torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
                    label = (a + ("+compile" if compiled else "") + ("" if amp == "none" else f"+{amp}")
                             + (f"+{layout}" if len(args.layouts) > 1 else ""))
                    setups[label] = (torch.compile(m) if compiled else m, opt, AMPS[amp], a, amp,
                                     compiled, layout)
    names = list(setups)

    def step(m: torch.nn.Module, opt: torch.optim.Optimizer, amp: torch.dtype | None, k: int,
             layout: str = "nchw") -> None:
        x, y = batch(k, formats[layout])
        with layeract_kernel_env(kernels.get(id(getattr(m, "_orig_mod", m)))):
            with torch.autocast(dev.type, dtype=amp) if amp else torch.autocast(dev.type, enabled=False):
                loss = F.cross_entropy(m(x).float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    rates: dict[str, list[float]] = {a: [] for a in names}
    saved, peak = warm_up(args, dev, setups, step, lambda a: batch(0, formats[setups[a][6]]), sync)
    epoch_rates: dict[str, list[float]] = {a: [] for a in names if not setups[a][5]}
    for _ in range(args.repeats):
        for a in names:
            m, opt, amp = setups[a][:3]
            sync()
            t = time.perf_counter()
            for k in range(args.steps):
                step(m, opt, amp, k, setups[a][6])
            sync()
            rates[a].append(args.steps * b / (time.perf_counter() - t))
        if args.epoch:
            for a in epoch_rates:
                epoch_rates[a].append(epoch_rate(args, *setups[a][3:5], setups[a][6], dev, pool, labels))
    report(args, dev, setups, rates, saved, peak, epoch_rates)


def warm_up(args: argparse.Namespace, dev: torch.device, setups: dict, step: Callable,
            first_batch: Callable, sync: Callable) -> tuple[dict[str, float], dict[str, float]]:
    """Warm-up steps (and compilation) of every setup, one at a time; (saved MB, peak MB)."""
    saved: dict[str, float] = {}
    peak: dict[str, float] = {}
    for a, (m, opt, amp, _, _, compiled, layout) in setups.items():
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        for k in range(args.warmup):
            step(m, opt, amp, k, layout)
        sync()
        if dev.type == "cuda":
            peak[a] = torch.cuda.max_memory_allocated(dev) / 2**20
        else:
            peak[a] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024
        if not compiled:  # saved-tensor hooks see eager autograd only
            x, y = first_batch(a)
            saved[a] = saved_bytes(m, x, y, amp) / 2**20
    return saved, peak


def report(args: argparse.Namespace, dev: torch.device, setups: dict, rates: dict, saved: dict,
           peak: dict, epoch_rates: dict) -> None:
    """Print the table: each setup's rate (median or best, --stat), ratios to the first setup and to the first activation at that amp."""
    from robustbench_act.manifest import device_description

    names = list(setups)
    print(f"# {args.model} training step, batch {args.batch_size}, 32x32, device "
          f"{device_description(dev)}, amp {','.join(args.amps)}, layouts {','.join(args.layouts)}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, OMP_WAIT_POLICY "
          f"{os.environ.get('OMP_WAIT_POLICY', 'unset')}, malloc {args.malloc}, {args.steps} steps x "
          f"{args.repeats} repeats ({args.stat})")  # fmt: skip
    pick = max if args.stat == "best" else statistics.median  # one statistic for steps and epochs
    rate = {a: pick(rates[a]) for a in names}
    first_at = {}  # (amp, layout) -> label of the first activation there
    for a in names:
        first_at.setdefault((setups[a][4], setups[a][6]), a)
    peak_name = "peak CUDA MB" if dev.type == "cuda" else "peak RSS growth MB"
    headers = ["setup", "images/s", f"vs {names[0]}", "vs first activation, same amp and layout",
               "kept for backward MB", peak_name]
    if args.epoch:
        headers += ["epoch images/s", "epoch / step"]
    rows = []
    for a in names:
        r = rate[a]
        row = [a, f"{r:.0f}", f"{r / rate[names[0]]:.2f}", f"{r / rate[first_at[setups[a][4], setups[a][6]]]:.2f}",
               f"{saved[a]:.1f}" if a in saved else "-", f"{peak[a]:.1f}"]
        if args.epoch:
            e = pick(epoch_rates[a]) if epoch_rates.get(a) else float("nan")
            row += [f"{e:.0f}", f"{e / r:.2f}"]
        rows.append(row)
    print_table(headers, rows, args.markdown)
    sys.stdout.flush()


def epoch_rate(args: argparse.Namespace, act: str, amp: str, layout: str, dev: torch.device,
               pool: torch.Tensor, labels: torch.Tensor) -> float:
    """Images/s of one real ``train`` epoch (fast recipe) on the synthetic pool."""
    from robustbench_act.data import ImageDataset
    from robustbench_act.models import build_model
    from robustbench_act.train import make_config, train

    n = args.epoch_images or 10 * args.batch_size
    reps = -(-n // len(pool))
    ds = ImageDataset(name="synthetic", classes=[str(i) for i in range(10)],
                      mean=(0.49, 0.48, 0.45), std=(0.25, 0.24, 0.26),
                      images=pool.cpu().repeat(reps, 1, 1, 1)[:n], labels=labels.cpu().repeat(reps)[:n])
    cfg = make_config("fast", epochs=1, batch_size=args.batch_size, val_fraction=0.0,
                      device=str(dev), amp=None if amp == "none" else amp,
                      channels_last=layout == "nhwc")
    torch.manual_seed(0)
    spec, kernel = split_kernel(act)
    model = build_model(args.model, num_classes=10, activation=spec)
    with layeract_kernel_env(kernel):
        result = train(model, ds, config=cfg, progress=False)
    return float(result.history["images_per_s"].iloc[-1])


if __name__ == "__main__":
    main()
