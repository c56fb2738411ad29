"""A drop-in for the ``imagecorruptions`` package: ``corrupt`` and ``get_corruption_names``.

``from corruptions import corrupt, get_corruption_names`` replaces ``from imagecorruptions
import corrupt, get_corruption_names``: same arguments, names and numbering (0..18 in
imagecorruptions' order, 15..18 the validation corruptions), its ImageNet parameters by
default, numpy uint8 images in and out. Differences, on purpose:

- reproducible on request: ``seed=`` (and ``index=``) make the result deterministic;
  without a seed every call draws a fresh one, like imagecorruptions, which uses numpy's
  global random state;
- PIL images are accepted too and come back as PIL images (mode L or RGB);
- bad input raises :class:`~corruptions.CorruptionError` (a ValueError) where
  imagecorruptions raises AttributeError, and images below 32 px are allowed;
- every corruption works under numpy 2 (imagecorruptions 1.1.2 crashes there in
  glass_blur, gaussian_blur and fog);
- random corruptions draw from this package's counter-based streams, so they match
  imagecorruptions in distribution, not value by value; elastic_transform and frost
  follow the ImageNet-C scripts where imagecorruptions changed them (its elastic
  transform has no affine stage, its frost photographs are only resized when smaller
  than the image); pixelate scales back up with NEAREST like imagecorruptions (the
  ImageNet-C script uses BOX). Measured effect on a model's accuracy:
  ``benchmarks/accuracy_vs_imagecorruptions.py`` (docs/compat.md).
"""

from __future__ import annotations

import secrets
from typing import Any

import numpy as np
import torch

from corruptions.registry import (
    COMMON,
    EXTRA,
    PRESETS,
    CorruptionError,
    _closest_hint,
    apply,
    check_severity,
    get,
    preset_for_size,
)

#: imagecorruptions' numbering: position k is ``corruption_number=k``.
CORRUPTION_NUMBERS = (*COMMON, *EXTRA)
#: imagecorruptions' subsets (its groups are slices of the 15 common corruptions).
SUBSETS = ("common", "validation", "all", "noise", "blur", "weather", "digital")


def get_corruption_names(subset: str = "common") -> list[str]:
    """Corruption names of an imagecorruptions subset: common, validation, all, noise, blur, weather, digital."""
    if subset == "common":
        return list(COMMON)
    if subset == "validation":
        return list(EXTRA)
    if subset == "all":
        return list(CORRUPTION_NUMBERS)
    if subset in ("noise", "blur", "weather", "digital"):
        return [n for n in COMMON if get(n).group == subset]
    raise CorruptionError(
        f"unknown subset {subset!r}{_closest_hint(str(subset), SUBSETS)} (subsets: {', '.join(SUBSETS)})"
    )


def _pick_name(corruption_name: str | None, corruption_number: int) -> str:
    if corruption_name is not None:
        get(corruption_name)  # unknown names: one line with the closest ones
        return corruption_name
    if corruption_number == -1:
        raise CorruptionError("give corruption_name or corruption_number (0..18)")
    if isinstance(corruption_number, bool) or not isinstance(corruption_number, (int, np.integer)) \
            or not 0 <= int(corruption_number) < len(CORRUPTION_NUMBERS):  # fmt: skip
        raise CorruptionError(
            f"corruption_number must be an integer 0..{len(CORRUPTION_NUMBERS) - 1}, got {corruption_number!r}"
        )
    return CORRUPTION_NUMBERS[int(corruption_number)]


def _as_rgb_array(image: Any) -> tuple[np.ndarray, str | None]:
    """(H, W, 3) uint8 array of an imagecorruptions input, and the PIL mode to return (None: numpy)."""
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow is a dependency
        Image = None  # type: ignore[assignment]
    if Image is not None and isinstance(image, Image.Image):
        mode = "L" if image.mode in ("L", "1", "I", "I;16", "F") else "RGB"
        return np.array(image.convert("RGB"), dtype=np.uint8), mode
    if not isinstance(image, np.ndarray):
        raise CorruptionError(f"image must be a numpy array or a PIL image, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise CorruptionError(f"image must be uint8 (0..255), got {image.dtype}")
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[2] not in (1, 3):
        raise CorruptionError(
            f"image must be (H, W) or (H, W, C) with C = 1 or 3, got shape {image.shape}"
        )
    if image.shape[2] == 1:  # grey: the three-channel image imagecorruptions corrupts
        image = np.repeat(image, 3, axis=2)
    image = np.ascontiguousarray(image)
    return (image if image.flags.writeable else image.copy()), None


def _pixelate_nearest(x: torch.Tensor, scale: float) -> torch.Tensor:
    """imagecorruptions' pixelate on uint8 (N, C, H, W): PIL BOX down to int(size*scale), NEAREST up."""
    from corruptions.digital import pil_box_resize, pil_nearest_resize

    h, w = x.shape[-2:]
    small = pil_box_resize(x.to(torch.int32), max(1, int(h * scale)), max(1, int(w * scale)))
    return pil_nearest_resize(small, h, w).to(torch.uint8)


def corrupt(
    image: Any,
    severity: int = 1,
    corruption_name: str | None = None,
    corruption_number: int = -1,
    *,
    preset: str = "imagenet",
    seed: int | None = None,
    index: int = 0,
) -> Any:
    """Corrupt one image like ``imagecorruptions.corrupt``; deterministic when ``seed`` is given.

    ``image``: uint8 numpy (H, W), (H, W, 1) or (H, W, 3), or a PIL image. Grey images are
    corrupted as the three-channel image with equal channels, as imagecorruptions does, so
    a numpy result is always (H, W, 3) uint8 (imagecorruptions' behaviour); a PIL image
    comes back as a PIL image of its mode (L or RGB). ``corruption_name`` or
    ``corruption_number`` (0..18, imagecorruptions' order) picks the corruption; plug-in
    names work too. ``preset``: imagenet (imagecorruptions' parameters, default), cifar,
    tinyimagenet, or auto (from the image size like ``corruptions.apply``).

    Randomness: without ``seed`` a fresh seed is drawn from the operating system on every
    call, so two calls give different results, exactly like imagecorruptions. For
    reproducible results pass ``seed=`` (an int); ``index=`` (default 0) is the sample's
    global index, so ``corrupt(img_i, s, name, seed=0, index=i)`` over a dataset gives
    the same images as ``corruptions.apply(batch, name, s, seed=0, indices=...)``.
    """
    name = _pick_name(corruption_name, corruption_number)
    check_severity(severity)
    arr, pil_mode = _as_rgb_array(image)
    h, w = arr.shape[:2]
    if preset == "auto":
        preset = preset_for_size(h, w)
    elif preset not in PRESETS:
        raise CorruptionError(
            f"unknown preset {preset!r}{_closest_hint(str(preset), PRESETS + ('auto',))} "
            f"(presets: {', '.join(PRESETS)}, auto)"
        )
    if seed is None:
        seed = secrets.randbits(63)
    x = torch.from_numpy(arr).permute(2, 0, 1).unsqueeze(0).contiguous()
    if name == "pixelate":
        out = _pixelate_nearest(x, get(name).params(severity, preset)["scale"])
    else:
        out = apply(x, name, severity, seed=int(seed), indices=[int(index)], preset=preset)
    result = out[0].permute(1, 2, 0).numpy()
    if pil_mode is None:
        return result
    from PIL import Image

    rgb = Image.fromarray(np.ascontiguousarray(result))
    return rgb.convert("L") if pil_mode == "L" else rgb
