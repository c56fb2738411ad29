"""Activation surgery: swap every activation of a model in place, and reorder BN/activation pairs.

Where activations hide (see docs and ``shared/reference/surgery.md``): activation modules
(torch's, timm's own non-subclass GELU/Sigmoid/Tanh..., ours), the ``.act`` child of timm
norm+act layers, one module shared by several call sites (torchvision ResNet ``self.relu``),
and plain function calls in ``forward`` (``F.relu`` in torchvision GoogLeNet/Inception,
``F.gelu`` in timm NFNet ``GammaAct``). Module sites are replaced with ``setattr``; call
sites inside a block's ``forward`` are handled by tracing ONLY that block with torch.fx
(every child a leaf), editing the graph, and giving the existing instance a subclass whose
``forward`` is the edited graph - so its other methods, hooks and state_dict keys stay.
A forward that depends on ``self.training`` is traced in both modes and dispatches at run
time. Only ``forward`` is rewritten: other methods of a rewritten block that call activation
functions themselves keep the old functions.
"""

from __future__ import annotations

import copy
import fnmatch
import inspect
import itertools
import operator
import re
import warnings
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.nn.modules.batchnorm import _BatchNorm

from robustbench_act.errors import UserError

__all__ = [
    "ActivationSite",
    "FunctionActivation",
    "ReorderReport",
    "SwapReport",
    "find_activations",
    "is_activation",
    "reorder_bn_act",
    "swap_activations",
]

ActivationSpec = str | Callable[[], nn.Module] | nn.Module

# --------------------------------------------------------------------------- classification

_TORCH_ACT_TYPES: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ELU, nn.CELU, nn.SELU, nn.GELU,
    nn.SiLU, nn.Mish, nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Sigmoid, nn.Tanh,
    nn.Softplus, nn.Softsign, nn.Tanhshrink, nn.LogSigmoid, nn.Threshold,
)
_TORCH_GATE_TYPES: tuple[type[nn.Module], ...] = (nn.Sigmoid, nn.Hardsigmoid, nn.LogSigmoid)
_GATE_ATTRS = {"gate", "gate_fn", "gate_act", "act_gate", "sigmoid", "scale_activation"}
_GATE_PARENT = re.compile(r"(squeeze|excit|^se|se$|eca|cbam|gate|attn|attention)", re.I)
_GLU_PARENT = re.compile(r"(glu)", re.I)

_TYPES_CACHE: dict[str, tuple[type, ...]] = {}


def _timm_types() -> tuple[tuple[type, ...], tuple[type, ...]]:
    """timm's own activation classes (not torch subclasses) and the gate-like ones among them."""
    if "acts" not in _TYPES_CACHE:
        acts: list[type] = []
        gates: list[type] = []
        try:
            from timm.layers import activations as t_act
            from timm.layers import activations_me as t_me

            for mod in (t_act, t_me):
                for obj in vars(mod).values():
                    if (
                        isinstance(obj, type)
                        and issubclass(obj, nn.Module)
                        and obj.__module__ == mod.__name__
                    ):
                        acts.append(obj)
                        if "sigmoid" in obj.__name__.lower():
                            gates.append(obj)
        except ImportError:  # pragma: no cover - timm is a dependency
            pass
        _TYPES_CACHE["acts"] = tuple(acts)
        _TYPES_CACHE["gates"] = tuple(gates)
    return _TYPES_CACHE["acts"], _TYPES_CACHE["gates"]


def is_activation(module: nn.Module) -> bool:
    """True for activation modules: torch's, timm's own classes, and ours (``actbench_spec``)."""
    if isinstance(module, FunctionActivation) or hasattr(module, "actbench_spec"):
        return True
    return isinstance(module, _TORCH_ACT_TYPES + _timm_types()[0])


def _is_gate_type(module: nn.Module) -> bool:
    if hasattr(module, "actbench_spec"):
        return False
    return isinstance(module, _TORCH_GATE_TYPES + _timm_types()[1])


def _is_gate(parent: nn.Module, attr: str, module: nn.Module) -> bool:
    """Squeeze-excite / attention / GLU gates: kept by default, they are not 'the activation'."""
    if attr in _GATE_ATTRS or "gate" in attr.lower():
        return True
    pname = type(parent).__name__
    if attr == "act" and _GLU_PARENT.search(pname):
        return True
    return _is_gate_type(module) and bool(_GATE_PARENT.search(pname))


# functional activations (call_function targets) and tensor methods (call_method targets)
def _fn_table() -> dict[Any, str]:
    table: dict[Any, str] = {}
    names = (
        "relu", "relu_", "relu6", "gelu", "silu", "mish", "elu", "elu_", "celu", "celu_",
        "selu", "selu_", "leaky_relu", "leaky_relu_", "hardswish", "hardtanh", "hardtanh_",
        "softplus", "softsign", "tanh", "sigmoid", "hardsigmoid", "rrelu", "rrelu_",
    )
    for name in names:
        for ns in (F, torch):
            fn = getattr(ns, name, None)
            if fn is not None and callable(fn):
                table[fn] = name.rstrip("_")
    return table


_FN_ACTS = _fn_table()
_METHOD_ACTS = {"relu": "relu", "relu_": "relu", "sigmoid": "sigmoid", "sigmoid_": "sigmoid",
                "tanh": "tanh", "tanh_": "tanh"}
_GATE_FNS = {"sigmoid", "hardsigmoid"}
_SRC_HINT = re.compile(
    r"(\b(F|torch|functional)\.(relu|relu6|gelu|silu|mish|elu|selu|celu|leaky_relu|hardswish|"
    r"hardtanh|softplus|softsign|tanh|sigmoid|hardsigmoid)_?\s*\()|(\.(relu|tanh|sigmoid)_?\(\))"
    r"|(\bact_fn\s*\()"
)


def _fn_name(node: fx.Node) -> str | None:
    """Activation name if the node is a functional activation call, else None."""
    if node.op == "call_function":
        try:
            return _FN_ACTS.get(node.target)
        except TypeError:  # unhashable target
            return None
    if node.op == "call_method" and isinstance(node.target, str):
        return _METHOD_ACTS.get(node.target)
    return None


def _node_input(node: fx.Node) -> Any:
    if node.args:
        return node.args[0]
    return node.kwargs.get("input", node.kwargs.get("self"))


def _node_inplace(node: fx.Node) -> bool:
    if isinstance(node.target, str):
        return node.target.endswith("_")
    name = getattr(node.target, "__name__", "")
    if name.endswith("_"):
        return True
    if node.kwargs.get("inplace"):
        return True
    try:
        bound = inspect.signature(node.target).bind(*node.args, **node.kwargs)
        return bool(bound.arguments.get("inplace", False))
    except (TypeError, ValueError):
        return False


def _function_module(node: fx.Node) -> FunctionActivation:
    """Out-of-place module equivalent of a functional activation node (extra args kept)."""
    if node.op == "call_method":
        return FunctionActivation(getattr(torch, str(node.target).rstrip("_")))
    fn = node.target
    name = getattr(fn, "__name__", "")
    if name.endswith("_") and hasattr(F, name[:-1]):
        fn = getattr(F, name[:-1])
    try:
        bound = inspect.signature(fn).bind(*node.args, **node.kwargs)
        extra = {k: v for i, (k, v) in enumerate(bound.arguments.items()) if i and k != "inplace"}
        return FunctionActivation(fn, **extra)
    except (TypeError, ValueError):
        return FunctionActivation(fn, *node.args[1:], **node.kwargs)


class FunctionActivation(nn.Module):
    """Module form of a functional activation (``F.relu`` ...), used when moving one before a BN."""

    def __init__(self, fn: Callable[..., torch.Tensor], *args: Any, **kwargs: Any) -> None:
        super().__init__()
        self.fn = fn
        self.args = args
        self.kwargs = {k: v for k, v in kwargs.items() if k != "inplace"}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the wrapped function out of place."""
        return self.fn(x, *self.args, **self.kwargs)

    def extra_repr(self) -> str:
        return getattr(self.fn, "__name__", repr(self.fn))


# --------------------------------------------------------------------------- model walking


class ActivationSite(tuple):
    """``(qualified_name, module)`` pair with extra attributes ``gate``, ``parent``, ``attr``."""

    name: str
    module: nn.Module
    gate: bool
    parent: nn.Module
    attr: str

    def __new__(
        cls, name: str, module: nn.Module, *, gate: bool, parent: nn.Module, attr: str
    ) -> ActivationSite:
        obj = super().__new__(cls, (name, module))
        obj.name, obj.module, obj.gate, obj.parent, obj.attr = name, module, gate, parent, attr
        return obj


def _module_names(model: nn.Module) -> dict[int, str]:
    return {id(m): n for n, m in model.named_modules()}


def _iter_parents(model: nn.Module) -> Iterable[tuple[str, nn.Module]]:
    """Every distinct module that may own activation children (not inside activation modules)."""
    seen: set[int] = set()
    stack: list[tuple[str, nn.Module]] = [("", model)]
    while stack:
        name, mod = stack.pop()
        if id(mod) in seen:
            continue
        seen.add(id(mod))
        yield name, mod
        for cname, child in reversed(list(mod._modules.items())):
            if child is None or is_activation(child):
                continue
            stack.append((f"{name}.{cname}" if name else cname, child))


def _collect_sites(model: nn.Module) -> list[ActivationSite]:
    sites = []
    for pname, parent in _iter_parents(model):
        for attr, child in parent._modules.items():
            if child is not None and is_activation(child):
                qual = f"{pname}.{attr}" if pname else attr
                sites.append(
                    ActivationSite(qual, child, gate=_is_gate(parent, attr, child),
                                   parent=parent, attr=attr)
                )
    return sites


def find_activations(model: nn.Module, *, include_gates: bool = True) -> list[ActivationSite]:
    """All activation modules as ``(qualified_name, module)`` sites; ``site.gate`` flags gates."""
    return [s for s in _collect_sites(model) if include_gates or not s.gate]


# --------------------------------------------------------------------------- owner tracing
#
# A rewritten block keeps its instance; its class becomes a subclass whose ``forward``
# dispatches to graphs compiled per specialisation (training flag, and which defaulted
# arguments are None / which primitive values they hold). Each graph is a fresh trace of the
# ORIGINAL forward with the recorded edits replayed, so rewrites compose and re-running a
# surgery sees the current behaviour.

Edit = Callable[[nn.Module, fx.Graph, "Callable[[], nn.Module] | None", "SwapReport | None"],
                None]
_PROXY = object()  # stands for "a tensor/other object is passed here" when precompiling


class _AssignableProxy(fx.Proxy):
    """A Proxy that records ``x[i] = v`` as an ``operator.setitem`` node.

    Blocks such as timm's HRNet HighResolutionModule update their list input in place
    (``x[i] = branch(x[i])``); fx's plain Proxy refuses item assignment. The recorded node
    (side-effectful, so never dropped) performs the same assignment when the graph runs,
    and later ``x[i]`` reads are getitem nodes after it, so the behaviour is unchanged.
    """

    def __setitem__(self, key: Any, value: Any) -> None:
        self.tracer.create_proxy("call_function", operator.setitem, (self, key, value), {})


class _OwnerTracer(fx.Tracer):
    """Traces one block only: every child module is a leaf."""

    def __init__(self, owner: nn.Module) -> None:
        super().__init__(autowrap_modules=())
        self._owner = owner
        if getattr(type(owner), "_actbench_base", None) is not None:
            self.traced_func_name = "_actbench_base_forward"

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return m is not self._owner

    def proxy(self, node: fx.Node) -> fx.Proxy:
        return _AssignableProxy(node, self)


@dataclass
class _Traced:
    graphs: dict[bool, fx.Graph]  # training flag -> graph at the default specialisation
    attrs_before: set[str]


def _base_signature(owner: nn.Module) -> inspect.Signature | None:
    base = getattr(type(owner), "_actbench_base", type(owner))
    try:
        return inspect.signature(base.forward)
    except (TypeError, ValueError):
        return None


def _defaulted(sig: inspect.Signature | None) -> tuple[inspect.Parameter, ...]:
    if sig is None:
        return ()
    return tuple(
        p for p in list(sig.parameters.values())[1:]
        if p.default is not inspect.Parameter.empty
        and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    )


def _spec_key(
    values: dict[str, Any], params: tuple[inspect.Parameter, ...]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Specialisation key and fx concrete_args: None and primitives are fixed, the rest traced."""
    key: list[Any] = []
    concrete: dict[str, Any] = {}
    for p in params:
        v = values.get(p.name, p.default)
        if v is None:
            key.append((p.name, None))
            concrete[p.name] = None
        elif isinstance(v, bool | int | float | str):
            key.append((p.name, "v", v))
            concrete[p.name] = v
        else:
            key.append((p.name, "obj"))
    return tuple(key), concrete


def _graph(
    owner: nn.Module,
    training: bool,
    concrete: dict[str, Any],
    make: Callable[[], nn.Module] | None = None,
    report: SwapReport | None = None,
) -> fx.Graph:
    """Trace the owner's original forward for one specialisation and replay its edits."""
    was = owner.training
    try:
        owner.training = training
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            g = _OwnerTracer(owner).trace(owner, concrete_args=concrete or None)
    finally:
        owner.training = was
    for edit in getattr(type(owner), "_actbench_edits", ()):
        edit(owner, g, make, report)
    return g


def _class_source(cls: type) -> str | None:
    """Source of a module class and its non-torch bases (None when some is unavailable)."""
    cls = getattr(cls, "_actbench_base", cls)
    if cls not in _SOURCE_CACHE:
        parts = []
        for c in cls.__mro__:
            if c is object or c.__module__.startswith("torch.nn.modules"):
                continue
            try:
                parts.append(inspect.getsource(c))
            except (OSError, TypeError):
                parts = None
                break
        _SOURCE_CACHE[cls] = "\n".join(parts) if parts is not None else None
    return _SOURCE_CACHE[cls]


_SOURCE_CACHE: dict[type, str | None] = {}


def _reads_training(owner: nn.Module) -> bool:
    """Whether the forward may branch on ``self.training`` (then both modes are traced)."""
    src = _class_source(type(owner))
    return src is None or "training" in src


def _trace(owner: nn.Module) -> _Traced:
    """Current behaviour of ``owner`` (edits included) in train and eval mode, default args."""
    before = set(owner.__dict__)
    _, concrete = _spec_key({}, _defaulted(_base_signature(owner)))
    try:
        if _reads_training(owner):
            graphs = {mode: _graph(owner, mode, concrete) for mode in (True, False)}
        else:
            graphs = {owner.training: _graph(owner, owner.training, concrete)}
    except BaseException:
        _restore_attrs(owner, before)
        raise
    return _Traced(graphs, before)


def _restore_attrs(owner: nn.Module, before: set[str]) -> None:
    """Drop constants fx attached to the owner while tracing (when no rewrite follows)."""
    for key in set(owner.__dict__) - before:
        if key.startswith("_tensor_constant"):
            del owner.__dict__[key]


def _traceable_candidate(mod: nn.Module) -> bool:
    """Whether a module's own forward may call activation functions worth tracing."""
    if is_activation(mod) or isinstance(mod, nn.ModuleList | nn.ModuleDict):
        return False
    cls = type(mod)
    if isinstance(mod, nn.Sequential) and cls.forward is nn.Sequential.forward:
        return False
    return not (cls.__module__.startswith("torch.nn.modules") and not mod._modules)


def _source_hint(mod: nn.Module) -> bool:
    """Whether the class source may call an activation function (True when unknown)."""
    src = _class_source(type(mod))
    return src is None or bool(_SRC_HINT.search(src))


def _may_reuse(mod: nn.Module, attrs: Iterable[str]) -> bool:
    """Whether one of the activation children ``attrs`` may be called at several sites."""
    src = _class_source(type(mod))
    if src is None:
        return True
    if re.search(r"\b(for|while)\b", src):
        return True
    return any(len(re.findall(rf"self\.{re.escape(a)}\b", src)) > 2 for a in attrs)


def _compile(
    owner: nn.Module,
    training: bool,
    key: tuple[Any, ...],
    concrete: dict[str, Any],
    make: Callable[[], nn.Module] | None = None,
    report: SwapReport | None = None,
) -> Callable[..., Any]:
    g = _graph(owner, training, concrete, make, report)
    g.lint()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gm = fx.GraphModule(owner, g, class_name=type(owner).__name__)
    fn = type(gm).forward
    modes = (training,) if _reads_training(owner) else (True, False)
    for mode in modes:
        type(owner)._actbench_cache[(mode, key)] = fn
    return fn


def _dispatch_forward(self: nn.Module, *args: Any, **kwargs: Any) -> Any:
    """Run the compiled graph for this call's specialisation (compiling it on first use)."""
    cls = type(self)
    params = cls._actbench_params
    values = cls._actbench_sig.bind(self, *args, **kwargs).arguments if params else {}
    key, concrete = _spec_key(values, params)
    fn = cls._actbench_cache.get((self.training, key))
    if fn is None:
        try:
            fn = _compile(self, self.training, key, concrete)
        except Exception as exc:
            raise RuntimeError(
                f"actbench surgery rewrote {cls.__name__}.forward but cannot specialise it for "
                f"this call ({type(exc).__name__}: {exc})"
            ) from exc
    return fn(self, *args, **kwargs)


def _install(
    owner: nn.Module,
    edit: Edit,
    make: Callable[[], nn.Module] | None,
    report: SwapReport | None,
) -> None:
    """Record ``edit`` for ``owner`` and precompile train/eval x None/non-None argument combos."""
    cls = type(owner)
    base = getattr(cls, "_actbench_base", cls)
    sig = _base_signature(owner)
    params = _defaulted(sig)
    new_cls = type(base.__name__, (base,), {
        "forward": _dispatch_forward,
        "_actbench_base": base,
        "_actbench_base_forward": base.forward,
        "_actbench_edits": (*getattr(cls, "_actbench_edits", ()), edit),
        "_actbench_params": params,
        "_actbench_sig": sig,
        "_actbench_cache": {},
        "__module__": base.__module__,
        "__qualname__": base.__qualname__,
        "__doc__": base.__doc__,
    })
    owner.__class__ = new_cls
    optional = [p.name for p in params if p.default is None][:3]
    combos = list(itertools.product((True, False), repeat=len(optional)))
    for training in (True, False) if _reads_training(owner) else (owner.training,):
        for i, combo in enumerate(combos):
            values = {n: (None if is_none else _PROXY) for n, is_none in zip(optional, combo)}
            key, concrete = _spec_key(values, params)
            try:
                _compile(owner, training, key, concrete, make, report)
            except Exception:
                if i == 0:  # the default call must work; it traced during planning
                    owner.__class__ = cls
                    raise


def _ensure_module(
    owner: nn.Module,
    attr: str,
    make: Callable[[], nn.Module] | None,
    on_new: Callable[[str], None] | None,
) -> str:
    """Name of an activation child ``attr`` (reused if present), creating it with ``make``."""
    while True:
        existing = owner._modules.get(attr)
        if existing is not None and is_activation(existing):
            return attr
        if existing is None and not hasattr(owner, attr):
            break
        attr += "_"
    if make is None:
        raise RuntimeError(f"this call path needs a new activation module {attr!r}")
    owner.add_module(attr, make())
    if on_new is not None:
        on_new(attr)
    return attr


# --------------------------------------------------------------------------- reports


@dataclass
class SwapReport:
    """What ``swap_activations`` did: counts by original type, call sites, gates, leftovers."""

    spec: str
    replaced: Counter[str] = field(default_factory=Counter)
    functional: list[tuple[str, str]] = field(default_factory=list)
    split: list[str] = field(default_factory=list)
    gates_kept: list[str] = field(default_factory=list)
    excluded: list[str] = field(default_factory=list)
    remaining: list[tuple[str, str]] = field(default_factory=list)
    untraced: list[tuple[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no activation was left unreplaced."""
        return not self.remaining

    @property
    def total(self) -> int:
        """Number of activation call sites now running the new activation."""
        return sum(self.replaced.values()) + len(self.functional) + len(self.split)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        fn_counts = Counter(f"F.{fn}" for _, fn in self.functional)
        return {
            "spec": self.spec,
            "ok": self.ok,
            "total": self.total,
            "replaced": dict(self.replaced),
            "functional": dict(fn_counts),
            "functional_sites": [name for name, _ in self.functional],
            "split_call_sites": list(self.split),
            "gates_kept": list(self.gates_kept),
            "excluded": list(self.excluded),
            "remaining": [{"name": n, "type": t} for n, t in self.remaining],
            "untraced": [{"name": n, "reason": r} for n, r in self.untraced],
        }

    def to_table(self) -> Any:
        """Rich table: original type, count, replaced by."""
        from rich.table import Table

        table = Table(title=f"activation surgery -> {self.spec}")
        table.add_column("original")
        table.add_column("count", justify="right")
        table.add_column("replaced by")
        for name, count in sorted(self.replaced.items()):
            table.add_row(name, str(count), self.spec)
        for fn, count in sorted(Counter(f"F.{fn} (call)" for _, fn in self.functional).items()):
            table.add_row(fn, str(count), self.spec)
        if self.split:
            table.add_row("extra call sites of shared modules", str(len(self.split)), self.spec)
        if self.gates_kept:
            table.add_row("gates (kept)", str(len(self.gates_kept)), "-")
        if self.excluded:
            table.add_row("excluded by pattern", str(len(self.excluded)), "-")
        if self.remaining:
            table.add_row("[red]remaining[/]", str(len(self.remaining)), "[red]not replaced[/]")
        return table

    def __rich__(self) -> Any:
        from rich.console import Group
        from rich.text import Text

        parts: list[Any] = [self.to_table()]
        if self.gates_kept:
            parts.append(Text(f"gates kept: {_short(self.gates_kept)}"))
        if self.remaining:
            parts.append(Text(f"remaining: {_short([f'{n} ({t})' for n, t in self.remaining])}",
                              style="red"))
        if self.untraced:
            parts.append(Text("not traced (functional calls there unseen): "
                              + _short([f"{n} ({r})" for n, r in self.untraced])))
        return Group(*parts)


def _short(items: list[str], n: int = 5) -> str:
    more = f", ... ({len(items) - n} more)" if len(items) > n else ""
    return ", ".join(items[:n]) + more


# --------------------------------------------------------------------------- swapping


def _factory(spec: ActivationSpec) -> tuple[Callable[[], nn.Module], str]:
    """Turn a spec string, a module or a zero-arg factory into (fresh-module factory, label)."""
    if isinstance(spec, str):
        from robustbench_act.activations import get_activation

        probe = get_activation(spec)  # validates the spec before anything is touched
        return (lambda: get_activation(spec)), getattr(probe, "actbench_spec", spec)
    if isinstance(spec, nn.Module):
        proto = spec
        return (lambda: copy.deepcopy(proto)), getattr(proto, "actbench_spec",
                                                       type(proto).__name__)
    if callable(spec):
        probe = spec()
        if not isinstance(probe, nn.Module):
            raise UserError(f"activation factory {spec!r} did not return an nn.Module")
        return spec, getattr(probe, "actbench_spec", type(probe).__name__)
    raise UserError(f"activation must be a spec string or a module factory, not {spec!r}")


def _matches(name: str, include: Iterable[str] | None, exclude: Iterable[str] | None) -> bool:
    if include is not None and not any(fnmatch.fnmatchcase(name, p) for p in include):
        return False
    return not (exclude and any(fnmatch.fnmatchcase(name, p) for p in exclude))


@dataclass
class _OwnerPlan:
    owner: nn.Module
    name: str
    traced: _Traced
    fn_sites: dict[str, str] = field(default_factory=dict)  # site name -> function name
    splits: set[str] = field(default_factory=set)  # shared activation attrs called > once


def _qual(owner_name: str, attr: str) -> str:
    return f"{owner_name}.{attr}" if owner_name else attr


def _swap_edit(oname: str, splits: frozenset[str], accept: Callable[[str, str], bool]) -> Edit:
    """Graph edit: functional activations -> new modules; k-th call of a shared one -> its own."""

    def edit(
        owner: nn.Module,
        g: fx.Graph,
        make: Callable[[], nn.Module] | None,
        report: SwapReport | None,
    ) -> None:
        order = {n: i for i, n in enumerate(g.nodes)}
        fn_count: Counter[str] = Counter()
        calls: Counter[str] = Counter()
        for node in list(g.nodes):
            fn = _fn_name(node)
            if fn is not None:
                k = fn_count[fn]
                fn_count[fn] += 1
                if not accept(fn, _qual(oname, f"fx_{fn}{k}")):
                    continue

                def on_new(attr: str, fn: str = fn) -> None:
                    if report is not None:
                        report.functional.append((_qual(oname, attr), fn))

                target = _ensure_module(owner, f"fx_{fn}{k}", make, on_new)
                _replace_fn_node(g, node, target, order)
            elif node.op == "call_module" and str(node.target) in splits:
                attr = str(node.target)
                k = calls[attr]
                calls[attr] += 1
                if k:

                    def on_split(new_attr: str) -> None:
                        if report is not None:
                            report.split.append(_qual(oname, new_attr))

                    node.target = _ensure_module(owner, f"{attr}_site{k}", make, on_split)

    return edit


def _replace_fn_node(g: fx.Graph, node: fx.Node, target: str, order: dict[fx.Node, int]) -> None:
    """Replace one functional activation node by an out-of-place call of module ``target``."""
    inp = _node_input(node)
    inplace = _node_inplace(node)
    with g.inserting_before(node):
        new = g.call_module(target, args=(inp,))
    node.replace_all_uses_with(new)
    if inplace and isinstance(inp, fx.Node):
        # after an in-place call, later readers of the input saw the activated tensor
        for user in list(inp.users):
            if user is not new and user is not node and order.get(user, -1) > order[node]:
                user.replace_input_with(inp, new)
    g.erase_node(node)
    _make_followup_out_of_place(new)


def swap_activations(
    model: nn.Module,
    spec: ActivationSpec,
    *,
    gates: str = "keep",
    include: Iterable[str] | None = None,
    exclude: Iterable[str] | None = None,
    allow_remaining: bool = False,
    allow_root: bool = True,
) -> SwapReport:
    """Replace IN PLACE every activation (modules, shared call sites, function calls) by ``spec``.

    Each call site gets a fresh, non-inplace module. Gates are kept unless ``gates="swap"``.
    ``include``/``exclude`` are fnmatch patterns on qualified module names (for function call
    sites: the name of the new module, e.g. ``inception3a.branch1.fx_relu0``). Raises
    UserError (before touching the model) when something could not be replaced, unless
    ``allow_remaining``. ``allow_root=False`` refuses to rewrite the root module's forward.
    """
    if gates not in ("keep", "swap"):
        from robustbench_act.errors import unknown

        raise unknown("gates mode", gates, ["keep", "swap"])
    make, label = _factory(spec)
    inc = list(include) if include is not None else None
    exc = list(exclude) if exclude else None
    report = SwapReport(spec=label)

    # ---- plan: module sites
    chosen: list[ActivationSite] = []
    chosen_ids: set[tuple[int, str]] = set()
    for s in _collect_sites(model):
        if s.gate and gates == "keep":
            report.gates_kept.append(s.name)
        elif not _matches(s.name, inc, exc):
            report.excluded.append(s.name)
        else:
            chosen.append(s)
            chosen_ids.add((id(s.parent), s.attr))

    def accept(fn: str, site: str) -> bool:
        return not (fn in _GATE_FNS and gates == "keep") and _matches(site, inc, exc)

    # ---- plan: owners (function calls, shared call sites)
    plans: list[_OwnerPlan] = []
    for oname, owner in _iter_parents(model):
        if not _traceable_candidate(owner):
            continue
        act_attrs = [a for a, c in owner._modules.items() if (id(owner), a) in chosen_ids]
        if not _source_hint(owner) and not (act_attrs and _may_reuse(owner, act_attrs)):
            continue
        try:
            traced = _trace(owner)
        except Exception as err:  # noqa: BLE001 - any fx failure means "cannot see inside"
            msg = str(err).splitlines()[0][:80] if str(err) else ""
            report.untraced.append((oname or "<root>", f"{type(err).__name__}: {msg}"))
            continue
        plan = _OwnerPlan(owner, oname, traced)
        for g in traced.graphs.values():
            fn_count: Counter[str] = Counter()
            calls: Counter[str] = Counter()
            for node in g.nodes:
                fn = _fn_name(node)
                if fn is not None:
                    plan.fn_sites[_qual(oname, f"fx_{fn}{fn_count[fn]}")] = fn
                    fn_count[fn] += 1
                elif node.op == "call_module" and "." not in str(node.target):
                    child = owner._modules.get(str(node.target))
                    if child is not None and is_activation(child):
                        calls[str(node.target)] += 1
            plan.splits |= {a for a, n in calls.items() if n > 1 and (id(owner), a) in chosen_ids}
        wanted = False
        for site, fn in plan.fn_sites.items():
            if fn in _GATE_FNS and gates == "keep":
                report.gates_kept.append(f"{site} ({fn} call)")
            elif not _matches(site, inc, exc):
                report.excluded.append(site)
            elif owner is model and not allow_root:
                report.remaining.append((site, f"F.{fn} in the root forward (allow_root=False)"))
            else:
                wanted = True
        if owner is model and not allow_root:
            plan.splits = set()
        if wanted or plan.splits:
            plans.append(plan)
        else:
            _restore_attrs(owner, traced.attrs_before)

    if report.remaining and not allow_remaining:
        for plan in plans:
            _restore_attrs(plan.owner, plan.traced.attrs_before)
        shown = _short([f"{n} ({t})" for n, t in report.remaining], 3)
        raise UserError(f"{len(report.remaining)} activation(s) could not be replaced: {shown}")

    # ---- apply: module sites, then owner rewrites (which add modules for new call sites)
    for s in chosen:
        setattr(s.parent, s.attr, make())
        report.replaced[_type_label(s.module)] += 1
    for plan in plans:
        _install(plan.owner, _swap_edit(plan.name, frozenset(plan.splits), accept), make, report)
    return report


def _type_label(module: nn.Module) -> str:
    spec = getattr(module, "actbench_spec", None)
    return f"{spec} (actbench)" if spec else type(module).__name__


def _make_followup_out_of_place(new: fx.Node) -> None:
    """``act(x).mul_(g)`` -> ``.mul(g)``: the new activation may need its output for backward."""
    if len(new.users) != 1:
        return
    user = next(iter(new.users))
    t = user.target
    if (
        user.op == "call_method"
        and isinstance(t, str)
        and t.endswith("_")
        and not t.endswith("__")
        and user.args
        and user.args[0] is new
        and hasattr(torch.Tensor, t[:-1])
    ):
        user.target = t[:-1]


# --------------------------------------------------------------------------- BN/act reordering


@dataclass
class ReorderReport:
    """What ``reorder_bn_act`` did: BN->act pairs now run act->BN, and what was left."""

    swapped: list[tuple[str, str]] = field(default_factory=list)
    left: list[tuple[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing that looked like a BN->act pair was left in the old order."""
        return not self.left

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {
            "swapped": [{"bn": b, "act": a} for b, a in self.swapped],
            "left": [{"name": n, "reason": r} for n, r in self.left],
        }

    def to_table(self) -> Any:
        """Rich table of swapped pairs (first rows) and leftovers."""
        from rich.table import Table

        table = Table(title=f"BN/activation reorder: {len(self.swapped)} pairs now act -> BN")
        table.add_column("batch norm")
        table.add_column("activation")
        for bn, act in self.swapped:
            table.add_row(bn, act)
        for name, reason in self.left:
            table.add_row(f"[red]{name}[/]", f"[red]left: {reason}[/]")
        return table

    def __rich__(self) -> Any:
        return self.to_table()


_ACT_FIRST_CACHE: dict[type, type] = {}


def _act_first_forward(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Activation, then the plain batch norm, then the norm layer's dropout if it has one."""
    x = self.act(x)
    x = type(self)._actbench_norm_base.forward(self, x)
    drop = self._modules.get("drop")
    return drop(x) if drop is not None else x


def _act_first_class(cls: type) -> type:
    """``ActFirst<cls>``: same parameters/buffers, forward = act -> BN (-> drop)."""
    if getattr(cls, "_actbench_act_first", False):
        return cls
    if cls not in _ACT_FIRST_CACHE:
        base = next(
            c for c in cls.__mro__
            if c.__module__.startswith("torch.nn.modules") and issubclass(c, _BatchNorm)
        )
        name = f"ActFirst{cls.__name__}"
        new = type(name, (cls,), {
            "forward": _act_first_forward,
            "_actbench_act_first": True,
            "_actbench_norm_base": base,
            "__module__": __name__,
            "__qualname__": name,
            "__doc__": f"{cls.__name__} that applies its ``act`` child BEFORE normalising.",
        })
        _ACT_FIRST_CACHE[cls] = new
        globals().setdefault(name, new)  # picklable by reference when the name is free
    return _ACT_FIRST_CACHE[cls]


def _is_plain_bn(m: nn.Module | None) -> bool:
    return (
        isinstance(m, _BatchNorm)
        and "act" not in m._modules
        and not getattr(type(m), "_actbench_act_first", False)
    )


def _passthrough(m: nn.Module | None) -> bool:
    if m is None:
        return False
    if isinstance(m, nn.Identity | nn.Dropout | nn.Dropout1d | nn.Dropout2d | nn.Dropout3d):
        return True
    return type(m).__name__ in ("DropBlock2d", "DropPath")


def _non_inplace(m: nn.Module) -> nn.Module:
    if getattr(m, "inplace", False) is True:
        m.inplace = False
    return m


def _attach(bn: nn.Module, act: nn.Module) -> None:
    bn.add_module("act", _non_inplace(act))
    bn.__class__ = _act_first_class(type(bn))


def reorder_bn_act(model: nn.Module, *, allow_root: bool = False) -> ReorderReport:
    """Turn every BatchNorm -> activation pair into activation -> BatchNorm, IN PLACE.

    Handles timm norm+act layers (``BatchNormAct2d``: act, BN, drop; keys unchanged),
    ``nn.Sequential(conv, bn, act)`` and blocks whose forward calls bn then act (traced per
    block; a shared activation or a functional one is rewritten in that block only; the
    root's forward only when ``allow_root``). BN -> residual add -> act is not a pair.
    Parameter-free activations keep every state_dict key; a parametric one moved next to its
    BN appears as ``<bn>.act.*``. BN running statistics no longer match and need re-estimating.
    """
    report = ReorderReport()
    counts = Counter(id(m) for _, m in model.named_modules(remove_duplicate=False))

    # 1) norm+act layers
    for name, m in model.named_modules():
        act = m._modules.get("act") if isinstance(m._modules.get("act"), nn.Module) else None
        if act is None or not is_activation(act) or getattr(type(m), "_actbench_act_first", False):
            continue
        if isinstance(m, _BatchNorm):
            _non_inplace(act)
            m.__class__ = _act_first_class(type(m))
            report.swapped.append((name, f"{name}.act"))
        elif "batchnorm" in type(m).__name__.lower():
            report.left.append((name, f"{type(m).__name__} is not a BatchNorm subclass"))

    # 2) Sequential pairs and traced blocks
    for pname, parent in list(_iter_parents(model)):
        bn_children = [a for a, c in parent._modules.items() if _is_plain_bn(c)]
        if not bn_children:
            continue
        if isinstance(parent, nn.Sequential) and type(parent).forward is nn.Sequential.forward:
            _reorder_sequential(parent, pname, counts, report)
            continue
        if not any(c is not None and is_activation(c) for c in parent._modules.values()) \
                and not _source_hint(parent):
            continue
        try:
            traced = _trace(parent)
        except Exception as exc:  # noqa: BLE001
            report.left.append((pname or "<root>", f"untraceable: {type(exc).__name__}"))
            continue
        _reorder_traced(model, parent, pname, traced, counts, allow_root, report)
    return report


def _reorder_sequential(
    seq: nn.Module, pname: str, counts: Counter[int], report: ReorderReport
) -> None:
    keys = list(seq._modules)
    for i, key in enumerate(keys):
        bn = seq._modules[key]
        if not _is_plain_bn(bn):
            continue
        j = i + 1
        while j < len(keys) and _passthrough(seq._modules[keys[j]]):
            j += 1
        if j >= len(keys):
            continue
        act = seq._modules[keys[j]]
        if act is None or not is_activation(act) or _is_gate(seq, keys[j], act):
            continue
        moved = act if counts[id(act)] == 1 else copy.deepcopy(act)
        _attach(bn, moved)
        setattr(seq, keys[j], nn.Identity())
        report.swapped.append((_qual(pname, key), _qual(pname, keys[j])))


def _find_pairs(
    owner: nn.Module, g: fx.Graph, only: set[str] | None = None
) -> dict[str, tuple[fx.Node, fx.Node, str]]:
    """bn attr -> (node feeding the act, act node, act key) for BN->(passthrough)->act chains."""
    calls = Counter(str(n.target) for n in g.nodes if n.op == "call_module")
    pairs = {}
    for n in g.nodes:
        if n.op != "call_module" or "." in str(n.target):
            continue
        target = str(n.target)
        is_bn = target in only if only is not None else _is_plain_bn(owner._modules.get(target))
        if not is_bn or calls[target] != 1:
            continue
        cur = n
        while len(cur.users) == 1:
            u = next(iter(cur.users))
            if u.op == "call_module" and _passthrough(owner._modules.get(str(u.target))) \
                    and calls[str(u.target)] == 1 and u.args and u.args[0] is cur:
                cur = u
                continue
            break
        if len(cur.users) != 1:
            continue
        u = next(iter(cur.users))
        if _node_input(u) is not cur:
            continue
        if u.op == "call_module" and "." not in str(u.target):
            child = owner._modules.get(str(u.target))
            if child is not None and is_activation(child) and not _is_gate(owner, str(u.target),
                                                                           child):
                pairs[target] = (cur, u, str(u.target))
        else:
            fn = _fn_name(u)
            if fn is not None and fn not in _GATE_FNS:
                pairs[target] = (cur, u, f"F.{fn}")
    return pairs


def _reorder_edit(pairs: tuple[tuple[str, str], ...]) -> Edit:
    """Graph edit: drop the activation call after each listed BN (the BN now applies it first)."""

    def edit(
        owner: nn.Module,
        g: fx.Graph,
        make: Callable[[], nn.Module] | None,
        report: SwapReport | None,
    ) -> None:
        found = _find_pairs(owner, g, only={b for b, _ in pairs})
        for bn_attr, act_key in pairs:
            hit = found.get(bn_attr)
            if hit is None or hit[2] != act_key:
                raise RuntimeError(f"BN/activation pair {bn_attr} -> {act_key} not on this path")
            cur, act_node, _ = hit
            act_node.replace_all_uses_with(cur)
            g.erase_node(act_node)

    return edit


def _reorder_traced(
    model: nn.Module,
    owner: nn.Module,
    oname: str,
    traced: _Traced,
    counts: Counter[int],
    allow_root: bool,
    report: ReorderReport,
) -> None:
    per_mode = [_find_pairs(owner, g) for g in traced.graphs.values()]
    keys = [{(b, v[2]) for b, v in p.items()} for p in per_mode]
    common = set.intersection(*keys)
    for extra in sorted(set.union(*keys) - common):
        report.left.append((_qual(oname, extra[0]), "pair only in train or only in eval mode"))
    module_calls: Counter[str] = Counter()
    for g in traced.graphs.values():
        module_calls.update(str(n.target) for n in g.nodes if n.op == "call_module")
    edited: list[tuple[str, str]] = []
    for bn_attr, act_key in sorted(common):
        bn = owner._modules[bn_attr]
        simple = (
            not act_key.startswith("F.")
            and module_calls[act_key] == len(traced.graphs)
            and counts[id(owner._modules[act_key])] == 1
        )
        if simple:
            _attach(bn, owner._modules[act_key])
            setattr(owner, act_key, nn.Identity())
            report.swapped.append((_qual(oname, bn_attr), _qual(oname, act_key)))
            continue
        if owner is model and not allow_root:
            report.left.append((_qual(oname, bn_attr),
                                f"{act_key} is shared/functional in the root (allow_root=False)"))
            continue
        _, act_node, _ = per_mode[0][bn_attr]
        if act_key.startswith("F."):
            fresh: nn.Module = _function_module(act_node)
        else:
            fresh = copy.deepcopy(owner._modules[act_key])
        _attach(bn, fresh)
        edited.append((bn_attr, act_key))
        report.swapped.append((_qual(oname, bn_attr), f"{_qual(oname, act_key)} (call site)"))
    if edited:
        _install(owner, _reorder_edit(tuple(edited)), None, None)
    else:
        _restore_attrs(owner, traced.attrs_before)
