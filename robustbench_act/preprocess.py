"""Input preprocessing from the model: size, interpolation, crop and normalisation per model.

Corruptions are applied to the dataset's uint8 images at their own resolution (as in
CIFAR-10-C / ImageNet-C); each model then gets its own preprocessing, resolved once by
:func:`resolve_input_config` with this precedence, field by field:

1. what the user gives (``--mean``, ``--std``, ``--no-normalize`` for models that take
   [0, 1] input);
2. what the checkpoint records (this project's checkpoints store the training set's
   mean/std and the input size they were trained at);
3. what the model declares: a timm model's ``pretrained_cfg`` (through timm's
   ``resolve_model_data_config``: input size, interpolation, crop_pct, mean, std), or the
   built-in CIFAR nets' ``input_cfg`` (32 px, no crop; mean/std from the data);
4. the dataset's normalisation constants (and no resizing).

Resizing follows timm's evaluation transform: the shorter side to ``size / crop_pct``
with the model's interpolation, then a centre crop to ``size``; nothing happens when the
images already have the model's size. The resolved configuration is recorded in the run
manifest (``config.preprocessing``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from robustbench_act.errors import UserError

INTERPOLATIONS = ("bilinear", "bicubic", "nearest", "area")


@dataclass(frozen=True)
class InputConfig:
    """How one model's input is prepared from (corrupted) uint8 images."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    normalize: bool = True
    input_size: tuple[int, int] | None = None  # (H, W); None: the images' own size
    interpolation: str = "bilinear"
    crop_pct: float = 1.0
    source: str = "dataset"  # where mean/std came from: user, checkpoint, model, dataset

    def module(self) -> Preprocess:
        """The preprocessing as a module (uint8 or [0, 1] float in, model input out)."""
        return Preprocess(self)

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form (for manifests)."""
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        d["input_size"] = list(self.input_size) if self.input_size else None
        return d


class Preprocess(nn.Module):
    """x (N, C, H, W) uint8 or [0, 1] float -> resized, centre-cropped, normalised float32."""

    def __init__(self, cfg: InputConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.register_buffer("mean", torch.tensor(cfg.mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(cfg.std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The model input for a batch of images."""
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
        size = self.cfg.input_size
        if size is not None and tuple(x.shape[-2:]) != tuple(size):
            x = _resize_crop(x, size, self.cfg.crop_pct, self.cfg.interpolation)
        return (x - self.mean) / self.std if self.cfg.normalize else x


def _resize_crop(x: torch.Tensor, size: tuple[int, int], crop_pct: float, mode: str) -> torch.Tensor:
    h, w = x.shape[-2:]
    target = max(size) / crop_pct  # shorter side after resizing (timm: scale_size = size / crop_pct)
    scale = target / min(h, w)
    nh, nw = max(size[0], math.floor(h * scale + 0.5)), max(size[1], math.floor(w * scale + 0.5))
    kw: dict[str, Any] = {} if mode in ("nearest", "area") else {"align_corners": False, "antialias": True}
    y = F.interpolate(x, size=(nh, nw), mode=mode, **kw)
    top, left = (nh - size[0]) // 2, (nw - size[1]) // 2
    return y[..., top:top + size[0], left:left + size[1]].clamp_(0.0, 1.0)


def declared_config(model: nn.Module) -> dict[str, Any]:
    """What the model declares about its input (timm pretrained_cfg, or our nets' ``input_cfg``)."""
    own = getattr(model, "input_cfg", None)
    if isinstance(own, Mapping):
        return dict(own)
    if isinstance(getattr(model, "pretrained_cfg", None), Mapping):
        from timm.data import resolve_model_data_config

        cfg = dict(resolve_model_data_config(model))
        cfg["input_size"] = tuple(cfg["input_size"])[-2:]
        return cfg
    return {}


def resolve_input_config(model: nn.Module, meta: Mapping[str, Any] | None, dataset: Any, *,
                         mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                         normalize: bool = True) -> InputConfig:  # fmt: skip
    """The preprocessing of ``model`` (see the module docstring for the precedence)."""
    meta = meta or {}
    declared = declared_config(model)
    channels = int(getattr(dataset, "channels", 0) or len(getattr(dataset, "mean", ()) or ()) or 3)
    if mean is not None or std is not None:
        if mean is None or std is None:
            raise UserError("give --mean and --std together")
        chosen, source = (tuple(mean), tuple(std)), "user"
    elif meta.get("mean") is not None and meta.get("std") is not None:
        chosen, source = (tuple(meta["mean"]), tuple(meta["std"])), "checkpoint"
    elif declared.get("mean") is not None and declared.get("std") is not None:
        chosen, source = (tuple(declared["mean"]), tuple(declared["std"])), "model"
    else:
        chosen, source = (tuple(dataset.mean), tuple(dataset.std)), "dataset"
    m, s = (tuple(float(v) for v in chosen[0]), tuple(float(v) for v in chosen[1]))
    _check_constants(m, s, channels, source)
    size = _size_of(meta.get("input_size")) or _size_of(declared.get("input_size"))
    interp = str(declared.get("interpolation") or "bilinear")
    if interp not in INTERPOLATIONS:
        interp = "bicubic" if interp.startswith("bicubic") else "bilinear"
    crop = float(declared.get("crop_pct") or 1.0) if size is not None and not meta.get("input_size") else 1.0
    return InputConfig(mean=m, std=s, normalize=normalize, input_size=size, interpolation=interp,
                       crop_pct=crop, source=source if normalize else "none (model takes [0, 1] input)")  # fmt: skip


def _size_of(value: Any) -> tuple[int, int] | None:
    if not value:
        return None
    vals = [int(v) for v in value if v is not None]
    return (vals[-2], vals[-1]) if len(vals) >= 2 else None


def _check_constants(mean: tuple[float, ...], std: tuple[float, ...], channels: int, source: str) -> None:
    if len(mean) != len(std):
        raise UserError(f"mean has {len(mean)} values but std {len(std)} ({source})")
    if len(mean) not in (1, channels):
        raise UserError(f"mean/std have {len(mean)} values but the images have {channels} channels ({source})")
    if not all(math.isfinite(v) for v in mean) or not all(math.isfinite(v) and v > 0 for v in std):
        raise UserError(f"mean must be finite and std finite and > 0, got mean {list(mean)}, std {list(std)}")


def parse_floats(text: str | None, option: str) -> list[float] | None:
    """'0.5,0.5,0.5' -> [0.5, 0.5, 0.5] (None passes through)."""
    if text is None:
        return None
    try:
        vals = [float(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise UserError(f"bad {option} {text!r}: give numbers separated by commas, e.g. 0.5,0.5,0.5") from None
    if not vals:
        raise UserError(f"{option} is empty: give e.g. 0.5,0.5,0.5")
    return vals
