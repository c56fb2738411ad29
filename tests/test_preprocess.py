"""Preprocessing from the model: precedence user > checkpoint > model's declared config > dataset."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from robustbench_act.errors import UserError
from robustbench_act.models import build_model
from robustbench_act.preprocess import InputConfig, Preprocess, resolve_input_config


class _Data:
    name, channels, mean, std, image_size = "tiny", 3, (0.4, 0.4, 0.4), (0.2, 0.2, 0.2), (32, 32)


def test_precedence_of_the_input_configuration() -> None:
    import timm

    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=3)
    cfg = resolve_input_config(vit, {}, _Data())
    assert cfg.source == "model" and cfg.mean == (0.5, 0.5, 0.5) and cfg.input_size == (224, 224)
    assert cfg.interpolation == "bicubic" and cfg.crop_pct == pytest.approx(0.9)
    ck = resolve_input_config(vit, {"mean": [0.1] * 3, "std": [0.3] * 3, "input_size": [3, 32, 32]}, _Data())
    assert ck.source == "checkpoint" and ck.mean == (0.1,) * 3 and ck.input_size == (32, 32) and ck.crop_pct == 1.0
    user = resolve_input_config(vit, {"mean": [0.1] * 3, "std": [0.3] * 3}, _Data(), mean=[0.0] * 3, std=[1.0] * 3)
    assert user.source == "user" and user.std == (1.0,) * 3
    raw = resolve_input_config(vit, {}, _Data(), normalize=False)
    assert not raw.normalize and "[0, 1]" in raw.source
    net = build_model("resnet20", num_classes=10)
    own = resolve_input_config(net, {}, _Data())  # CIFAR nets declare 32 px but no constants
    assert own.source == "dataset" and own.mean == (0.4,) * 3 and own.input_size == (32, 32)
    with pytest.raises(UserError, match="2 values but the images have 3 channels"):
        resolve_input_config(net, {}, _Data(), mean=[0.5, 0.5], std=[0.5, 0.5])
    with pytest.raises(UserError, match="std finite and > 0"):
        resolve_input_config(net, {}, _Data(), mean=[0.5] * 3, std=[0.0] * 3)


def test_resize_and_centre_crop_like_timm_eval() -> None:
    x = torch.arange(32 * 32, dtype=torch.float32).view(1, 1, 32, 32).expand(2, 3, 32, 32) / 1024
    cfg = InputConfig(mean=(0.0,) * 3, std=(1.0,) * 3, input_size=(224, 224), interpolation="bicubic", crop_pct=0.875)
    y = Preprocess(cfg)(x)
    assert y.shape == (2, 3, 224, 224)
    # shorter side to 224 / 0.875 = 256, centre crop 224: the crop drops 16 px on each side
    full = torch.nn.functional.interpolate(x, size=(256, 256), mode="bicubic", align_corners=False,
                                           antialias=True).clamp(0, 1)  # fmt: skip
    assert torch.equal(y, full[..., 16:240, 16:240])
    same = InputConfig(mean=(0.5,) * 3, std=(0.25,) * 3, input_size=(32, 32))
    u8 = (x * 255).to(torch.uint8)
    assert torch.allclose(Preprocess(same)(u8), (u8.float() / 255 - 0.5) / 0.25)


def test_timm_state_dict_on_small_images_runs_with_its_own_preprocessing(tmp_path: Path) -> None:
    """The issue's crash: a vit_tiny_patch16_224 state_dict on a 32-px ImageFolder."""
    import timm
    from PIL import Image

    from robustbench_act.cli import app

    torch.manual_seed(0)
    net = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=3)
    torch.save(net.state_dict(), tmp_path / "vit.pt")
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for c in ("a", "b", "c"):
            (tmp_path / "img" / split / c).mkdir(parents=True)
            for i in range(2):
                Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(
                    tmp_path / "img" / split / c / f"{i}.png")
    res = CliRunner().invoke(app, ["run", "--checkpoint", str(tmp_path / "vit.pt"), "--model", "vit_tiny_patch16_224",
                                   "--dataset", f"imagefolder:{tmp_path / 'img'}", "--corruptions", "none",
                                   "--probes", "none", "--out", str(tmp_path / "r"), "--device", "cpu"])  # fmt: skip
    assert res.exit_code == 0, res.output
    pre = json.loads((tmp_path / "r" / "manifest.json").read_text())["config"]["preprocessing"]
    (cfg,) = pre.values()
    assert cfg["input_size"] == [224, 224] and cfg["mean"] == [0.5, 0.5, 0.5] and cfg["source"] == "model"
    bad = CliRunner().invoke(app, ["run", "--mean", "0.5,x", "--std", "1,1", "--out", str(tmp_path / "b")])
    assert bad.exit_code == 2 and "bad --mean" in bad.output
    bad = CliRunner().invoke(app, ["run", "--no-normalize", "--out", str(tmp_path / "b")])
    assert bad.exit_code == 2 and "describe checkpoints trained elsewhere" in bad.output
    assert not (tmp_path / "b").exists()
