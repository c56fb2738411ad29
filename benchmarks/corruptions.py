"""Images per second of every corruption: batched torch kernels vs per-image numpy references.

For each corruption, on the same N photographs (crops of scikit-learn's sample images
resized to ``--size``):

- ours: ``corruptions.apply`` on the whole uint8 batch, on CPU and on CUDA when available
  (``--device``);
- reference: a per-image numpy/scipy/PIL implementation of the Hendrycks script, run
  image by image on ``--ref-n`` of the images: ``tests/refimpl.py`` (the test
  re-implementations), or the simple numpy versions below (motion blur with ImageMagick's
  kernel, snow, frost with a pre-loaded texture, i.e. without the reference's per-call
  file read, fog, spatter with scipy stand-ins for the OpenCV calls).
  ``benchmarks/vs_imagecorruptions.py`` compares with the imagecorruptions package.

Rounds interleave ours and the reference (best round kept, see benchmarks/_harness.py);
the last row sums the per-image times of all corruptions. ``--markdown`` prints the table
of docs/benchmarks.md.

Usage: python benchmarks/corruptions.py --size 32 --n 1000 --ref-n 1000 --threads 1 \
    --clock cpu --device cpu --markdown
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

# Run as a script, this file's folder is sys.path[0] and its name would shadow the package:
# put this checkout first (its packages are the ones measured) and the folder last.
_HERE = Path(__file__).resolve().parent
ROOT = _HERE.parent
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != _HERE] + [str(_HERE)]
if getattr(sys.modules.get("corruptions"), "__file__", "") == __file__:
    del sys.modules["corruptions"]
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
import corruptions.frost  # noqa: E402

# ----------------------------------------------------------------------------- numpy references


def _gaussian(x: np.ndarray, sigma: float, mode: str = "nearest") -> np.ndarray:
    from scipy import ndimage as ndi

    return ndi.gaussian_filter(x, sigma, mode=mode, truncate=4.0)


def np_motion_blur(x: np.ndarray, radius: float, sigma: float, angle: float) -> np.ndarray:
    """ImageMagick MotionBlurImage on an HxWxC array (edge virtual pixels), rounded to 8 bits."""
    width = int(2 * math.ceil(radius) + 1)
    i = np.arange(width, dtype=np.float64)
    k = np.exp(-(i * i) / (2 * sigma * sigma))
    k /= k.sum()
    h, w = x.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w]
    out = np.zeros(x.shape, dtype=np.float64)
    t = math.radians(angle)
    for j in range(width):
        ox = int(math.ceil(j * math.cos(t) - 0.5))
        oy = int(math.ceil(j * math.sin(t) - 0.5))
        out += k[j] * x[np.clip(yy + oy, 0, h - 1), np.clip(xx + ox, 0, w - 1)]
    return np.round(out)


def np_clipped_zoom(img: np.ndarray, zoom: float) -> np.ndarray:
    from scipy.ndimage import zoom as scizoom

    h = img.shape[0]
    ch = int(np.ceil(h / zoom))
    top = (h - ch) // 2
    img = scizoom(img[top : top + ch, top : top + ch], zoom, order=1)
    trim = (img.shape[0] - h) // 2
    return img[trim : trim + h, trim : trim + h]


def np_snow(x: np.ndarray, p: dict, rng: np.random.Generator) -> np.ndarray:
    x = np.array(x, dtype=np.float32) / 255.0
    layer = rng.normal(size=x.shape[:2], loc=p["loc"], scale=p["scale"])
    layer = np_clipped_zoom(layer, p["zoom"])
    layer[layer < p["threshold"]] = 0
    layer = np.uint8(np.clip(layer, 0, 1) * 255)[..., None].astype(np.float64)
    layer = np_motion_blur(layer, p["blur_radius"], p["blur_sigma"], rng.uniform(-135, -45)) / 255.0
    gray = (0.299 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2])[..., None]
    x = p["blend"] * x + (1 - p["blend"]) * np.maximum(x, gray * 1.5 + 0.5)
    return np.clip(x + layer + np.rot90(layer, k=2), 0, 1) * 255


def np_fog(x: np.ndarray, p: dict, rng: np.random.Generator) -> np.ndarray:
    size = x.shape[0]
    mapsize = 1 << max(1, math.ceil(math.log2(size)))
    a = np.zeros((mapsize, mapsize))
    step, wibble = mapsize, 100.0

    def wm(arr: np.ndarray) -> np.ndarray:
        return arr / 4 + wibble * rng.uniform(-wibble, wibble, arr.shape)

    while step >= 2:
        c = a[0:mapsize:step, 0:mapsize:step]
        sq = c + np.roll(c, -1, axis=0)
        sq += np.roll(sq, -1, axis=1)
        a[step // 2 : mapsize : step, step // 2 : mapsize : step] = wm(sq)
        dr = a[step // 2 : mapsize : step, step // 2 : mapsize : step]
        ul = a[0:mapsize:step, 0:mapsize:step]
        a[0:mapsize:step, step // 2 : mapsize : step] = wm(
            dr + np.roll(dr, 1, axis=0) + ul + np.roll(ul, -1, axis=1)
        )
        a[step // 2 : mapsize : step, 0:mapsize:step] = wm(
            dr + np.roll(dr, 1, axis=1) + ul + np.roll(ul, -1, axis=0)
        )
        step //= 2
        wibble /= p["wibble_decay"]
    a -= a.min()
    a /= a.max()
    x = np.array(x) / 255.0
    m = x.max()
    x = x + p["strength"] * a[:size, :size][..., None]
    return np.clip(x * m / (m + p["strength"]), 0, 1) * 255


_FROST_TEXTURES: dict[int, list[np.ndarray]] = {}


def np_frost(x: np.ndarray, p: dict, rng: np.random.Generator) -> np.ndarray:
    size = x.shape[0]
    if size not in _FROST_TEXTURES:  # stands for the reference's (per-call!) cv2.imread + resize
        bank = corruptions.frost.frost_texture_bank(size, size)
        _FROST_TEXTURES[size] = [
            (t.permute(1, 2, 0).numpy() * 255).astype(np.float64) for t in bank
        ]
    tex = _FROST_TEXTURES[size][int(rng.integers(5))]
    r = int(rng.integers(0, tex.shape[0] - size))
    c = int(rng.integers(0, tex.shape[1] - size))
    return np.clip(
        p["image_weight"] * np.asarray(x, np.float64)
        + p["frost_weight"] * tex[r : r + size, c : c + size],
        0,
        255,
    )


def np_spatter(x: np.ndarray, p: dict, rng: np.random.Generator) -> np.ndarray:
    from scipy import ndimage as ndi

    x = np.array(x, dtype=np.float32) / 255.0
    liquid = _gaussian(rng.normal(size=x.shape[:2], loc=p["loc"], scale=p["scale"]), p["sigma"])
    liquid[liquid < p["threshold"]] = 0
    if p["mode"] == 0:
        lu8 = (liquid * 255).astype(np.uint8).astype(np.float64)
        mag = np.abs(ndi.sobel(lu8, 0)) + np.abs(ndi.sobel(lu8, 1))  # stand-in for cv2.Canny
        dist = np.minimum(ndi.distance_transform_edt(mag <= 150), 20)
        dist = ndi.uniform_filter(dist, 3, mode="mirror").astype(np.uint8)
        hist = np.bincount(dist.ravel(), minlength=256)
        cdf = hist.cumsum()
        i0 = int(np.nonzero(hist)[0][0])
        dist = np.round((cdf[dist] - hist[i0]) * 255.0 / max(dist.size - hist[i0], 1))
        ker = np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]], dtype=np.float64)
        dist = np.clip(ndi.correlate(dist, ker, mode="mirror"), 0, 255)
        dist = np.round(ndi.uniform_filter(dist, 3, mode="mirror"))
        m = lu8 * dist
        m = m / max(m.max(), 1e-12) * p["intensity"]
        color = np.array([175, 238, 238]) / 255.0
        return np.clip(x + m[..., None] * color, 0, 1) * 255
    m = _gaussian(np.where(liquid > p["threshold"], 1.0, 0.0), p["intensity"])
    m[m < 0.8] = 0
    color = np.array([63, 42, 20]) / 255.0
    return np.clip(x * (1 - m[..., None]) + color * m[..., None], 0, 1) * 255


def reference_functions(
    preset: str,
) -> tuple[str, dict[str, Callable[[np.ndarray, int, np.random.Generator], np.ndarray]]]:
    """(source, name -> f(HxWx3 uint8, severity, rng) -> float image) for every corruption we can."""
    funcs: dict[str, Callable] = {}
    src = "benchmarks/corruptions.py numpy versions"

    def params(name: str, s: int) -> dict:
        return corruptions.get(name).params(s, preset)

    refimpl_path = ROOT / "tests" / "refimpl.py"
    if refimpl_path.is_file():
        spec = importlib.util.spec_from_file_location("refimpl", refimpl_path)
        ref = importlib.util.module_from_spec(spec)
        assert spec.loader is not None
        sys.modules["refimpl"] = ref
        spec.loader.exec_module(ref)
        src = "tests/refimpl.py + " + src

        def first(name: str, s: int) -> float:
            return next(iter(params(name, s).values()))

        for name in ("gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise"):
            if hasattr(ref, name):
                funcs[name] = lambda x, s, rng, n=name: getattr(ref, n)(x, first(n, s), rng)
        for name in ("gaussian_blur", "contrast", "jpeg_compression", "pixelate"):
            if hasattr(ref, name):
                funcs[name] = lambda x, s, rng, n=name: getattr(ref, n)(x, first(n, s))
        if hasattr(ref, "brightness"):
            funcs["brightness"] = lambda x, s, rng: ref.brightness(
                x, *params("brightness", s).values()
            )
        if hasattr(ref, "saturate"):
            funcs["saturate"] = lambda x, s, rng: ref.saturate(x, *params("saturate", s).values())
        if hasattr(ref, "defocus_blur"):
            funcs["defocus_blur"] = lambda x, s, rng: ref.defocus_blur(
                x, *params("defocus_blur", s).values()
            )
        if hasattr(ref, "zoom_blur"):
            table = ref.ZOOMS_IMAGENET if preset == "imagenet" else ref.ZOOMS_SMALL
            funcs["zoom_blur"] = lambda x, s, rng: ref.zoom_blur(x, table[s - 1])
        if hasattr(ref, "glass_blur"):
            funcs["glass_blur"] = lambda x, s, rng: ref.glass_blur(
                x, *params("glass_blur", s).values(), rng=rng
            )
        if hasattr(ref, "elastic_transform"):
            funcs["elastic_transform"] = lambda x, s, rng: ref.elastic_transform(
                x, *ref.elastic_params(preset, s), rng=rng
            )
    funcs["motion_blur"] = lambda x, s, rng: np_motion_blur(
        np.asarray(x, np.float64), *params("motion_blur", s).values(), rng.uniform(-45, 45)
    )
    funcs["snow"] = lambda x, s, rng: np_snow(x, params("snow", s), rng)
    funcs["frost"] = lambda x, s, rng: np_frost(x, params("frost", s), rng)
    funcs["fog"] = lambda x, s, rng: np_fog(x, params("fog", s), rng)
    funcs["spatter"] = lambda x, s, rng: np_spatter(x, params("spatter", s), rng)
    return src, funcs


# ----------------------------------------------------------------------------- timing


def _ours(x: torch.Tensor, name: str, severity: int, preset: str, kernel: str,
          streams: int) -> Callable[[], object]:  # fmt: skip
    """One ``corruptions.apply`` call on the whole batch (warmed up once) with the stream
    kernels ``kernel`` (native, eager, compiled), random-stream version ``streams``."""

    def run() -> object:
        use_stream_kernels(kernel)
        return corruptions.apply(x, name, severity, seed=1, preset=preset, streams=streams)

    use_stream_kernels(kernel)
    corruptions.apply(x[: min(4, len(x))], name, severity, preset=preset, streams=streams)
    return run


def compile_latency(device: str) -> float:
    """Seconds of the first compiled-hash draw in this process (torch.compile + its caches)."""
    t0 = time.perf_counter()
    use_stream_kernels("compiled")
    try:
        rng = corruptions.SampleRNG(0, 1, torch.arange(3), torch.device(device))
        rng.bits((5,))
    finally:
        use_stream_kernels("eager")
    return time.perf_counter() - t0


def _reference(fn: Callable, x: torch.Tensor, severity: int, n: int) -> Callable[[], object]:
    """The per-image reference on the first ``n`` images, ``np.uint8`` result included."""
    imgs = x.permute(0, 2, 3, 1).numpy()[:n]
    rng = np.random.default_rng(0)
    fn(imgs[0], severity, rng)  # warm-up
    return lambda: [np.uint8(fn(img, severity, rng)) for img in imgs]


def main(argv: list[str] | None = None) -> None:
    """Parse the flags, time every corruption, print the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=32, help="image side in px (32, 64, 224, ...)")
    ap.add_argument("--n", type=int, default=128, help="images per torch batch")
    ap.add_argument("--severity", type=int, default=3)
    ap.add_argument("--preset", default=None, help="severity table (default: from the size)")
    ap.add_argument(
        "--device", default="auto", help="cpu, cuda, or auto (cpu and cuda when available)"
    )
    ap.add_argument("--corruptions", default="all", help="all, a subset name, or a,b,c")
    ap.add_argument("--repeat", type=int, default=3, help="timing rounds (best kept)")
    ap.add_argument("--ref-n", type=int, default=32, help="images through the reference per round")
    ap.add_argument("--no-ref", action="store_true", help="skip the numpy references")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="wall clock, or this process's CPU time (steadier on a busy machine, 1 thread)")
    ap.add_argument("--kernels", default="auto",
                    help="random-stream kernels of ours, one column each: native, eager, compiled "
                         "(torch.compile'd hash) or auto (the default one), e.g. native,eager")
    ap.add_argument("--compiled-hash", action="store_true", help="add a 'compiled' kernels column")
    ap.add_argument("--streams", default=str(corruptions.DEFAULT_STREAMS),
                    help="random-stream version(s) of ours, e.g. 2 or 1,2 (one column each)")
    ap.add_argument("--markdown", action="store_true", help="print a markdown table")
    add_malloc_arg(ap)
    args = ap.parse_args(argv)
    malloc = use_malloc(args.malloc)
    versions = [corruptions.check_streams(v) for v in args.streams.split(",")]
    kernels = parse_stream_kernels(args.kernels + (",compiled" if args.compiled_hash else ""))
    if args.threads:
        torch.set_num_threads(args.threads)
    clock = check_clock(args.clock, torch.get_num_threads())
    # both sides crop the same procedural texture bank (an installed package's photographs
    # would make ours load and crop photos while the numpy stand-in crops the bank)
    corruptions.frost.set_frost_images("procedural")
    devices = ["cpu", "cuda"] if args.device == "auto" else [args.device]
    devices = [d for d in devices if not d.startswith("cuda") or torch.cuda.is_available()]
    preset = args.preset or corruptions.preset_for_size(args.size, args.size)
    x = sample_photos(args.n, args.size)
    src, refs = ("none", {}) if args.no_ref else reference_functions(preset)
    ref_n = min(args.ref_n, args.n)
    tag = (lambda v: f" v{v}") if len(versions) > 1 else (lambda v: "")
    ktag = (lambda k: f" {k}") if len(kernels) > 1 else (lambda k: "")
    on = {(d, "eager" if k == "native" and d != "cpu" else k): None for k in kernels for d in devices}
    variants = [(f"{d}{ktag(k)}{tag(v)}", d, k, v) for d, k in on for v in versions]  # native: CPU only
    note = f"; streams v{args.streams}; kernels {','.join(kernels)}; malloc {malloc}"
    if "compiled" in kernels:
        note += "; first compiled draw " + ", ".join(f"{d} {compile_latency(d):.1f} s" for d in devices)
    print(f"# {args.n} images {args.size}x{args.size}, preset {preset}, severity {args.severity}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} CPU thread(s), {args.clock} clock, "
          f"best of {args.repeat}; reference ({ref_n} images): {src}{note}", flush=True)  # fmt: skip

    def sync() -> None:
        if any(d.startswith("cuda") for d in devices):
            torch.cuda.synchronize()

    labels = [v[0] for v in variants]
    rows, totals = [], {k: 0.0 for k in [*labels, "ref"]}
    for name in corruptions.names(args.corruptions):
        tasks = {lab: _ours(x.to(d), name, args.severity, preset, c, v) for lab, d, c, v in variants}
        if name in refs:
            tasks["ref"] = _reference(refs[name], x, args.severity, ref_n)
        best = interleaved(tasks, args.repeat, clock, sync)
        use_stream_kernels(kernels[0])
        per_image = {lab: best[lab] / args.n for lab in labels}
        if "ref" in best:
            per_image["ref"] = best["ref"] / ref_n
            for k, v in per_image.items():
                totals[k] += v
        ref = per_image.get("ref", float("nan"))
        rows.append([name, *(f"{1 / per_image[lab]:.0f}" for lab in labels),
                     f"{1 / ref:.0f}" if "ref" in per_image else "-",
                     *(ratio(ref, per_image[lab]) for lab in labels)])
        print("  ".join(rows[-1]), file=sys.stderr, flush=True)  # progress
    if refs:
        rows.append([f"all {sum(n in refs for n in corruptions.names(args.corruptions))} (total time)",
                     *(f"{1 / totals[lab]:.0f}" for lab in labels), f"{1 / totals['ref']:.0f}",
                     *(ratio(totals["ref"], totals[lab]) for lab in labels)])
    headers = ["corruption", *(f"ours {lab} img/s" for lab in labels), "reference img/s",
               *(f"ours {lab} / reference" for lab in labels)]
    print_table(headers, rows, args.markdown)


if __name__ == "__main__":
    main()
