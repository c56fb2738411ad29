"""Swapping activations: module sites by setattr, function call sites by owner tracing."""

from __future__ import annotations

import copy
import fnmatch
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
from torch import fx, nn

from robustbench_act.errors import UserError
from robustbench_act.surgery.reports import SwapReport, _short
from robustbench_act.surgery.sites import (
    _GATE_FNS,
    ActivationSite,
    ActivationSpec,
    _collect_sites,
    _fn_name,
    _iter_parents,
    _node_inplace,
    _node_input,
    is_activation,
)
from robustbench_act.surgery.tracing import (
    Edit,
    _ensure_module,
    _install,
    _may_reuse,
    _restore_attrs,
    _source_hint,
    _trace,
    _traceable_candidate,
    _Traced,
)

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
    sel = _Selection(gates, list(include) if include is not None else None, list(exclude) if exclude else None)
    report = SwapReport(spec=label)
    chosen = _plan_modules(model, sel, report)
    chosen_ids = {(id(s.parent), s.attr) for s in chosen}
    plans = [p for oname, owner in _iter_parents(model)
             if (p := _plan_owner(model, oname, owner, chosen_ids, sel, report, allow_root)) is not None]  # fmt: skip
    if report.remaining and not allow_remaining:
        for plan in plans:
            _restore_attrs(plan.owner, plan.traced.attrs_before)
        shown = _short([f"{n} ({t})" for n, t in report.remaining], 3)
        raise UserError(f"{len(report.remaining)} activation(s) could not be replaced: {shown}")
    # apply: module sites, then owner rewrites (which add modules for new call sites)
    for s in chosen:
        setattr(s.parent, s.attr, make())
        report.replaced[_type_label(s.module)] += 1
    for plan in plans:
        _install(plan.owner, _swap_edit(plan.name, frozenset(plan.splits), sel.accept), make, report)
    return report


@dataclass(frozen=True)
class _Selection:
    """Which sites a swap touches: gates kept or swapped, include/exclude name patterns."""

    gates: str
    include: list[str] | None
    exclude: list[str] | None

    def accept(self, fn: str, site: str) -> bool:
        """Whether a function call site ``site`` calling ``fn`` is swapped."""
        return not (fn in _GATE_FNS and self.gates == "keep") and _matches(site, self.include, self.exclude)


def _plan_modules(model: nn.Module, sel: _Selection, report: SwapReport) -> list[ActivationSite]:
    """The activation module sites to replace (gates and excluded names reported)."""
    chosen = []
    for s in _collect_sites(model):
        if s.gate and sel.gates == "keep":
            report.gates_kept.append(s.name)
        elif not _matches(s.name, sel.include, sel.exclude):
            report.excluded.append(s.name)
        else:
            chosen.append(s)
    return chosen


def _plan_owner(model: nn.Module, oname: str, owner: nn.Module, chosen_ids: set[tuple[int, str]],
                sel: _Selection, report: SwapReport, allow_root: bool) -> _OwnerPlan | None:  # fmt: skip
    """Trace one block whose forward calls activation functions or reuses an activation module."""
    if not _traceable_candidate(owner):
        return None
    act_attrs = [a for a in owner._modules if (id(owner), a) in chosen_ids]
    if not _source_hint(owner) and not (act_attrs and _may_reuse(owner, act_attrs)):
        return None
    try:
        traced = _trace(owner)
    except Exception as err:  # noqa: BLE001 - any fx failure means "cannot see inside"
        msg = str(err).splitlines()[0][:80] if str(err) else ""
        report.untraced.append((oname or "<root>", f"{type(err).__name__}: {msg}"))
        return None
    plan = _OwnerPlan(owner, oname, traced)
    for g in traced.graphs.values():
        _scan_graph(g, plan, owner, chosen_ids)
    wanted = False
    for site, fn in plan.fn_sites.items():
        if fn in _GATE_FNS and sel.gates == "keep":
            report.gates_kept.append(f"{site} ({fn} call)")
        elif not _matches(site, sel.include, sel.exclude):
            report.excluded.append(site)
        elif owner is model and not allow_root:
            report.remaining.append((site, f"F.{fn} in the root forward (allow_root=False)"))
        else:
            wanted = True
    if owner is model and not allow_root:
        plan.splits = set()
    if wanted or plan.splits:
        return plan
    _restore_attrs(owner, traced.attrs_before)
    return None


def _scan_graph(g: fx.Graph, plan: _OwnerPlan, owner: nn.Module, chosen_ids: set[tuple[int, str]]) -> None:
    """Record a traced graph's activation function calls and the activation modules called twice."""
    fn_count: Counter[str] = Counter()
    calls: Counter[str] = Counter()
    for node in g.nodes:
        fn = _fn_name(node)
        if fn is not None:
            plan.fn_sites[_qual(plan.name, f"fx_{fn}{fn_count[fn]}")] = fn
            fn_count[fn] += 1
        elif node.op == "call_module" and "." not in str(node.target):
            child = owner._modules.get(str(node.target))
            if child is not None and is_activation(child):
                calls[str(node.target)] += 1
    plan.splits |= {a for a, n in calls.items() if n > 1 and (id(owner), a) in chosen_ids}


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


