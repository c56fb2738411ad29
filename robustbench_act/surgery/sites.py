"""Where activations are: module classification, function call sites, model walking."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

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


