"""Throughput of a full corruption sweep vs plain inference of the same model on the same images.

    python benchmarks/evaluate.py                       # cnn_small on digits (16 px), CPU/CUDA auto
    python benchmarks/evaluate.py --model cifar_resnet20 --dataset synthetic32 --n 1024

Measured side by side in one process, same images, same batch size:

- ``plain``: the model's forward over the clean images once per cell (what inference of
  clean + every corruption cell would cost if the corrupted images were free);
- ``corrupt``: ``corruptions.apply`` alone for every (corruption, severity) cell;
- ``sweep none`` / ``sweep fluct`` / ``sweep all``: ``evaluate.evaluate_tables`` end to end
  (corrupt once per batch, forward every model, metrics; probes off / fluctuation / all).

Images/s counts every image of every cell (clean + 19 x 5). Ratios are vs ``plain``.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import torch


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _dataset(name: str, n: int) -> Any:
    from robustbench_act.data import ImageDataset, load_dataset

    if name == "digits":
        return load_dataset("digits", split="test", limit=n)
    if name.startswith("synthetic"):
        size = int(name[len("synthetic"):] or 32)
        g = torch.Generator().manual_seed(0)
        x = torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8)
        y = torch.randint(0, 10, (n,), generator=g)
        return ImageDataset(name=name, classes=[str(i) for i in range(10)], mean=(0.5,) * 3,
                            std=(0.25,) * 3, images=x, labels=y, split="test")
    return load_dataset(name, split="test", limit=n)


def main() -> None:
    """Run the benchmark and print a table of images/s and ratios."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="cnn_small")
    ap.add_argument("--activations", default="relu", help="comma-separated; evaluated together")
    ap.add_argument("--dataset", default="digits", help="digits, syntheticN (N px RGB) or a data spec")
    ap.add_argument("--n", type=int, default=359, help="test images")
    ap.add_argument("--corruptions", default="all")
    ap.add_argument("--severities", default="1-5")
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--amp", default=None)
    ap.add_argument("--repeats", type=int, default=1, help="best of N timings")
    args = ap.parse_args()

    import corruptions
    from robustbench_act.evaluate import Normalize, evaluate_tables
    from robustbench_act.models import build_model
    from robustbench_act.pipeline import (
        parse_corruptions,
        parse_list,
        parse_severities,
        resolve_device,
    )

    dev = resolve_device(args.device)
    ds = _dataset(args.dataset, args.n)
    corrs = parse_corruptions(args.corruptions)
    sevs = parse_severities(args.severities)
    acts = parse_list(args.activations)
    models = {}
    for a in acts:
        torch.manual_seed(0)
        models[a] = build_model(args.model, num_classes=ds.num_classes, activation=a,
                                in_chans=ds.channels).to(dev).eval()
    cells = 1 + len(corrs) * len(sevs)
    n = len(ds)
    images = cells * n * len(models)
    x_all = ds.images.to(dev)
    norm = Normalize(ds.mean, ds.std).to(dev)
    bs = args.batch_size

    def best(fn: Any) -> float:
        times = []
        for _ in range(args.repeats):
            _sync(dev)
            t = time.perf_counter()
            fn()
            _sync(dev)
            times.append(time.perf_counter() - t)
        return min(times)

    def plain() -> None:
        with torch.inference_mode():
            for _ in range(cells):
                for m in models.values():
                    for b in range(0, n, bs):
                        m(norm(x_all[b:b + bs]))

    def corrupt_only() -> None:
        for c in corrs:
            for s in sevs:
                for b in range(0, n, bs):
                    corruptions.apply(x_all[b:b + bs], c, s, seed=0, indices=torch.arange(b, min(b + bs, n)))

    def sweep(level: str) -> None:
        evaluate_tables(models, ds, corruptions=corrs, severities=sevs, probes=level, batch_size=bs,
                        device=dev, amp=args.amp, keep_tables=False, on_cell_done=lambda c: None)

    plain()  # warm-up (allocator, kernels)
    rows = [("plain", best(plain))]
    rows.append(("corrupt", best(corrupt_only)))
    for level in ("none", "fluctuation", "all"):
        rows.append((f"sweep {level}", best(lambda level=level: sweep(level))))
    base = rows[0][1]
    desc = (f"{args.model} x {len(models)} ({','.join(acts)}), {args.dataset} {n} images "
            f"{ds.channels}x{ds.image_size[0]}x{ds.image_size[1]}, {len(corrs)} corruptions x "
            f"{len(sevs)} severities + clean = {cells} cells, batch {bs}, device {dev}"
            f"{'' if dev.type != 'cpu' else f' ({torch.get_num_threads()} threads)'}")
    print(desc)
    print(f"{'what':16s} {'seconds':>8s} {'images/s':>10s} {'x plain time':>13s}")
    for name, t in rows:
        count = images if name != "corrupt" else (cells - 1) * n
        print(f"{name:16s} {t:8.2f} {count / t:10.0f} {t / base:13.2f}")


if __name__ == "__main__":
    main()
