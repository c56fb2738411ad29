"""Checkpoints in timm / Hugging Face layout: config.json on training, local-dir: and hf-hub: loading."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch

from robustbench_act.checkpoint import load_checkpoint
from robustbench_act.errors import UserError
from robustbench_act.train import make_config, train_model


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A cnn_small (LA-SiLU, tiny widths) trained one short epoch on digits."""
    out = tmp_path_factory.mktemp("ck") / "la_silu"
    cfg = make_config("digits", epochs=1, batch_size=32, limit=96, val_fraction=0.25, check_every=2)
    train_model("cnn_small", dataset="digits", out_dir=out, config=cfg, activation="la_silu",
                progress=False, model_kwargs={"widths": (4, 8, 8, 8)})  # fmt: skip
    return out


def _same_outputs(a: torch.nn.Module, b: torch.nn.Module, shape=(3, 1, 16, 16)) -> bool:
    x = torch.rand(*shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return torch.equal(a.eval()(x), b.eval()(x))


def test_train_writes_a_timm_config_that_timm_loads(trained: Path) -> None:
    cfg = json.loads((trained / "config.json").read_text())
    meta = json.loads((trained / "model.json").read_text())
    assert cfg["architecture"] == "cifar_cnn_small" and cfg["num_classes"] == 10
    assert cfg["model_args"] == {"in_chans": 1, "widths": [4, 8, 8, 8], "activation": "la_silu",
                                 "order": "conventional"}  # fmt: skip
    pre = cfg["pretrained_cfg"]
    assert pre["input_size"] == [1, 16, 16] and pre["mean"] == meta["mean"] and pre["std"] == meta["std"]
    assert pre["first_conv"] == "features.0.0" and pre["classifier"] == "fc"
    assert cfg["label_names"] == [str(i) for i in range(10)] and cfg["num_features"] == 8
    ours, _ = load_checkpoint(trained)
    theirs = timm.create_model(f"local-dir:{trained}", pretrained=True)
    assert type(theirs.features[0][2]).__name__ == type(ours.features[0][2]).__name__  # LA-SiLU rebuilt
    assert _same_outputs(ours, theirs)
    assert (trained / "last" / "config.json").is_file() or not (trained / "last").exists()


def test_local_dir_reads_config_json_when_there_is_no_model_json(trained: Path, tmp_path: Path) -> None:
    folder = tmp_path / "hubstyle"
    folder.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(trained / name, folder / name)
    net, meta = load_checkpoint(f"local-dir:{folder}")
    ours, _ = load_checkpoint(trained)
    assert meta["format"] == "timm-config" and meta["activation"] == "la_silu" and meta["model"] == "cnn_small"
    assert meta["classes"] == [str(i) for i in range(10)] and meta["source"] == f"local-dir:{folder}"
    assert _same_outputs(net, ours)
    with pytest.raises(UserError, match="local-dir checkpoint folder not found"):
        load_checkpoint(f"local-dir:{tmp_path / 'nope'}")
    (folder / "model.safetensors").unlink()
    with pytest.raises(UserError, match="has no weights"):
        load_checkpoint(f"local-dir:{folder}")


def test_a_config_written_by_timm_itself(tmp_path: Path) -> None:
    from timm.models._hub import save_config_for_hf

    torch.manual_seed(0)
    model = timm.create_model("resnet18", num_classes=3).eval()
    folder = tmp_path / "timm_resnet18"
    folder.mkdir()
    save_config_for_hf(model, folder / "config.json")
    from safetensors.torch import save_file

    save_file(model.state_dict(), str(folder / "model.safetensors"))
    net, meta = load_checkpoint(f"local-dir:{folder}")
    assert meta["model"] == "resnet18" and meta["num_classes"] == 3 and meta["activation"] is None
    assert tuple(meta["mean"]) == (0.485, 0.456, 0.406)
    assert _same_outputs(net, model, shape=(2, 3, 64, 64))


def _hf_cache(root: Path, trained: Path, repo: str = "someorg/tiny-net", commit: str = "c0ffee12") -> Path:
    base = root / f"models--{repo.replace('/', '--')}"
    snap = base / "snapshots" / commit
    snap.mkdir(parents=True)
    for name in ("config.json", "model.safetensors"):
        shutil.copy(trained / name, snap / name)
    (base / "refs").mkdir()
    (base / "refs" / "main").write_text(commit)
    return root


def test_hf_hub_reads_the_local_cache_offline(trained: Path, tmp_path: Path, monkeypatch) -> None:
    ours, _ = load_checkpoint(trained)
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hfhome"))
    _hf_cache(tmp_path / "hfhome" / "hub", trained)
    net, meta = load_checkpoint("hf-hub:someorg/tiny-net")
    assert _same_outputs(net, ours) and meta["source"] == "hf-hub:someorg/tiny-net"
    monkeypatch.setenv("HF_HUB_CACHE", str(_hf_cache(tmp_path / "cache2", trained, commit="abc")))
    net, _ = load_checkpoint("hf-hub:someorg/tiny-net@abc")  # a commit revision
    assert _same_outputs(net, ours)
    with pytest.raises(UserError, match="not in the Hugging Face cache .* pass --download"):
        load_checkpoint("hf-hub:someorg/other")
    with pytest.raises(UserError, match="use hf-hub:ORG/NAME"):
        load_checkpoint("hf-hub:just-a-name")
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # not installed
    with pytest.raises(UserError, match="huggingface_hub is not installed"):
        load_checkpoint("hf-hub:someorg/other", download=True)


def test_cli_run_evaluates_an_hf_hub_checkpoint(trained: Path, tmp_path: Path) -> None:
    cache = _hf_cache(tmp_path / "cache", trained)
    env = {**__import__("os").environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "robustbench_act", "run", "--checkpoint",
                           "hf-hub:someorg/tiny-net", "--dataset", "digits", "--corruptions", "contrast",
                           "--severities", "1", "--probes", "none", "--limit", "20", "--device", "cpu",
                           "--quiet", "--out", str(out)], capture_output=True, text=True, env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    man = json.loads((out / "manifest.json").read_text())
    ck = man["config"]["checkpoint_meta"][0]
    assert ck["source"] == "hf-hub:someorg/tiny-net" and ck["activation"] == "la_silu"
