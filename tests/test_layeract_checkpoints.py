"""The LayerAct authors' released CIFAR ResNets load into the built-in resnet20/32/44.

``TheirResNet`` below re-implements the public ``ResNet_small`` definition (module names,
conv biases, BatchNorm, end-padded option-A shortcut, AvgPool2d(8), ``linear``) so that
the key mapping is checked by the outputs, not only by the names.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robustbench_act.activations import get_activation
from robustbench_act.checkpoint import load_checkpoint
from robustbench_act.errors import UserError
from robustbench_act.layeract_checkpoints import activation_hint, convert_state


class _Pad(nn.Module):
    def __init__(self, extra: int, stride: int) -> None:
        super().__init__()
        self.extra, self.pool = extra, nn.MaxPool2d(1, stride=stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(F.pad(x, (0, 0, 0, 0, 0, self.extra)))


class _Block(nn.Module):
    def __init__(self, act: str, planes: int, planes_in: int, stride: int) -> None:
        super().__init__()
        self.projection = _Pad(planes - planes_in, stride) if planes != planes_in else None
        self.conv1 = nn.Conv2d(planes_in, planes, 3, stride=stride, padding=1)
        self.bn1, self.act1 = nn.BatchNorm2d(planes), get_activation(act)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1)
        self.bn2, self.act2 = nn.BatchNorm2d(planes), get_activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.act1(self.bn1(self.conv1(x)))))
        return self.act2(out + (self.projection(x) if self.projection is not None else x))


class TheirResNet(nn.Module):
    def __init__(self, act: str, n: int, num_classes: int) -> None:
        super().__init__()
        self.conv1, self.norm1, self.act1 = nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), get_activation(act)
        stages = []
        for planes, planes_in, stride in ((16, 16, 1), (32, 16, 2), (64, 32, 2)):
            blocks = [_Block(act, planes, planes_in, stride)] + [_Block(act, planes, planes, 1) for _ in range(n - 1)]
            stages.append(nn.Sequential(*blocks))
        self.layers1, self.layers2, self.layers3 = stages
        self.avgpool, self.linear = nn.AvgPool2d(8), nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layers3(self.layers2(self.layers1(self.act1(self.norm1(self.conv1(x))))))
        return self.linear(self.avgpool(out).flatten(1))


def _theirs(act: str, n: int = 3, num_classes: int = 10, seed: int = 0) -> TheirResNet:
    """Their network with random weights, conv biases and BatchNorm statistics (as after training)."""
    torch.manual_seed(seed)
    net = TheirResNet(act, n, num_classes)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.Conv2d):
                m.bias.uniform_(-0.5, 0.5)
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
                m.num_batches_tracked.fill_(7)
    return net.eval()


@pytest.mark.parametrize(("act", "n", "classes", "name"), [
    ("la_silu", 3, 10, "resnet20"), ("la_hardsilu", 5, 100, "resnet32"), ("relu", 7, 10, "resnet44")])
def test_their_weights_give_their_outputs(act: str, n: int, classes: int, name: str, tmp_path: Path) -> None:
    theirs = _theirs(act, n, classes)
    path = tmp_path / f"{name}_{act}_1.pth.tar"
    torch.save({"state_dict": {f"module.{k}": v for k, v in theirs.state_dict().items()}, "iter": 5}, path)
    net, meta = load_checkpoint(path, activation=act)
    assert meta["model"] == name and meta["num_classes"] == classes and meta["activation"] == act
    assert meta["format"] == "layeract-resnet_small" and meta["model_kwargs"] == {"shortcut_pad": "end"}
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(net(x), theirs(x), rtol=1e-4, atol=1e-5)
    assert type(net.layer2[0].act1).__name__ == type(theirs.layers2[0].act1).__name__


def test_mapping_round_trips_through_the_inverse(tmp_path: Path) -> None:
    """Renaming a built-in model's state_dict by the inverse map (zero conv biases) loads back exactly."""
    from robustbench_act.models import build_model

    torch.manual_seed(3)
    ours = build_model("resnet20", num_classes=10, activation="la_silu", shortcut_pad="end").eval()
    inverse = {}
    for k, v in ours.state_dict().items():
        k2 = k.replace("layer", "layers", 1) if k.startswith("layer") else k
        k2 = {"bn1": "norm1", "fc": "linear"}.get(k2.split(".")[0], k2.split(".")[0]) + k2[len(k2.split(".")[0]):]
        inverse[k2] = v
        if k2.endswith(("conv1.weight", "conv2.weight")):
            inverse[k2.replace("weight", "bias")] = torch.zeros(v.shape[0])
    converted, _ = convert_state(inverse)
    assert converted.keys() == ours.state_dict().keys()
    assert all(torch.equal(converted[k], v) for k, v in ours.state_dict().items())


def test_partial_or_foreign_weights_are_one_line_errors(tmp_path: Path) -> None:
    sd = _theirs("relu").state_dict()
    broken = {k: v for k, v in sd.items() if k != "layers2.1.bn1.running_var"}
    torch.save(broken, tmp_path / "partial.pth")
    with pytest.raises(UserError, match=r"missing 1 keys: layers2\.1\.bn1\.running_var") as err:
        load_checkpoint(tmp_path / "partial.pth", activation="relu")
    assert "\n" not in str(err.value)
    torch.save({**sd, "layers1.0.projection.weight": torch.zeros(1)}, tmp_path / "extra.pth")
    with pytest.raises(UserError, match="unexpected 1 keys: layers1.0.projection.weight"):
        load_checkpoint(tmp_path / "extra.pth", activation="relu")
    torch.save(sd, tmp_path / "resnet20_la_hardsilu_2.pth")
    with pytest.raises(UserError, match="--activation la_hardsilu"):  # the file name's hint
        load_checkpoint(tmp_path / "resnet20_la_hardsilu_2.pth")
    with pytest.raises(UserError, match="not resnet32"):
        load_checkpoint(tmp_path / "resnet20_la_hardsilu_2.pth", model="resnet32", activation="relu")
    with pytest.raises(UserError, match="conv-BN-act"):
        load_checkpoint(tmp_path / "resnet20_la_hardsilu_2.pth", activation="relu", order="swapped")
    assert activation_hint("resnet44_leakyrelu_3.pth") == "leaky_relu"
    assert activation_hint("resnet44_silu_3.pth") == "silu" and activation_hint("weights.pth") is None


def test_cli_run_evaluates_their_checkpoint(tmp_path: Path) -> None:
    torch.save({"state_dict": _theirs("la_silu").state_dict()}, tmp_path / "resnet20_la_silu_1.pth.tar")
    data = tmp_path / "c10c"
    data.mkdir()
    rng = np.random.default_rng(0)
    np.save(data / "contrast.npy", rng.integers(0, 256, (5 * 6, 32, 32, 3), dtype=np.uint8))
    np.save(data / "labels.npy", np.tile(np.arange(6) % 10, 5).astype(np.uint8))
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "robustbench_act", "run", "--checkpoint",
                           str(tmp_path / "resnet20_la_silu_1.pth.tar"), "--activation", "la_silu",
                           "--dataset", f"cifar10-c:{data}", "--severities", "1,5", "--probes", "none",
                           "--device", "cpu", "--quiet", "--out", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    import json

    meta = json.loads((out / "manifest.json").read_text())["config"]["checkpoint_meta"][0]
    assert meta["format"] == "layeract-resnet_small" and meta["model"] == "resnet20"
