"""Image codecs side by side: torchvision.io (deprecated in 0.29) vs Pillow (what we use now).

Three jobs, each on the same uint8 photographs (crops of scikit-learn's sample images):

- jpeg: the JPEG corruption's encode + decode round trip at the ImageNet-C/CIFAR-C
  qualities; torchvision's batched ``encode_jpeg``/``decode_jpeg`` list API vs
  ``corruptions.imageio.jpeg_roundtrip`` (whichever exact path it takes here: the native
  kernel, else Pillow; ``benchmarks/jpeg.py`` times the paths apart). The outputs are
  compared value by value (the corruption must stay bit-identical);
- decode: reading JPEG files (ImageFolder / ImageNet-C); torchvision ``decode_jpeg`` on
  batches of file bytes vs ``corruptions.imageio.read_image``;
- png: writing PNGs (``corruptions export --format imagefolder``).

Prints images/s for both and the ratio new / torchvision (> 1: ours is faster), and how
many values differ (must be 0). Compare ratios from one run only.

Usage: python benchmarks/codecs.py --sizes 32,64,224 --n 256 --repeat 3 [--markdown]
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
import types
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]


def _bench_module(name: str) -> types.ModuleType:
    """benchmarks/<name>.py as a module (this folder is off sys.path: codecs.py shadows a stdlib module)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"bench_{name.lstrip('_')}", _HERE / f"{name}.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


sample_photos = _bench_module("corruptions").sample_photos
harness = _bench_module("_harness")

from corruptions import imageio  # noqa: E402

warnings.filterwarnings("ignore", category=DeprecationWarning)  # torchvision.io's notice


def _best(fn: Callable[[], object], repeat: int) -> float:
    """Best wall time of ``repeat`` calls (after one warm-up)."""
    fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def tv_jpeg(levels: torch.Tensor, quality: int) -> torch.Tensor:
    """The former JPEG corruption: torchvision's batched list API."""
    from torchvision.io import decode_jpeg, encode_jpeg

    return torch.stack(decode_jpeg(encode_jpeg(list(levels.unbind(0)), quality=quality)), 0)


def bench_jpeg(x: torch.Tensor, qualities: list[int], repeat: int) -> tuple[float, float, int]:
    """(old s, new s, differing values) for the round trip at every quality."""
    diff = 0
    for q in qualities:
        diff += int((tv_jpeg(x, q) != imageio.jpeg_roundtrip(x, q)).sum())
    old = _best(lambda: [tv_jpeg(x, q) for q in qualities], repeat)
    new = _best(lambda: [imageio.jpeg_roundtrip(x, q) for q in qualities], repeat)
    return old, new, diff


def bench_decode(x: torch.Tensor, repeat: int) -> tuple[float, float, int]:
    """(old s, new s, differing values) for decoding quality-90 JPEG files of ``x``."""
    from PIL import Image
    from torchvision.io import ImageReadMode, decode_jpeg, read_file

    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for i, img in enumerate(x):
            f = Path(tmp) / f"{i:05d}.jpg"
            buf = io.BytesIO()
            Image.fromarray(img.permute(1, 2, 0).numpy()).save(buf, "JPEG", quality=90)
            f.write_bytes(buf.getvalue())
            files.append(str(f))

        def old() -> list[torch.Tensor]:
            return decode_jpeg([read_file(f) for f in files], mode=ImageReadMode.RGB)

        def new() -> list[torch.Tensor]:
            return [imageio.read_image(f) for f in files]

        diff = sum(int((a != b).sum()) for a, b in zip(old(), new()))
        return _best(old, repeat), _best(new, repeat), diff


def bench_png(x: torch.Tensor, repeat: int) -> tuple[float, float, int]:
    """(old s, new s, differing decoded values) for PNG encoding (decoded back to compare)."""
    from torchvision.io import encode_png

    def old() -> list[bytes]:
        return [encode_png(img).numpy().tobytes() for img in x]

    def new() -> list[bytes]:
        return [imageio.encode_png(img) for img in x]

    from PIL import Image

    diff = 0
    for a, b in zip(old()[:16], new()[:16]):
        pa = np.asarray(Image.open(io.BytesIO(a)))
        pb = np.asarray(Image.open(io.BytesIO(b)))
        diff += int((pa != pb).sum())
    return _best(old, repeat), _best(new, repeat), diff


def main() -> None:
    """Print one row per (job, size): images/s old, new, ratio and value differences."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="32,64,224")
    ap.add_argument("--n", type=int, default=256, help="images per job (224 px: a quarter)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    ap.add_argument("--markdown", action="store_true", help="print a markdown table (docs/benchmarks.md)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    qualities = {32: [80, 65, 58, 50, 40], 64: [65, 58, 50, 40, 25], 224: [25, 18, 15, 10, 7]}
    print(f"# jpeg 'new' = corruptions.imageio.jpeg_roundtrip, path {imageio.jpeg_codec_path(3, 50)!r} (RGB, q50); decode and png "
          f"'new' = Pillow; torch {torch.get_num_threads()} threads")
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        n = args.n if size < 224 else max(8, args.n // 4)
        x = sample_photos(n, size)
        q = qualities.get(size, [25, 18, 15, 10, 7])
        jobs = {
            "jpeg": (lambda x=x, q=q: bench_jpeg(x, q, args.repeat), n * len(q)),
            "decode": (lambda x=x: bench_decode(x, args.repeat), n),
            "png": (lambda x=x: bench_png(x, args.repeat), n),
        }
        for job, (fn, count) in jobs.items():
            old, new, diff = fn()
            rows.append([job, size, n, f"{count / old:.0f}", f"{count / new:.0f}", f"{old / new:.2f}", diff])
    harness.print_table(["job", "size", "n", "torchvision img/s", "new img/s", "new / torchvision",
                         "values differing"], rows, args.markdown)


if __name__ == "__main__":
    main()
