"""Noise corruptions: gaussian_noise, shot_noise, impulse_noise (group noise), speckle_noise (extra).

Each is one vectorised expression over the whole batch; the random numbers come from
the per-sample counter-based streams of :class:`corruptions.SampleRNG`, in a fixed
order, so a sample's result never depends on the batch it is in. Clipping to [0, 1]
and the uint8 truncation of the published files are done by ``corruptions.apply``.

Parameters (for ``apply(..., params={...})``): gaussian_noise ``sigma`` (std of the
additive noise), shot_noise ``lam`` (photons per unit intensity: Poisson(x*lam)/lam),
impulse_noise ``amount`` (fraction of values hit), speckle_noise ``sigma`` (std of
the multiplicative noise).
"""

from __future__ import annotations

import torch

from corruptions.registry import DEFAULT_CHUNK_VALUES, CorruptionError, register
from corruptions.rng import SampleRNG


def _positive(name: str, key: str, value: object, *, allow_zero: bool = True) -> float:
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise CorruptionError(f"{name}: parameter {key} must be a number, got {value!r}") from None
    if not (v > 0 or (allow_zero and v == 0)) or v != v or v == float("inf"):
        raise CorruptionError(
            f"{name}: parameter {key} must be {'>= 0' if allow_zero else '> 0'}, got {value!r}"
        )
    return v


@register(
    "gaussian_noise",
    chunk_values=DEFAULT_CHUNK_VALUES,
    group="noise",
    presets={
        "cifar": [0.04, 0.06, 0.08, 0.09, 0.10],
        "tinyimagenet": [0.04, 0.08, 0.12, 0.15, 0.18],
        "imagenet": [0.08, 0.12, 0.18, 0.26, 0.38],
    },
    param_names=("sigma",),
    description="x + N(0, sigma^2) per pixel and channel",
)
def gaussian_noise(images: torch.Tensor, params: dict, rng: SampleRNG) -> torch.Tensor:
    """Additive Gaussian noise."""
    sigma = _positive("gaussian_noise", "sigma", params["sigma"])
    return rng.normal_icdf(*images.shape[1:], dtype=images.dtype).mul_(sigma).add_(images)


@register(
    "shot_noise",
    chunk_values=DEFAULT_CHUNK_VALUES,
    group="noise",
    presets={
        "cifar": [500, 250, 100, 75, 50],
        "tinyimagenet": [250, 100, 50, 30, 15],
        "imagenet": [60, 25, 12, 5, 3],
    },
    param_names=("lam",),
    description="Poisson(x * lam) / lam",
)
def shot_noise(images: torch.Tensor, params: dict, rng: SampleRNG) -> torch.Tensor:
    """Poisson (photon) noise with exact vectorised Poisson draws (per-level tables in streams v2)."""
    lam = _positive("shot_noise", "lam", params["lam"], allow_zero=False)
    counts = rng.poisson_scaled(images, lam)
    return counts.to(torch.float64).div_(lam).to(images.dtype)


def _impulse_masks(images: torch.Tensor, params: dict, rng: SampleRNG) -> tuple[torch.Tensor, torch.Tensor]:
    """(hit, salt) bool masks: each value is hit w.p. amount, a hit is salt (1) w.p. 1/2."""
    amount = _positive("impulse_noise", "amount", params["amount"])
    if amount > 1:
        raise CorruptionError(f"impulse_noise: amount must be in [0, 1], got {amount!r}")
    return rng.bernoulli_coin(amount, *images.shape[1:])  # on the integer bits


def _impulse_levels(levels: torch.Tensor, params: dict, rng: SampleRNG) -> torch.Tensor:
    """impulse_noise on 8-bit levels: hits become 255 (salt) or 0 (pepper), exactly."""
    flipped, salted = _impulse_masks(levels, params, rng)
    return torch.where(flipped, salted.to(levels.dtype) * 255, levels)


@register(
    "impulse_noise",
    chunk_values=DEFAULT_CHUNK_VALUES,
    group="noise",
    presets={
        "cifar": [0.01, 0.02, 0.03, 0.05, 0.07],
        "tinyimagenet": [0.01, 0.02, 0.05, 0.08, 0.14],
        "imagenet": [0.03, 0.06, 0.09, 0.17, 0.27],
    },
    param_names=("amount",),
    description="salt and pepper: each value w.p. amount set to 0 or 1 (half each)",
    levels_fn=_impulse_levels,
)
def impulse_noise(images: torch.Tensor, params: dict, rng: SampleRNG) -> torch.Tensor:
    """skimage.util.random_noise(mode='s&p', salt_vs_pepper=0.5) semantics, per value."""
    flipped, salted = _impulse_masks(images, params, rng)
    return torch.where(flipped, salted.to(images.dtype), images)


@register(
    "speckle_noise",
    chunk_values=DEFAULT_CHUNK_VALUES,
    group="extra",
    presets={
        "cifar": [0.06, 0.10, 0.12, 0.16, 0.20],
        "tinyimagenet": [0.15, 0.20, 0.25, 0.30, 0.35],
        "imagenet": [0.15, 0.20, 0.35, 0.45, 0.60],
    },
    param_names=("sigma",),
    description="x + x * N(0, sigma^2)",
)
def speckle_noise(images: torch.Tensor, params: dict, rng: SampleRNG) -> torch.Tensor:
    """Multiplicative Gaussian noise."""
    sigma = _positive("speckle_noise", "sigma", params["sigma"])
    z = rng.normal_icdf(*images.shape[1:], dtype=images.dtype)
    return z.mul_(sigma).mul_(images).add_(images)
