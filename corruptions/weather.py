"""Weather corruptions (snow, fog; frost is in :mod:`corruptions.frost`) and spatter, batched and device-agnostic.

Each follows the Hendrycks scripts (``make_cifar_c.py``, ``make_tinyimagenet_c.py``,
``make_imagenet_c.py``) step by step on (N, C, H, W) tensors; the severity tables are
the ones of ``docs``/corruptions.md. Where the reference relies on a tool we do not
have, the replacement is stated in the function's docstring:

- snow: ImageMagick motion blur -> :func:`corruptions.motion.apply_motion_blur` (same
  kernel); ``scipy.ndimage.zoom(order=1)`` -> the same bilinear sampling, computed exactly.
- frost: in :mod:`corruptions.frost` (photographs or a procedural texture).
- fog: the diamond-square plasma fractal, vectorised over the batch, exact algorithm.
- spatter: OpenCV's Canny, distance transform, equalizeHist -> tensor versions
  (Canny with L1 Sobel magnitude, non-maximum suppression and iterated hysteresis;
  exact Euclidean distance instead of OpenCV's 5x5 chamfer approximation).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from corruptions import native
from corruptions.motion import apply_motion_blur, quantize_round
from corruptions.ops import pad2d, select_last, shift_filter, shift_gaussian
from corruptions.registry import DEFAULT_CHUNK_VALUES, CorruptionError, register
from corruptions.rng import SampleRNG

# cv2.cvtColor(RGB2GRAY) weights
GRAY_WEIGHTS = (0.299, 0.587, 0.114)


# ----------------------------------------------------------------------------- helpers


def _zoom_axis(
    size: int, zoom: float, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Source indices i0, i1 and weight f of ``clipped_zoom`` along one axis (scipy order=1)."""
    ch = int(math.ceil(size / zoom))
    top = (size - ch) // 2
    out = int(round(ch * zoom))  # scipy.ndimage.zoom's output length
    trim = (out - size) // 2
    o = torch.arange(trim, trim + size, device=device, dtype=torch.float64)
    scale = (ch - 1) / (out - 1) if out > 1 else 0.0  # grid_mode=False: corners aligned
    src = (o * scale).clamp(0.0, ch - 1)
    i0 = torch.floor(src).to(torch.int64).clamp(0, ch - 1)
    i1 = (i0 + 1).clamp(max=ch - 1)
    f = src - i0.to(torch.float64)
    return i0 + top, i1 + top, f


def clipped_zoom(x: torch.Tensor, zoom: float) -> torch.Tensor:
    """Centre-zoom the last two dims by ``zoom`` >= 1 and crop back (the reference's clipped_zoom).

    Crop the centre ``ceil(size / zoom)`` pixels, resample them bilinearly (scipy
    ``zoom(order=1)``: output length ``round(crop * zoom)``, corner-aligned grid) and
    keep the centre ``size`` pixels. Each axis is handled on its own, so non-square
    images work (the reference assumes square images).
    """
    h, w = x.shape[-2:]
    if zoom == 1:
        return x
    r0, r1, fr = _zoom_axis(h, zoom, x.device)
    c0, c1, fc = _zoom_axis(w, zoom, x.device)
    fr = fr.to(x.dtype).view(-1, 1)
    fc = fc.to(x.dtype)
    y = x.index_select(-2, r0) * (1 - fr) + x.index_select(-2, r1) * fr
    return select_last(y, c0) * (1 - fc) + select_last(y, c1) * fc


def rgb_to_gray(x: torch.Tensor) -> torch.Tensor:
    """Luma (N, 1, H, W) of RGB images with OpenCV's RGB2GRAY weights."""
    r, g, b = GRAY_WEIGHTS
    return r * x[:, 0:1] + g * x[:, 1:2] + b * x[:, 2:3]


# ----------------------------------------------------------------------------- snow


@register(
    "snow",
    chunk_values=DEFAULT_CHUNK_VALUES,
    group="weather",
    presets={
        "cifar": [
            (0.1, 0.2, 1, 0.6, 8, 3, 0.95),
            (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
            (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
            (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
            (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8),
        ],
        "tinyimagenet": [
            (0.1, 0.2, 1, 0.6, 8, 3, 0.8),
            (0.1, 0.2, 1, 0.5, 10, 4, 0.8),
            (0.15, 0.3, 1.75, 0.55, 10, 4, 0.7),
            (0.25, 0.3, 2.25, 0.6, 12, 6, 0.65),
            (0.3, 0.3, 1.25, 0.65, 14, 12, 0.6),
        ],
        "imagenet": [
            (0.1, 0.3, 3, 0.5, 10, 4, 0.8),
            (0.2, 0.3, 2, 0.5, 12, 4, 0.7),
            (0.55, 0.3, 4, 0.9, 12, 8, 0.7),
            (0.55, 0.3, 4.5, 0.85, 12, 8, 0.65),
            (0.55, 0.3, 2.5, 0.85, 12, 12, 0.55),
        ],
    },
    param_names=("loc", "scale", "zoom", "threshold", "blur_radius", "blur_sigma", "blend"),
    random=True,
    rgb=True,
    description="snow flakes: thresholded zoomed noise, motion-blurred at -135..-45 deg, added twice",
)
def snow(images: torch.Tensor, params: dict, rng: SampleRNG) -> torch.Tensor:
    """Snow layer N(loc, scale), zoomed, thresholded, motion-blurred; image whitened then layer added."""
    n, _, h, w = images.shape
    layer = rng.normal(h, w).to(images.dtype) * float(params["scale"]) + float(params["loc"])
    layer = clipped_zoom(layer.unsqueeze(1), float(params["zoom"]))
    layer = torch.where(layer < float(params["threshold"]), torch.zeros_like(layer), layer)
    # the reference stores the layer as an 8-bit PNG (truncation) before ImageMagick
    layer = torch.floor(layer.clamp(0.0, 1.0) * 255.0) / 255.0
    angles = rng.sample_uniform(-135.0, -45.0)
    layer = apply_motion_blur(
        layer, float(params["blur_radius"]), float(params["blur_sigma"]), angles, version=rng.version
    )
    layer = quantize_round(layer)  # ImageMagick writes 8 bits back (rounding)
    blend = float(params["blend"])
    whitened = torch.maximum(images, rgb_to_gray(images) * 1.5 + 0.5)
    x = blend * images + (1.0 - blend) * whitened
    return (x + layer + torch.flip(layer, dims=(-2, -1))).clamp(0.0, 1.0)


# ----------------------------------------------------------------------------- fog


def uniform16(rng: SampleRNG, shape: tuple[int, ...]) -> torch.Tensor:
    """Uniforms (N, *shape) in (0, 1) with 16-bit resolution, two per 32-bit draw.

    Half the hashing of ``rng.uniform``; plenty for the plasma's displacements (the map is
    normalised and ends up in 8 bits). Element k takes the low half of draw k // 2 when k
    is even, the high half when odd.
    """
    count = math.prod(shape)
    bits = rng.bits(((count + 1) // 2,))
    halves = torch.stack((bits & 0xFFFF, bits >> 16), dim=-1).reshape(rng.n, -1)[:, :count]
    return ((halves.to(torch.float32) + 0.5) * (1.0 / 65536.0)).reshape(rng.n, *shape)


def plasma_fractal(
    rng: SampleRNG, mapsize: int, wibble_decay: float, device: torch.device
) -> torch.Tensor:
    """Diamond-square height maps (N, mapsize, mapsize) in [0, 1], one per sample.

    The reference's algorithm level by level (its ``np.roll`` neighbours, ``wibble``
    starting at 100 and the noise ``wibble * U(-wibble, wibble)``), all samples at once.
    """
    if mapsize & (mapsize - 1):
        raise ValueError(f"mapsize must be a power of two, got {mapsize}")
    n = rng.n
    a = torch.zeros(n, mapsize, mapsize, device=device, dtype=torch.float32)
    step = mapsize
    wibble = 100.0

    def noise(shape: tuple[int, int]) -> torch.Tensor:
        return wibble * (uniform16(rng, shape).to(device) * (2 * wibble) - wibble)

    while step >= 2:
        half = step // 2
        corner = a[:, 0::step, 0::step]
        sq = corner + torch.roll(corner, -1, dims=1)
        sq = sq + torch.roll(sq, -1, dims=2)
        a[:, half::step, half::step] = sq / 4 + noise(sq.shape[1:])
        dr = a[:, half::step, half::step]
        ul = a[:, 0::step, 0::step]
        lt = dr + torch.roll(dr, 1, dims=1) + ul + torch.roll(ul, -1, dims=2)
        a[:, 0::step, half::step] = lt / 4 + noise(lt.shape[1:])
        tt = dr + torch.roll(dr, 1, dims=2) + ul + torch.roll(ul, -1, dims=1)
        a[:, half::step, 0::step] = tt / 4 + noise(tt.shape[1:])
        step //= 2
        wibble /= wibble_decay
    a = a - a.amin(dim=(1, 2), keepdim=True)
    return a / a.amax(dim=(1, 2), keepdim=True).clamp_min(1e-12)


@register(
    "fog",
    group="weather",
    presets={
        "cifar": [(0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)],
        "tinyimagenet": [(0.4, 3), (0.7, 3), (1, 2.5), (1.5, 2), (2, 1.75)],
        "imagenet": [(1.5, 2), (2, 2), (2.5, 1.7), (2.5, 1.5), (3, 1.4)],
    },
    param_names=("strength", "wibble_decay"),
    random=True,
    rgb=False,
    description="fog: add strength * diamond-square plasma, rescale by max/(max + strength)",
)
def fog(images: torch.Tensor, params: dict, rng: SampleRNG) -> torch.Tensor:
    """x + strength*plasma (top-left crop of a 2^k map), then x * max / (max + strength)."""
    n, _, h, w = images.shape
    mapsize = 1 << max(1, math.ceil(math.log2(max(h, w))))
    strength = float(params["strength"])
    plasma = plasma_fractal(rng, mapsize, float(params["wibble_decay"]), images.device)
    max_val = images.amax(dim=(1, 2, 3), keepdim=True)
    x = images + strength * plasma[:, None, :h, :w].to(images.dtype)
    return (x * max_val / (max_val + strength)).clamp(0.0, 1.0)


# ----------------------------------------------------------------------------- spatter

WATER_COLOR = (175 / 255.0, 238 / 255.0, 238 / 255.0)  # pale turquoise (R, G, B)
MUD_COLOR = (63 / 255.0, 42 / 255.0, 20 / 255.0)  # dark brown
_SPATTER_KERNEL = ((-2.0, -1.0, 0.0), (-1.0, 1.0, 1.0), (0.0, 1.0, 2.0))
_CANNY_LOW, _CANNY_HIGH = 50.0, 150.0
_DIST_TRUNC = 20
_TAN22, _TAN67 = math.tan(math.radians(22.5)), math.tan(math.radians(67.5))  # Canny's direction bins


def _box3(x: torch.Tensor) -> torch.Tensor:
    """cv2.blur(x, (3, 3)) with its default BORDER_REFLECT_101 (scipy 'mirror')."""
    third = [1.0 / 3.0] * 3
    return shift_filter(x, third, third, "mirror")


def _dilate3(b: torch.Tensor) -> torch.Tensor:
    """3x3 binary dilation of a bool (N, 1, H, W) map (outside counts as False)."""
    h, w = b.shape[-2:]
    p = F.pad(b, (1, 1, 0, 0))
    r = p[..., :, :w] | p[..., :, 1 : w + 1] | p[..., :, 2:]
    p = F.pad(r, (0, 0, 1, 1))
    return p[..., :h, :] | p[..., 1 : h + 1, :] | p[..., 2:, :]


def canny_edges(
    img: torch.Tensor, low: float = _CANNY_LOW, high: float = _CANNY_HIGH, max_rounds: int | None = None
) -> torch.Tensor:
    """Edge map (N, 1, H, W) bool of uint8-valued images like cv2.Canny(img, low, high).

    3x3 Sobel, L1 magnitude |gx| + |gy|, non-maximum suppression over the four quantised
    directions (OpenCV's tie rules: > the first neighbour and >= the second one, both > on
    diagonals), then
    hysteresis: weak pixels (> low) connected (8-neighbourhood) to strong ones (> high),
    propagated until nothing changes or for ``max_rounds`` rounds (default H + W; OpenCV
    has no limit, so a weak chain longer than that differs from it; the native kernel keeps
    the same limit).
    """
    gx = shift_filter(img, [1.0, 2.0, 1.0], [-1.0, 0.0, 1.0], "nearest")  # 3x3 Sobel
    gy = shift_filter(img, [-1.0, 0.0, 1.0], [1.0, 2.0, 1.0], "nearest")
    mag = gx.abs() + gy.abs()
    mp = pad2d(mag, (1, 1), (1, 1), "constant")
    h, w = img.shape[-2:]

    def nb(dy: int, dx: int) -> torch.Tensor:
        return mp[..., 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]

    ax, ay = gx.abs(), gy.abs()
    horiz = ay < ax * _TAN22
    vert = ay > ax * _TAN67
    same_sign = (gx * gy) > 0
    # y grows downwards: same sign -> the gradient points along the main diagonal
    d1 = (mag > nb(-1, -1)) & (mag > nb(1, 1))
    d2 = (mag > nb(-1, 1)) & (mag > nb(1, -1))
    keep = torch.where(
        horiz,
        (mag > nb(0, -1)) & (mag >= nb(0, 1)),
        torch.where(vert, (mag > nb(-1, 0)) & (mag >= nb(1, 0)), torch.where(same_sign, d1, d2)),
    )
    weak = keep & (mag > low)
    edges = weak & (mag > high)
    for _ in range(h + w if max_rounds is None else max_rounds):
        grown = _dilate3(edges) & weak
        if torch.equal(grown, edges):
            break
        edges = grown
    return edges


def truncated_distance(edges: torch.Tensor, limit: int = _DIST_TRUNC) -> torch.Tensor:
    """Euclidean distance (N, 1, H, W) of each pixel to the nearest edge pixel, capped at ``limit``.

    Exact, separable (min over columns then over rows of dx^2 + dy^2 within +-limit);
    OpenCV's distanceTransform(DIST_L2, 5) approximates the same distance with a chamfer mask.
    """
    inf = float(4 * limit * limit + 1)
    g = torch.where(edges, 0.0, inf).to(torch.float32)
    h, w = g.shape[-2:]
    gp = F.pad(g, (limit, limit, 0, 0), value=inf)
    best = g.clone()
    for d in range(1, limit + 1):  # +-d share d^2
        near = torch.minimum(
            gp[..., :, limit - d : limit - d + w], gp[..., :, limit + d : limit + d + w]
        )
        torch.minimum(best, near.add_(d * d), out=best)
    bp = F.pad(best, (0, 0, limit, limit), value=inf)
    out = best.clone()
    for d in range(1, limit + 1):
        near = torch.minimum(
            bp[..., limit - d : limit - d + h, :], bp[..., limit + d : limit + d + h, :]
        )
        torch.minimum(out, near.add_(d * d), out=out)
    return torch.sqrt(out).clamp(max=float(limit))


def equalize_hist(img: torch.Tensor) -> torch.Tensor:
    """cv2.equalizeHist per image of uint8-valued (N, 1, H, W) float tensors."""
    n = img.shape[0]
    v = img.reshape(n, -1).to(torch.int64).clamp(0, 255)
    total = v.shape[1]
    hist = torch.zeros(n, 256, device=img.device, dtype=torch.int64)
    hist.scatter_add_(1, v, torch.ones_like(v))
    first = (hist > 0).to(torch.int64).argmax(dim=1, keepdim=True)  # first non-empty bin
    h0 = hist.gather(1, first)
    cum = hist.cumsum(dim=1)
    scale = 255.0 / (total - h0).clamp_min(1).to(torch.float32)
    lut = torch.round((cum - h0).to(torch.float32) * scale).clamp(0, 255)
    out = lut.gather(1, v).to(img.dtype)
    const = (h0 == total).to(img.dtype)  # one grey level: OpenCV keeps that level
    out = out * (1 - const) + first.to(img.dtype) * const
    return out.view_as(img)


def _water_mask(liquid: torch.Tensor) -> torch.Tensor:
    """The reference's water shading (N, 1, H, W) in [0, 1] from the thresholded liquid layer."""
    # (liquid * 255).astype(np.uint8): truncation, and values > 1 wrap around like numpy's cast
    lu8 = torch.remainder(torch.floor(liquid * 255.0), 256.0)
    if lu8.dtype == torch.float32 and native.active(lu8.device):
        return native.water_mask(lu8, _TAN22, _TAN67)  # the ops below in one loop per image
    edges = canny_edges(lu8)
    dist = truncated_distance(edges)
    dist = torch.floor(_box3(dist))  # blur then astype(uint8)
    dist = equalize_hist(dist)
    dp = pad2d(dist, (1, 1), (1, 1), "mirror")
    h, w = dist.shape[-2:]
    dist = sum(
        k * dp[..., i : i + h, j : j + w]
        for i, row in enumerate(_SPATTER_KERNEL)
        for j, k in enumerate(row)
        if k != 0
    )
    dist = torch.round(dist).clamp(0.0, 255.0)  # filter2D to CV_8U
    dist = torch.round(_box3(dist))  # cv2.blur on uint8 keeps uint8 (rounded)
    m = lu8 * dist
    mx = m.amax(dim=(1, 2, 3), keepdim=True)
    return torch.where(mx > 0, m / mx.clamp_min(1e-12), torch.zeros_like(m))


def _spatter_layer(shape: torch.Size, params: dict, rng: SampleRNG, device: torch.device, dtype: torch.dtype
                   ) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """spatter's mask (N, 1, H, W), colour (3,) and whether it is water (else mud)."""
    n, _, h, w = shape
    mode = int(round(float(params["mode"])))
    if mode not in (0, 1):
        raise CorruptionError(f"spatter mode must be 0 (water) or 1 (mud), got {params['mode']!r}")
    liquid = rng.normal(h, w).to(dtype).unsqueeze(1) * float(params["scale"]) + float(params["loc"])
    liquid = shift_gaussian(liquid, float(params["sigma"]), "nearest")  # skimage's default mode
    thr = float(params["threshold"])
    liquid = torch.where(liquid < thr, torch.zeros_like(liquid), liquid)
    if mode == 0:
        m = _water_mask(liquid) * float(params["intensity"])
        return m, torch.tensor(WATER_COLOR, device=device, dtype=dtype), True
    m = (liquid > thr).to(dtype)
    m = shift_gaussian(m, float(params["intensity"]), "nearest")
    m = torch.where(m < 0.8, torch.zeros_like(m), m)
    return m, torch.tensor(MUD_COLOR, device=device, dtype=dtype), False


def _spatter_levels(levels: torch.Tensor, params: dict, rng: SampleRNG) -> torch.Tensor | None:
    """uint8 images to uint8 levels, the blend and apply's quantisation in one native pass (the
    float path's levels); None, drawing nothing, where the native kernels are not in use."""
    if not native.active(levels.device):
        return None
    m, colour, water = _spatter_layer(levels.shape, params, rng, levels.device, torch.float32)
    return native.spatter_blend(levels, m, colour, water)


@register(
    "spatter",
    chunk_values=DEFAULT_CHUNK_VALUES,
    group="extra",
    presets={
        "cifar": [
            (0.62, 0.1, 0.7, 0.7, 0.5, 0),
            (0.65, 0.1, 0.8, 0.7, 0.5, 0),
            (0.65, 0.3, 1, 0.69, 0.5, 0),
            (0.65, 0.1, 0.7, 0.69, 0.6, 1),
            (0.65, 0.1, 0.5, 0.68, 0.6, 1),
        ],
        "tinyimagenet": [
            (0.62, 0.1, 0.7, 0.7, 0.6, 0),
            (0.65, 0.1, 0.8, 0.7, 0.6, 0),
            (0.65, 0.3, 1, 0.69, 0.6, 0),
            (0.65, 0.1, 0.7, 0.68, 0.6, 1),
            (0.65, 0.1, 0.5, 0.67, 0.6, 1),
        ],
        "imagenet": [
            (0.65, 0.3, 4, 0.69, 0.6, 0),
            (0.65, 0.3, 3, 0.68, 0.6, 0),
            (0.65, 0.3, 2, 0.68, 0.5, 0),
            (0.65, 0.3, 1, 0.65, 1.5, 1),
            (0.67, 0.4, 1, 0.65, 1.5, 1),
        ],
    },
    param_names=("loc", "scale", "sigma", "threshold", "intensity", "mode"),
    random=True,
    rgb=True,
    description="spatter: blurred thresholded noise drawn as water (mode 0) or mud (mode 1)",
    levels_fn=_spatter_levels,
)
def spatter(images: torch.Tensor, params: dict, rng: SampleRNG) -> torch.Tensor:
    """Water drops (pale turquoise, edge shading) or mud blotches (dark brown) over the image."""
    m, colour, water = _spatter_layer(images.shape, params, rng, images.device, images.dtype)
    colour = colour.view(1, 3, 1, 1)
    if water:
        return (images + m * colour).clamp(0.0, 1.0)
    return (images * (1 - m) + colour * m).clamp(0.0, 1.0)
