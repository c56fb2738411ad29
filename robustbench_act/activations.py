"""Activation registry: element-level functions, LayerAct and ANAct, built from spec strings.

A *spec* is a registered name with optional literal keyword arguments, for example
``"la_silu"``, ``"la_silu(alpha=0.1, dims='last')"`` or ``"leaky_relu(negative_slope=0.2)"``.
Arguments are parsed with :mod:`ast` (literals only, nothing is evaluated).
:func:`get_activation` always returns a fresh, non-inplace module tagged with
``actbench_spec`` (its canonical spec), so models and result files name the same thing.

Kinds: ``element`` (a = f(x) element by element), ``layeract`` (LayerAct, Yoon & Lim:
a = y * s(n) with n the per-sample normalised input) and ``anact`` (ANAct: an element-level
function rescaled by a mini-batch factor; see :class:`ANAct` for the operational definition
this project uses). Any element-level name ``X`` also works as ``an_X``.

Third-party packages add activations through the entry-point group
``robustbench_act.activations``; the object an entry point names is an ``nn.Module``
class or a factory returning a module. Optional attributes on it (``actbench_kind``,
``actbench_description``, ``actbench_bounds``) fill in its description.
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import inspect
import re
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch
from torch import nn

from robustbench_act.errors import UserError, unknown

__all__ = [  # noqa: F822  (ANAct, LayerAct, layer_act_reference: lazy re-exports, see the end)
    "ENTRY_POINT_GROUP",
    "KINDS",
    "LAYERACT_SCALES",
    "ANAct",
    "ActivationInfo",
    "LayerAct",
    "LeCunTanh",
    "activation_bounds",
    "canonical_spec",
    "describe_activations",
    "get_activation",
    "layer_act_reference",
    "list_activations",
    "parse_spec",
    "refresh_entry_points",
    "register_activation",
]

ENTRY_POINT_GROUP = "robustbench_act.activations"
KINDS = ("element", "layeract", "anact")
LAYERACT_SCALES = ("silu", "hardsilu", "gelu", "mish")
_LAYERACT_DIMS = ("sample", "last")
_NAME_RE = re.compile(r"^[a-z_][a-z0-9_.]*$")
_SPEC_RE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_.\-]*)\s*(?:\((.*)\))?\s*$", re.DOTALL)
_MAX_SPEC_LEN = 1000

T = TypeVar("T")


@dataclass(frozen=True)
class ActivationInfo:
    """What the registry knows about one activation (shown by ``actbench activations``)."""

    name: str
    kind: str
    description: str
    aliases: tuple[str, ...] = ()
    bounds: tuple[float, float] | None = None
    source: str = "builtin"


@dataclass
class _Entry:
    info: ActivationInfo
    factory: Callable[..., nn.Module]
    base: str | None = None  # for an_<element>: the canonical base name
    _sig: inspect.Signature | None = field(default=None, repr=False)


_REGISTRY: dict[str, _Entry] = {}
_ALIASES: dict[str, str] = {}
_EP_PENDING: dict[str, importlib.metadata.EntryPoint] | None = None  # discovered, not loaded


def _norm_name(name: str) -> str:
    return name.strip().lower().replace("-", "_")


# ----------------------------------------------------------------------------- registration


def register_activation(
    name: str,
    *,
    kind: str,
    description: str,
    aliases: Iterable[str] = (),
    bounds: tuple[float, float] | None = None,
) -> Callable[[T], T]:
    """Decorator registering an ``nn.Module`` class or module factory under ``name``."""
    if kind not in KINDS:
        raise ValueError(f"activation kind must be one of {KINDS}, got {kind!r}")

    def deco(obj: T) -> T:
        if not callable(obj):
            raise TypeError(f"register_activation({name!r}) needs a class or factory")
        _add_entry(
            _Entry(
                ActivationInfo(
                    name=_norm_name(name),
                    kind=kind,
                    description=description,
                    aliases=tuple(_norm_name(a) for a in aliases),
                    bounds=None if bounds is None else (float(bounds[0]), float(bounds[1])),
                ),
                obj,  # type: ignore[arg-type]
            )
        )
        return obj

    return deco


def _add_entry(entry: _Entry) -> None:
    info = entry.info
    for n in (info.name, *info.aliases):
        if not _NAME_RE.match(n):
            raise ValueError(f"invalid activation name {n!r} (lower-case identifier expected)")
        owner = _REGISTRY.get(n) or _REGISTRY.get(_ALIASES.get(n, ""))
        if owner is not None and owner.factory is not entry.factory:
            raise ValueError(f"activation name {n!r} is already registered")
    _REGISTRY[info.name] = entry
    for a in info.aliases:
        _ALIASES[a] = info.name


# ----------------------------------------------------------------------------- entry points


def refresh_entry_points() -> None:
    """Forget discovered plugins so the next lookup re-reads the entry points (new installs)."""
    global _EP_PENDING
    for name in [n for n, e in _REGISTRY.items() if e.info.source != "builtin"]:
        for a in _REGISTRY[name].info.aliases:
            _ALIASES.pop(a, None)
        del _REGISTRY[name]
    _EP_PENDING = None


def _pending_entry_points() -> dict[str, importlib.metadata.EntryPoint]:
    """Discover (without importing) third-party activations, once per process."""
    global _EP_PENDING
    if _EP_PENDING is None:
        found: dict[str, importlib.metadata.EntryPoint] = {}
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            name = _norm_name(ep.name)
            if name in _REGISTRY or name in _ALIASES or not _NAME_RE.match(name):
                warnings.warn(
                    f"ignoring activation entry point {ep.name!r} ({ep.value}): "
                    "name is invalid or already taken",
                    stacklevel=3,
                )
                continue
            found[name] = ep
        _EP_PENDING = found
    return _EP_PENDING


def _load_entry_point(name: str) -> _Entry:
    ep = _pending_entry_points()[name]
    try:
        obj = ep.load()
    except Exception as exc:  # any import failure of a plugin is the user's environment
        raise UserError(
            f"activation entry point {ep.name!r} ({ep.value}) failed to load: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    if not callable(obj):
        raise UserError(
            f"activation entry point {ep.name!r} ({ep.value}) is not a module class or factory"
        )
    kind = getattr(obj, "actbench_kind", "element")
    if kind not in KINDS:
        raise UserError(f"activation entry point {ep.name!r} has unknown kind {kind!r}")
    doc = (getattr(obj, "actbench_description", None) or inspect.getdoc(obj) or "").strip()
    bounds = getattr(obj, "actbench_bounds", None)
    if isinstance(bounds, property) or not (bounds is None or len(bounds) == 2):
        bounds = None
    entry = _Entry(
        ActivationInfo(
            name=name,
            kind=kind,
            description=doc.splitlines()[0] if doc else f"plugin {ep.value}",
            bounds=None if bounds is None else (float(bounds[0]), float(bounds[1])),
            source=f"entry point {ep.value}",
        ),
        obj,
    )
    _REGISTRY[name] = entry
    del _pending_entry_points()[name]
    return entry


# ----------------------------------------------------------------------------- spec parsing


def parse_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """Split ``"name(k=v, ...)"`` into a normalised name and literal kwargs (never evaluates)."""
    if not isinstance(spec, str):
        raise UserError(f"activation spec must be a string, got {type(spec).__name__}")
    if len(spec) > _MAX_SPEC_LEN:
        raise UserError(f"activation spec is too long ({len(spec)} characters)")
    m = _SPEC_RE.match(spec)
    if m is None:
        raise UserError(
            f"malformed activation spec {spec!r}; expected name or name(key=value, ...)"
        )
    name, args = _norm_name(m.group(1)), m.group(2)
    if args is None or not args.strip():
        return name, {}
    try:
        tree = ast.parse(f"_f({args})", mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        raise UserError(
            f"malformed activation spec {spec!r}; arguments must be key=literal, ..."
        ) from None
    call = tree.body
    if not (
        isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "_f"
    ):
        raise UserError(f"malformed activation spec {spec!r}; expected name(key=value, ...)")
    if call.args:
        raise UserError(
            f"activation spec {spec!r}: positional arguments are not allowed; use key=value"
        )
    kwargs: dict[str, Any] = {}
    for kw in call.keywords:
        if kw.arg is None:
            raise UserError(f"activation spec {spec!r}: '**' arguments are not allowed")
        if kw.arg in kwargs:
            raise UserError(f"activation spec {spec!r}: argument {kw.arg!r} given twice")
        try:
            kwargs[kw.arg] = ast.literal_eval(kw.value)
        except (ValueError, TypeError, SyntaxError, RecursionError, MemoryError):
            raise UserError(
                f"activation spec {spec!r}: value of {kw.arg!r} must be a literal "
                "(number, string, bool, None, tuple)"
            ) from None
    return name, kwargs


def _format_spec(name: str, kwargs: dict[str, Any]) -> str:
    if not kwargs:
        return name
    return f"{name}({', '.join(f'{k}={kwargs[k]!r}' for k in sorted(kwargs))})"


def _resolve(name: str) -> _Entry:
    """Registry entry for a normalised name: alias, builtin, plugin or dynamic an_<element>."""
    name = _ALIASES.get(name, name)
    if name in _REGISTRY:
        return _REGISTRY[name]
    if name in _pending_entry_points():
        return _load_entry_point(name)
    if name.startswith("an_") and len(name) > 3:
        base_name = _norm_name(name[3:])
        try:
            base = _resolve(base_name)
        except UserError:
            base = None
        if base is not None and base.info.kind == "element":
            canon = f"an_{base.info.name}"
            if canon in _REGISTRY:
                return _REGISTRY[canon]
            return _Entry(
                ActivationInfo(
                    name=canon,
                    kind="anact",
                    description=f"ANAct-normalised {base.info.name}",
                    source=base.info.source,
                ),
                _activation_modules._anact_factory(base.info.name),
                base=base.info.name,
            )
    raise unknown("activation", name, list_activations(), listed_by="actbench activations")


def _signature(entry: _Entry) -> inspect.Signature | None:
    if entry._sig is None:
        try:
            entry._sig = inspect.signature(entry.factory)
        except (TypeError, ValueError):
            return None
    return entry._sig


def _normalise_kwargs(entry: _Entry, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Check kwargs against the factory signature and drop those equal to the default."""
    sig = _signature(entry)
    if sig is None:
        return dict(kwargs)
    params = sig.parameters
    var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    named = {
        n: p
        for n, p in params.items()
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    }
    out: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for k, v in kwargs.items():
        if k in named:
            d = named[k].default
            if type(d) is float and type(v) is int:
                v = float(v)  # "alpha=1" and "alpha=1.0" are the same spec
            if d is not inspect.Parameter.empty and type(d) is type(v) and d == v:
                continue
            out[k] = v
        elif var_kw:
            extra[k] = v
        else:
            valid = ", ".join(named) or "none"
            raise UserError(
                f"activation {entry.info.name!r} has no argument {k!r} (valid: {valid})"
            )
    missing = [
        n for n, p in named.items() if p.default is inspect.Parameter.empty and n not in kwargs
    ]
    if missing:
        raise UserError(f"activation {entry.info.name!r} needs argument(s): {', '.join(missing)}")
    if extra and entry.base is not None:
        extra = _normalise_kwargs(_resolve(entry.base), extra)
    out.update(extra)
    return out


def canonical_spec(spec: str) -> str:
    """Canonical form of a spec: canonical name, defaults dropped, kwargs sorted by key."""
    name, kwargs = parse_spec(spec)
    entry = _resolve(name)
    return _format_spec(entry.info.name, _normalise_kwargs(entry, kwargs))


def get_activation(spec: str) -> nn.Module:
    """Build a fresh, non-inplace activation module from a spec, tagged with ``actbench_spec``."""
    name, kwargs = parse_spec(spec)
    entry = _resolve(name)
    kwargs = _normalise_kwargs(entry, kwargs)
    canon = _format_spec(entry.info.name, kwargs)
    try:
        module = entry.factory(**kwargs)
    except UserError:
        raise
    except (TypeError, ValueError, AssertionError, RuntimeError) as exc:
        raise UserError(f"bad arguments for activation {canon!r}: {exc}") from None
    if not isinstance(module, nn.Module):
        raise UserError(
            f"activation {entry.info.name!r} ({entry.info.source}) returned "
            f"{type(module).__name__}, not a torch.nn.Module"
        )
    for sub in module.modules():
        if getattr(sub, "inplace", False) is True:
            sub.inplace = False
    if entry.info.bounds is not None and activation_bounds(module) is None:
        module.actbench_bounds = entry.info.bounds
    module.actbench_spec = canon
    return module


def list_activations() -> list[str]:
    """All activation names accepted by :func:`get_activation`, aliases included, sorted."""
    names = set(_REGISTRY) | set(_ALIASES) | set(_pending_entry_points())
    return sorted(names)


def describe_activations() -> list[ActivationInfo]:
    """One :class:`ActivationInfo` per activation (plugins loaded), ordered by kind then name."""
    for name in list(_pending_entry_points()):
        _load_entry_point(name)
    infos = [e.info for e in _REGISTRY.values()]
    return sorted(infos, key=lambda i: (KINDS.index(i.kind), i.name))


# ----------------------------------------------------------------------------- bounds

_TORCH_BOUNDED: list[tuple[type[nn.Module], tuple[float, float]]] = [
    (nn.Tanh, (-1.0, 1.0)),
    (nn.Softsign, (-1.0, 1.0)),
    (nn.Sigmoid, (0.0, 1.0)),
    (nn.Hardsigmoid, (0.0, 1.0)),
]


@functools.lru_cache(maxsize=1)
def _bounded_types() -> tuple[tuple[type[nn.Module], tuple[float, float]], ...]:
    """Bounded activation classes, timm's own (non-subclass) versions included.

    timm is imported here, on first use, not at module import: importing timm costs
    seconds and most CLI commands never need it.
    """
    types = list(_TORCH_BOUNDED)
    try:
        from timm.layers import activations as _timm_act

        types += [
            (_timm_act.Tanh, (-1.0, 1.0)),
            (_timm_act.Sigmoid, (0.0, 1.0)),
            (_timm_act.HardSigmoid, (0.0, 1.0)),
        ]
        from timm.layers import activations_me as _timm_me

        types.append((_timm_me.HardSigmoidMe, (0.0, 1.0)))
    except (ImportError, AttributeError):  # pragma: no cover - timm layout changed
        pass
    return tuple(types)


def activation_bounds(module: nn.Module) -> tuple[float, float] | None:
    """Output range (low, high) of a bounded activation module, or None when unbounded."""
    if isinstance(module, _activation_modules.ANAct):
        b = activation_bounds(module.base)
        if b is None:
            return None
        f = float(module.factor.detach().float().cpu())
        lo, hi = b[0] * f, b[1] * f
        return (min(lo, hi), max(lo, hi))
    if isinstance(module, nn.Hardtanh):  # includes ReLU6
        return (float(module.min_val), float(module.max_val))
    explicit = getattr(module, "actbench_bounds", None)
    if explicit is not None:
        return (float(explicit[0]), float(explicit[1]))
    for cls, b in _bounded_types():
        if isinstance(module, cls):
            return b
    return None


# ----------------------------------------------------------------------------- element-level


class LeCunTanh(nn.Module):
    """LeCun's scaled tanh: 1.7159 * tanh(2x/3)."""

    actbench_bounds = (-1.7159, 1.7159)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply 1.7159 * tanh(2x/3)."""
        return 1.7159 * torch.tanh(x * (2.0 / 3.0))


def _element(
    name: str,
    description: str,
    aliases: Iterable[str] = (),
    bounds: tuple[float, float] | None = None,
) -> Callable[[T], T]:
    return register_activation(
        name, kind="element", description=description, aliases=aliases, bounds=bounds
    )


@_element("relu", "max(0, x)")
def _relu() -> nn.Module:
    return nn.ReLU(inplace=False)


@_element("relu6", "min(max(0, x), 6)", bounds=(0.0, 6.0))
def _relu6() -> nn.Module:
    return nn.ReLU6(inplace=False)


@_element("leaky_relu", "x if x > 0 else negative_slope * x")
def _leaky_relu(negative_slope: float = 0.01) -> nn.Module:
    return nn.LeakyReLU(negative_slope=float(negative_slope), inplace=False)


@_element("prelu", "leaky ReLU with a learned slope (num_parameters slopes)")
def _prelu(num_parameters: int = 1, init: float = 0.25) -> nn.Module:
    return nn.PReLU(num_parameters=int(num_parameters), init=float(init))


@_element("elu", "x if x > 0 else alpha * (exp(x) - 1)")
def _elu(alpha: float = 1.0) -> nn.Module:
    return nn.ELU(alpha=float(alpha), inplace=False)


@_element("celu", "max(0, x) + min(0, alpha * (exp(x / alpha) - 1))")
def _celu(alpha: float = 1.0) -> nn.Module:
    return nn.CELU(alpha=float(alpha), inplace=False)


@_element("selu", "scaled ELU with self-normalising constants")
def _selu() -> nn.Module:
    return nn.SELU(inplace=False)


@_element("gelu", "x * Phi(x), Phi the standard normal CDF")
def _gelu() -> nn.Module:
    return nn.GELU()


@_element("gelu_tanh", "GELU with the tanh approximation of Phi")
def _gelu_tanh() -> nn.Module:
    return nn.GELU(approximate="tanh")


@_element("silu", "x * sigmoid(x)", aliases=("swish",))
def _silu() -> nn.Module:
    return nn.SiLU(inplace=False)


@_element("mish", "x * tanh(softplus(x))")
def _mish() -> nn.Module:
    return nn.Mish(inplace=False)


@_element("hardswish", "x * hardsigmoid(x) (HardSiLU)", aliases=("hardsilu",))
def _hardswish() -> nn.Module:
    return nn.Hardswish(inplace=False)


@_element("softplus", "log(1 + exp(beta * x)) / beta")
def _softplus(beta: float = 1.0, threshold: float = 20.0) -> nn.Module:
    return nn.Softplus(beta=beta, threshold=threshold)


@_element("sigmoid", "1 / (1 + exp(-x))", bounds=(0.0, 1.0))
def _sigmoid() -> nn.Module:
    return nn.Sigmoid()


@_element("tanh", "hyperbolic tangent", bounds=(-1.0, 1.0))
def _tanh() -> nn.Module:
    return nn.Tanh()


@_element("lecun_tanh", "1.7159 * tanh(2x/3)", bounds=(-1.7159, 1.7159))
def _lecun_tanh() -> nn.Module:
    return LeCunTanh()


@_element("softsign", "x / (1 + |x|)", bounds=(-1.0, 1.0))
def _softsign() -> nn.Module:
    return nn.Softsign()


@_element("hardtanh", "clamp(x, min_val, max_val)", bounds=(-1.0, 1.0))
def _hardtanh(min_val: float = -1.0, max_val: float = 1.0) -> nn.Module:
    if not float(min_val) < float(max_val):
        raise UserError(f"hardtanh needs min_val < max_val, got {min_val} and {max_val}")
    return nn.Hardtanh(min_val=float(min_val), max_val=float(max_val), inplace=False)


@_element("identity", "x (no non-linearity; a baseline for probes)")
def _identity() -> nn.Module:
    return nn.Identity()


# ----------------------------------------------------------------------------- LayerAct, ANAct
# registered by their own module, imported once the registry exists; its classes are
# re-exported lazily so that either module can be imported first
from robustbench_act import activation_modules as _activation_modules  # noqa: E402

_REEXPORTED = (
    "ANAct",
    "LayerAct",
    "_anact_factory",
    "_value_and_derivative",
    "layer_act_reference",
)


def __getattr__(name: str) -> Any:
    """LayerAct/ANAct names live in :mod:`robustbench_act.activation_modules`."""
    if name in _REEXPORTED:
        return getattr(_activation_modules, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
