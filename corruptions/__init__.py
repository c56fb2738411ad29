"""Batched, device-agnostic, deterministic common image corruptions (CIFAR/Tiny/ImageNet-C).

Public API::

    corruptions.names(subset="all")           # 19 names; subsets common, extra, noise, ...
    corruptions.apply(images, name, severity, seed=0, indices=None, preset=None, params=None)
    corruptions.get(name)                      # the registered Corruption
    @corruptions.register(name, group=..., presets=...)   # add your own
    corruptions.load_plugin("my_corruption.py")
    corruptions.corrupt(img, severity, "fog", seed=0)   # imagecorruptions drop-in (numpy/PIL)
    corruptions.get_corruption_names("validation")

Depends on torch and Pillow (image files and the JPEG codec) only.
"""

from corruptions.compat import corrupt, get_corruption_names
from corruptions.registry import (
    COMMON,
    EXTRA,
    GROUPS,
    PRESETS,
    Corruption,
    CorruptionError,
    apply,
    check_severity,
    get,
    load_plugin,
    names,
    preset_for_size,
    register,
)
from corruptions.rng import SampleRNG

__version__ = "0.1.0"

__all__ = [
    "COMMON",
    "EXTRA",
    "GROUPS",
    "PRESETS",
    "Corruption",
    "CorruptionError",
    "SampleRNG",
    "apply",
    "check_severity",
    "corrupt",
    "get",
    "get_corruption_names",
    "load_plugin",
    "names",
    "preset_for_size",
    "register",
]
