"""The corruption registry: name -> :class:`Corruption`, plug-ins, and ``apply``.

A corruption is a pure function ``fn(images, params, rng) -> images`` on float32
tensors (N, C, H, W) in [0, 1] on any device, plus a severity table per preset. The
registry owns everything around it: input validation, dtype/range conversion, choosing
the preset from the image size, deriving per-sample random streams from
``(seed, name, severity, global index)``, clipping and uint8 quantisation.
"""

from __future__ import annotations

import difflib
import importlib.util
import json
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import torch

from corruptions import native
from corruptions.rng import SampleRNG, name_code
from corruptions.streams import check_streams, stream_version

PRESETS = ("cifar", "tinyimagenet", "imagenet")
#: ``chunk_values`` of most built-ins (1 MiB of float32 per intermediate tensor): measured
#: side by side with 2**14 .. 2**21 at 32 and 224 px (benchmarks/corruptions.py).
DEFAULT_CHUNK_VALUES = 1 << 18
#: ... but at least this many samples per call: at 224 px one image per call costs more in
#: per-call overhead than it gains in cache hits (measured 1, 4 and 8 there: 4 was best
#: overall, defocus_blur and gaussian_blur 2-3x faster than with 1).
MIN_CHUNK_SAMPLES = 4
GROUPS = ("noise", "blur", "weather", "digital", "extra")
#: The 15 benchmark corruptions, in the canonical (Hendrycks) order.
COMMON = (
    "gaussian_noise", "shot_noise", "impulse_noise",
    "defocus_blur", "glass_blur", "motion_blur", "zoom_blur",
    "snow", "frost", "fog", "brightness",
    "contrast", "elastic_transform", "pixelate", "jpeg_compression",
)  # fmt: skip
#: The 4 extra (validation) corruptions.
EXTRA = ("speckle_noise", "gaussian_blur", "spatter", "saturate")
#: Parameters of a corruption registered without a severity table (it maps the severity itself).
SELF_MAPPED_PARAMS = ("severity", "preset")
#: Names accepted by :func:`names` besides corruption names.
SUBSETS = ("all", "common", "extra", "plugins", "noise", "blur", "weather", "digital")

CorruptionFn = Callable[[torch.Tensor, dict, SampleRNG], torch.Tensor]


class CorruptionError(ValueError):
    """Bad input to the corruptions API (unknown name, bad severity, shape, dtype, plug-in)."""


def _closest_hint(name: str, candidates: Sequence[str]) -> str:
    hits = difflib.get_close_matches(name, list(candidates), n=3, cutoff=0.5)
    if not hits:
        hits = [c for c in candidates if name.lower() in c or c in name.lower()][:3]
    return f"; closest: {', '.join(hits)}" if hits else ""


@dataclass(frozen=True)
class Corruption:
    """A registered corruption: its function, group and severity tables."""

    name: str
    group: str
    fn: CorruptionFn
    #: preset -> five parameter dicts (severity 1..5)
    presets: Mapping[str, tuple[dict, ...]]
    #: parameter names in table order
    param_names: tuple[str, ...]
    #: whether the function draws random numbers
    random: bool = True
    #: whether the function needs 3 colour channels (grey images are expanded then averaged)
    rgb: bool = False
    description: str = ""
    #: where it came from: "builtin", an entry point, or a plug-in file path
    source: str = "builtin"
    #: on CPU, run ``fn`` on chunks of about this many values (samples x 3 x H x W) at a
    #: time; None: the whole batch in one call (plug-ins unless they opt in)
    chunk_values: int | None = None
    #: optional ``levels_fn(levels, params, rng) -> levels`` on 8-bit integer levels (N, C,
    #: H, W): ``apply`` uses it for uint8 input with ``quantize``; it must give exactly the
    #: levels of the float path (skips two float round trips, e.g. pixelate). It may return
    #: None, before drawing anything, to send this call down the float path (e.g. frost's
    #: fused blend exists only as a native CPU kernel)
    levels_fn: Callable[[torch.Tensor, dict, SampleRNG], torch.Tensor | None] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def params(self, severity: int, preset: str) -> dict:
        """Parameter dict of ``severity`` (1..5) in ``preset`` (``{"severity", "preset"}`` without tables)."""
        check_severity(severity)
        if not self.presets:  # registered without a table: the function maps the severity itself
            return {"severity": severity, "preset": preset}
        if preset not in self.presets:
            raise CorruptionError(
                f"corruption {self.name!r} has no {preset!r} table (has: {', '.join(self.presets)})"
            )
        return dict(self.presets[preset][severity - 1])

    def __call__(self, images: torch.Tensor, severity: int, **kwargs: Any) -> torch.Tensor:
        """Shortcut for ``corruptions.apply(images, self.name, severity, ...)``."""
        return apply(images, self.name, severity, **kwargs)


_REGISTRY: dict[str, Corruption] = {}
_ENTRY_POINTS_LOADED = False
_ENTRY_POINT_ERROR: str | None = None  # set once an entry point failed: every call re-raises it


def _normalise_table(
    name: str, table: Any, param_names: Sequence[str] | None
) -> tuple[tuple[dict, ...], tuple[str, ...]]:
    """Turn 5 scalars / tuples / dicts into 5 dicts keyed by parameter name."""
    rows = list(table)
    if len(rows) != 5:
        raise CorruptionError(f"corruption {name!r}: a severity table needs 5 rows, got {len(rows)}")
    out: list[dict] = []
    names: tuple[str, ...] | None = tuple(param_names) if param_names else None
    for row in rows:
        if isinstance(row, Mapping):
            d = dict(row)
            names = names or tuple(d)
        else:
            vals = tuple(row) if isinstance(row, (tuple, list)) else (row,)
            if names is None:
                names = ("value",) if len(vals) == 1 else tuple(f"p{i}" for i in range(len(vals)))
            if len(vals) != len(names):
                raise CorruptionError(
                    f"corruption {name!r}: row {row!r} does not match parameters {names}"
                )
            d = dict(zip(names, vals))
        out.append(d)
    assert names is not None
    return tuple(out), names


def register(
    name: str,
    *,
    group: str,
    presets: Mapping[str, Any] | Sequence[Any] | None = None,
    param_names: Sequence[str] | None = None,
    random: bool = True,
    rgb: bool = False,
    description: str = "",
    replace: bool = False,
    source: str = "builtin",
    chunk_values: int | None = None,
    levels_fn: Callable[[torch.Tensor, dict, SampleRNG], torch.Tensor | None] | None = None,
) -> Callable[[CorruptionFn], CorruptionFn]:
    """Decorator registering ``fn(images, params, rng)`` as corruption ``name``.

    ``presets`` maps preset names to a table of 5 rows (scalars, tuples in
    ``param_names`` order, or dicts); a bare 5-row table serves every preset. Without a
    table (``presets=None``) the function maps the severity itself: it gets
    ``params = {"severity": s, "preset": p}`` (parametric calls give ``params=`` those keys).
    ``chunk_values`` (e.g. :data:`DEFAULT_CHUNK_VALUES`) lets ``apply`` call ``fn`` on
    chunks of samples on CPU, which is faster for memory-bound kernels; only for
    functions whose samples never depend on each other (the contract of ``apply``).
    ``levels_fn`` is an optional integer-level version of ``fn`` (see :class:`Corruption`).
    """
    if chunk_values is not None and (isinstance(chunk_values, bool) or not isinstance(chunk_values, int) or chunk_values < 1):
        raise CorruptionError(f"corruption {name!r}: chunk_values must be an integer >= 1 or None, got {chunk_values!r}")
    if not isinstance(name, str) or not name.isidentifier():
        raise CorruptionError(f"corruption names must be identifiers, got {name!r}")
    if group not in GROUPS:
        raise CorruptionError(f"unknown group {group!r} for {name!r} (groups: {', '.join(GROUPS)})")
    if presets is None:
        if param_names:
            raise CorruptionError(f"corruption {name!r}: param_names need a severity table (presets=)")
        raw: dict[str, Any] = {}
    else:
        raw = dict(presets) if isinstance(presets, Mapping) else {p: presets for p in PRESETS}
    tables: dict[str, tuple[dict, ...]] = {}
    names: tuple[str, ...] = tuple(param_names or ()) if raw else SELF_MAPPED_PARAMS
    for preset, table in raw.items():
        tables[preset], names = _normalise_table(name, table, param_names or names or None)

    def deco(fn: CorruptionFn) -> CorruptionFn:
        if not callable(fn):
            raise CorruptionError(f"corruption {name!r}: the registered object is not callable")
        if name in _REGISTRY and not replace:
            raise CorruptionError(f"corruption {name!r} is already registered")
        doc = description or (fn.__doc__ or "").strip().splitlines()[0:1]
        _REGISTRY[name] = Corruption(
            name=name,
            group=group,
            fn=fn,
            presets=tables,
            param_names=names,
            random=random,
            rgb=rgb,
            description=doc if isinstance(doc, str) else (doc[0] if doc else ""),
            source=source,
            chunk_values=chunk_values,
            levels_fn=levels_fn,
        )
        return fn

    return deco


def _load_entry_points() -> None:
    """Register the corruptions installed packages declare (entry-point group ``corruptions``).

    Contract for a plug-in package: each entry point's name is a corruption name, and its
    object is either a function ``fn(images, params, rng)`` carrying ``fn._corruption_table``
    (the keyword arguments of :func:`register`: group, presets, param_names, random, ...),
    registered under that name, or a module / object whose import registers that name with
    ``@corruptions.register``. Entry points load on the first registry call. One that
    fails (import error, the name left unregistered, a clash with a registered name) makes
    that and every later registry call fail with the same one-line error naming it, until
    the package is fixed or uninstalled: results never silently depend on whether a
    plug-in happened to load.
    """
    global _ENTRY_POINTS_LOADED, _ENTRY_POINT_ERROR
    if _ENTRY_POINT_ERROR is not None:
        raise CorruptionError(_ENTRY_POINT_ERROR)
    if _ENTRY_POINTS_LOADED:
        return
    _ENTRY_POINTS_LOADED = True
    problems = []
    for ep in entry_points(group="corruptions"):
        try:
            _register_entry_point(ep)
        except (Exception, SystemExit) as exc:  # a broken third-party plug-in: one line naming it, every time
            problems.append(f"{ep.name!r} ({ep.value}) failed to load: {user_code_problem(exc)}")
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        _ENTRY_POINT_ERROR = (f"corruption plug-in entry point {problems[0]}{more}; fix or uninstall "
                              "the package that provides it")  # fmt: skip
        raise CorruptionError(_ENTRY_POINT_ERROR)


def _register_entry_point(ep: Any) -> None:
    """Load one entry point and make sure it registered the corruption it is named after."""
    obj = ep.load()
    source = f"entry point {ep.value}"
    table = getattr(obj, "_corruption_table", None)
    if callable(obj) and table:
        clash = _REGISTRY.get(ep.name)
        if clash is not None and clash.fn is not obj:
            raise CorruptionError(f"the name {ep.name!r} is already registered ({clash.source})")
        if clash is None:
            register(ep.name, source=source, **table)(obj)
    if ep.name not in _REGISTRY:
        raise CorruptionError(f"it registered no corruption {ep.name!r} (give the function a "
                              "_corruption_table, or register the name when the module is imported)")
    if _REGISTRY[ep.name].source == "builtin" and ep.name not in COMMON + EXTRA:
        _REGISTRY[ep.name] = Corruption(**{**_REGISTRY[ep.name].__dict__, "source": source})


def load_plugin(path: str | os.PathLike) -> list[str]:
    """Import a plug-in file that registers corruptions; return the names it added."""
    p = Path(path)
    if not p.is_file():
        raise CorruptionError(f"plug-in file not found: {p}")
    before = set(_REGISTRY)
    mod_name = f"corruptions_plugin_{name_code(str(p.resolve())):08x}"
    spec = importlib.util.spec_from_file_location(mod_name, p)
    if spec is None or spec.loader is None:
        raise CorruptionError(f"cannot import plug-in {p} (not a Python file?)")
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:  # user code (SystemExit too: a plug-in calling sys.exit)
        sys.modules.pop(mod_name, None)
        for n in set(_REGISTRY) - before:
            del _REGISTRY[n]
        if isinstance(exc, CorruptionError):
            raise CorruptionError(f"plug-in {p}: {exc}") from exc
        raise CorruptionError(f"plug-in {p} failed: {user_code_problem(exc)}") from exc
    added = sorted(set(_REGISTRY) - before)
    if not added:
        raise CorruptionError(f"plug-in {p} registered no corruption (use @corruptions.register)")
    for n in added:
        c = _REGISTRY[n]
        _REGISTRY[n] = Corruption(**{**c.__dict__, "source": str(p)})
    return added


def user_code_problem(exc: BaseException) -> str:
    """What a plug-in's failure was, in one phrase (its exception, or the sys.exit it called)."""
    if isinstance(exc, SystemExit):
        return f"it called sys.exit({exc.code!r})"
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return f"{type(exc).__name__}: {lines[0][:200]}" if lines else type(exc).__name__


def _run_kernel(corruption: Corruption, x: torch.Tensor, params: dict, rng: SampleRNG) -> Any:
    """Call a corruption's function; a plug-in's exception (user code) becomes one line naming it."""
    if corruption.source == "builtin":
        return corruption.fn(x, params, rng)
    try:
        return corruption.fn(x, params, rng)
    except CorruptionError:
        raise
    except (Exception, SystemExit) as exc:
        raise CorruptionError(f"corruption {corruption.name!r} from plug-in {corruption.source} failed: "
                              f"{user_code_problem(exc)}") from exc


def _ensure_builtins() -> None:
    # Importing the kernel modules registers the 19 built-ins.
    import corruptions.builtins  # noqa: F401

    _load_entry_points()


def get(name: str) -> Corruption:
    """The registered corruption ``name``; a :class:`CorruptionError` names the closest ones."""
    _ensure_builtins()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise CorruptionError(
            f"unknown corruption {name!r}{_closest_hint(name, sorted(_REGISTRY))}"
        ) from None


def names(subset: str = "all") -> list[str]:
    """Corruption names of a subset: all, common, extra, noise, blur, weather, digital, plugins.

    Built-ins come in the canonical order (15 common then 4 extra); plug-ins follow
    ``all`` in registration order. A comma-separated list of names is also accepted.
    """
    _ensure_builtins()
    builtin = list(COMMON) + list(EXTRA)
    plugins = [n for n in _REGISTRY if n not in builtin]
    if subset == "all":
        return [n for n in builtin if n in _REGISTRY] + plugins
    if subset == "common":
        return list(COMMON)
    if subset == "extra":
        return list(EXTRA)
    if subset == "plugins":
        return plugins
    if subset in ("noise", "blur", "weather", "digital"):
        return [n for n in COMMON if _REGISTRY[n].group == subset] + [
            n for n in plugins if _REGISTRY[n].group == subset
        ]
    if subset in _REGISTRY:
        return [subset]
    if "," in subset:
        # a mixed list of names and subsets ("noise,fog"), expanded in order, without repeats
        out: list[str] = []
        for item in (s.strip() for s in subset.split(",")):
            if item:
                out += [n for n in names(item) if n not in out]
        if not out:
            raise CorruptionError(f"empty corruption list {subset!r}")
        return out
    raise CorruptionError(
        f"unknown corruption or subset {subset!r}{_closest_hint(subset, SUBSETS + tuple(sorted(_REGISTRY)))}"
    )


def check_severity(severity: Any) -> int:
    """Validate a severity (int 1..5)."""
    if isinstance(severity, bool) or not isinstance(severity, int) or not 1 <= severity <= 5:
        raise CorruptionError(f"severity must be an integer 1..5, got {severity!r}")
    return severity


def preset_for_size(height: int, width: int) -> str:
    """Default preset from the image size: <=48 px cifar, <=128 px tinyimagenet, else imagenet."""
    side = max(height, width)
    if side <= 48:
        return "cifar"
    if side <= 128:
        return "tinyimagenet"
    return "imagenet"


def _validate_images(images: Any) -> None:
    if not isinstance(images, torch.Tensor):
        raise CorruptionError(f"images must be a torch.Tensor, got {type(images).__name__}")
    if images.ndim != 4:
        raise CorruptionError(
            f"images must have shape (N, C, H, W), got {tuple(images.shape)}"
        )
    if images.shape[1] not in (1, 3):
        raise CorruptionError(f"images must have 1 or 3 channels, got C={images.shape[1]}")
    if images.dtype != torch.uint8 and not images.is_floating_point():
        raise CorruptionError(f"images must be uint8 (0..255) or float in [0, 1], got {images.dtype}")


@contextmanager
def exact_float32() -> Iterator[None]:
    """IEEE float32 matmuls and convolutions (no TF32) and deterministic cuDNN while inside.

    A corruption must not change with the caller's speed settings (``torch.backends.cuda.
    matmul.fp32_precision = "tf32"``, ``set_float32_matmul_precision("high")``, cuDNN
    benchmark mode): a sample's result stays bit-reproducible on a device and close to the
    CPU result. The caller's settings are restored on exit.
    """
    matmul = torch.backends.cuda.matmul
    new_api = hasattr(matmul, "fp32_precision")
    saved = matmul.fp32_precision if new_api else matmul.allow_tf32
    if new_api:
        matmul.fp32_precision = "ieee"
    else:  # torch < 2.9
        matmul.allow_tf32 = False
    try:
        with torch.backends.cudnn.flags(
            enabled=torch.backends.cudnn.enabled, benchmark=False, deterministic=True,
            allow_tf32=False,
        ):  # fmt: skip
            yield
    finally:
        if new_api:
            matmul.fp32_precision = saved
        else:
            matmul.allow_tf32 = saved


def apply(
    images: torch.Tensor,
    name: str,
    severity: int | None = None,
    *,
    seed: int = 0,
    indices: torch.Tensor | Sequence[int] | None = None,
    preset: str | None = None,
    params: Mapping[str, Any] | None = None,
    quantize: bool = True,
    streams: int | None = None,
) -> torch.Tensor:
    """Corrupt a batch: ``images`` (N, C, H, W) uint8 or float in [0, 1], any device.

    Returns the same dtype, shape and device. Sample i's result depends only on
    ``(seed, name, severity or params, indices[i])`` and its image. With
    ``quantize`` (default) the result is truncated to 256 grey levels like the
    published ``uint8(x * 255)`` files (float outputs are that value / 255).
    ``params`` overrides (some of) the severity's parameters, or gives all of them
    when ``severity`` is None (parametric use, e.g. ``params={"sigma": 0.15}``).
    ``streams`` picks the random-stream version (:mod:`corruptions.streams`; None: the
    process default, 3 unless set).
    """
    _validate_images(images)
    version = stream_version() if streams is None else check_streams(streams)
    corruption = get(name)
    n, c, h, w = images.shape
    if preset is None:
        preset = preset_for_size(h, w)
    elif preset not in PRESETS and preset not in corruption.presets:
        raise CorruptionError(f"unknown preset {preset!r}{_closest_hint(preset, PRESETS)}")

    if severity is None and params is None:
        raise CorruptionError("give a severity (1..5) or explicit params")
    if severity is not None:
        check_severity(severity)
        p = corruption.params(severity, preset)
    else:
        p = {}
    if params is not None:
        unknown = set(params) - set(corruption.param_names)
        if unknown:
            raise CorruptionError(
                f"corruption {name!r} has no parameter(s) {sorted(unknown)}; "
                f"parameters: {', '.join(corruption.param_names)}"
            )
        p.update(params)
        if not corruption.presets:  # self-mapped: the preset is known here, not to the caller
            p.setdefault("preset", preset)
        missing = set(corruption.param_names) - set(p)
        if missing:
            defaults = corruption.extra.get("defaults", {})
            p.update({k: defaults[k] for k in missing if k in defaults})
            missing = set(corruption.param_names) - set(p)
        if missing:
            raise CorruptionError(f"corruption {name!r} needs parameter(s) {sorted(missing)}")

    if indices is None:
        idx = torch.arange(n, dtype=torch.int64)
    else:
        idx = torch.as_tensor(indices, dtype=torch.int64).flatten()
        if idx.numel() != n:
            raise CorruptionError(f"indices has {idx.numel()} entries for {n} images")
    if n == 0:
        return images.clone()

    call_key = f"{name}|{severity}" if params is None else f"{name}|{json.dumps(p, sort_keys=True, default=str)}"
    rng = SampleRNG(int(seed), name_code(call_key), idx, images.device, streams=version)
    out = torch.empty(images.shape, dtype=images.dtype, device=images.device)
    step = _chunk_samples(corruption, images)
    with exact_float32():
        for start in range(0, n, step):
            stop = min(n, start + step)
            part = rng if step >= n else rng.subset(start, stop)
            out[start:stop] = _apply_chunk(corruption, images[start:stop], p, part, quantize)
    return out


def _chunk_samples(corruption: Corruption, images: torch.Tensor) -> int:
    """Samples per call of ``corruption.fn``: chunks on CPU where the corruption allows them.

    Chunks keep a kernel's intermediate tensors in the caches, and let the allocator reuse
    them instead of mapping fresh pages for every full-batch temporary (2-5x faster for
    memory-bound kernels on CPU). Sample results do not depend on the batch, so chunking
    changes no value. Off the CPU the whole batch runs at once (more parallel work).
    """
    n = images.shape[0]
    if images.device.type != "cpu" or corruption.chunk_values is None:
        return max(n, 1)
    per_sample = 3 * images.shape[-2] * images.shape[-1]
    return max(MIN_CHUNK_SAMPLES, corruption.chunk_values // per_sample)


def _apply_chunk(
    corruption: Corruption, images: torch.Tensor, p: dict, rng: SampleRNG, quantize: bool
) -> torch.Tensor:
    """``apply`` on one chunk of samples: convert, run the corruption, clip and quantise."""
    n, c, h, w = images.shape
    orig_dtype = images.dtype
    grey = c == 1 and corruption.rgb
    if corruption.levels_fn is not None and orig_dtype == torch.uint8 and quantize and not grey:
        levels = corruption.levels_fn(images, p, rng)
        if levels is not None:
            if not isinstance(levels, torch.Tensor) or levels.shape != images.shape:
                raise CorruptionError(f"corruption {corruption.name!r}: levels_fn returned the wrong shape")
            return levels if levels.dtype == torch.uint8 else levels.clamp(0, 255)
    x = torch.div(images, 255.0).float() if orig_dtype == torch.uint8 else images.float().clamp(0.0, 1.0)
    if grey:
        x = x.expand(n, 3, h, w).contiguous()
    out = _run_kernel(corruption, x.contiguous(), p, rng)
    if not isinstance(out, torch.Tensor) or out.shape != x.shape:
        raise CorruptionError(
            f"corruption {corruption.name!r} returned {getattr(out, 'shape', type(out))}, "
            f"expected {tuple(x.shape)}"
        )
    out = out.float()
    if quantize and not grey and orig_dtype in (torch.uint8, torch.float32) and native.active(out.device):
        return native.quantize(out, orig_dtype)  # the same values as the ops below, in one pass
    out = out.mean(dim=1, keepdim=True) if grey else out.clamp(0.0, 1.0)
    if grey:
        out.clamp_(0.0, 1.0)
    if quantize:
        # uint8(x * 255) truncation as in the published files; the 1e-4 guards float32
        # rounding of values the float64 reference would put exactly on a level.
        # (out is in [0, 1] here, so the levels are in [0, 255] without a second clamp)
        levels = out.mul_(255.0).add_(1e-4).floor_()
        return _for_uint8(levels) if orig_dtype == torch.uint8 else levels.div_(255.0)
    if orig_dtype == torch.uint8:
        return _for_uint8(out.mul_(255.0).round_())
    return out


def _for_uint8(levels: torch.Tensor) -> torch.Tensor:
    """Integer-valued float levels 0..255 as int16, the same values: torch converts float32
    to uint8 without vectorising, float32 -> int16 -> uint8 is 2.5x faster on a CPU."""
    return levels.to(torch.int16) if levels.device.type == "cpu" else levels
