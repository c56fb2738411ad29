"""Owner tracing: fx-trace one block's forward (children as leaves) and install an edited graph."""

from __future__ import annotations

import inspect
import itertools
import operator
import re
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from torch import fx, nn

from robustbench_act.surgery.reports import SwapReport
from robustbench_act.surgery.sites import _SRC_HINT, is_activation

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


