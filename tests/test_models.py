"""Model factory: built-in CIFAR nets (sizes, structure), timm registration, name handling."""

from __future__ import annotations

import pytest
import timm
import torch
from torch import nn

from robustbench_act.errors import UserError
from robustbench_act.models import (
    CifarResNet,
    PadShortcut,
    SmallCNN,
    WideResNet,
    build_model,
    list_models,
)


def _params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_resnet20_matches_the_paper() -> None:
    m = build_model("resnet20", num_classes=10).eval()
    assert 0.26e6 < _params(m) < 0.28e6  # He et al.: 0.27M
    assert m(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    acts = [mod for mod in m.modules() if isinstance(mod, nn.ReLU)]
    assert len(acts) == 1 + 9 * 2  # stem + (after bn1, after the add) per block
    assert len({id(a) for a in acts}) == len(acts)  # one module per call site
    blocks = list(m.layer1) + list(m.layer2) + list(m.layer3)
    assert len(blocks) == 9
    shortcuts = [b.shortcut for b in blocks if isinstance(b.shortcut, PadShortcut)]
    assert len(shortcuts) == 2 and all(_params(s) == 0 for s in shortcuts)


def test_option_a_shortcut_pads_zero_channels() -> None:
    x = torch.randn(1, 16, 8, 8)
    y = PadShortcut(16, 32, 2)(x)
    assert y.shape == (1, 32, 4, 4)
    assert torch.equal(y[:, 8:24], x[:, :, ::2, ::2])
    assert y[:, :8].abs().sum() == 0 and y[:, 24:].abs().sum() == 0


def test_depths_and_wide_and_small_sizes() -> None:
    with torch.device("meta"):
        sizes = {n: _params(build_model(n, num_classes=10)) for n in list_models()}
    assert sizes["resnet20"] < sizes["resnet32"] < sizes["resnet44"] < sizes["resnet56"]
    assert sizes["resnet56"] < sizes["resnet110"]
    assert 36e6 < sizes["wrn28_10"] < 37e6
    assert 2.1e6 < sizes["wrn40_2"] < 2.4e6
    assert 20e3 <= sizes["cnn_small"] <= 60e3


def test_small_cnn_on_tiny_grey_images() -> None:
    m = build_model("cnn_small", num_classes=10, in_chans=1).eval()
    assert isinstance(m, SmallCNN)
    assert m(torch.randn(3, 1, 8, 8)).shape == (3, 10)


def test_wrn_forward_preactivation() -> None:
    m = WideResNet(depth=10, widen_factor=1, num_classes=5).eval()
    assert m(torch.randn(1, 3, 16, 16)).shape == (1, 5)
    first = m.block1[0]
    assert isinstance(first.bn1, nn.BatchNorm2d) and first.conv1.in_channels == 16


def test_timm_registration() -> None:
    m = timm.create_model("cifar_resnet20", num_classes=10)
    assert isinstance(m, CifarResNet) and m.fc.out_features == 10
    assert isinstance(timm.create_model("cifar_cnn_small", num_classes=3, in_chans=1), SmallCNN)
    for name in ("cifar_wrn28_10", "cifar_wrn40_2", "cifar_resnet110"):
        assert timm.is_model(name)
    with pytest.raises(UserError, match="pretrained"):
        timm.create_model("cifar_resnet20", pretrained=True)


def test_timm_and_torchvision_names() -> None:
    m = build_model("resnet18", num_classes=7, in_chans=1).eval()
    assert m(torch.randn(1, 1, 32, 32)).shape == (1, 7)
    tv = build_model("tv:resnet18", num_classes=4).eval()
    assert type(tv).__module__.startswith("torchvision")
    assert tv(torch.randn(1, 3, 32, 32)).shape == (1, 4)


def test_unknown_names_and_options() -> None:
    with pytest.raises(UserError, match="resnet20"):
        build_model("resnet2O", num_classes=10)
    with pytest.raises(UserError, match="torchvision model"):
        build_model("tv:resnet1800", num_classes=10)
    with pytest.raises(UserError, match="order"):
        build_model("resnet20", num_classes=10, order="sideways")
    with pytest.raises(UserError, match="la_silu"):
        build_model("resnet20", num_classes=10, activation="la_sulu")
    with pytest.raises(UserError):
        build_model("resnet20", num_classes=10, no_such_option=1)
    with pytest.raises(UserError, match="pretrained"):
        build_model("resnet18", num_classes=10, pretrained=True)


def test_build_with_activation_and_order() -> None:
    m = build_model("resnet20", num_classes=10, activation="tanh").eval()
    assert not any(isinstance(mod, nn.ReLU) for mod in m.modules())
    assert sum(isinstance(mod, nn.Tanh) for mod in m.modules()) == 19
    s = build_model("resnet20", num_classes=10, activation="tanh", order="swapped").eval()
    assert isinstance(s.layer1[0].act1, nn.Identity)
    assert isinstance(s.layer1[0].bn1.act, nn.Tanh)
    assert isinstance(s.layer1[0].act2, nn.Tanh)  # after the residual add: not a BN pair
    assert set(s.state_dict()) == set(m.state_dict())
    assert s(torch.randn(1, 3, 32, 32)).shape == (1, 10)
