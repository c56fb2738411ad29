"""timm registrations (``cifar_resnet20`` ...) so ``timm.create_model`` builds our CIFAR nets.

Kept in its own module because timm's ``register_model`` appends every name to this
module's ``__all__``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from timm.models import register_model
from torch import nn

from robustbench_act.models.cifar import CifarResNet, SmallCNN, WideResNet

_TIMM_ONLY_KWARGS = ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir", "pretrained_model_args")


def _local_weights(pretrained: bool, kwargs: dict[str, Any], name: str) -> str | None:
    """The checkpoint folder timm asks for (``timm.create_model("local-dir:DIR", pretrained=True)``).

    There are no published weights to download: any other pretrained request is refused.
    """
    if not pretrained:
        return None
    cfg = kwargs.get("pretrained_cfg")
    get = cfg.get if isinstance(cfg, dict) else (lambda k, d=None: getattr(cfg, k, d))
    if get("source") == "local-dir" and get("file"):
        return str(get("file"))
    from robustbench_act.errors import UserError

    raise UserError(f"{name} has no pretrained weights; load a local checkpoint instead")


def _clean(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The constructor's kwargs: timm-only factory kwargs and our activation/order removed."""
    out = {k: v for k, v in kwargs.items() if k not in (*_TIMM_ONLY_KWARGS, "activation", "order")}
    cfg = kwargs.get("pretrained_cfg")
    if "num_classes" not in out and isinstance(cfg, dict) and cfg.get("num_classes"):
        out["num_classes"] = int(cfg["num_classes"])  # timm leaves it in the config of a local-dir
    return out


def _build(cls: Callable[..., nn.Module], args: tuple, pretrained: bool, kwargs: dict[str, Any],
           name: str) -> nn.Module:  # fmt: skip
    """``cls(*args, **kwargs)``, then the ``activation`` swap and BN/act ``order`` of ``kwargs``.

    timm passes the ``model_args`` of a checkpoint's config.json here, so
    ``timm.create_model("local-dir:DIR")`` rebuilds the activations the weights were trained with.
    """
    folder = _local_weights(pretrained, kwargs, name)
    model = cls(*args, **_clean(kwargs))
    activation, order = kwargs.get("activation"), kwargs.get("order") or "conventional"
    if activation is not None:
        from robustbench_act.surgery import swap_activations

        swap_activations(model, activation)
    if order != "conventional":
        from robustbench_act.models import check_order
        from robustbench_act.surgery import reorder_bn_act

        check_order(order)
        reorder_bn_act(model)
    if folder is not None:
        from pathlib import Path

        from robustbench_act.checkpoint import load_into, read_state_dict
        from robustbench_act.hub import weights_file

        load_into(model, read_state_dict(weights_file(Path(folder))), source=folder)
    return model


@register_model
def cifar_resnet20(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """CIFAR ResNet-20 (option-A shortcuts, 0.27M params)."""
    return _build(CifarResNet, (20,), pretrained, kwargs, "cifar_resnet20")


@register_model
def cifar_resnet32(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """CIFAR ResNet-32."""
    return _build(CifarResNet, (32,), pretrained, kwargs, "cifar_resnet32")


@register_model
def cifar_resnet44(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """CIFAR ResNet-44."""
    return _build(CifarResNet, (44,), pretrained, kwargs, "cifar_resnet44")


@register_model
def cifar_resnet56(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """CIFAR ResNet-56."""
    return _build(CifarResNet, (56,), pretrained, kwargs, "cifar_resnet56")


@register_model
def cifar_resnet110(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """CIFAR ResNet-110."""
    return _build(CifarResNet, (110,), pretrained, kwargs, "cifar_resnet110")


@register_model
def cifar_wrn28_10(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """CIFAR WideResNet-28-10 (pre-activation, ~36.5M params)."""
    return _build(WideResNet, (28, 10), pretrained, kwargs, "cifar_wrn28_10")


@register_model
def cifar_wrn40_2(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """CIFAR WideResNet-40-2 (pre-activation, ~2.2M params)."""
    return _build(WideResNet, (40, 2), pretrained, kwargs, "cifar_wrn40_2")


@register_model
def cifar_cnn_small(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """Small conv-BN-act CNN for 8..32 px images."""
    return _build(SmallCNN, (), pretrained, kwargs, "cifar_cnn_small")


BUILTIN_ENTRYPOINTS = {
    "resnet20": cifar_resnet20,
    "resnet32": cifar_resnet32,
    "resnet44": cifar_resnet44,
    "resnet56": cifar_resnet56,
    "resnet110": cifar_resnet110,
    "wrn28_10": cifar_wrn28_10,
    "wrn40_2": cifar_wrn40_2,
    "cnn_small": cifar_cnn_small,
}
