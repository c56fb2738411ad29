"""Activation surgery and BN/activation reordering on timm, torchvision and built-in models."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from typer.testing import CliRunner

from robustbench_act.cli import app
from robustbench_act.errors import UserError
from robustbench_act.models import build_model
from robustbench_act.surgery import find_activations, reorder_bn_act, swap_activations

torch.set_num_threads(1)


def _timm(name: str, **kw: object) -> nn.Module:
    return timm.create_model(name, pretrained=False, num_classes=10, **kw)


def _dm_nfnet() -> nn.Module:
    """A depth-1 DeepMind NFNet: same GammaAct (F.gelu * gamma) blocks as dm_nfnet_f0, 2M params."""
    from timm.models.nfnet import NormFreeNet, _dm_nfnet_cfg

    return NormFreeNet(_dm_nfnet_cfg(depths=(1, 1, 1, 1), channels=(256,) * 4), num_classes=10)


def _tv(name: str, **kw: object) -> nn.Module:
    return getattr(torchvision.models, name)(weights=None, num_classes=10, **kw)


# name, builder, input size, expected replaced module counts, functional calls, split sites, gates
CASES = [
    ("resnet18", lambda: _timm("resnet18"), 32, {"ReLU": 17}, 0, 0, 0),
    ("efficientnet_b0", lambda: _timm("efficientnet_b0"), 32, {"SiLU": 49}, 0, 0, 16),
    ("mobilenetv3_small_050", lambda: _timm("mobilenetv3_small_050"), 32,
     {"Hardswish": 19, "ReLU": 14}, 0, 0, 9),
    ("convnext_atto", lambda: _timm("convnext_atto"), 32, {"GELU": 12}, 0, 0, 0),
    ("regnety_002", lambda: _timm("regnety_002"), 32, {"ReLU": 53}, 0, 0, 13),
    ("vit_tiny", lambda: _timm("vit_tiny_patch16_224", img_size=32), 32, {"GELU": 12}, 0, 0, 0),
    ("dm_nfnet", _dm_nfnet, 32, {"ReLU": 4}, 20, 0, 4),  # dm_nfnet_f0: 12 ReLU, 52 F.gelu, 12
    ("mobilevitv2_050", lambda: _timm("mobilevitv2_050"), 64, {"SiLU": 25}, 9, 0, 0),
    ("dla34", lambda: _timm("dla34"), 32, {"ReLU": 21}, 0, 12, 0),
    # HighResolutionModule assigns into its list input (x[i] = ...): traced via setitem nodes
    ("hrnet_w18_small", lambda: _timm("hrnet_w18_small"), 64, {"ReLU": 69}, 0, 6, 0),
    ("tv:resnet18", lambda: _tv("resnet18"), 32, {"ReLU": 9}, 0, 8, 0),
    ("tv:googlenet", lambda: _tv("googlenet", aux_logits=False, init_weights=False), 32, {},
     57, 0, 0),
    ("tv:inception_v3", lambda: _tv("inception_v3", aux_logits=False, init_weights=False), 75,
     {}, 94, 0, 0),
    ("tv:densenet121", lambda: _tv("densenet121"), 32, {"ReLU": 120}, 1, 0, 0),
    ("tv:mobilenet_v3_small", lambda: _tv("mobilenet_v3_small"), 32,
     {"Hardswish": 19, "ReLU": 14}, 0, 0, 9),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_swap_counts_and_properties(case: tuple) -> None:
    name, builder, size, replaced, n_fn, n_split, n_gates = case
    torch.manual_seed(0)
    model = builder().eval()
    x = torch.randn(1, 3, size, size)
    before = copy.deepcopy(model.state_dict())
    with torch.no_grad():
        y0 = model(x)
    report = swap_activations(model, "relu")
    assert report.ok and dict(report.replaced) == replaced
    assert len(report.functional) == n_fn and len(report.split) == n_split
    assert len(report.gates_kept) == n_gates
    sites = find_activations(model)
    # every non-gate activation is now a fresh module from the spec, each call site its own
    assert all(hasattr(s.module, "actbench_spec") for s in sites if not s.gate)
    assert len({id(s.module) for s in sites if not s.gate}) == report.total
    model.load_state_dict(before, strict=True)  # parameter-free spec: keys unchanged
    with torch.no_grad():
        y1 = model(x)
    assert y1.shape == y0.shape
    if set(replaced) <= {"ReLU"} and all(fn == "relu" for _, fn in report.functional):
        assert torch.equal(y0, y1)  # ReLU -> ReLU changes nothing
    # a second run replaces the same number of call sites and changes nothing else
    structure = [(n, type(m).__name__) for n, m in model.named_modules()]
    again = swap_activations(model, "relu")
    assert again.total == report.total and again.ok
    assert [(n, type(m).__name__) for n, m in model.named_modules()] == structure
    with torch.no_grad():
        assert torch.equal(model(x), y1)


@pytest.mark.parametrize(
    "name,builder",
    [
        ("tv:resnet18", lambda: _tv("resnet18")),
        ("tv:googlenet", lambda: _tv("googlenet", aux_logits=False, init_weights=False)),
        ("dm_nfnet", _dm_nfnet),
    ],
)
def test_train_backward_deepcopy_bounded_spec(name: str, builder: object) -> None:
    """tanh needs its output for backward: in-place follow-ups (GammaAct .mul_) must go."""
    model = builder()  # type: ignore[operator]
    swap_activations(model, "tanh")
    model.train()
    x = torch.randn(2, 3, 32, 32)
    model(x).sum().backward()
    clone = copy.deepcopy(model).eval()
    model.eval()
    with torch.no_grad():
        assert torch.equal(clone(x), model(x))
    clone.train()
    clone(x).sum().backward()  # the copy's rewritten forwards use the copy's own modules


def test_layeract_swap_on_resnet20_trains() -> None:
    model = build_model("resnet20", num_classes=10)
    report = swap_activations(model, "la_silu")
    assert report.replaced == {"ReLU": 19}
    out = model(torch.randn(2, 3, 32, 32))
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_parametric_spec_adds_only_its_own_keys() -> None:
    model = _tv("resnet18")
    before = model.state_dict()
    swap_activations(model, "prelu")
    new = set(model.state_dict()) - set(before)
    assert set(before) <= set(model.state_dict())
    assert len(new) == 17 and all(k.endswith(".weight") and "relu" in k for k in new)
    missing, unexpected = model.load_state_dict(before, strict=False)
    assert set(missing) == new and not unexpected


def test_gates_include_exclude_and_factory() -> None:
    model = _timm("mobilenetv3_small_050")
    report = swap_activations(model, lambda: nn.Tanh(), gates="swap", exclude=["blocks.0*"])
    assert not report.gates_kept and report.excluded
    assert all(n.startswith("blocks.0") for n in report.excluded)
    assert sum(report.replaced.values()) == 19 + 14 + 9 - len(report.excluded)
    only = swap_activations(_timm("resnet18"), "tanh", include=["layer1.*"])
    assert sum(only.replaced.values()) == 4 and len(only.excluded) == 13


class _RootRelu(nn.Module):
    """A root whose forward calls F.relu itself (like torchvision densenet's final relu)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.act(self.conv(x)) - 0.1)


def test_errors_leave_model_untouched() -> None:
    model = _RootRelu()
    with pytest.raises(UserError, match="la_silu"):
        swap_activations(model, "la_sulu")
    with pytest.raises(UserError, match="could not be replaced"):
        swap_activations(model, "tanh", allow_root=False)
    assert isinstance(model.act, nn.ReLU) and type(model) is _RootRelu
    report = swap_activations(model, "tanh", allow_root=False, allow_remaining=True)
    assert not report.ok and report.remaining[0][1].startswith("F.relu")
    with pytest.raises(UserError):
        swap_activations(model, "relu", gates="maybe")
    report = swap_activations(model, "tanh")  # root rewrite allowed by default
    assert report.ok and report.functional == [("fx_relu0", "relu")]
    assert isinstance(model, _RootRelu) and isinstance(model.fx_relu0, nn.Tanh)
    x = torch.randn(1, 3, 6, 6)
    expected = torch.tanh(torch.tanh(model.conv(x)) - 0.1)
    assert torch.allclose(model(x), expected)


def test_find_activations_flags_gates() -> None:
    sites = find_activations(_timm("regnety_002"))
    assert sum(s.gate for s in sites) == 13 and len(sites) == 66
    name, module = sites[0]
    assert isinstance(name, str) and isinstance(module, nn.Module)


# ----------------------------------------------------------------------------- reordering


def test_reorder_resnet20_computes_act_then_bn() -> None:
    torch.manual_seed(0)
    model = build_model("resnet20", num_classes=10, activation="tanh").eval()
    keys = set(model.state_dict())
    for m in model.modules():  # non-trivial BN statistics
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    report = reorder_bn_act(model)
    assert len(report.swapped) == 10 and report.ok  # stem + one pair per block
    assert set(model.state_dict()) == keys
    blk = model.layer2[0]
    x = torch.randn(2, 16, 16, 16)

    def bn(layer: nn.BatchNorm2d, t: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(t, layer.running_mean, layer.running_var, layer.weight, layer.bias,
                            False, 0.0, layer.eps)

    h = bn(blk.bn1, torch.tanh(blk.conv1(x)))  # act BEFORE the BN
    h = bn(blk.bn2, blk.conv2(h)) + blk.shortcut(x)
    expected = torch.tanh(h)  # the post-add activation stays after the add
    with torch.no_grad():
        assert torch.allclose(blk(x), expected, atol=1e-6)
    assert reorder_bn_act(model).swapped == []


@pytest.mark.parametrize("kind", ["timm", "tv"])
def test_reorder_resnet18(kind: str) -> None:
    model = _timm("resnet18") if kind == "timm" else _tv("resnet18")
    keys = set(model.state_dict())
    report = reorder_bn_act(model)
    assert len(report.swapped) == 9 and report.ok
    assert set(model.state_dict()) == keys
    model.train()
    model(torch.randn(2, 3, 32, 32)).sum().backward()  # no in-place error
    if kind == "tv":  # the shared relu: first call site moved into bn1, post-add call kept
        blk = model.layer1[0]
        seen: list[str] = []
        for n in ("conv1", "bn1", "bn1.act", "relu", "conv2"):
            blk.get_submodule(n).register_forward_pre_hook(lambda m, a, n=n: seen.append(n))
        blk(torch.randn(1, 64, 8, 8))
        assert seen == ["conv1", "bn1", "bn1.act", "conv2", "relu"]
    assert reorder_bn_act(model).swapped == []


def test_reorder_sequential_and_norm_act() -> None:
    cnn = build_model("cnn_small", num_classes=10)
    assert len(reorder_bn_act(cnn).swapped) == 4
    assert isinstance(cnn.features[0][2], nn.Identity)
    eff = _timm("efficientnet_b0")
    keys = set(eff.state_dict())
    assert len(reorder_bn_act(eff).swapped) == 33  # BatchNormAct2d with a real act
    assert set(eff.state_dict()) == keys
    eff.eval()
    assert eff(torch.randn(1, 3, 32, 32)).shape == (1, 10)


# ----------------------------------------------------------------------------- CLI


def test_cli_surgery_table_and_json() -> None:
    runner = CliRunner()
    res = runner.invoke(app, ["surgery", "resnet20", "--to", "tanh", "--num-classes", "10"])
    assert res.exit_code == 0, res.output
    assert "ReLU" in res.output and "19" in res.output
    res = runner.invoke(app, ["surgery", "tv:resnet18", "--to", "tanh", "--order", "swapped",
                              "--num-classes", "10", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["total"] == 17 and len(data["reorder"]["swapped"]) == 9
    res = runner.invoke(app, ["surgery", "resnet20", "--to", "la_sulu"])  # one line, exit 2
    assert res.exit_code == 2 and res.stderr.startswith("error: unknown activation 'la_sulu'"), res.output


@pytest.mark.slow  # two fresh interpreters importing torch + timm
def test_cli_subprocess_exit_codes() -> None:
    exe = str(Path(sys.executable).with_name("actbench"))
    opts = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    ok_p = subprocess.Popen([exe, "surgery", "resnet18", "--to", "la_silu"], **opts)
    bad_p = subprocess.Popen([exe, "surgery", "resnet18", "--to", "la_sulu"], **opts)
    ok_out, ok_err = ok_p.communicate(timeout=300)
    _, bad_err = bad_p.communicate(timeout=300)
    assert ok_p.returncode == 0, ok_err
    assert "la_silu" in ok_out and "17" in ok_out
    assert bad_p.returncode == 2
    lines = bad_err.strip().splitlines()
    assert len(lines) == 1 and "la_silu" in lines[0] and "Traceback" not in bad_err
