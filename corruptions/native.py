"""Native CPU kernels: the hash chain, the 8-bit-level Poisson inversion and ``apply``'s
quantisation, as one C++ loop each; separable shift filters, spatter's water mask and
Pillow's BOX resize
(their source is in :mod:`corruptions.native_image`).

Eagerly, a dense draw is ~35 tensor operations (each a pass over memory) and the Poisson
inversion another ~20 plus a shrinking binary search; these kernels do each in one pass,
element by element, with the same integer arithmetic and the same float64 comparisons, so
their outputs are the eager kernels' bits (tests compare them). They are one small C++ file
built once per machine with the C++ compiler inductor would use (``-O3 -march=native``,
~1 s), cached under ``$XDG_CACHE_HOME/corruptions`` (default ``~/.cache/corruptions``), and
called through ctypes on raw pointers.

Chosen by ``CORRUPTIONS_KERNELS`` or :func:`set_kernels`: ``auto`` (default: native when a
C++ compiler is found, else eager), ``native`` or ``eager``. CUDA tensors always take the
eager (or compiled) kernels. A failed build is an error, not a silent switch to eager.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import itertools
import os
import platform
import subprocess
import tempfile
from pathlib import Path

import torch

from corruptions.native_image import IMAGE_SOURCE
from corruptions.native_jpeg import JPEG_SOURCE, kernel_tables

#: Environment variable choosing the CPU kernels of the random streams.
KERNELS_ENV = "CORRUPTIONS_KERNELS"
KERNEL_CHOICES = ("auto", "native", "eager")
#: Flags of every native build (the LayerAct kernel of robustbench_act uses them too).
FLAGS = ("-O3", "-march=native", "-fopenmp", "-fno-math-errno", "-std=c++17", "-shared", "-fPIC")
_STATE: dict[str, str] = {"choice": os.environ.get(KERNELS_ENV, "")}


class NativeBuildError(RuntimeError):
    """A native kernel could not be built (no compiler, a compiler error, an unwritable cache)."""


SOURCE = r"""
#include <cmath>
#include <cstdint>

static inline uint32_t mix32(uint32_t x) {
  x ^= x >> 16; x *= 0x21F0AAADu; x ^= x >> 15; x *= 0x735A2D97u; x ^= x >> 15;
  return x;
}

// apply's 8-bit level of a float32 result: floor(clamp(v, 0, 1) * 255 + 1e-4), the product and
// the sum rounded apart as torch's two ops do; NaN gives level 0 (torch's float -> int16 -> uint8)
static inline uint8_t level_u8(float v) {
  v = v > 0.0f ? v : 0.0f;  // NaN -> 0 too
  v = v < 1.0f ? v : 1.0f;
  return (uint8_t)(int32_t)std::floor(v * 255.0f + 1e-4f);
}

extern "C" {

// out[r, i] = mix(mix(mix(i ^ k0[r]) ^ k1[r]) + k0[r]) (uint32 arithmetic, stored as int32).
void hash_chain(const int32_t* k0, const int32_t* k1, int64_t rows, int64_t cols, int32_t* out,
                int threads) {
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t r = 0; r < rows; ++r) {
    const uint32_t a = (uint32_t)k0[r], b = (uint32_t)k1[r];
    int32_t* o = out + r * cols;
#pragma omp simd
    for (int64_t i = 0; i < cols; ++i) o[i] = (int32_t)mix32(mix32(mix32((uint32_t)i ^ a) ^ b) + a);
  }
}

// Poisson counts #{j: cdf_v(j) < u} of 32-bit draws for intensities that are 8-bit levels
// levels[v] = float32(v / 255); is_level[e] = 0 (count 0) for the others. cdf: 256 rows of `size`;
// bounds: 256 rows of 2**log_bins (lo, hi) int32 pairs; the count lies in [lo, hi].
void poisson_levels(const float* x, const int32_t* bits, int64_t n, const float* levels, const double* cdf,
                    const int32_t* bounds, int64_t size, int log_bins, int64_t* out,
                    uint8_t* is_level, int threads) {
  const int shift = 32 - log_bins;
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t e = 0; e < n; ++e) {
    const float xv = x[e];
    float lv = std::nearbyint(xv * 255.0f);
    lv = lv < 0.0f ? 0.0f : (lv > 255.0f ? 255.0f : lv);
    const bool level_ok = (lv == lv) && levels[(int)lv] == xv;  // false for NaN and non-levels
    is_level[e] = level_ok;
    if (!level_ok) { out[e] = 0; continue; }
    const int64_t v = (int64_t)lv;
    const uint32_t ub = (uint32_t)bits[e];
    const int32_t* pair = bounds + 2 * ((v << log_bins) + (int64_t)(ub >> shift));
    int64_t a = pair[0], b = pair[1];
    if (a < b) {
      const double u = ((double)ub + 0.5) * 0x1p-32;
      const double* row = cdf + v * size;
      while (a < b) {
        const int64_t mid = (a + b) >> 1;
        if (row[mid] < u) a = mid + 1; else b = mid;
      }
    }
    out[e] = a < size - 1 ? a : size - 1;
  }
}

// apply's quantisation of a result: level = floor(clamp(x, 0, 1) * 255 + 1e-4) in float32
// (the product and the sum rounded apart, as torch's two ops do); NaN: level 0 for uint8
// output (what torch's float -> int16 -> uint8 gives), NaN for float output (level / 255).
void quantize_u8(const float* x, int64_t n, uint8_t* out, int threads) {
#pragma omp parallel for simd schedule(static) num_threads(threads)
  for (int64_t e = 0; e < n; ++e) out[e] = level_u8(x[e]);
}

void quantize_f32(const float* x, int64_t n, float* out, int threads) {
#pragma omp parallel for simd schedule(static) num_threads(threads)
  for (int64_t e = 0; e < n; ++e) {
    float v = x[e] < 0.0f ? 0.0f : x[e];  // NaN stays NaN
    v = v > 1.0f ? 1.0f : v;
    out[e] = std::floor(v * 255.0f + 1e-4f) / 255.0f;
  }
}

}
"""


def check_kernels(choice: object) -> str:
    """The kernel choice as one of KERNEL_CHOICES; anything else is a one-line CorruptionError."""
    from corruptions.registry import CorruptionError

    text = str(choice).strip().lower() or "auto"
    if text not in KERNEL_CHOICES:
        raise CorruptionError(f"{KERNELS_ENV}={choice!r} is not a kernel choice "
                              f"(valid: {', '.join(KERNEL_CHOICES)})")  # fmt: skip
    return text


def set_kernels(choice: str) -> None:
    """Make ``choice`` (auto, native, eager) the CPU kernels of this process (validated)."""
    _STATE["choice"] = check_kernels(choice)


@functools.cache
def cpp_compiler() -> str | None:
    """The C++ compiler inductor would use on CPU, or None when there is none."""
    try:
        from torch._inductor.cpp_builder import get_cpp_compiler

        return str(get_cpp_compiler())
    except Exception:  # no compiler found (or inductor unusable): auto means eager
        return None


def kernels() -> str:
    """The CPU kernels in use, "native" or "eager" (``native`` is built now, once).

    Both give the same bits; the choice changes speed only. ``native`` without a compiler,
    or a failed build, raises :class:`corruptions.CorruptionError` naming the way out.
    """
    from corruptions.registry import CorruptionError

    choice = check_kernels(_STATE["choice"])
    if choice == "eager" or (choice == "auto" and cpp_compiler() is None):
        return "eager"
    if cpp_compiler() is None:
        raise CorruptionError(f"{KERNELS_ENV}=native needs a C++ compiler and none was found "
                              f"(set CXX, or {KERNELS_ENV}=eager)")  # fmt: skip
    try:
        _library(str(cpp_compiler()))
    except NativeBuildError as e:
        raise CorruptionError(str(e)) from None
    return "native"


def active(device: torch.device) -> bool:
    """Whether draws on ``device`` run the native kernels."""
    return device.type == "cpu" and kernels() == "native"


def _machine_tag() -> str:
    """The CPU a -march=native build is for: model name and feature flags."""
    try:
        info = Path("/proc/cpuinfo").read_text()
        lines = [ln for ln in info.splitlines() if ln.startswith(("model name", "flags", "Features"))]
        return "\n".join(sorted(set(lines)))
    except OSError:
        return platform.processor() or platform.machine()


def build(source: str, name: str, cache_dir: Path, compiler: str, *, label: str, hint: str,
          flags: tuple[str, ...] = FLAGS) -> Path:  # fmt: skip
    """Compile ``source`` into ``cache_dir/name-<key>.so`` unless built already; its path.

    The key hashes source, flags, compiler (and its version) and the CPU, so a change of
    any builds anew. A compiler error or an unwritable folder raises NativeBuildError, its
    message naming ``label`` (what is built) and ending in ``hint`` (the way out).
    """
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True).stdout
    key = hashlib.sha256("\0".join([source, *flags, compiler, version, _machine_tag()]).encode())
    target = cache_dir / f"{name}-{key.hexdigest()[:16]}.so"
    if target.is_file():
        return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
            src, lib = Path(tmp) / f"{name}.cpp", Path(tmp) / f"{name}.so"
            src.write_text(source)
            done = subprocess.run([compiler, *flags, str(src), "-o", str(lib)], capture_output=True, text=True)
            if done.returncode != 0:
                first = (done.stderr.strip().splitlines() or ["no output"])[0]
                raise NativeBuildError(f"building {label} with {compiler} failed ({first}); {hint}")
            os.replace(lib, target)  # atomic: a concurrent build of the same key writes the same bytes
    except OSError as e:
        raise NativeBuildError(f"cannot build {label} in {target.parent} ({e.strerror or e}); "
                               f"set XDG_CACHE_HOME to a writable folder, or {hint}") from None
    return target


def cache_dir(app: str) -> Path:
    """Where ``app``'s built kernels live: $XDG_CACHE_HOME/app (default ~/.cache/app)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")) / app


@functools.cache
def _library(compiler: str) -> ctypes.CDLL:
    """The built stream kernels, loaded, with their argument types declared."""
    path = build(SOURCE + IMAGE_SOURCE + JPEG_SOURCE, "streams", cache_dir("corruptions"), compiler, label="the corruptions' C++ kernels",
                 hint=f"set {KERNELS_ENV}=eager", flags=(*FLAGS, "-ffp-contract=off", "-fno-trapping-math"))  # torch's roundings
    lib = ctypes.CDLL(str(path))
    p, i64, c_int = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
    lib.hash_chain.argtypes = [p, p, i64, i64, p, c_int]
    lib.poisson_levels.argtypes = [p, p, i64, p, p, p, i64, c_int, p, p, c_int]
    lib.quantize_u8.argtypes = lib.quantize_f32.argtypes = [p, i64, p, c_int]
    lib.shift_filter.argtypes = [p, i64, i64, i64, p, p, i64, p, i64, p, p, i64, p, p, c_int]
    lib.water_mask.argtypes = [p, i64, i64, i64, ctypes.c_float, ctypes.c_float, p, c_int]
    lib.pil_box_resize.argtypes = [p, i64, i64, i64, p, p, i64, i64, p, p, i64, i64, p, c_int]
    lib.sample_bilinear.argtypes = [p, i64, i64, i64, i64, p, p, i64, i64, c_int, p, c_int]
    lib.spatter_blend_u8.argtypes = [p, p, i64, i64, p, p, c_int, p, c_int]
    lib.frost_blend_u8.argtypes = [p, p, i64, p, ctypes.c_float, ctypes.c_float, p, c_int]
    lib.grouped_filter_f32.argtypes = [p, i64, i64, i64, p, i64, p, i64, i64, i64, p, p, p, p, p, i64, p, c_int]
    lib.grouped_filter_u8.argtypes = [p, i64, i64, i64, p, i64, p, i64, i64, i64, p, p, p, p, p, i64, p, p, c_int]
    lib.planar_to_interleaved_u8.argtypes = lib.interleaved_to_planar_u8.argtypes = [p, i64, i64, p]
    lib.pil_box_pixelate.argtypes = [p, i64, i64, i64, p, p, i64, i64, p, p, i64, i64, p, p, i64, p, p, i64, p, c_int]
    lib.jpeg_roundtrip_u8.argtypes = [p, i64, i64, i64, i64, p, p, c_int]
    return lib


def hash_chain(k0: torch.Tensor, k1: torch.Tensor, cols: int) -> torch.Tensor:
    """int32 bits (rows, cols) of the keyed chain for row keys ``k0``, ``k1`` (int32, (rows,))."""
    k0, k1 = k0.contiguous(), k1.contiguous()
    rows = k0.numel()
    out = torch.empty((rows, cols), dtype=torch.int32)
    _library(str(cpp_compiler())).hash_chain(k0.data_ptr(), k1.data_ptr(), rows, cols, out.data_ptr(),
                                            torch.get_num_threads())
    return out


@functools.cache
def _levels() -> torch.Tensor:
    """float32(v / 255) for v = 0..255, by the division :func:`corruptions.streams.level_mask` uses."""
    return torch.div(torch.arange(256, dtype=torch.float32), 255.0)


def poisson_levels(x: torch.Tensor, bits: torch.Tensor, tables: tuple[torch.Tensor, torch.Tensor, int, int]
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """(counts int64, is_level bool) for flat float32 ``x`` and int32 ``bits`` of equal length.

    ``tables`` is :func:`corruptions.streams.level_tables`' (cdf, bounds, size, log2 B);
    elements that are no 8-bit level get count 0 and is_level False.
    """
    cdf, bounds, size, log_bins = tables
    x, bits = x.contiguous(), bits.contiguous()
    n = x.numel()
    out = torch.empty(n, dtype=torch.int64)
    is_level = torch.empty(n, dtype=torch.bool)
    _library(str(cpp_compiler())).poisson_levels(
        x.data_ptr(), bits.data_ptr(), n, _levels().data_ptr(), cdf.data_ptr(), bounds.data_ptr(), size, log_bins,
        out.data_ptr(), is_level.data_ptr(), torch.get_num_threads())
    return out, is_level


def quantize(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``apply``'s 256-level truncation of float32 results ``x`` in one pass, as ``dtype``
    (uint8 levels, or float32 levels / 255): the values of its eager ops."""
    x = x.contiguous()
    out = torch.empty(x.shape, dtype=dtype)
    lib = _library(str(cpp_compiler()))
    fn = lib.quantize_u8 if dtype == torch.uint8 else lib.quantize_f32
    fn(x.data_ptr(), x.numel(), out.data_ptr(), torch.get_num_threads())
    return out


def _pass_tables(taps: list[float], size: int, mode: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """(float32 taps, offsets, padded-position -> source index) of one shift-filter pass, the
    nonzero taps only, in order; None where ops.shift_filter skips the pass (radius 0)."""
    from corruptions.ops import padded_indices

    before = (len(taps) - 1) // 2
    if before == 0:
        return None
    idx = padded_indices(size, before, len(taps) - 1 - before, mode)
    kept = [(t, i) for i, t in enumerate(taps) if t != 0]
    return torch.tensor([t for t, _ in kept], dtype=torch.float32), torch.tensor([i for _, i in kept]), idx


def shift_filter(x: torch.Tensor, taps_h: list[float], taps_w: list[float], mode: str) -> torch.Tensor:
    """:func:`corruptions.ops.shift_filter` of a float32 CPU tensor in one native pass per axis
    (the same float32 operations in the same order, so the same bits)."""
    h, w = x.shape[-2:]
    across, down = _pass_tables(taps_w, w, mode), _pass_tables(taps_h, h, mode)
    if across is None and down is None:
        return x
    x = x.contiguous()
    out = torch.empty_like(x)
    none = (torch.empty(0), torch.empty(0, dtype=torch.int64), torch.empty(0, dtype=torch.int64))
    tw, ow, iw = across or none
    th, oh, ih = down or none
    _library(str(cpp_compiler())).shift_filter(
        x.data_ptr(), x.numel() // (h * w), h, w, tw.data_ptr(), ow.data_ptr(), tw.numel(), iw.data_ptr(), iw.numel(),
        th.data_ptr(), oh.data_ptr(), th.numel(), ih.data_ptr(), out.data_ptr(), torch.get_num_threads())
    return out


def water_mask(lu8: torch.Tensor, tan22: float, tan67: float) -> torch.Tensor:
    """spatter's water shading (N, 1, H, W) from its truncated liquid levels, one image per
    native loop: :func:`corruptions.weather._water_mask`'s values."""
    lu8 = lu8.contiguous()
    n, _, h, w = lu8.shape
    out = torch.empty_like(lu8)
    _library(str(cpp_compiler())).water_mask(lu8.data_ptr(), n, h, w, tan22, tan67, out.data_ptr(),
                                             torch.get_num_threads())
    return out


#: one axis of a BOX resize: Pillow's (source index, weight) as contiguous int32 (taps, out),
#: or None to keep that axis (:func:`corruptions.digital.pil_box_tables`)
Table = tuple[torch.Tensor, torch.Tensor] | None


def _box_tables(table: Table) -> tuple[torch.Tensor, torch.Tensor]:
    """The (taps, out) int32 tables of one axis, or empty ones (taps = 0) to keep its size."""
    if table is None:
        return torch.zeros(0, 1, dtype=torch.int32), torch.zeros(0, 1, dtype=torch.int32)
    return table


def pil_box_resize(levels: torch.Tensor, rows: Table, cols: Table) -> torch.Tensor:
    """:func:`corruptions.digital.pil_box_resize` of integer levels (N, C, H, W) as int32, given
    Pillow's (source index, fixed-point weight) tables per axis as contiguous int32 (taps, out)
    (:func:`corruptions.digital.pil_box_tables`; None: size kept)."""
    n, c, h, w = levels.shape
    x = levels.to(torch.int32).contiguous()
    if rows is None and cols is None:
        return x
    iw, kw = _box_tables(cols)
    ih, kh = _box_tables(rows)
    out_h = ih.shape[1] if rows is not None else h
    out_w = iw.shape[1] if cols is not None else w
    out = torch.empty((n, c, out_h, out_w), dtype=torch.int32)
    _library(str(cpp_compiler())).pil_box_resize(
        x.data_ptr(), n * c, h, w, iw.data_ptr(), kw.data_ptr(), out_w, iw.shape[0], ih.data_ptr(), kh.data_ptr(),
        out_h, ih.shape[0], out.data_ptr(), torch.get_num_threads())
    return out


def pil_box_pixelate(levels: torch.Tensor, small: tuple[int, int], down: tuple[Table, Table],
                     up: tuple[Table, Table]) -> torch.Tensor:
    """Pillow BOX resize of 8-bit levels (N, C, H, W) to ``small`` (h, w) and back, as uint8, in
    one native call (each plane stays in cache): pixelate's levels. ``down``/``up``: (rows,
    cols) tables of :func:`pil_box_resize`."""
    n, c, h, w = levels.shape
    x = levels.to(torch.uint8).contiguous()
    (dhi, dhk), (dwi, dwk) = (_box_tables(t) for t in down)
    (uhi, uhk), (uwi, uwk) = (_box_tables(t) for t in up)
    out = torch.empty((n, c, h, w), dtype=torch.uint8)
    _library(str(cpp_compiler())).pil_box_pixelate(
        x.data_ptr(), n * c, h, w, dwi.data_ptr(), dwk.data_ptr(), small[1], dwi.shape[0], dhi.data_ptr(),
        dhk.data_ptr(), small[0], dhi.shape[0], uwi.data_ptr(), uwk.data_ptr(), uwi.shape[0], uhi.data_ptr(),
        uhk.data_ptr(), uhi.shape[0], out.data_ptr(), torch.get_num_threads())
    return out


def frost_blend(images: torch.Tensor, layer: torch.Tensor, image_weight: float, frost_weight: float) -> torch.Tensor:
    """frost's ``images * image_weight + layer * frost_weight`` on uint8 images, clipped and
    quantised as ``apply`` does, in one pass: the uint8 levels of the float path."""
    x, layer = images.contiguous(), layer.to(torch.float32).contiguous()
    out = torch.empty_like(x)
    _library(str(cpp_compiler())).frost_blend_u8(x.data_ptr(), layer.data_ptr(), x.numel(), _levels().data_ptr(),
                                                 image_weight, frost_weight, out.data_ptr(), torch.get_num_threads())
    return out


def spatter_blend(images: torch.Tensor, mask: torch.Tensor, colour: torch.Tensor, water: bool) -> torch.Tensor:
    """spatter's blend of uint8 images (N, 3, H, W) with its float32 mask (N, 1, H, W) and
    colour (3,), clipped and quantised as ``apply`` does, in one pass: the float path's levels."""
    x, mask = images.contiguous(), mask.to(torch.float32).contiguous()
    colour = colour.to(torch.float32).contiguous()
    out = torch.empty_like(x)
    n, _, h, w = x.shape
    _library(str(cpp_compiler())).spatter_blend_u8(x.data_ptr(), mask.data_ptr(), n, h * w, _levels().data_ptr(),
                                                   colour.data_ptr(), int(water), out.data_ptr(), torch.get_num_threads())
    return out


_BORDER_CODES = {"nearest": 0, "wrap": 1, "constant": 2, "reflect": 3, "mirror": 4}


def sample_bilinear(x: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor, mode: str) -> torch.Tensor:
    """:func:`corruptions.ops.sample_bilinear` of float32 images (N, C, H, W) at (N, Ho, Wo)
    coordinates in one pass: the same four products and sums per output, so the same bits."""
    if mode not in _BORDER_CODES:
        raise ValueError(f"unknown border mode {mode!r}; modes: {', '.join(_BORDER_CODES)}")
    x = x.contiguous()
    ys, xs = ys.to(torch.float32).contiguous(), xs.to(torch.float32).contiguous()
    n, c, h, w = x.shape
    ho, wo = ys.shape[-2:]
    out = torch.empty((n, c, ho, wo), dtype=torch.float32)
    _library(str(cpp_compiler())).sample_bilinear(x.data_ptr(), n, c, h, w, ys.data_ptr(), xs.data_ptr(), ho, wo,
                                                  _BORDER_CODES[mode], out.data_ptr(), torch.get_num_threads())
    return out


def grouped_filter(x: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, ry: int,
                   terms: list[tuple[int, int, int]], sizes: list[int], weights: list[float]) -> torch.Tensor:
    """:func:`corruptions.ops.grouped_filter2d` of float32 planes (P, H, W), or of uint8 levels
    written as apply's 8-bit levels, in one pass per plane: the eager slices' operations in order.

    ``rows``/``cols``: padded position -> source index (-1: zero); ``terms``: (kind, row, column)
    with kind 1 a pair row (row = its distance a), kind 0 a padded row, both at a padded column;
    group g is the next ``sizes[g]`` terms, of weight ``weights[g]``.
    """
    x = x.contiguous()
    h, w = x.shape[-2:]
    kind, off, col = (torch.tensor(v, dtype=torch.int64) for v in zip(*terms, strict=True))
    start = torch.tensor([0, *itertools.accumulate(sizes)], dtype=torch.int64)
    wt = torch.tensor(weights, dtype=torch.float32)
    pairs = max([r for k, r, _ in terms if k], default=0)
    out = torch.empty_like(x)
    args = (x.data_ptr(), x.numel() // (h * w), h, w, rows.data_ptr(), rows.numel(), cols.data_ptr(), cols.numel(),
            ry, pairs, kind.data_ptr(), off.data_ptr(), col.data_ptr(), start.data_ptr(), wt.data_ptr(), wt.numel())
    lib = _library(str(cpp_compiler()))
    if x.dtype == torch.uint8:
        lib.grouped_filter_u8(*args, _levels().data_ptr(), out.data_ptr(), torch.get_num_threads())
    else:
        lib.grouped_filter_f32(*args, out.data_ptr(), torch.get_num_threads())
    return out


def to_interleaved(image: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """A contiguous uint8 (C, H, W) image written into ``out``'s (H, W, C) storage; ``out``."""
    c, h, w = image.shape
    _library(str(cpp_compiler())).planar_to_interleaved_u8(image.data_ptr(), c, h * w, out.data_ptr())
    return out


def to_planar(interleaved: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """A (C, H, W) view of (H, W, C)-contiguous uint8 memory written into contiguous ``out``; ``out``."""
    c, h, w = out.shape
    if (interleaved.shape != out.shape or interleaved.permute(1, 2, 0).stride() != (w * c, c, 1)
            or interleaved.dtype != torch.uint8):
        raise ValueError("to_planar needs a (C, H, W) view of interleaved (H, W, C) uint8 memory")
    _library(str(cpp_compiler())).interleaved_to_planar_u8(interleaved.data_ptr(), c, h * w, out.data_ptr())
    return out


def jpeg_roundtrip(levels: torch.Tensor, quality: int, *, threads: int | None = None) -> torch.Tensor:
    """libjpeg-turbo's JPEG encode + decode of uint8 (N, C, H, W) images (C = 1 or 3, RGB as
    4:2:0) at ``quality``, without the lossless entropy coding (:mod:`corruptions.native_jpeg`);
    images are split between ``threads`` (default torch's), which does not change the result."""
    levels = levels.contiguous()
    n, c, h, w = levels.shape
    out = torch.empty_like(levels)
    _library(str(cpp_compiler())).jpeg_roundtrip_u8(levels.data_ptr(), n, c, h, w, kernel_tables(int(quality)).data_ptr(),
                                                    out.data_ptr(), max(1, threads or torch.get_num_threads()))
    return out
