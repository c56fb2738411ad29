"""Images per second of every corruption: ours (batched torch) vs the imagecorruptions package.

imagecorruptions (Michaelis et al., what users run today: numpy, OpenCV and scikit-image,
one image at a time) applies the ImageNet-C parameters at any image size, so ours runs
with ``preset="imagenet"`` at every size too, on the same uint8 photographs (crops of
scikit-learn's sample images), same severity. Its ``frost`` reads and resizes a frost
photograph on every call; ours keeps its (procedural) textures cached, as it always does.

Each corruption is probed once first; the ones imagecorruptions crashes on with the
installed numpy / scikit-image (glass_blur, gaussian_blur and fog on numpy 2) are listed
and left out of the totals. Its import needs ``pkg_resources`` (gone from recent
setuptools): a stand-in with the one function it uses is provided when it is missing.

Rounds interleave ours and imagecorruptions (best round kept; benchmarks/_harness.py);
``--markdown`` prints the tables of docs/benchmarks.md. Skips, with a message, when
imagecorruptions is not installed.

Usage: python benchmarks/vs_imagecorruptions.py --sizes 32,224 --n 1000,32 --ref-n 200,16 \\
    --threads 1 --clock cpu --markdown
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import types
import warnings
from collections.abc import Callable
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [str(_HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != _HERE] + [
    str(_HERE)
]
import numpy as np  # noqa: E402
import torch  # noqa: E402
from _harness import (  # noqa: E402
    add_malloc_arg,
    check_clock,
    interleaved,
    parse_stream_kernels,
    print_table,
    ratio,
    sample_photos,
    use_malloc,
    use_stream_kernels,
)

import corruptions  # noqa: E402


def load_imagecorruptions() -> Callable | None:
    """imagecorruptions.corrupt, or None when the package is not installed."""
    if importlib.util.find_spec("imagecorruptions") is None:
        return None
    if importlib.util.find_spec("pkg_resources") is None:
        shim = types.ModuleType("pkg_resources")

        def resource_filename(package: str, path: str) -> str:
            return os.path.join(os.path.dirname(sys.modules[package].__file__), path)

        shim.resource_filename = resource_filename  # type: ignore[attr-defined]
        sys.modules["pkg_resources"] = shim
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from imagecorruptions import corrupt  # type: ignore[import-not-found]
    return corrupt


def _theirs(corrupt: Callable, imgs: np.ndarray, name: str, severity: int) -> Callable[[], object]:
    def run() -> list[np.ndarray]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return [corrupt(img, corruption_name=name, severity=severity) for img in imgs]

    return run


def _ours(x: torch.Tensor, name: str, severity: int, kernel: str) -> Callable[[], object]:
    """Ours on the whole batch with the ImageNet parameters and stream kernels ``kernel`` (warmed up once)."""

    def run() -> object:
        use_stream_kernels(kernel)
        return corruptions.apply(x, name, severity, preset="imagenet")

    use_stream_kernels(kernel)
    corruptions.apply(x[:4], name, severity, preset="imagenet")
    return run


def _bare_jpeg(imgs: np.ndarray, quality: int) -> Callable[[], object]:
    """Pillow's JPEG save + open + decode alone on the same images: the floor of any JPEG
    corruption built on that codec (ours and imagecorruptions' alike)."""
    import io

    from PIL import Image

    pictures = [Image.fromarray(img) for img in imgs]

    def run() -> None:
        for picture in pictures:
            buffer = io.BytesIO()
            picture.save(buffer, format="JPEG", quality=quality)
            buffer.seek(0)
            Image.open(buffer).load()

    return run


def _jpeg_floor(imgs: np.ndarray, theirs: float, severity: int, repeat: int, clock: str) -> str:
    """One line: the bare codec's images/s and its ratio to imagecorruptions (the most a JPEG
    corruption running that codec can reach where the codec's work dominates), and which
    path ours takes (:func:`corruptions.imageio.jpeg_codec_path`)."""
    from corruptions.imageio import jpeg_codec_path

    quality = int(corruptions.get("jpeg_compression").params(severity, "imagenet")["quality"])
    codec = interleaved({"codec": _bare_jpeg(imgs, quality)}, repeat, clock)["codec"] / len(imgs)
    return (f"jpeg_compression: Pillow's bare save + open + decode (quality {quality}) runs {1 / codec:.0f} img/s "
            f"on these images, {ratio(theirs, codec)} imagecorruptions' speed; ours takes the "
            f"{jpeg_codec_path(imgs.shape[-1], quality)} path (the same pixels)")


def bench_size(corrupt: Callable, size: int, n: int, ref_n: int, args: argparse.Namespace) -> None:
    """Time every corruption at one image size and print its table."""
    clock = check_clock(args.clock, torch.get_num_threads())
    x = sample_photos(n, size)
    imgs = x.permute(0, 2, 3, 1).numpy()[: min(ref_n, n)]
    np.random.seed(0)  # imagecorruptions draws from numpy's global generator
    kernels = parse_stream_kernels(args.kernels + (",compiled" if args.compiled_hash else ""))
    variants = [(f"ours {k}" if len(kernels) > 1 else "ours", k) for k in kernels]
    rows, crashed, notes = [], [], []
    totals = dict.fromkeys([*(lab for lab, _ in variants), "theirs"], 0.0)
    for name in corruptions.names(args.corruptions):
        try:
            _theirs(corrupt, imgs[:1], name, args.severity)()
        except Exception as exc:  # the package's own failures on current numpy / skimage
            crashed.append(f"{name} ({type(exc).__name__}: {str(exc)[:60]})")
            continue
        tasks = {lab: _ours(x, name, args.severity, c) for lab, c in variants}
        tasks["theirs"] = _theirs(corrupt, imgs, name, args.severity)
        best = interleaved(tasks, args.repeat, clock)
        use_stream_kernels(kernels[0])
        per = {lab: best[lab] / n for lab, _ in variants}
        theirs = best["theirs"] / len(imgs)
        for lab in per:
            totals[lab] += per[lab]
        totals["theirs"] += theirs
        if name == "jpeg_compression":
            notes.append(_jpeg_floor(imgs, theirs, args.severity, args.repeat, clock))
        rows.append([name, *(f"{1 / per[lab]:.0f}" for lab in per), f"{1 / theirs:.0f}",
                     *(ratio(theirs, per[lab]) for lab in per)])
        print("  ".join(rows[-1]), file=sys.stderr, flush=True)  # progress
    rows.append([f"all {len(rows)} it runs (total time)", *(f"{1 / totals[lab]:.0f}" for lab, _ in variants),
                 f"{1 / totals['theirs']:.0f}", *(ratio(totals["theirs"], totals[lab]) for lab, _ in variants)])
    print(f"\n# {size}x{size} px, preset imagenet, severity {args.severity}: ours on {n} images "
          f"in one batch, imagecorruptions on {len(imgs)} one by one; "
          f"{torch.get_num_threads()} thread(s), {args.clock} clock, best of {args.repeat}, "
          f"streams v{corruptions.stream_version()}, kernels {','.join(kernels)}, malloc {args.malloc}")
    labels = [lab for lab, _ in variants]
    print_table(["corruption", *(f"{lab} img/s" for lab in labels), "imagecorruptions img/s",
                 *(f"{lab} / imagecorruptions" for lab in labels)], rows, args.markdown)
    for note in notes:
        print(f"\n{note}")
    if crashed:
        print(f"\nimagecorruptions crashes on: {'; '.join(crashed)}")


def main(argv: list[str] | None = None) -> int:
    """Parse the flags and run every size."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="32,224", help="image sides in px, comma-separated")
    ap.add_argument("--n", default="1000,32", help="our batch size per image size")
    ap.add_argument("--ref-n", default="200,16", help="images through imagecorruptions per round")
    ap.add_argument("--severity", type=int, default=3)
    ap.add_argument("--corruptions", default="all", help="all, a subset name, or a,b,c")
    ap.add_argument("--repeat", type=int, default=3, help="timing rounds (best kept)")
    ap.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    ap.add_argument("--kernels", default="auto",
                    help="random-stream kernels of ours, one column each: native, eager, compiled "
                         "(torch.compile'd hash) or auto (the default one), e.g. native,eager")
    ap.add_argument("--compiled-hash", action="store_true", help="add a 'compiled' kernels column")
    ap.add_argument("--markdown", action="store_true", help="print markdown tables")
    add_malloc_arg(ap)
    args = ap.parse_args(argv)
    args.malloc = use_malloc(args.malloc)
    corrupt = load_imagecorruptions()
    if corrupt is None:
        print("imagecorruptions is not installed: nothing to compare (pip install imagecorruptions)")
        return 0
    torch.set_num_threads(args.threads)
    try:
        import cv2  # imagecorruptions' OpenCV calls: the same thread budget

        cv2.setNumThreads(args.threads)
    except ImportError:  # pragma: no cover
        pass
    sizes = [int(s) for s in args.sizes.split(",")]
    ns = [int(s) for s in args.n.split(",")]
    ref_ns = [int(s) for s in args.ref_n.split(",")]
    if not len(sizes) == len(ns) == len(ref_ns):
        raise SystemExit("--sizes, --n and --ref-n need the same number of entries")
    for size, n, ref_n in zip(sizes, ns, ref_ns):
        bench_size(corrupt, size, n, ref_n, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
