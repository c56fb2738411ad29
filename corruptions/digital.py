"""Digital corruptions: contrast, elastic_transform, pixelate, jpeg_compression (group
digital), brightness (group weather) and saturate (extra).

Parameters (for ``apply(..., params={...})``): contrast ``factor``; brightness
``delta`` (added to V in HSV); saturate ``scale``, ``shift`` (S := S*scale + shift);
pixelate ``scale`` (box-down to int(size*scale) then box-up); jpeg_compression
``quality`` (1..100, libjpeg/PIL scale); elastic_transform ``alpha``, ``sigma``,
``affine`` as fractions of the image size min(H, W) (the reference multiplies by
IMSIZE; its ImageNet table by 244 at 224 px, kept here as factors * 244/224).

Everything is batched on tensors except the JPEG round trip, whose pixels are Pillow's
``save(format='JPEG', quality=q)`` / ``open`` (4:2:0, baseline, islow DCT: the reference's
codec), computed on the CPU by the native kernel where a probe shows it exact, else by the
codec per image on a thread pool (:func:`corruptions.imageio.jpeg_roundtrip`).
"""

from __future__ import annotations

import functools
import math

import torch

from corruptions import native, ops
from corruptions.registry import DEFAULT_CHUNK_VALUES, CorruptionError, register
from corruptions.rng import SampleRNG


def _number(name: str, key: str, value: object, low: float | None = None) -> float:
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise CorruptionError(f"{name}: parameter {key} must be a number, got {value!r}") from None
    if not math.isfinite(v) or (low is not None and v < low):
        bound = f" >= {low}" if low is not None else ""
        raise CorruptionError(
            f"{name}: parameter {key} must be a finite number{bound}, got {value!r}"
        )
    return v


# --------------------------------------------------------------------------- HSV (skimage)


def hsv_planes(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """skimage.color.rgb2hsv on (N, 3, H, W) as three (N, H, W) planes H, S, V in [0, 1].

    The same arithmetic as skimage (ties: blue over green over red), each step in place
    on one plane instead of full-size temporaries and selects.
    """
    r, g, b = x.unbind(1)
    v = x.amax(1)
    delta = x.amin(1).neg_().add_(v)  # v - min
    grey = delta == 0
    safe = delta.masked_fill(grey, 1.0)
    s = delta.div_(v.masked_fill(v == 0, 1.0)).masked_fill_(grey, 0.0)
    h = torch.sub(g, b).div_(safe).masked_fill_(r != v, 0.0)
    for first, second, offset, channel in ((b, r, 2.0, g), (r, g, 4.0, b)):
        later = torch.sub(first, second).div_(safe).add_(offset)
        h = torch.where(channel == v, later, h, out=later)
    h = h.div_(6.0).remainder_(1.0).masked_fill_(grey, 0.0)
    return h, s, v


def rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    """skimage.color.rgb2hsv on (N, 3, H, W): H, S, V in [0, 1], ties resolved like skimage."""
    return torch.stack(hsv_planes(x), 1)


# hsv2rgb sector table over the candidates (v, t, p, q)
_HSV_SECTORS = torch.tensor([[0, 1, 2], [3, 0, 2], [2, 0, 1], [2, 3, 0], [1, 2, 0], [0, 2, 3]])


def rgb_from_planes(h: torch.Tensor, s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """skimage.color.hsv2rgb of (N, H, W) planes, as (N, 3, H, W); ``h`` is consumed."""
    h6 = h.mul_(6.0)
    hi = torch.floor(h6)
    f = h6.sub_(hi)
    p = torch.neg(s).add_(1.0).mul_(v)  # v * (1 - s)
    q = torch.mul(f, s).neg_().add_(1.0).mul_(v)  # v * (1 - f s)
    t = f.neg_().add_(1.0).mul_(s).neg_().add_(1.0).mul_(v)  # v * (1 - (1 - f) s)
    sector = torch.remainder(hi.to(torch.int64), 6)
    cand = torch.stack([v, t, p, q], 1)  # (N, 4, H, W)
    idx = _HSV_SECTORS.to(h.device)[sector].permute(0, 3, 1, 2)  # (N, 3, H, W)
    return cand.gather(1, idx)


def hsv_to_rgb(hsv: torch.Tensor) -> torch.Tensor:
    """skimage.color.hsv2rgb on (N, 3, H, W)."""
    h, s, v = hsv.unbind(1)
    return rgb_from_planes(h.clone(), s, v)


# --------------------------------------------------------------------------- contrast


@register(
    "contrast",
    chunk_values=DEFAULT_CHUNK_VALUES,
    group="digital",
    presets={
        "cifar": [0.75, 0.5, 0.4, 0.3, 0.15],
        "tinyimagenet": [0.4, 0.3, 0.2, 0.1, 0.05],
        "imagenet": [0.4, 0.3, 0.2, 0.1, 0.05],
    },
    param_names=("factor",),
    random=False,
    description="(x - mean) * factor + mean, mean per image and channel",
)
def contrast(images: torch.Tensor, params: dict, rng: SampleRNG) -> torch.Tensor:
    """Contrast reduction towards the per-image, per-channel mean."""
    factor = _number("contrast", "factor", params["factor"], 0.0)
    x = images.to(torch.float64)
    means = x.mean(dim=(2, 3), keepdim=True)
    return x.sub_(means).mul_(factor).add_(means).to(images.dtype)  # in place: the same steps


# --------------------------------------------------------------------------- brightness / saturate


@register(
    "brightness",
    chunk_values=DEFAULT_CHUNK_VALUES,
    group="weather",
    presets={
        "cifar": [0.05, 0.1, 0.15, 0.2, 0.3],
        "tinyimagenet": [0.1, 0.2, 0.3, 0.4, 0.5],
        "imagenet": [0.1, 0.2, 0.3, 0.4, 0.5],
    },
    param_names=("delta",),
    random=False,
    rgb=True,
    description="V := clip(V + delta) in HSV",
)
def brightness(images: torch.Tensor, params: dict, rng: SampleRNG) -> torch.Tensor:
    """skimage rgb2hsv, V += delta (clipped), hsv2rgb; computed in float64."""
    delta = _number("brightness", "delta", params["delta"])
    h, s, v = hsv_planes(images.to(torch.float64))
    return rgb_from_planes(h, s, v.add_(delta).clamp_(0.0, 1.0)).to(images.dtype)


@register(
    "saturate",
    chunk_values=DEFAULT_CHUNK_VALUES,
    group="extra",
    presets={
        "cifar": [(0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2)],
        "tinyimagenet": [(0.3, 0), (0.1, 0), (2, 0), (5, 0.1), (30, 0.2)],
        "imagenet": [(0.3, 0), (0.1, 0), (2, 0), (5, 0.1), (20, 0.2)],
    },
    param_names=("scale", "shift"),
    random=False,
    rgb=True,
    description="S := clip(S * scale + shift) in HSV",
)
def saturate(images: torch.Tensor, params: dict, rng: SampleRNG) -> torch.Tensor:
    """skimage rgb2hsv, S := S*scale + shift (clipped), hsv2rgb; computed in float64."""
    scale = _number("saturate", "scale", params["scale"])
    shift = _number("saturate", "shift", params["shift"])
    h, s, v = hsv_planes(images.to(torch.float64))
    return rgb_from_planes(h, s.mul_(scale).add_(shift).clamp_(0.0, 1.0), v).to(images.dtype)


# --------------------------------------------------------------------------- pixelate (PIL BOX)

_PRECISION_BITS = 32 - 8 - 2  # Pillow's fixed-point precision for 8-bit images


@functools.lru_cache(maxsize=256)
def _pil_box_coeffs(in_size: int, out_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pillow's precompute_coeffs + normalize_coeffs_8bpc for the BOX filter.

    Returns (out_size, ksize) source indices and int64 fixed-point weights. Pillow's
    BOX is a box on pixel centres (weight 1 if (x + 0.5 - centre)/scale in (-0.5, 0.5],
    renormalised), not an area average: upsampling is nearest-neighbour.
    """
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = 0.5 * filterscale
    ksize = int(math.ceil(support)) * 2 + 1
    ss = 1.0 / filterscale
    idx = torch.zeros(out_size, ksize, dtype=torch.int64)
    kk = torch.zeros(out_size, ksize, dtype=torch.int64)
    for xx in range(out_size):  # table construction only (once per size pair)
        center = (xx + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)
        xmax = min(int(center + support + 0.5), in_size) - xmin
        ws = [1.0 if -0.5 < (x + xmin - center + 0.5) * ss <= 0.5 else 0.0 for x in range(xmax)]
        ww = sum(ws)
        for x, wgt in enumerate(ws):
            k = wgt / ww if ww != 0.0 else wgt
            kk[xx, x] = int(0.5 + k * (1 << _PRECISION_BITS))
            idx[xx, x] = xmin + x
    return idx, kk


@functools.lru_cache(maxsize=256)
def _pil_box_taps(in_size: int, out_size: int) -> tuple[tuple[torch.Tensor, torch.Tensor], ...] | torch.Tensor:
    """The nonzero tap columns (source index, weight) of :func:`_pil_box_coeffs`, or, when
    every output pixel copies one source pixel (weight 1.0: upsampling), its source indices."""
    idx, kk = _pil_box_coeffs(in_size, out_size)
    one = 1 << _PRECISION_BITS
    if bool(((kk == one).sum(1) == 1).all()) and bool(((kk == 0) | (kk == one)).all()):
        return (idx * (kk == one)).sum(1)
    return tuple((idx[:, t], kk[:, t]) for t in range(idx.shape[1]) if bool(kk[:, t].any()))


@functools.lru_cache(maxsize=256)
def pil_box_tables(in_size: int, out_size: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    """:func:`_pil_box_coeffs` for the native kernels: int32 (taps, out), each output's nonzero
    taps first, all-zero tap columns dropped (integer sums: the order does not matter); None
    when the size is kept."""
    if in_size == out_size:
        return None
    idx, weights = _pil_box_coeffs(in_size, out_size)
    order = (weights == 0).to(torch.int8).argsort(dim=1, stable=True)
    idx, weights = idx.gather(1, order), weights.gather(1, order)
    taps = int((weights != 0).sum(1).max())
    return idx[:, :taps].t().to(torch.int32).contiguous(), weights[:, :taps].t().to(torch.int32).contiguous()


def _pil_box_axis(levels: torch.Tensor, out_size: int, dim: int) -> torch.Tensor:
    """Resample integer levels (N, C, H, W) along ``dim`` (2 or 3) exactly like Pillow 8bpc.

    One gather-multiply-add per filter tap (no (..., out, taps) intermediate); a plain
    gather where each output pixel copies one input pixel, as Pillow's BOX filter does
    when upsampling ((L * 2**22 + 2**21) >> 22 = L). int32 is exact: a sum is at most
    255 * (2**22 + taps / 2) + 2**21 < 2**31.
    """
    in_size = levels.shape[dim]
    if in_size == out_size:
        return levels
    taps = _pil_box_taps(in_size, out_size)
    if isinstance(taps, torch.Tensor):
        return levels.index_select(dim, taps.to(levels.device))
    kshape = [1] * levels.ndim
    kshape[dim] = out_size
    acc: torch.Tensor | None = None
    for src, weights in taps:
        term = levels.index_select(dim, src.to(levels.device))
        term.mul_(weights.to(device=levels.device, dtype=levels.dtype).view(kshape))
        acc = term if acc is None else acc.add_(term)
    assert acc is not None  # a box filter always has a nonzero tap column
    acc += 1 << (_PRECISION_BITS - 1)
    return acc.bitwise_right_shift_(_PRECISION_BITS).clamp_(0, 255)


def pil_box_resize(levels: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """PIL ``Image.resize((width, height), Image.BOX)`` on uint8-valued integer levels (N, C, H, W).

    Horizontal pass first, rounded to 8 bits, then vertical, as Pillow does (on the CPU in
    one native call: the same integer arithmetic, so the same levels).
    """
    if native.active(levels.device):
        rows, cols = pil_box_tables(levels.shape[2], height), pil_box_tables(levels.shape[3], width)
        return native.pil_box_resize(levels, rows, cols)
    if levels.shape[3] != width:
        # gathers along dim 2 copy whole rows; along dim 3 they are ~10x slower on CPU
        levels = _pil_box_axis(levels.transpose(2, 3).contiguous(), width, 2).transpose(2, 3)
    return _pil_box_axis(levels.contiguous(), height, 2)


@functools.lru_cache(maxsize=256)
def _pil_nearest_index(in_size: int, out_size: int) -> torch.Tensor:
    """Source index of each output pixel of Pillow's NEAREST resize along one axis.

    Pillow steps a double ``(x + 0.5) * in / out`` by repeated addition and truncates it,
    so ties land where that accumulated sum does; replayed here in the same arithmetic.
    """
    step = in_size / out_size
    pos = step * 0.5
    out = []
    for _ in range(out_size):  # table construction only (once per size pair)
        out.append(min(int(pos), in_size - 1))
        pos += step
    return torch.tensor(out, dtype=torch.int64)


def pil_nearest_resize(images: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """PIL ``Image.resize((width, height), Image.NEAREST)`` on (N, C, H, W) tensors, exactly."""
    rows = _pil_nearest_index(images.shape[2], height).to(images.device)
    cols = _pil_nearest_index(images.shape[3], width).to(images.device)
    return ops.select_last(images.index_select(2, rows), cols)


def _pixelate_levels(levels: torch.Tensor, params: dict, rng: SampleRNG) -> torch.Tensor:
    """Pixelate on 8-bit levels (integer tensor (N, C, H, W)): exact PIL BOX down, then up."""
    scale = _number("pixelate", "scale", params["scale"])
    n, c, h, w = levels.shape
    sh, sw = int(h * scale), int(w * scale)
    if not 0 < scale <= 1 or sh < 1 or sw < 1:
        raise CorruptionError(
            f"pixelate: scale must be in (0, 1] and leave >= 1 pixel, got {scale!r}"
        )
    if native.active(levels.device):  # both resizes in one call: the same levels, as uint8
        down = (pil_box_tables(h, sh), pil_box_tables(w, sw))
        return native.pil_box_pixelate(levels, (sh, sw), down, (pil_box_tables(sh, h), pil_box_tables(sw, w)))
    return pil_box_resize(pil_box_resize(levels.to(torch.int32), sh, sw), h, w)


@register(
    "pixelate",
    chunk_values=DEFAULT_CHUNK_VALUES,
    group="digital",
    presets={
        "cifar": [0.95, 0.9, 0.85, 0.75, 0.65],
        "tinyimagenet": [0.9, 0.8, 0.7, 0.6, 0.5],
        "imagenet": [0.6, 0.5, 0.4, 0.3, 0.25],
    },
    param_names=("scale",),
    random=False,
    description="PIL BOX resize to int(size*scale) and back",
    levels_fn=_pixelate_levels,
)
def pixelate(images: torch.Tensor, params: dict, rng: SampleRNG) -> torch.Tensor:
    """Bit-exact PIL BOX down/up resize on the 8-bit image (as the reference's PIL path)."""
    levels = torch.round(images * 255.0).clamp(0, 255).to(torch.int32)
    return _pixelate_levels(levels, params, rng).to(images.dtype) / 255.0


# --------------------------------------------------------------------------- jpeg


def _jpeg_levels(levels: torch.Tensor, params: dict, rng: SampleRNG | None = None) -> torch.Tensor:
    """The codec round trip on 8-bit levels (uint8 input skips two float conversions: same bits)."""
    from corruptions.imageio import jpeg_roundtrip

    q = params["quality"]
    if isinstance(q, bool) or not isinstance(q, (int, float)) or int(q) != q or not 1 <= q <= 100:
        raise CorruptionError(f"jpeg_compression: quality must be an integer 1..100, got {q!r}")
    return jpeg_roundtrip(levels.cpu(), int(q)).to(levels.device)


@register(
    "jpeg_compression",
    chunk_values=DEFAULT_CHUNK_VALUES,
    group="digital",
    presets={
        "cifar": [80, 65, 58, 50, 40],
        "tinyimagenet": [65, 58, 50, 40, 25],
        "imagenet": [25, 18, 15, 10, 7],
    },
    param_names=("quality",),
    random=False,
    description="JPEG encode/decode at the given quality (Pillow, 4:2:0)",
    levels_fn=_jpeg_levels,
)
def jpeg_compression(images: torch.Tensor, params: dict, rng: SampleRNG) -> torch.Tensor:
    """Pillow's JPEG encode/decode pixels of each image (computed on the CPU), back to the input device."""
    levels = torch.round(images * 255.0).clamp(0, 255).to(torch.uint8)
    return _jpeg_levels(levels, params).to(images.dtype) / 255.0


# --------------------------------------------------------------------------- elastic_transform


def elastic_warp(
    images: torch.Tensor,
    jitter: torch.Tensor,
    noise_x: torch.Tensor,
    noise_y: torch.Tensor,
    alpha: float,
    sigma: float,
) -> torch.Tensor:
    """The reference elastic transform for given random inputs, batched.

    ``jitter``: (N, 3, 2) offsets (pixels) of the three affine control points;
    ``noise_x``/``noise_y``: (N, H, W) uniform(-1, 1) fields; ``alpha``, ``sigma`` in
    pixels. Stage 1 = cv2.getAffineTransform + warpAffine (bilinear on a 1/32-pixel
    grid, BORDER_REFLECT_101); stage 2 = displacement gaussian(noise, sigma,
    mode='reflect', truncate=3) * alpha and map_coordinates(order=1, mode='reflect').
    """
    n, c, h, w = images.shape
    dev = images.device
    # control points exactly as the reference builds them (cv2 reads them as (x, y))
    c0, c1 = float(h // 2), float(w // 2)
    sq = float(min(h, w) // 3)
    pts1 = torch.tensor(
        [[c0 + sq, c1 + sq], [c0 + sq, c1 - sq], [c0 - sq, c1 - sq]], dtype=torch.float32
    )
    pts2 = (pts1.to(dev) + jitter.to(device=dev, dtype=torch.float32)).to(torch.float64)
    src = torch.cat([pts1.to(torch.float64), torch.ones(3, 1, dtype=torch.float64)], 1).to(dev)
    m = torch.linalg.solve(src.expand(n, 3, 3), pts2).transpose(
        1, 2
    )  # (N, 2, 3): M @ [x, y, 1] = dst
    lin_inv = torch.linalg.inv(m[:, :, :2])
    shift_inv = -(lin_inv @ m[:, :, 2:]).squeeze(-1)  # (N, 2)
    yy, xx = torch.meshgrid(
        torch.arange(h, device=dev, dtype=torch.float64),
        torch.arange(w, device=dev, dtype=torch.float64),
        indexing="ij",
    )

    # cv2.warpAffine's fixed-point addressing (AB_BITS = 10, INTER_BITS = 5): the row
    # part and the column part of the inverse map are rounded to 1/1024 separately,
    # summed with a half-step, and truncated to the 1/32-pixel interpolation grid.
    def address(row: int) -> torch.Tensor:
        a = lin_inv[:, row, 0, None, None]
        b = lin_inv[:, row, 1, None, None]
        base = torch.round((b * yy + shift_inv[:, row, None, None]) * 1024.0) + 16.0
        delta = torch.round(a * xx * 1024.0)
        return torch.floor((base + delta) / 32.0) / 32.0

    sx = address(0)
    sy = address(1)
    warped = ops.sample_bilinear(images, sy, sx, mode="mirror")

    if alpha == 0.0:
        return warped
    kernel = ops.gaussian_kernel1d(sigma, truncate=3.0)
    fields = torch.stack([noise_x, noise_y], 1).to(device=dev, dtype=torch.float32)
    disp = ops.separable_filter_matrix(fields, kernel, kernel, "reflect") * alpha
    ys = yy.to(torch.float32) + disp[:, 1]
    xs = xx.to(torch.float32) + disp[:, 0]
    return ops.sample_bilinear(warped, ys, xs, mode="reflect")


_SIC = 244.0 / 224.0  # the ImageNet script multiplies by 244 at 224 px


@register(
    "elastic_transform",
    chunk_values=DEFAULT_CHUNK_VALUES,
    group="digital",
    presets={
        "cifar": [
            (0, 0, 0.08),
            (0.05, 0.2, 0.07),
            (0.08, 0.06, 0.06),
            (0.1, 0.04, 0.05),
            (0.1, 0.03, 0.03),
        ],
        "tinyimagenet": [
            (0, 0, 0.08),
            (0.05, 0.3, 0.06),
            (0.1, 0.08, 0.06),
            (0.1, 0.03, 0.03),
            (0.16, 0.03, 0.02),
        ],
        "imagenet": [
            tuple(v * _SIC for v in row)
            for row in [
                (2, 0.7, 0.1),
                (2, 0.08, 0.2),
                (0.05, 0.01, 0.02),
                (0.07, 0.01, 0.02),
                (0.12, 0.01, 0.02),
            ]
        ],
    },
    param_names=("alpha", "sigma", "affine"),
    description="random affine jitter, then smooth random displacement (fractions of the size)",
)
def elastic_transform(images: torch.Tensor, params: dict, rng: SampleRNG) -> torch.Tensor:
    """Hendrycks' elastic transform; parameters are multiplied by min(H, W)."""
    n, c, h, w = images.shape
    size = min(h, w)
    alpha = _number("elastic_transform", "alpha", params["alpha"], 0.0) * size
    sigma = _number("elastic_transform", "sigma", params["sigma"], 0.0) * size
    affine = _number("elastic_transform", "affine", params["affine"], 0.0) * size
    jitter = ((rng.uniform(3, 2, dtype=torch.float64) * 2.0 - 1.0) * affine).to(torch.float32)
    noise_x = rng.uniform(h, w, dtype=torch.float64).mul_(2.0).sub_(1.0)  # in place: the same steps
    noise_y = rng.uniform(h, w, dtype=torch.float64).mul_(2.0).sub_(1.0)
    return elastic_warp(images, jitter, noise_x, noise_y, alpha, sigma)
