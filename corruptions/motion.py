"""Motion blur as ImageMagick's ``MotionBlurImage`` does it, batched, one angle per sample.

ImageMagick (the reference scripts call it through Wand) builds a *one-sided* kernel:
``width = 2 * ceil(radius) + 1`` taps with weights ``exp(-i^2 / (2 sigma^2))`` for
``i = 0 .. width-1``, normalised to sum 1; tap ``i`` reads the pixel at column offset
``ceil(i*cos(angle) - 0.5)`` and row offset ``ceil(i*sin(angle) - 0.5)`` (x to the right,
y down), and pixels past the border are the nearest edge pixel (its default "edge"
virtual-pixel method). So a bright point is smeared into a line on the *opposite* side
of the offsets, starting at the point itself.

The blur is a sum over the ``width`` taps (each sample has its own offsets), so it costs
``width`` multiply-adds per pixel whatever the angle: on the CPU as shifted-window adds per
sample (no index tensors) for all but tiny samples, else as one gather per tap over the
batch (few calls, few kernel launches on a GPU); both add
the same products in the same order, so they give the same bits. Output versions 1 and 2
(:mod:`corruptions.streams`) blur images of 96x96 px and more by one FFT convolution per
sample with the dense kernel instead (the same result up to float rounding; it was the
faster way before the shifted-window sum); versions 3 on sum the taps at every size.
"""

from __future__ import annotations

import math

import torch

from corruptions.ops import index_add_deterministic, pad2d
from corruptions.registry import DEFAULT_CHUNK_VALUES, register
from corruptions.rng import SampleRNG


def motion_blur_width(radius: float) -> int:
    """Number of taps ImageMagick uses for ``radius`` (GetOptimalKernelWidth1D, radius > 0)."""
    if radius <= 0:
        raise ValueError(f"motion blur radius must be > 0, got {radius}")
    return int(2 * math.ceil(radius) + 1)


def tap_weights(radius: float, sigma: float) -> torch.Tensor:
    """The normalised one-sided Gaussian weights (width,), float64 on the CPU."""
    width = motion_blur_width(radius)
    s = max(abs(float(sigma)), 1e-12)  # MagickSigma guards sigma ~ 0
    i = torch.arange(width, dtype=torch.float64)
    w = torch.exp(-(i * i) / (2.0 * s * s))
    return w / w.sum()


def motion_blur_taps(
    radius: float, sigma: float, angles_deg: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Tap weights (width,) and integer row/column offsets (N, width) for each angle.

    ``angles_deg`` is a float tensor (N,) on the target device; the weights are float64
    on the same device, the offsets int64.
    """
    device = angles_deg.device
    w = tap_weights(radius, sigma).to(device)
    i = torch.arange(w.numel(), device=device, dtype=torch.float64)
    theta = angles_deg.to(torch.float64).reshape(-1, 1) * (math.pi / 180.0)
    # ImageMagick: offset.x = ceil(i * cos - 0.5), offset.y = ceil(i * sin - 0.5)
    dx = torch.ceil(i * torch.cos(theta) - 0.5).to(torch.int64)
    dy = torch.ceil(i * torch.sin(theta) - 0.5).to(torch.int64)
    return w, dy, dx


def motion_blur_kernels(
    radius: float,
    sigma: float,
    angles_deg: torch.Tensor,
    *,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Dense per-sample kernels (N, k, k), k = 2*width - 1, centred, for ``ops.filter2d_per_sample``.

    Correlating an image with kernel n (``mode="nearest"``) equals :func:`apply_motion_blur`
    with angle n. Each kernel sums to 1 (taps landing on the same cell add up).
    """
    w, dy, dx = motion_blur_taps(radius, sigma, angles_deg)
    n, width = dy.shape
    k = 2 * width - 1
    c = width - 1
    flat = (dy + c) * k + (dx + c)  # (N, width)
    kern = torch.zeros(n * k * k, device=angles_deg.device, dtype=torch.float64)
    rows = torch.arange(n, device=flat.device).view(-1, 1) * (k * k)
    index_add_deterministic(kern, (flat + rows).reshape(-1), w.expand(n, width).reshape(-1))
    return kern.view(n, k, k).to(dtype)


#: Output versions 1 and 2 blur images of this many pixels and more by an FFT convolution
#: (the result differs from the tap sum by float rounding only, ~1e-6).
FFT_MIN_PIXELS = 96 * 96
#: On the CPU, samples of at least this many values (C*H*W) sum shifted windows; smaller ones
#: gather (per-sample loops cost more than they save there). Measured through ``apply``
#: (chunked, 1 thread): gathers 1.8x faster at 32 px RGB, even at 48 px; windows 1.3x
#: faster at 64 px, 1.8x at 96 px, 3x at 224 px.
WINDOW_MIN_VALUES = 3 * 48 * 48
#: Taps whose weight is below this fraction of the total are dropped (their sum cannot move
#: an 8-bit result by more than 255 * 1e-9).
_NEGLIGIBLE_TAP = 1e-9


def _fft_line_blur(
    x: torch.Tensor, radius: float, sigma: float, angles_deg: torch.Tensor
) -> torch.Tensor:
    """The same blur as one FFT convolution per sample with its dense kernel ("nearest" padding)."""
    n, c, h, w = x.shape
    k = motion_blur_kernels(radius, sigma, angles_deg, dtype=x.dtype)
    p = k.shape[-1] // 2
    xp = pad2d(x, (p, p), (p, p), "nearest")
    hp, wp = xp.shape[-2:]
    kf = torch.fft.rfft2(
        torch.flip(k, dims=(-2, -1)), s=(hp, wp)
    )  # correlation = conv with flipped kernel
    y = torch.fft.irfft2(torch.fft.rfft2(xp) * kf.unsqueeze(1), s=(hp, wp))
    return y[..., 2 * p : 2 * p + h, 2 * p : 2 * p + w].contiguous()


def apply_motion_blur(
    x: torch.Tensor, radius: float, sigma: float, angles_deg: torch.Tensor, *, version: int = 3
) -> torch.Tensor:
    """Blur every sample of ``x`` (N, C, H, W) along its own angle (degrees, tensor (N,)).

    ``version`` is the output version (``rng.version``): below 3, images of
    :data:`FFT_MIN_PIXELS` and more take the FFT path.
    """
    n, c, h, wd = x.shape
    angles_deg = angles_deg.to(x.device)
    if version < 3 and h * wd >= FFT_MIN_PIXELS:
        return _fft_line_blur(x, radius, sigma, angles_deg)
    wt = tap_weights(radius, sigma)
    keep = int((wt >= _NEGLIGIBLE_TAP).sum())  # weights decrease with the tap index
    _, dy, dx = motion_blur_taps(radius, sigma, angles_deg)
    taps = (wt[:keep].tolist(), dy[:, :keep], dx[:, :keep])  # host weights: no sync in loops
    p = keep - 1
    # offsets never exceed width-1 in magnitude, so one "nearest" pad serves every tap
    xp = pad2d(x, (p, p), (p, p), "nearest")
    if x.device.type == "cpu" and c * h * wd >= WINDOW_MIN_VALUES:
        return _window_tap_sum(xp, (h, wd), p, *taps)
    return _gather_tap_sum(xp, (h, wd), p, *taps)


def _window_tap_sum(xp: torch.Tensor, size: tuple[int, int], p: int, wt: list[float],
                    dy: torch.Tensor, dx: torch.Tensor) -> torch.Tensor:  # fmt: skip
    """Sum of weighted shifted windows of the padded batch, one sample at a time (CPU)."""
    h, wd = size
    out = torch.zeros(xp.shape[0], xp.shape[1], h, wd, dtype=xp.dtype)
    rows, cols = (dy + p).tolist(), (dx + p).tolist()
    for sample, src, r, q in zip(out, xp, rows, cols):
        for weight, top, left in zip(wt, r, q):
            sample.add_(src[:, top : top + h, left : left + wd], alpha=weight)
    return out


def _gather_tap_sum(xp: torch.Tensor, size: tuple[int, int], p: int, wt: list[float],
                    dy: torch.Tensor, dx: torch.Tensor) -> torch.Tensor:  # fmt: skip
    """The same sum as one gather per tap over the whole batch (few launches on a GPU)."""
    (n, c, hp, wp), (h, wd) = xp.shape, size
    flat = xp.reshape(n, c, hp * wp)
    rows = torch.arange(h, device=xp.device) + p
    cols = torch.arange(wd, device=xp.device) + p
    base = (rows.view(-1, 1) * wp + cols.view(1, -1)).view(1, h * wd)  # (1, H*W)
    shift = dy * wp + dx  # (N, taps)
    out = torch.zeros(n, c, h * wd, device=xp.device, dtype=xp.dtype)
    for t, weight in enumerate(wt):
        idx = (base + shift[:, t : t + 1]).unsqueeze(1).expand(n, c, h * wd)
        out.add_(torch.gather(flat, 2, idx), alpha=weight)
    return out.view(n, c, h, wd)


def quantize_round(x: torch.Tensor) -> torch.Tensor:
    """Round to the 256 levels of an 8-bit image (what ImageMagick writes back as PNG)."""
    return torch.round(x.clamp(0.0, 1.0) * 255.0) / 255.0


@register(
    "motion_blur",
    chunk_values=DEFAULT_CHUNK_VALUES,
    group="blur",
    presets={
        "cifar": [(6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)],
        "tinyimagenet": [(10, 1), (10, 1.5), (10, 2), (10, 2.5), (12, 3)],
        "imagenet": [(10, 3), (15, 5), (15, 8), (15, 12), (20, 15)],
    },
    param_names=("radius", "sigma"),
    random=True,
    rgb=False,
    description="ImageMagick motion blur: one-sided Gaussian line kernel at a random angle in [-45, 45] deg",
)
def motion_blur(images: torch.Tensor, params: dict, rng: SampleRNG) -> torch.Tensor:
    """One-sided Gaussian-weighted line blur, angle uniform in [-45, 45] degrees per sample."""
    angles = rng.sample_uniform(-45.0, 45.0)
    out = apply_motion_blur(images, float(params["radius"]), float(params["sigma"]), angles,
                            version=rng.version)  # fmt: skip
    # the reference round-trips through an 8-bit PNG written by ImageMagick (rounding)
    return quantize_round(out)
