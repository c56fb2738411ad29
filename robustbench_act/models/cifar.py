"""Built-in CIFAR-style networks: LayerAct-paper ResNets, RobustBench-style WideResNets, a tiny CNN.

Design notes (why, not just what):
- ``CifarResNet`` follows He et al. 2016 (section 4.2) as used by the LayerAct paper:
  3 stages of n basic blocks with 16/32/64 channels, 3x3 convs, conv-BN-act, and an
  activation after the residual add. Shortcuts are **option A**: the identity, subsampled
  by 2 and zero-padded in channels where the shape changes, so they hold no parameters
  (resnet20 has ~0.27M parameters, as in the paper's table). The zero channels go half
  before, half after the identity by default; ``shortcut_pad="end"`` puts them after it,
  as the LayerAct authors' code does (needed to load their released weights).
- Every activation is its own module instance (``act1`` after ``bn1``, ``act2`` after the
  add), so surgery, probes and reordering see one module per call site.
- ``WideResNet`` uses pre-activation blocks (BN-act-conv) with a 1x1 conv shortcut where
  the shape changes, the architecture of the RobustBench CIFAR baselines.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

ActFactory = Callable[[], nn.Module]
#: What the CIFAR nets declare about their input (read by robustbench_act.preprocess): 32 px,
#: no crop; mean/std come from the data they are trained on (recorded in checkpoints).
CIFAR_INPUT = {"input_size": (3, 32, 32), "interpolation": "bilinear", "crop_pct": 1.0}


def _relu() -> nn.Module:
    return nn.ReLU()


def _init_weights(model: nn.Module) -> None:
    """Kaiming-normal convs/linears, unit BN, as in the reference CIFAR trainings."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.kaiming_normal_(m.weight)
            nn.init.zeros_(m.bias)


SHORTCUT_PADS = ("split", "end")


class PadShortcut(nn.Module):
    """Option-A shortcut: subsample the identity by ``stride`` and zero-pad new channels.

    ``pad="split"`` puts half the zero channels before the identity, half after; ``"end"``
    puts them all after it (the LayerAct authors' ``IdentityPadding``).
    """

    def __init__(self, in_planes: int, planes: int, stride: int, pad: str = "split") -> None:
        super().__init__()
        if pad not in SHORTCUT_PADS:
            raise ValueError(f"shortcut pad must be one of {SHORTCUT_PADS}, got {pad!r}")
        self.stride = stride
        extra = planes - in_planes
        self.pad_lo = extra // 2 if pad == "split" else 0
        self.pad_hi = extra - self.pad_lo

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the strided identity with zero channels added on both sides."""
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, self.pad_lo, self.pad_hi))

    def extra_repr(self) -> str:
        return f"stride={self.stride}, pad=({self.pad_lo}, {self.pad_hi})"


class CifarBasicBlock(nn.Module):
    """conv3x3-BN-act-conv3x3-BN, add the shortcut, then act (one module per call site)."""

    def __init__(self, in_planes: int, planes: int, stride: int, act_layer: ActFactory,
                 shortcut_pad: str = "split") -> None:  # fmt: skip
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.act1 = act_layer()
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut: nn.Module = (
            PadShortcut(in_planes, planes, stride, shortcut_pad)
            if stride != 1 or in_planes != planes
            else nn.Identity()
        )
        self.act2 = act_layer()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual basic block with the activation also after the add."""
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out = out + self.shortcut(x)
        return self.act2(out)


class CifarResNet(nn.Module):
    """He et al. CIFAR ResNet-(6n+2) with option-A shortcuts."""

    def __init__(
        self,
        depth: int = 20,
        num_classes: int = 10,
        in_chans: int = 3,
        act_layer: ActFactory | None = None,
        widths: tuple[int, int, int] = (16, 32, 64),
        shortcut_pad: str = "split",
    ) -> None:
        super().__init__()
        if (depth - 2) % 6 != 0 or depth < 8:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2 (20, 32, 44, 56, 110), got {depth}")
        act_layer = act_layer or _relu
        n = (depth - 2) // 6
        self.depth = depth
        self.num_classes = num_classes
        self.conv1 = nn.Conv2d(in_chans, widths[0], 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.act1 = act_layer()
        stages = []
        in_planes = widths[0]
        for i, planes in enumerate(widths):
            blocks = []
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(CifarBasicBlock(in_planes, planes, stride, act_layer, shortcut_pad))
                in_planes = planes
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_planes, num_classes)
        self.num_features = in_planes
        self.input_cfg = {**CIFAR_INPUT, "input_size": (in_chans, 32, 32)}
        _init_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Stem and the three stages (un-pooled feature map)."""
        x = self.act1(self.bn1(self.conv1(x)))
        return self.layer3(self.layer2(self.layer1(x)))

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        """Global average pool and the linear classifier."""
        return self.fc(torch.flatten(self.pool(x), 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for a batch of images."""
        return self.forward_head(self.forward_features(x))


class WideBasicBlock(nn.Module):
    """Pre-activation wide block: BN-act-conv3x3-BN-act-(dropout)-conv3x3 plus shortcut."""

    def __init__(
        self, in_planes: int, planes: int, stride: int, act_layer: ActFactory, drop_rate: float
    ) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.act1 = act_layer()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.act2 = act_layer()
        self.drop = nn.Dropout(drop_rate) if drop_rate > 0 else nn.Identity()
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.equal_in_out = in_planes == planes and stride == 1
        self.shortcut: nn.Module = (
            nn.Identity()
            if self.equal_in_out
            else nn.Conv2d(in_planes, planes, 1, stride=stride, padding=0, bias=False)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pre-activation residual block; a projecting shortcut sees the activated input."""
        o = self.act1(self.bn1(x))
        skip = x if self.equal_in_out else self.shortcut(o)
        out = self.conv1(o)
        out = self.conv2(self.drop(self.act2(self.bn2(out))))
        return out + skip


class WideResNet(nn.Module):
    """CIFAR WideResNet-depth-widen (Zagoruyko & Komodakis), as in RobustBench baselines."""

    def __init__(
        self,
        depth: int = 28,
        widen_factor: int = 10,
        num_classes: int = 10,
        in_chans: int = 3,
        act_layer: ActFactory | None = None,
        drop_rate: float = 0.0,
    ) -> None:
        super().__init__()
        if (depth - 4) % 6 != 0:
            raise ValueError(f"WideResNet depth must be 6n+4 (16, 22, 28, 40), got {depth}")
        act_layer = act_layer or _relu
        n = (depth - 4) // 6
        widths = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        self.num_classes = num_classes
        self.conv1 = nn.Conv2d(in_chans, widths[0], 3, stride=1, padding=1, bias=False)
        stages = []
        in_planes = widths[0]
        for i, planes in enumerate(widths[1:]):
            blocks = []
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(WideBasicBlock(in_planes, planes, stride, act_layer, drop_rate))
                in_planes = planes
            stages.append(nn.Sequential(*blocks))
        self.block1, self.block2, self.block3 = stages
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.act1 = act_layer()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_planes, num_classes)
        self.num_features = in_planes
        self.input_cfg = {**CIFAR_INPUT, "input_size": (in_chans, 32, 32)}
        _init_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Stem conv, three wide stages, final BN-act."""
        x = self.block3(self.block2(self.block1(self.conv1(x))))
        return self.act1(self.bn1(x))

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        """Global average pool and the linear classifier."""
        return self.fc(torch.flatten(self.pool(x), 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for a batch of images."""
        return self.forward_head(self.forward_features(x))


def conv_bn_act(in_c: int, out_c: int, stride: int, act_layer: ActFactory) -> nn.Sequential:
    """A Sequential(conv3x3, BN, act) unit (keys ``0``, ``1``, ``2``)."""
    return nn.Sequential(
        nn.Conv2d(in_c, out_c, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_c),
        act_layer(),
    )


class SmallCNN(nn.Module):
    """Four conv-BN-act units (16-32-32-64, two stride-2) + global pool + linear; ~35k params.

    Meant for tiny images (8..32 px, grey or RGB), e.g. sklearn digits in the embedded default.
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_chans: int = 3,
        act_layer: ActFactory | None = None,
        widths: tuple[int, int, int, int] = (16, 32, 32, 64),
    ) -> None:
        super().__init__()
        act_layer = act_layer or _relu
        strides = (1, 2, 1, 2)
        layers = []
        c = in_chans
        for w, s in zip(widths, strides):
            layers.append(conv_bn_act(c, w, s, act_layer))
            c = w
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, num_classes)
        self.num_classes = num_classes
        self.num_features = c
        _init_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Un-pooled feature map."""
        return self.features(x)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        """Global average pool and the linear classifier."""
        return self.fc(torch.flatten(self.pool(x), 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for a batch of images."""
        return self.forward_head(self.forward_features(x))
