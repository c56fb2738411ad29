"""timm registrations (``cifar_resnet20`` ...) so ``timm.create_model`` builds our CIFAR nets.

Kept in its own module because timm's ``register_model`` appends every name to this
module's ``__all__``.
"""

from __future__ import annotations

from typing import Any

from timm.models import register_model
from torch import nn

from robustbench_act.models.cifar import CifarResNet, SmallCNN, WideResNet

_TIMM_ONLY_KWARGS = ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir")


def _clean(pretrained: bool, kwargs: dict[str, Any], name: str) -> dict[str, Any]:
    """Drop timm-only factory kwargs; refuse pretrained weights (there are none to download)."""
    if pretrained:
        from robustbench_act.errors import UserError

        raise UserError(f"{name} has no pretrained weights; load a local checkpoint instead")
    return {k: v for k, v in kwargs.items() if k not in _TIMM_ONLY_KWARGS}


@register_model
def cifar_resnet20(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """CIFAR ResNet-20 (option-A shortcuts, 0.27M params)."""
    return CifarResNet(20, **_clean(pretrained, kwargs, "cifar_resnet20"))


@register_model
def cifar_resnet32(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """CIFAR ResNet-32."""
    return CifarResNet(32, **_clean(pretrained, kwargs, "cifar_resnet32"))


@register_model
def cifar_resnet44(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """CIFAR ResNet-44."""
    return CifarResNet(44, **_clean(pretrained, kwargs, "cifar_resnet44"))


@register_model
def cifar_resnet56(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """CIFAR ResNet-56."""
    return CifarResNet(56, **_clean(pretrained, kwargs, "cifar_resnet56"))


@register_model
def cifar_resnet110(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """CIFAR ResNet-110."""
    return CifarResNet(110, **_clean(pretrained, kwargs, "cifar_resnet110"))


@register_model
def cifar_wrn28_10(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """CIFAR WideResNet-28-10 (pre-activation, ~36.5M params)."""
    return WideResNet(28, 10, **_clean(pretrained, kwargs, "cifar_wrn28_10"))


@register_model
def cifar_wrn40_2(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """CIFAR WideResNet-40-2 (pre-activation, ~2.2M params)."""
    return WideResNet(40, 2, **_clean(pretrained, kwargs, "cifar_wrn40_2"))


@register_model
def cifar_cnn_small(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """Small conv-BN-act CNN for 8..32 px images."""
    return SmallCNN(**_clean(pretrained, kwargs, "cifar_cnn_small"))


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
