"""Checkpoints: own format round trip, plain state dicts, safe loading, clear errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from torch import nn

from robustbench_act.checkpoint import (
    is_checkpoint,
    load_checkpoint,
    read_meta,
    read_state_dict,
    save_checkpoint,
)
from robustbench_act.errors import UserError


class Tiny(nn.Module):
    """A small conv net with BN buffers (a local stand-in for models.build_model)."""

    def __init__(self, num_classes: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.bn(self.conv(x))).mean((2, 3)))


class Evil:
    """Unpickling this would run a shell command."""

    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def _fresh(seed: int) -> Tiny:
    torch.manual_seed(seed)
    m = Tiny()
    m.bn.running_mean.normal_()
    return m


def _same(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_own_format_round_trip_folder_and_stem(tmp_path: Path) -> None:
    m = _fresh(0)
    meta = {"model": "tiny", "num_classes": 3, "mean": [0.5], "std": [0.25], "seed": 7}
    out = save_checkpoint(tmp_path / "ck", m, meta)
    assert (out / "model.safetensors").is_file() and (out / "model.json").is_file()
    assert is_checkpoint(out) and not list(out.glob("*.tmp"))
    got, meta2 = load_checkpoint(out, model=_fresh(1))
    assert _same(got, m) and not got.training
    assert meta2["seed"] == 7 and meta2["format"] == "actbench-checkpoint" and "versions" in meta2
    assert read_meta(out)["mean"] == [0.5]
    none, meta3 = load_checkpoint(out, build=False)
    assert none is None and meta3["model"] == "tiny"
    stem = save_checkpoint(tmp_path / "x" / "best.safetensors", m, meta)
    assert (tmp_path / "x" / "best.json").is_file() and is_checkpoint(stem)
    assert _same(load_checkpoint(stem, model=_fresh(2))[0], m)


def test_own_format_rebuilds_with_build_model(tmp_path: Path) -> None:
    models = pytest.importorskip("robustbench_act.models")
    torch.manual_seed(0)
    m = models.build_model("cnn_small", num_classes=10, activation="silu", in_chans=1)
    meta = {"model": "cnn_small", "num_classes": 10, "activation": "silu", "in_chans": 1,
            "order": "conventional", "input_size": [1, 16, 16]}  # fmt: skip
    save_checkpoint(tmp_path / "ck", m, meta)
    got, _ = load_checkpoint(tmp_path / "ck")
    assert type(got) is type(m) and _same(got, m)


def test_plain_state_dicts_with_wrappers_and_prefixes(tmp_path: Path) -> None:
    m = _fresh(0)
    sd = m.state_dict()
    torch.save({"state_dict": {f"module._orig_mod.{k}": v for k, v in sd.items()}, "epoch": 3},
               tmp_path / "a.pth")  # fmt: skip
    torch.save({"model": sd, "optimizer": {"lr": 0.1}}, tmp_path / "b.pt")
    torch.save({"state_dict": sd, "state_dict_ema": {k: v + 1 for k, v in sd.items()}}, tmp_path / "c.bin")
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in sd.items()}, str(tmp_path / "d.safetensors"))
    for name in ("a.pth", "b.pt", "c.bin", "d.safetensors"):
        got, meta = load_checkpoint(tmp_path / name, model=_fresh(5))
        assert _same(got, m), name
        assert meta["format"] == "state_dict"
    ema = read_state_dict(tmp_path / "c.bin", ema=True)
    assert torch.equal(ema["fc.bias"], sd["fc.bias"] + 1)


def test_malicious_pickle_is_refused_without_running_it(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    bad = tmp_path / "evil.pth"

    class Touch:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"state_dict": {"fc.weight": torch.zeros(3, 4)}, "x": Touch()}, bad)
    with pytest.raises(UserError, match=r"refused: .* not a plain state_dict") as err:
        load_checkpoint(bad, model=_fresh(0))
    assert not marker.exists() and "\n" not in str(err.value)
    torch.save(Evil(), tmp_path / "evil2.pt")
    with pytest.raises(UserError, match="refused"):
        read_state_dict(tmp_path / "evil2.pt")


def test_key_mismatch_lists_keys(tmp_path: Path) -> None:
    sd = _fresh(0).state_dict()
    sd.pop("fc.weight")
    sd["head.weight"] = torch.zeros(3, 4)
    torch.save(sd, tmp_path / "w.pth")
    with pytest.raises(UserError, match=r"missing 1 keys: fc.weight; unexpected 1 keys: head.weight"):
        load_checkpoint(tmp_path / "w.pth", model=_fresh(0))
    many = {f"extra{i}": torch.zeros(1) for i in range(8)} | _fresh(0).state_dict()
    torch.save(many, tmp_path / "m.pth")
    with pytest.raises(UserError, match=r"unexpected 8 keys: extra0, .*extra4 \(\+3 more\)"):
        load_checkpoint(tmp_path / "m.pth", model=_fresh(0))
    wrong = _fresh(0).state_dict() | {"fc.bias": torch.zeros(5)}
    torch.save(wrong, tmp_path / "s.pth")
    with pytest.raises(UserError, match="shape mismatch"):
        load_checkpoint(tmp_path / "s.pth", model=_fresh(0))


def test_garbage_and_missing_files_are_one_line_errors(tmp_path: Path) -> None:
    (tmp_path / "g.pth").write_bytes(bytes(range(256)) * 3)
    (tmp_path / "t.pt").write_text("not a checkpoint at all")
    (tmp_path / "g.safetensors").write_bytes(b"\x00" * 64)
    torch.save([1, 2, 3], tmp_path / "list.pt")
    for name in ("g.pth", "t.pt", "g.safetensors", "list.pt"):
        with pytest.raises(UserError) as err:
            load_checkpoint(tmp_path / name, model=_fresh(0))
        assert "\n" not in str(err.value), name
    with pytest.raises(UserError, match="not found"):
        load_checkpoint(tmp_path / "nope.pth", model=_fresh(0))
    torch.save(_fresh(0).state_dict(), tmp_path / "plain.pth")
    with pytest.raises(UserError, match="name its architecture"):
        load_checkpoint(tmp_path / "plain.pth")
    with pytest.raises(UserError, match="not a checkpoint"):
        load_checkpoint(tmp_path)
