"""Independent per-image numpy/PIL/scipy re-implementations of the reference corruptions.

Written from docs (corruptions.md) and the Hendrycks make_*_c.py scripts, for tests
only: nothing here imports the ``corruptions`` package. Every function takes one
HxWx3 uint8 image and returns float64 values in [0, 255] *before* the final
``np.uint8`` truncation, like the reference functions. scikit-image and OpenCV are not
installed, so the few functions the reference takes from them are re-implemented
(skimage.filters.gaussian, skimage.color.rgb2hsv/hsv2rgb, skimage random_noise s&p,
cv2.GaussianBlur / filter2D / getAffineTransform / warpAffine).
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image
from scipy import ndimage as ndi

# --------------------------------------------------------------------------- helpers


def sk_gaussian(
    img: np.ndarray,
    sigma: float,
    mode: str = "nearest",
    truncate: float = 4.0,
    multichannel: bool = True,
) -> np.ndarray:
    """skimage.filters.gaussian on a float image (channel axis last when multichannel)."""
    img = np.asarray(img, dtype=np.float64)
    s = (sigma, sigma, 0) if (multichannel and img.ndim == 3) else sigma
    return ndi.gaussian_filter(img, s, mode=mode, truncate=truncate)


def rgb2hsv(arr: np.ndarray) -> np.ndarray:
    """skimage.color.rgb2hsv."""
    out = np.empty_like(arr)
    out_v = arr.max(-1)
    delta = np.ptp(arr, -1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out_s = delta / out_v
    out_s[delta == 0.0] = 0.0
    with np.errstate(invalid="ignore", divide="ignore"):
        idx = arr[..., 0] == out_v
        out[idx, 0] = (arr[idx, 1] - arr[idx, 2]) / delta[idx]
        idx = arr[..., 1] == out_v
        out[idx, 0] = 2.0 + (arr[idx, 2] - arr[idx, 0]) / delta[idx]
        idx = arr[..., 2] == out_v
        out[idx, 0] = 4.0 + (arr[idx, 0] - arr[idx, 1]) / delta[idx]
    out_h = (out[..., 0] / 6.0) % 1.0
    out_h[delta == 0.0] = 0.0
    out[..., 0] = out_h
    out[..., 1] = out_s
    out[..., 2] = out_v
    out[np.isnan(out)] = 0
    return out


def hsv2rgb(hsv: np.ndarray) -> np.ndarray:
    """skimage.color.hsv2rgb."""
    hi = np.floor(hsv[..., 0] * 6)
    f = hsv[..., 0] * 6 - hi
    p = hsv[..., 2] * (1 - hsv[..., 1])
    q = hsv[..., 2] * (1 - f * hsv[..., 1])
    t = hsv[..., 2] * (1 - (1 - f) * hsv[..., 1])
    v = hsv[..., 2]
    hi = np.stack([hi, hi, hi], axis=-1).astype(np.uint8) % 6
    return np.choose(
        hi,
        np.stack(
            [
                np.stack((v, t, p), axis=-1),
                np.stack((q, v, p), axis=-1),
                np.stack((p, v, t), axis=-1),
                np.stack((p, q, v), axis=-1),
                np.stack((t, p, v), axis=-1),
                np.stack((v, p, q), axis=-1),
            ]
        ),
    )


def cv2_gaussian_kernel(ksize: int, sigma: float) -> np.ndarray:
    """cv2.getGaussianKernel(ksize, sigma) for sigma > 0."""
    t = np.arange(ksize) - (ksize - 1) / 2.0
    k = np.exp(-(t**2) / (2.0 * sigma**2))
    return k / k.sum()


def disk(radius: float, alias_blur: float) -> np.ndarray:
    """The reference's anti-aliased disk (cv2.GaussianBlur with BORDER_REFLECT_101)."""
    if radius <= 8:
        L = np.arange(-8, 8 + 1)
        ksize = 3
    else:
        L = np.arange(-radius, radius + 1)
        ksize = 5
    xx, yy = np.meshgrid(L, L)
    aliased = np.array((xx**2 + yy**2) <= radius**2, dtype=np.float32)
    aliased /= np.sum(aliased)
    g = cv2_gaussian_kernel(ksize, alias_blur)
    out = ndi.correlate1d(aliased.astype(np.float64), g, axis=0, mode="mirror")
    return ndi.correlate1d(out, g, axis=1, mode="mirror")


def clipped_zoom(img: np.ndarray, zoom_factor: float) -> np.ndarray:
    """The reference's clipped_zoom (square crop, scipy zoom order 1, trim)."""
    h = img.shape[0]
    ch = int(np.ceil(h / zoom_factor))
    top = (h - ch) // 2
    img = ndi.zoom(img[top : top + ch, top : top + ch], (zoom_factor, zoom_factor, 1), order=1)
    trim_top = (img.shape[0] - h) // 2
    return img[trim_top : trim_top + h, trim_top : trim_top + h]


def _reflect101(i: np.ndarray, n: int) -> np.ndarray:
    if n == 1:
        return np.zeros_like(i)
    period = 2 * n - 2
    p = np.mod(i, period)
    return np.where(p < n, p, period - p)


def cv2_get_affine_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """cv2.getAffineTransform: the 2x3 M with M @ [x, y, 1] = dst for the three points."""
    a = np.concatenate([src.astype(np.float64), np.ones((3, 1))], axis=1)
    return np.linalg.solve(a, dst.astype(np.float64)).T


def cv2_warp_affine_reflect101(img: np.ndarray, M: np.ndarray) -> np.ndarray:
    """cv2.warpAffine(img, M, (W, H), INTER_LINEAR, BORDER_REFLECT_101) on float images.

    Follows OpenCV's fixed-point address computation (AB_BITS=10, INTER_BITS=5): the
    inverse map is evaluated in 1/1024 units, rounded, and sampled on a 1/32 grid.
    """
    h, w = img.shape[:2]
    m = np.asarray(M, dtype=np.float64)
    d = m[0, 0] * m[1, 1] - m[0, 1] * m[1, 0]
    d = 1.0 / d if d != 0 else 0.0
    a11, a22, a12, a21 = m[1, 1] * d, m[0, 0] * d, -m[0, 1] * d, -m[1, 0] * d
    b1 = -a11 * m[0, 2] - a12 * m[1, 2]
    b2 = -a21 * m[0, 2] - a22 * m[1, 2]
    ys = np.arange(h, dtype=np.float64)[:, None]
    xs = np.arange(w, dtype=np.float64)[None, :]
    X0 = np.rint((a12 * ys + b1) * 1024).astype(np.int64) + 16
    Y0 = np.rint((a22 * ys + b2) * 1024).astype(np.int64) + 16
    adelta = np.rint(a11 * xs * 1024).astype(np.int64)
    bdelta = np.rint(a21 * xs * 1024).astype(np.int64)
    X = (X0 + adelta) >> 5
    Y = (Y0 + bdelta) >> 5
    ix, iy = X >> 5, Y >> 5
    fx = (X & 31) / 32.0
    fy = (Y & 31) / 32.0
    x0, x1 = _reflect101(ix, w), _reflect101(ix + 1, w)
    y0, y1 = _reflect101(iy, h), _reflect101(iy + 1, h)
    fx, fy = fx[..., None], fy[..., None]
    return (
        (1 - fy) * ((1 - fx) * img[y0, x0] + fx * img[y0, x1])
        + fy * ((1 - fx) * img[y1, x0] + fx * img[y1, x1])
    ).astype(img.dtype)


# --------------------------------------------------------------------------- noise


def gaussian_noise(x: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    x = np.array(x) / 255.0
    return np.clip(x + rng.normal(size=x.shape, scale=sigma), 0, 1) * 255


def shot_noise(x: np.ndarray, lam: float, rng: np.random.Generator) -> np.ndarray:
    x = np.array(x) / 255.0
    return np.clip(rng.poisson(x * lam) / lam, 0, 1) * 255


def impulse_noise(x: np.ndarray, amount: float, rng: np.random.Generator) -> np.ndarray:
    """skimage.util.random_noise(mode='s&p', amount, salt_vs_pepper=0.5) (skimage >= 0.19)."""
    x = np.array(x) / 255.0
    out = x.copy()
    flipped = rng.random(x.shape) <= amount
    salted = rng.random(x.shape) <= 0.5
    out[flipped & salted] = 1.0
    out[flipped & ~salted] = 0.0
    return np.clip(out, 0, 1) * 255


def speckle_noise(x: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    x = np.array(x) / 255.0
    return np.clip(x + x * rng.normal(size=x.shape, scale=sigma), 0, 1) * 255


# --------------------------------------------------------------------------- blur


def gaussian_blur(x: np.ndarray, sigma: float) -> np.ndarray:
    return np.clip(sk_gaussian(np.array(x) / 255.0, sigma), 0, 1) * 255


def defocus_blur(x: np.ndarray, radius: float, alias_blur: float) -> np.ndarray:
    x = np.array(x) / 255.0
    kernel = disk(radius, alias_blur)
    channels = [ndi.correlate(x[:, :, d], kernel, mode="mirror") for d in range(3)]
    return np.clip(np.stack(channels, axis=-1), 0, 1) * 255


def zoom_blur(x: np.ndarray, zooms) -> np.ndarray:
    x = (np.array(x) / 255.0).astype(np.float32)
    out = np.zeros_like(x)
    for z in zooms:
        out += clipped_zoom(x, z)
    x = (x + out) / (len(zooms) + 1)
    return np.clip(x, 0, 1) * 255


def glass_blur(
    x: np.ndarray,
    sigma: float,
    max_delta: int,
    iterations: int,
    rng: np.random.Generator | None = None,
    offsets: np.ndarray | None = None,
) -> np.ndarray:
    """The reference loop, verbatim (including its numpy-view "swap").

    ``offsets`` (iterations, 2, H-2d, W-2d) = (dx, dy) per visited pixel (d+1+i, d+1+j)
    replaces the random draws when given.
    """
    c = (sigma, max_delta, iterations)
    x = np.uint8(sk_gaussian(np.array(x) / 255.0, c[0]) * 255)
    H, W = x.shape[:2]
    for i in range(c[2]):
        for h in range(H - c[1], c[1], -1):
            for w in range(W - c[1], c[1], -1):
                if offsets is None:
                    dx, dy = rng.integers(-c[1], c[1], size=(2,))
                else:
                    dx, dy = offsets[i, :, h - c[1] - 1, w - c[1] - 1]
                h_prime, w_prime = h + dy, w + dx
                # swap
                x[h, w], x[h_prime, w_prime] = x[h_prime, w_prime], x[h, w]
    return np.clip(sk_gaussian(x / 255.0, c[0]), 0, 1) * 255


# --------------------------------------------------------------------------- digital


def contrast(x: np.ndarray, c: float) -> np.ndarray:
    x = np.array(x) / 255.0
    means = np.mean(x, axis=(0, 1), keepdims=True)
    return np.clip((x - means) * c + means, 0, 1) * 255


def brightness(x: np.ndarray, c: float) -> np.ndarray:
    x = rgb2hsv(np.array(x) / 255.0)
    x[:, :, 2] = np.clip(x[:, :, 2] + c, 0, 1)
    return np.clip(hsv2rgb(x), 0, 1) * 255


def saturate(x: np.ndarray, a: float, b: float) -> np.ndarray:
    x = rgb2hsv(np.array(x) / 255.0)
    x[:, :, 1] = np.clip(x[:, :, 1] * a + b, 0, 1)
    return np.clip(hsv2rgb(x), 0, 1) * 255


def jpeg_compression(x: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(np.asarray(x, dtype=np.uint8)).save(buf, "JPEG", quality=quality)
    return np.array(Image.open(buf)).astype(np.float64)


def pixelate(x: np.ndarray, scale: float) -> np.ndarray:
    h, w = x.shape[:2]
    im = Image.fromarray(np.asarray(x, dtype=np.uint8))
    im = im.resize((int(w * scale), int(h * scale)), Image.BOX)
    im = im.resize((w, h), Image.BOX)
    return np.array(im).astype(np.float64)


def elastic_transform(
    image: np.ndarray,
    alpha: float,
    sigma: float,
    affine: float,
    rng: np.random.Generator | None = None,
    draws: tuple | None = None,
) -> np.ndarray:
    """The reference elastic transform; alpha/sigma/affine already in pixels (c[0..2]).

    ``draws`` = (jitter (3, 2), noise_x (H, W), noise_y (H, W)) replaces the random
    numbers (uniform(-affine, affine) and two uniform(-1, 1) fields) when given.
    """
    c = (alpha, sigma, affine)
    image = np.array(image, dtype=np.float32) / 255.0
    shape = image.shape
    shape_size = shape[:2]
    center_square = np.float32(shape_size) // 2
    square_size = min(shape_size) // 3
    pts1 = np.float32(
        [
            center_square + square_size,
            [center_square[0] + square_size, center_square[1] - square_size],
            center_square - square_size,
        ]
    )
    if draws is None:
        jitter = rng.uniform(-c[2], c[2], size=pts1.shape)
        nx = rng.uniform(-1, 1, size=shape[:2])
        ny = rng.uniform(-1, 1, size=shape[:2])
    else:
        jitter, nx, ny = draws
    pts2 = pts1 + np.asarray(jitter).astype(np.float32)
    M = cv2_get_affine_transform(pts1, pts2)
    image = cv2_warp_affine_reflect101(image, M)
    dx = (sk_gaussian(nx, c[1], mode="reflect", truncate=3) * c[0]).astype(np.float32)
    dy = (sk_gaussian(ny, c[1], mode="reflect", truncate=3) * c[0]).astype(np.float32)
    dx, dy = dx[..., np.newaxis], dy[..., np.newaxis]
    x, y, z = np.meshgrid(np.arange(shape[1]), np.arange(shape[0]), np.arange(shape[2]))
    indices = np.reshape(y + dy, (-1, 1)), np.reshape(x + dx, (-1, 1)), np.reshape(z, (-1, 1))
    return (
        np.clip(ndi.map_coordinates(image, indices, order=1, mode="reflect").reshape(shape), 0, 1)
        * 255
    )


# --------------------------------------------------------------------------- tables (pixels)

ZOOMS_SMALL = [np.arange(1, stop, 0.01) for stop in (1.06, 1.11, 1.16, 1.21, 1.26)]
ZOOMS_IMAGENET = [
    np.arange(1, 1.11, 0.01),
    np.arange(1, 1.16, 0.01),
    np.arange(1, 1.21, 0.02),
    np.arange(1, 1.26, 0.02),
    np.arange(1, 1.31, 0.03),
]


def elastic_params(preset: str, severity: int) -> tuple[float, float, float]:
    """(alpha, sigma, affine) in pixels as the reference scripts compute them."""
    if preset == "cifar":
        s = 32
        rows = [
            (0, 0, 0.08),
            (0.05, 0.2, 0.07),
            (0.08, 0.06, 0.06),
            (0.1, 0.04, 0.05),
            (0.1, 0.03, 0.03),
        ]
    elif preset == "tinyimagenet":
        s = 64
        rows = [
            (0, 0, 0.08),
            (0.05, 0.3, 0.06),
            (0.1, 0.08, 0.06),
            (0.1, 0.03, 0.03),
            (0.16, 0.03, 0.02),
        ]
    else:
        s = 244
        rows = [
            (2, 0.7, 0.1),
            (2, 0.08, 0.2),
            (0.05, 0.01, 0.02),
            (0.07, 0.01, 0.02),
            (0.12, 0.01, 0.02),
        ]
    return tuple(s * v for v in rows[severity - 1])  # type: ignore[return-value]


def quantize(x: np.ndarray) -> np.ndarray:
    """np.uint8 truncation of the published files."""
    return np.uint8(x)
