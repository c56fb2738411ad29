"""Model factory: built-in CIFAR nets, any timm model, torchvision models via ``tv:NAME``.

Weights never come from the network here (``pretrained=False`` / ``weights=None`` always);
checkpoints are loaded elsewhere from local files.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from robustbench_act.errors import UserError, unknown
from robustbench_act.models.cifar import (
    CifarBasicBlock,
    CifarResNet,
    PadShortcut,
    SmallCNN,
    WideBasicBlock,
    WideResNet,
)
from robustbench_act.models.timm_entrypoints import BUILTIN_ENTRYPOINTS

__all__ = [
    "ORDERS",
    "CifarBasicBlock",
    "CifarResNet",
    "PadShortcut",
    "SmallCNN",
    "WideBasicBlock",
    "WideResNet",
    "build_model",
    "check_model_name",
    "check_order",
    "list_models",
]

ORDERS = ("conventional", "swapped")
_TV_PREFIXES = ("tv:", "torchvision:")


def list_models(*, include_timm: bool = False) -> list[str]:
    """Names of the built-in models (optionally followed by every timm architecture)."""
    names = list(BUILTIN_ENTRYPOINTS)
    if include_timm:
        import timm

        names += [n for n in timm.list_models() if n not in BUILTIN_ENTRYPOINTS]
    return names


def _candidates() -> list[str]:
    import timm

    return list(BUILTIN_ENTRYPOINTS) + timm.list_models()


def _call(factory: Callable[..., nn.Module], label: str, *args: Any, **kwargs: Any) -> nn.Module:
    """Call a model constructor, turning bad keyword arguments into a one-line UserError."""
    try:
        return factory(*args, **kwargs)
    except TypeError as exc:
        if "argument" not in str(exc):
            raise
        raise UserError(f"model {label!r} cannot be built with these options: {exc}") from exc


def _build_torchvision(name: str, num_classes: int, in_chans: int, kw: dict[str, Any]) -> nn.Module:
    import torchvision

    if in_chans != 3:
        raise UserError(f"torchvision model {name!r} takes 3 input channels, not {in_chans}")
    if kw.get("weights") is not None or kw.get("pretrained"):
        raise UserError("torchvision weights are never downloaded; load a local checkpoint")
    kw = {k: v for k, v in kw.items() if k not in ("weights", "pretrained")}
    return _call(
        torchvision.models.get_model, f"tv:{name}", name, weights=None,
        num_classes=num_classes, **kw,
    )


def _torchvision_name(name: str) -> str | None:
    """The torchvision model name in ``tv:NAME`` / ``torchvision:NAME`` (None otherwise)."""
    for prefix in _TV_PREFIXES:
        if name.startswith(prefix):
            return name[len(prefix):]
    return None


def check_model_name(name: str) -> None:
    """Refuse a name :func:`build_model` cannot build, without building anything.

    Lets commands reject a typo before they create output folders or train other cells.
    """
    if name in BUILTIN_ENTRYPOINTS:
        return
    tv_name = _torchvision_name(name)
    if tv_name is not None:
        import torchvision

        available = torchvision.models.list_models()
        if tv_name not in available:
            raise unknown("torchvision model", tv_name, available,
                          listed_by="torchvision.models.list_models()")
        return
    import timm

    if ":" in name or "/" in name or not timm.is_model(name.split(".")[0]):
        raise unknown("model", name, _candidates(),
                      listed_by=f"the built-ins {', '.join(BUILTIN_ENTRYPOINTS)}, timm.list_models() and tv:NAME")


def check_order(order: str) -> None:
    """Refuse a BN/activation order other than ``conventional`` or ``swapped``."""
    if order not in ORDERS:
        raise unknown("order", order, ORDERS)


def _construct(name: str, num_classes: int, in_chans: int, kw: dict[str, Any]) -> nn.Module:
    check_model_name(name)
    if name in BUILTIN_ENTRYPOINTS:
        return _call(BUILTIN_ENTRYPOINTS[name], name, num_classes=num_classes, in_chans=in_chans, **kw)
    tv_name = _torchvision_name(name)
    if tv_name is not None:
        return _build_torchvision(tv_name, num_classes, in_chans, kw)
    import timm

    if kw.pop("pretrained", False):
        raise UserError("pretrained weights are never downloaded; load a local checkpoint")
    return _call(
        timm.create_model, name, name, pretrained=False,
        num_classes=num_classes, in_chans=in_chans, **kw,
    )


def build_model(
    name: str,
    *,
    num_classes: int,
    activation: str | Callable[[], nn.Module] | None = None,
    order: str = "conventional",
    in_chans: int = 3,
    **kw: Any,
) -> nn.Module:
    """Build a model by name, optionally swap every activation and reorder BN/activation pairs.

    ``activation`` replaces every activation (gates kept) via ``surgery.swap_activations``;
    ``order="swapped"`` turns conv-BN-act into conv-act-BN via ``surgery.reorder_bn_act``.
    """
    check_order(order)
    if isinstance(activation, str):
        from robustbench_act.activations import get_activation

        get_activation(activation)  # validate the spec before paying for the model
    model = _construct(name, num_classes, in_chans, dict(kw))
    if activation is not None:
        from robustbench_act.surgery import swap_activations

        swap_activations(model, activation)
    if order == "swapped":
        from robustbench_act.surgery import reorder_bn_act

        reorder_bn_act(model)
    return model
