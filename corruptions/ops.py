"""Shared batched image operations (padding modes, Gaussian filtering, per-sample kernels).

Border modes follow scipy.ndimage's names, because the reference scripts use scipy and
scikit-image: ``reflect`` (d c b a | a b c d), ``mirror`` (d c b | a b c d),
``nearest`` (a a a | a b c d), ``wrap`` and ``constant`` (zeros).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

BORDER_MODES = ("reflect", "mirror", "nearest", "wrap", "constant")


def border_indices(size: int, before: int, after: int, mode: str, device: torch.device) -> torch.Tensor:
    """Source indices (length before + size + after) for padding one axis in ``mode``."""
    pos = torch.arange(-before, size + after, device=device)
    if mode == "nearest":
        return pos.clamp(0, size - 1)
    if mode == "wrap":
        return pos % size
    if mode == "reflect":
        if size == 1:
            return torch.zeros_like(pos)
        period = 2 * size
        p = pos % period
        return torch.where(p < size, p, period - 1 - p)
    if mode == "mirror":
        if size == 1:
            return torch.zeros_like(pos)
        period = 2 * size - 2
        p = pos % period
        return torch.where(p < size, p, period - p)
    raise ValueError(f"unknown border mode {mode!r}; modes: {', '.join(BORDER_MODES)}")


def pad2d(x: torch.Tensor, pad_h: tuple[int, int], pad_w: tuple[int, int], mode: str) -> torch.Tensor:
    """Pad the last two dims of ``x`` with a scipy-named border mode (any pad size)."""
    if mode == "constant":
        return F.pad(x, (pad_w[0], pad_w[1], pad_h[0], pad_h[1]))
    h, w = x.shape[-2:]
    ih = border_indices(h, pad_h[0], pad_h[1], mode, x.device)
    iw = border_indices(w, pad_w[0], pad_w[1], mode, x.device)
    return x.index_select(-2, ih).index_select(-1, iw)


def gaussian_kernel1d(sigma: float, truncate: float = 4.0, radius: int | None = None) -> torch.Tensor:
    """Normalised 1-D Gaussian taps as scipy.ndimage builds them (radius = int(truncate*sigma+0.5))."""
    if radius is None:
        radius = int(truncate * float(sigma) + 0.5)
    if sigma <= 0 or radius == 0:
        return torch.ones(1, dtype=torch.float64)
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (t / float(sigma)) ** 2)
    return k / k.sum()


def separable_filter(x: torch.Tensor, kernel_h: torch.Tensor, kernel_w: torch.Tensor, mode: str) -> torch.Tensor:
    """Correlate every (sample, channel) plane of ``x`` (N, C, H, W) with kh (rows) then kw (cols)."""
    n, c, h, w = x.shape
    kh = kernel_h.to(device=x.device, dtype=x.dtype)
    kw = kernel_w.to(device=x.device, dtype=x.dtype)
    rh, rw = (kh.numel() - 1) // 2, (kw.numel() - 1) // 2
    y = x.reshape(n * c, 1, h, w)
    if rh:
        y = F.conv2d(pad2d(y, (rh, kh.numel() - 1 - rh), (0, 0), mode), kh.view(1, 1, -1, 1))
    if rw:
        y = F.conv2d(pad2d(y, (0, 0), (rw, kw.numel() - 1 - rw), mode), kw.view(1, 1, 1, -1))
    return y.reshape(n, c, h, w)


def gaussian_filter(x: torch.Tensor, sigma: float, mode: str = "nearest", truncate: float = 4.0) -> torch.Tensor:
    """scipy.ndimage.gaussian_filter over H and W of each plane (skimage's default mode is nearest)."""
    k = gaussian_kernel1d(sigma, truncate)
    return separable_filter(x, k, k, mode)


def filter2d_per_sample(x: torch.Tensor, kernels: torch.Tensor, mode: str = "reflect") -> torch.Tensor:
    """Correlate each sample's channels with its own 2-D kernel.

    ``x``: (N, C, H, W); ``kernels``: (N, kh, kw) or (kh, kw) with odd sizes. One grouped
    convolution for the whole batch, no Python loop over samples.
    """
    n, c, h, w = x.shape
    if kernels.ndim == 2:
        kernels = kernels.expand(n, *kernels.shape)
    kh, kw = kernels.shape[-2:]
    if kh % 2 == 0 or kw % 2 == 0:
        raise ValueError(f"kernel sizes must be odd, got {kh}x{kw}")
    xp = pad2d(x, (kh // 2, kh // 2), (kw // 2, kw // 2), mode)
    weight = kernels.to(x.dtype).repeat_interleave(c, dim=0).unsqueeze(1)  # (N*C, 1, kh, kw)
    y = F.conv2d(xp.reshape(1, n * c, *xp.shape[-2:]), weight, groups=n * c)
    return y.reshape(n, c, h, w)


def disk_kernel(radius: float, alias_sigma: float) -> torch.Tensor:
    """Normalised anti-aliased disk (defocus kernel), sampled on at least -8..8 like the reference."""
    if radius <= 8:
        half = 8
        ksize = 3
    else:
        half = int(math.ceil(radius))
        ksize = 5
    coords = torch.arange(-half, half + 1, dtype=torch.float64)
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    disk = ((xx**2 + yy**2) <= radius**2).to(torch.float64)
    disk = disk / disk.sum()
    # anti-alias with a small Gaussian (cv2.GaussianBlur with ksize x ksize)
    g = _cv2_gaussian_taps(ksize, alias_sigma)
    disk = F.conv2d(
        F.pad(disk.view(1, 1, *disk.shape), (ksize // 2,) * 4, mode="reflect"),
        (g.view(-1, 1) * g.view(1, -1)).view(1, 1, ksize, ksize),
    )[0, 0]
    return disk


def _cv2_gaussian_taps(ksize: int, sigma: float) -> torch.Tensor:
    """OpenCV's getGaussianKernel(ksize, sigma) taps, normalised."""
    t = torch.arange(ksize, dtype=torch.float64) - (ksize - 1) / 2
    k = torch.exp(-(t**2) / (2 * sigma**2))
    return k / k.sum()
