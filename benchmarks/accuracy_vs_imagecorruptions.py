"""Top-1 accuracy of trained checkpoints on our corruptions vs the imagecorruptions package.

The same first N test images (the dataset's own class-balanced round-robin order) are
corrupted twice per corruption and severity: (a) by ours through the imagecorruptions
drop-in ``corruptions.corrupt`` (``preset="imagenet"``, the ImageNet-C parameters that
imagecorruptions applies at every image size; ``seed=--seed`` and ``index=i`` make it
deterministic) and (b) by ``imagecorruptions.corrupt`` one image at a time, with numpy's
global generator seeded per (corruption, severity) so the run is reproducible. Every
checkpoint then sees both sets with the preprocessing ``actbench run`` gives it (the
checkpoint's mean/std and input size, :func:`robustbench_act.preprocess.resolve_input_config`).

Printed per corruption: top-1 accuracy (mean over the severities) on ours, on
imagecorruptions, and the difference ours - theirs in points, then the largest absolute
difference over the corruptions. The corruptions imagecorruptions crashes on with the
installed numpy / scikit-image (glass_blur, gaussian_blur and fog on numpy 2) are probed
once, listed and skipped. Per-severity accuracies go to stderr as progress.
Its import needs ``pkg_resources``: benchmarks/vs_imagecorruptions.py provides the stand-in.

Usage: nice -n 10 env OMP_NUM_THREADS=1 python benchmarks/accuracy_vs_imagecorruptions.py \\
    --checkpoint results/cifar10jpeg-resnet20/resnet20-relu-conventional-s0/train \\
    --checkpoint results/cifar10jpeg-resnet20/resnet20-la_hardsilu-conventional-s0/train \\
    --n 2000 --markdown
Quick check: add ``--n 64 --corruptions gaussian_noise,frost``.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [str(_HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != _HERE] + [
    str(_HERE)
]
import numpy as np  # noqa: E402
import torch  # noqa: E402
from _harness import print_table  # noqa: E402
from torch import nn  # noqa: E402
from vs_imagecorruptions import load_imagecorruptions  # noqa: E402

import corruptions  # noqa: E402
from robustbench_act.checkpoint import load_checkpoint  # noqa: E402
from robustbench_act.data import dataset_tensors, load_dataset  # noqa: E402
from robustbench_act.preprocess import resolve_input_config  # noqa: E402

DEFAULT_CHECKPOINTS = (
    "results/cifar10jpeg-resnet20/resnet20-relu-conventional-s0/train",
    "results/cifar10jpeg-resnet20/resnet20-la_hardsilu-conventional-s0/train",
)
Model = tuple[str, nn.Module, nn.Module]  # (label, preprocessing, network)


def load_models(paths: Sequence[str], dataset: object) -> list[Model]:
    """(label, preprocessing module, network in eval mode) per checkpoint."""
    models = []
    for path in paths:
        net, meta = load_checkpoint(path)
        pre = resolve_input_config(net, meta, dataset).module().eval()
        label = Path(path).parent.name if Path(path).name == "train" else Path(path).name
        models.append((label, pre, net))
    return models


@torch.no_grad()
def top1(model: Model, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> float:
    """Top-1 accuracy of one model on uint8 images (N, C, H, W)."""
    _, pre, net = model
    correct = 0
    for i in range(0, len(x), batch_size):
        logits = net(pre(x[i : i + batch_size]))
        correct += int((logits.argmax(1) == y[i : i + batch_size]).sum())
    return correct / len(x)


def ours(x: torch.Tensor, name: str, severity: int, seed: int) -> torch.Tensor:
    """Our corruption of every image through the drop-in, deterministic per image index."""
    imgs = x.permute(0, 2, 3, 1).numpy()
    out = [corruptions.corrupt(img, severity, name, preset="imagenet", seed=seed, index=i)
           for i, img in enumerate(imgs)]  # fmt: skip
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).contiguous()


def theirs(corrupt: Callable, x: torch.Tensor, name: str, severity: int, seed: int) -> torch.Tensor:
    """imagecorruptions' corruption of every image, numpy's global RNG seeded per cell."""
    np.random.seed([seed, corruptions.names("all").index(name), severity])
    imgs = x.permute(0, 2, 3, 1).numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = [corrupt(img, corruption_name=name, severity=severity) for img in imgs]
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).contiguous()


def runnable(corrupt: Callable, x: torch.Tensor, names: Sequence[str]) -> tuple[list[str], list[str]]:
    """The corruptions imagecorruptions runs, and 'name (error)' for those it crashes on."""
    ok, crashed = [], []
    for name in names:
        try:
            theirs(corrupt, x[:1], name, 1, 0)
        except Exception as exc:  # the package's own failures on current numpy / skimage
            crashed.append(f"{name} ({type(exc).__name__}: {str(exc)[:60]})")
        else:
            ok.append(name)
    return ok, crashed


def measure(corrupt: Callable, models: Sequence[Model], x: torch.Tensor, y: torch.Tensor,
            names: Sequence[str], args: argparse.Namespace) -> dict[tuple[str, str], np.ndarray]:  # fmt: skip
    """acc[(model, corruption)] = array (severities, 2) of top-1 on ours / theirs."""
    acc = {(m[0], n): np.zeros((len(args.severities), 2)) for m in models for n in names}
    for name in names:
        for k, sev in enumerate(args.severities):
            sets = (ours(x, name, sev, args.seed), theirs(corrupt, x, name, sev, args.seed))
            for m in models:
                acc[(m[0], name)][k] = [top1(m, s, y, args.batch_size) for s in sets]
            cells = "  ".join(f"{m[0]} {acc[(m[0], name)][k, 0]:.4f}/{acc[(m[0], name)][k, 1]:.4f}"
                              for m in models)  # fmt: skip
            print(f"{name} s{sev}: ours/theirs {cells}", file=sys.stderr, flush=True)
    return acc


def report(acc: dict[tuple[str, str], np.ndarray], labels: Sequence[str], names: Sequence[str],
           markdown: bool) -> None:  # fmt: skip
    """The per-corruption table (percent, mean over severities) and the max |difference|."""
    headers = ["corruption"]
    for lab in labels:
        headers += [f"{lab} ours", f"{lab} imagecorruptions", f"{lab} ours - theirs"]
    rows, means = [], {lab: acc_mean(acc, lab, names) for lab in labels}
    for name in [*names, "mean"]:
        row = [name]
        for lab in labels:
            o, t = means[lab][name]
            row += [f"{100 * o:.2f}", f"{100 * t:.2f}", f"{100 * (o - t):+.2f}"]
        rows.append(row)
    print_table(headers, rows, markdown)
    print()
    for lab in labels:
        diffs = {n: 100 * (means[lab][n][0] - means[lab][n][1]) for n in names}
        worst = max(diffs, key=lambda n: abs(diffs[n]))
        print(f"{lab}: max |ours - theirs| = {abs(diffs[worst]):.2f} points ({worst})")


def acc_mean(acc: dict[tuple[str, str], np.ndarray], label: str,
             names: Sequence[str]) -> dict[str, tuple[float, float]]:  # fmt: skip
    """(ours, theirs) mean over severities per corruption, plus 'mean' over corruptions."""
    out = {n: tuple(float(v) for v in acc[(label, n)].mean(0)) for n in names}
    out["mean"] = tuple(float(np.mean([out[n][j] for n in names])) for j in (0, 1))
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command-line flags."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", action="append", help="checkpoint folder (repeatable; "
                    "default: the relu and la_hardsilu resnet20 cells)")  # fmt: skip
    ap.add_argument("--dataset", default="imagefolder:data/cifar10-jpeg-q75", help="dataset spec (test split)")
    ap.add_argument("--n", type=int, default=2000, help="first N test images")
    ap.add_argument("--severities", default="1,2,3,4,5", help="comma-separated severities")
    ap.add_argument("--corruptions", default="all", help="all, a subset name, or a,b,c")
    ap.add_argument("--seed", type=int, default=0, help="seed of both sides' randomness")
    ap.add_argument("--batch-size", type=int, default=500, help="evaluation batch size")
    ap.add_argument("--markdown", action="store_true", help="print a markdown table")
    args = ap.parse_args(argv)
    args.checkpoint = args.checkpoint or list(DEFAULT_CHECKPOINTS)
    args.severities = [int(s) for s in args.severities.split(",")]
    return args


def main(argv: list[str] | None = None) -> int:
    """Load, measure, print."""
    args = parse_args(argv)
    corrupt = load_imagecorruptions()
    if corrupt is None:
        print("imagecorruptions is not installed: nothing to compare (pip install imagecorruptions)")
        return 0
    t0 = time.perf_counter()
    ds = load_dataset(args.dataset, split="test", limit=args.n)
    x, y = dataset_tensors(ds)
    models = load_models(args.checkpoint, ds)
    names, crashed = runnable(corrupt, x, corruptions.names(args.corruptions))
    print(f"# {args.dataset} test, first {len(x)} images, {x.shape[-1]}x{x.shape[-2]} px; ours: "
          f"corruptions.corrupt preset imagenet seed {args.seed}; severities {args.severities}")
    for m in models:
        print(f"clean top-1 {m[0]}: {top1(m, x, y, args.batch_size):.4f}")
    acc = measure(corrupt, models, x, y, names, args)
    print()
    report(acc, [m[0] for m in models], names, args.markdown)
    if crashed:
        print(f"\nimagecorruptions crashes on (skipped): {'; '.join(crashed)}")
    print(f"\nwall time {time.perf_counter() - t0:.0f} s, {torch.get_num_threads()} torch thread(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
