"""Blur corruptions: defocus_blur, glass_blur, zoom_blur (group blur) and gaussian_blur (extra).

motion_blur (also group blur) lives in :mod:`corruptions.motion`.

Parameters (for ``apply(..., params={...})``): gaussian_blur ``sigma``; defocus_blur
``radius``, ``alias_sigma``; zoom_blur ``zooms`` (a list of zoom factors >= 1);
glass_blur ``sigma``, ``max_delta``, ``iterations``.

All kernels run on the whole batch at once. glass_blur's reference is a sequential
Python loop of pixel "swaps" (which, on numpy views, are really copies from a random
neighbour); :func:`glass_sources` reproduces that loop bit-exactly with batched
gathers and pointer jumping, so it has the reference's statistics by construction.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import torch

from corruptions import native, ops
from corruptions.registry import DEFAULT_CHUNK_VALUES, CorruptionError, register
from corruptions.rng import SampleRNG


def _float_param(name: str, key: str, value: object, low: float = 0.0) -> float:
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise CorruptionError(f"{name}: parameter {key} must be a number, got {value!r}") from None
    if not math.isfinite(v) or v < low:
        raise CorruptionError(
            f"{name}: parameter {key} must be a finite number >= {low}, got {value!r}"
        )
    return v


def _int_param(name: str, key: str, value: object, low: int) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or int(value) != value
        or value < low
    ):
        raise CorruptionError(f"{name}: parameter {key} must be an integer >= {low}, got {value!r}")
    return int(value)


# --------------------------------------------------------------------------- gaussian_blur


@register(
    "gaussian_blur",
    chunk_values=DEFAULT_CHUNK_VALUES,
    group="extra",
    presets={
        "cifar": [0.4, 0.6, 0.7, 0.8, 1.0],
        "tinyimagenet": [0.5, 0.75, 1.0, 1.25, 1.5],
        "imagenet": [1.0, 2.0, 3.0, 4.0, 6.0],
    },
    param_names=("sigma",),
    random=False,
    description="Gaussian filter per channel (skimage.filters.gaussian: mode nearest, truncate 4)",
)
def gaussian_blur(images: torch.Tensor, params: dict, rng: SampleRNG) -> torch.Tensor:
    """skimage.filters.gaussian(x, sigma, channel_axis=-1): scipy taps, border 'nearest'."""
    sigma = _float_param("gaussian_blur", "sigma", params["sigma"])
    return ops.gaussian_filter(images, sigma, mode="nearest", truncate=4.0)


# --------------------------------------------------------------------------- defocus_blur


#: The first output version whose defocus_blur is :func:`ops.grouped_filter2d` (a fixed order)
GROUPED_DEFOCUS_VERSION = 4


def _defocus_kernel(params: dict) -> torch.Tensor:
    """The anti-aliased disk of ``params`` (validated)."""
    radius = _float_param("defocus_blur", "radius", params["radius"])
    alias = _float_param("defocus_blur", "alias_sigma", params["alias_sigma"])
    if alias <= 0:
        raise CorruptionError(f"defocus_blur: alias_sigma must be > 0, got {alias!r}")
    return ops.disk_kernel(radius, alias)


def _defocus_levels(levels: torch.Tensor, params: dict, rng: SampleRNG) -> torch.Tensor | None:
    """uint8 images to apply's uint8 levels in one native pass (version 4 on; the float path's
    levels); None where the native kernels are not in use or the version is older."""
    if rng.version < GROUPED_DEFOCUS_VERSION or not native.active(levels.device):
        return None
    return ops.grouped_filter2d(levels, _defocus_kernel(params), mode="mirror")


@register(
    "defocus_blur",
    chunk_values=DEFAULT_CHUNK_VALUES,
    group="blur",
    presets={
        "cifar": [(0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)],
        "tinyimagenet": [(0.5, 0.6), (1, 0.1), (1.5, 0.1), (2.5, 0.01), (3, 0.1)],
        "imagenet": [(3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5)],
    },
    param_names=("radius", "alias_sigma"),
    random=False,
    description="convolution with an anti-aliased disk (cv2.filter2D, BORDER_REFLECT_101)",
    levels_fn=_defocus_levels,
)
def defocus_blur(images: torch.Tensor, params: dict, rng: SampleRNG) -> torch.Tensor:
    """Each channel correlated with the normalised, Gaussian-smoothed disk of ``radius``
    (from output version 4 as equal-weight tap sums in a fixed order, before as one convolution)."""
    kernel = _defocus_kernel(params)
    if rng.version >= GROUPED_DEFOCUS_VERSION:
        return ops.grouped_filter2d(images, kernel, mode="mirror")
    return ops.filter2d(images, kernel, mode="mirror")


# --------------------------------------------------------------------------- zoom_blur


def _arange(start: float, stop: float, step: float) -> tuple[float, ...]:
    """numpy.arange(start, stop, step) for floats, value for value (length ceil((stop-start)/step))."""
    n = math.ceil((stop - start) / step)
    delta = (start + step) - start
    return tuple(start + i * delta for i in range(n))


# np.arange(1, 1.06, 0.01) has 7 values (1.00 .. 1.06) because of float rounding; the
# reference scripts use these arrays as they are, so the tables below do too.
_ZOOM_SMALL = [_arange(1, stop, 0.01) for stop in (1.06, 1.11, 1.16, 1.21, 1.26)]
_ZOOM_IMAGENET = [
    _arange(1, 1.11, 0.01),
    _arange(1, 1.16, 0.01),
    _arange(1, 1.21, 0.02),
    _arange(1, 1.26, 0.02),
    _arange(1, 1.31, 0.03),
]


@functools.lru_cache(maxsize=256)
def _zoom_taps(size: int, zoom: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Source taps (i0, i1) and weights of one axis of the reference's ``clipped_zoom``.

    Crop ``ch = ceil(size/zoom)`` centred pixels, scipy.ndimage.zoom(order=1) them to
    ``round(ch*zoom)`` (output pixel o samples input o*(ch-1)/(out-1), grid_mode=False),
    then keep ``size`` pixels from ``(out-size)//2``.
    """
    ch = math.ceil(size / zoom)
    top = (size - ch) // 2
    out = round(ch * zoom)
    trim = (out - size) // 2
    ratio = (ch - 1) / (out - 1) if out > 1 else 1.0
    src = (torch.arange(size, dtype=torch.float64) + trim) * ratio
    i0 = torch.floor(src).clamp(0, ch - 1)
    frac = src - i0
    i0 = i0.to(torch.int64)
    i1 = (i0 + 1).clamp(max=ch - 1)
    return i0 + top, i1 + top, frac


def _lerp_taps(x: torch.Tensor, dim: int, i0: torch.Tensor, i1: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """``x[i0] * (1 - f) + x[i1] * f`` along ``dim``: the same two products and sum, in place."""
    if dim == x.dim() - 1:
        return ops.select_last(x, i0).mul_(1 - f).add_(ops.select_last(x, i1).mul_(f))
    out = x.index_select(dim, i0).mul_(1 - f)
    return out.add_(x.index_select(dim, i1).mul_(f))


def _clipped_zoom(x: torch.Tensor, zoom: float) -> torch.Tensor:
    """Centre zoom of every plane of ``x`` (N, C, H, W), cropped back to H x W."""
    h, w = x.shape[-2:]
    i0, i1, fh = (t.to(x.device) for t in _zoom_taps(h, zoom))
    rows = _lerp_taps(x, 2, i0, i1, fh.to(x.dtype).view(-1, 1))
    j0, j1, fw = (t.to(x.device) for t in _zoom_taps(w, zoom))
    return _lerp_taps(rows, 3, j0, j1, fw.to(x.dtype))


@register(
    "zoom_blur",
    chunk_values=DEFAULT_CHUNK_VALUES,
    group="blur",
    presets={
        "cifar": [(z,) for z in _ZOOM_SMALL],
        "tinyimagenet": [(z,) for z in _ZOOM_SMALL],
        "imagenet": [(z,) for z in _ZOOM_IMAGENET],
    },
    param_names=("zooms",),
    random=False,
    description="mean of the image and its centre-zoomed copies (bilinear, cropped back)",
)
def zoom_blur(images: torch.Tensor, params: dict, rng: SampleRNG) -> torch.Tensor:
    """(x + sum_z clipped_zoom(x, z)) / (len(zooms) + 1), as the reference scripts."""
    zooms = params["zooms"]
    if isinstance(zooms, (int, float)):
        zooms = (zooms,)
    if not isinstance(zooms, Sequence) or len(zooms) == 0:
        raise CorruptionError(
            f"zoom_blur: zooms must be a non-empty list of factors >= 1, got {zooms!r}"
        )
    factors = [_float_param("zoom_blur", "zooms", z, low=1.0) for z in zooms]
    out = images.clone()
    for z in factors:
        # zoom 1 samples every pixel at weight exactly 1 (x * 1 + x' * 0 == x): skip the taps
        out += images if z == 1.0 else _clipped_zoom(images, z)
    return out / (len(factors) + 1)


# --------------------------------------------------------------------------- glass_blur


def glass_sources(
    dy: torch.Tensor, dx: torch.Tensor, height: int, width: int, max_delta: int
) -> torch.Tensor:
    """Source pixel of every pixel after the reference's sequential "swap" loop.

    The reference runs ``for h in range(H-d, d, -1): for w in range(W-d, d, -1):
    x[h, w], x[h+dy, w+dx] = x[h+dy, w+dx], x[h, w]`` on an (H, W, 3) numpy array.
    The right-hand side holds *views*, so this is not a swap: pixel (h, w) gets the
    current value of (h+dy, w+dx) and that pixel keeps its value. Hence the result of
    one pass is a gather: pixel p takes the input at t = p + offset(p), unless t was
    already overwritten earlier in the scan (t is visited and lies after p in raster
    order), in which case p takes whatever t took. Those chains are resolved by
    pointer jumping (log2(longest chain) batched gathers), so the result is
    bit-identical to the loop, with no per-pixel Python loop.

    ``dy``, ``dx``: (N, iterations, H-2d, W-2d) integer offsets in [-d, d); entry
    [..., i, j] is the draw of pixel (d+1+i, d+1+j). Returns (N, H*W) int64 ``src`` with
    ``out.flatten()[p] = image.flatten()[src[p]]``.
    """
    d = max_delta
    n, iters = dy.shape[:2]
    hw = height * width
    device = dy.device
    src = torch.arange(hw, device=device).repeat(n, 1)
    hp, wp = height - 2 * d, width - 2 * d
    if hp <= 0 or wp <= 0 or iters == 0:
        return src
    rows = torch.arange(d + 1, d + 1 + hp, device=device).view(-1, 1)
    cols = torch.arange(d + 1, d + 1 + wp, device=device).view(1, -1)
    pos = (rows * width + cols).flatten()  # visited pixels (raster ids)
    visited = torch.zeros(hw, dtype=torch.bool, device=device)
    visited[pos] = True
    for it in range(iters):
        ty = rows + dy[:, it].to(torch.int64)  # (N, hp, wp)
        tx = cols + dx[:, it].to(torch.int64)
        tgt = (ty * width + tx).reshape(n, -1)
        ptr = torch.arange(hw, device=device).repeat(n, 1)
        ptr[:, pos] = tgt
        cont = torch.zeros(n, hw, dtype=torch.bool, device=device)
        # t overwritten before p is read: t visited and later in raster order (scanned earlier)
        cont[:, pos] = visited[tgt] & (tgt > pos)
        while bool(cont.any()):
            nxt_ptr = ptr.gather(1, ptr)
            nxt_cont = cont.gather(1, ptr)
            ptr = torch.where(cont, nxt_ptr, ptr)
            cont = cont & nxt_cont
        src = src.gather(1, ptr)
    return src


@register(
    "glass_blur",
    chunk_values=DEFAULT_CHUNK_VALUES,
    group="blur",
    presets={
        "cifar": [(0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)],
        "tinyimagenet": [(0.1, 1, 1), (0.5, 1, 1), (0.6, 1, 2), (0.7, 2, 1), (0.9, 2, 2)],
        "imagenet": [(0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2)],
    },
    param_names=("sigma", "max_delta", "iterations"),
    description="Gaussian blur, local pixel shuffling, Gaussian blur again",
)
def glass_blur(images: torch.Tensor, params: dict, rng: SampleRNG) -> torch.Tensor:
    """uint8(gaussian(x) * 255), the reference's local pixel shuffle, then gaussian(x / 255) again."""
    sigma = _float_param("glass_blur", "sigma", params["sigma"])
    d = _int_param("glass_blur", "max_delta", params["max_delta"], 1)
    iters = _int_param("glass_blur", "iterations", params["iterations"], 0)
    n, c, h, w = images.shape
    y = ops.gaussian_filter(images, sigma, mode="nearest", truncate=4.0)
    # the reference stores the first blur as uint8 (truncation); 1e-4 absorbs float32 noise
    y = torch.floor(y.clamp(0.0, 1.0) * 255.0 + 1e-4)
    hp, wp = h - 2 * d, w - 2 * d
    if hp > 0 and wp > 0 and iters > 0:
        off = rng.randint(-d, d, iters, 2, hp, wp)  # reference order: dx, dy
        src = glass_sources(off[:, :, 1], off[:, :, 0], h, w, d)
        y = (
            y.reshape(n, c, h * w)
            .gather(2, src.unsqueeze(1).expand(n, c, h * w))
            .reshape(n, c, h, w)
        )
    return ops.gaussian_filter(y / 255.0, sigma, mode="nearest", truncate=4.0)
