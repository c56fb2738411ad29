"""Batched, device-agnostic, deterministic common image corruptions (CIFAR/Tiny/ImageNet-C).

Public API::

    corruptions.names(subset="all")           # 19 names; subsets common, extra, noise, ...
    corruptions.apply(images, name, severity, seed=0, indices=None, preset=None, params=None)
    corruptions.get(name)                      # the registered Corruption
    @corruptions.register(name, group=..., presets=...)   # add your own
    # chunk_values=corruptions.DEFAULT_CHUNK_VALUES: let apply run it chunk by chunk on CPU
    corruptions.load_plugin("my_corruption.py")
    corruptions.corrupt(img, severity, "fog", seed=0)   # imagecorruptions drop-in (numpy/PIL)
    corruptions.get_corruption_names("validation")
    corruptions.set_kernels("eager")           # CPU kernels: auto (native C++ when a compiler is found), native, eager
    corruptions.set_compiled_hash(True)        # torch.compile'd random bits: same values, faster
    corruptions.using_streams(1)               # random-stream version (2 by default; 1 = old results)

Depends on torch and Pillow (image files and the JPEG codec) only.
"""

from corruptions.compat import corrupt, get_corruption_names
from corruptions.native import kernels, set_kernels
from corruptions.registry import (
    COMMON,
    DEFAULT_CHUNK_VALUES,
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
from corruptions.rng import SampleRNG, compiled_hash_enabled, set_compiled_hash
from corruptions.streams import (
    DEFAULT_STREAMS,
    STREAM_VERSIONS,
    check_streams,
    set_stream_version,
    stream_version,
    using_streams,
)

__version__ = "0.1.0"

__all__ = [
    "COMMON",
    "DEFAULT_CHUNK_VALUES",
    "DEFAULT_STREAMS",
    "EXTRA",
    "GROUPS",
    "PRESETS",
    "STREAM_VERSIONS",
    "Corruption",
    "CorruptionError",
    "SampleRNG",
    "apply",
    "check_severity",
    "check_streams",
    "corrupt",
    "compiled_hash_enabled",
    "get",
    "get_corruption_names",
    "kernels",
    "load_plugin",
    "names",
    "preset_for_size",
    "register",
    "set_compiled_hash",
    "set_kernels",
    "set_stream_version",
    "stream_version",
    "using_streams",
]
