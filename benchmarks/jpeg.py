"""The JPEG round trip's paths side by side: the native kernel vs the codecs it reproduces.

On the same uint8 photographs (crops of scikit-learn's sample images), at the corruption's
qualities, one batch per size, every path interleaved round by round:

- native: :mod:`corruptions.native_jpeg` (libjpeg-turbo's integer pipeline without the
  entropy coding), what ``jpeg_roundtrip`` takes where its probe passes;
- torchvision: torchvision's libjpeg-turbo ops per image (the previous fast path);
- pillow: Pillow's encoder and decoder without ``save``/``open`` (the "direct" path);
- save/open: ``Image.save(format='JPEG')`` + ``Image.open`` per image, what the reference
  scripts and imagecorruptions run.

Before timing, every path's pixels are compared with save/open's (a difference stops the
script). Prints images/s per path and each path's speed over save/open and over the
fastest codec path.

Usage: python benchmarks/jpeg.py --sizes 32,224 --n 1000,32 --threads 1 --clock cpu --repeat 5 --markdown
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [str(_HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != _HERE] + [
    str(_HERE)
]
import _harness as harness  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from corruptions import imageio, native  # noqa: E402

#: the corruption's qualities (severities 1..5) at each preset's image size
QUALITIES = {32: [80, 65, 58, 50, 40], 224: [25, 18, 15, 10, 7]}


def _per_image(fn, levels: torch.Tensor, quality: int) -> torch.Tensor:
    """``fn`` ((H, W, C) uint8 bytes -> pixels) on every image of a uint8 (N, C, H, W) batch."""
    arrs = np.ascontiguousarray(levels.numpy().transpose(0, 2, 3, 1))
    n, h, w, c = arrs.shape
    out = np.stack([np.frombuffer(fn(a.tobytes(), (w, h), quality), np.uint8).reshape(h, w, c) for a in arrs])
    return torch.from_numpy(out.transpose(0, 3, 1, 2).copy())


def paths(levels: torch.Tensor) -> dict[str, object]:
    """Round-trip functions (batch, quality) -> batch, by path name; those unavailable here left out."""
    mode = imageio.MODES[levels.shape[1]]
    out = {}
    if native.active(torch.device("cpu")):
        out["native"] = lambda x, q: native.jpeg_roundtrip(x, q)
    if imageio._torchvision_jpeg_ops() is not None:
        out["torchvision"] = lambda x, q: torch.stack([imageio._torchvision_roundtrip(img, q) for img in x])

    def direct(data: bytes, size: tuple[int, int], q: int) -> bytes:
        config = imageio._direct_encoder_config(mode, q)
        if config is None:
            raise SystemExit(f"Pillow's direct encoder is not exact at quality {q} here")
        return imageio._direct_roundtrip(mode, size, data, config)

    out["pillow"] = lambda x, q: _per_image(direct, x, q)
    out["save/open"] = lambda x, q: _per_image(lambda d, s, qq: imageio._saved_jpeg(mode, s, d, qq)[1], x, q)
    return out


def bench_size(size: int, n: int, args: argparse.Namespace, malloc: str) -> None:
    """Check and time every path at one image size; print its table."""
    clock = harness.check_clock(args.clock, torch.get_num_threads())
    x = harness.sample_photos(n, size)
    qualities = QUALITIES.get(size, QUALITIES[224])
    fns = paths(x)
    for q in qualities:
        want = fns["save/open"](x, q)
        for name, fn in fns.items():
            if not torch.equal(fn(x, q), want):
                raise SystemExit(f"{name} differs from save/open at {size} px, quality {q}")
    tasks = {name: (lambda fn=fn: [fn(x, q) for q in qualities]) for name, fn in fns.items()}
    best = harness.interleaved(tasks, args.repeat, clock)
    count = n * len(qualities)
    codecs = min(v for k, v in best.items() if k != "native")
    rows = [[name, f"{count / t:.0f}", harness.ratio(best["save/open"], t), harness.ratio(codecs, t)]
            for name, t in best.items()]
    print(f"\n# {size}x{size} px, {n} images x qualities {qualities}, {torch.get_num_threads()} thread(s), "
          f"{args.clock} clock, best of {args.repeat}, malloc {malloc}; every path's pixels equal save/open's")
    harness.print_table(["path", "img/s", "vs save/open", "vs fastest codec path"], rows, args.markdown)


def main() -> None:
    """Parse the options and run every size."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="32,224")
    ap.add_argument("--n", default="1000,32", help="images per size (one value, or one per size)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--clock", choices=["cpu", "wall"], default="cpu")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--markdown", action="store_true")
    harness.add_malloc_arg(ap)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    malloc = harness.use_malloc(args.malloc)
    sizes = [int(s) for s in args.sizes.split(",")]
    counts = [int(v) for v in args.n.split(",")]
    counts = counts * len(sizes) if len(counts) == 1 else counts
    if len(counts) != len(sizes):
        raise SystemExit(f"--n gives {len(counts)} counts for {len(sizes)} sizes")
    for size, n in zip(sizes, counts):
        bench_size(size, n, args, malloc)


if __name__ == "__main__":
    main()
