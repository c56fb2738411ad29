"""BN/activation reordering: conv-BN-act becomes conv-act-BN (module pairs and traced blocks)."""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import fx, nn
from torch.nn.modules.batchnorm import _BatchNorm

from robustbench_act.surgery.reports import SwapReport
from robustbench_act.surgery.sites import (
    _GATE_FNS,
    _fn_name,
    _function_module,
    _is_gate,
    _iter_parents,
    _node_input,
    is_activation,
)
from robustbench_act.surgery.swap import _qual
from robustbench_act.surgery.tracing import (
    Edit,
    _install,
    _restore_attrs,
    _source_hint,
    _trace,
    _Traced,
)

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
