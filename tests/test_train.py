"""Training: recipes/config, determinism, bit-identical resume, divergence, fine-tuning."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from torch import nn

import robustbench_act.train as T
from robustbench_act.checkpoint import load_checkpoint
from robustbench_act.data import load_dataset
from robustbench_act.errors import UserError
from robustbench_act.train import (
    TrainingDivergedError,
    lr_multiplier,
    make_config,
    recalibrate_bn,
    train,
    train_model,
)

TINY = {"widths": (4, 8, 8, 8)}


def _tiny_cfg(**kw):
    base = dict(epochs=2, batch_size=32, limit=192, val_fraction=0.25, check_every=2)
    base.update(kw)
    return make_config("digits", **base)


def _weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors"))


def _equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_recipes_files_and_overrides(tmp_path: Path) -> None:
    paper = make_config("paper")
    assert (paper.iterations, paper.batch_size, paper.lr, paper.weight_decay) == (64000, 128, 0.1, 1e-4)
    assert [lr_multiplier(paper, i, 64000, 0) for i in (0, 31999, 32000, 47999, 48000)] == [
        1.0, 1.0, pytest.approx(0.1), pytest.approx(0.1), pytest.approx(0.01)
    ]  # fmt: skip
    assert paper.val_fraction == 0.1 and paper.select == "best" and paper.augment == "crop_flip"
    fast = make_config("fast")
    assert fast.batch_size == 512 and fast.amp == "auto" and fast.label_smoothing == 0.1
    mults = [lr_multiplier(fast, i, 100, 10) for i in range(100)]
    assert max(mults) == 1.0 and mults.index(1.0) == 9 and mults[-1] < 0.02
    (tmp_path / "c.toml").write_text('recipe = "paper"\n[train]\nlr = 0.05\nepochs = 3\n')
    (tmp_path / "c.yaml").write_text("lr: 0.02\nbatch-size: 16\nschedule: cosine\n")
    c = make_config(None, config_file=tmp_path / "c.toml")
    assert c.lr == 0.05 and c.epochs == 3 and c.iterations is None
    c = make_config("digits", config_file=tmp_path / "c.yaml", lr=0.3)
    assert c.lr == 0.3 and c.batch_size == 16 and c.schedule == "cosine"  # CLI wins
    (tmp_path / "bad.yaml").write_text("learning_rate: 0.1\n")
    with pytest.raises(UserError, match="unknown training setting 'learning_rate'"):
        make_config("paper", config_file=tmp_path / "bad.yaml")
    with pytest.raises(UserError, match="closest: paper"):
        make_config("papr")
    for line, message in (('epochs = "x"', "epochs must be an integer, got 'x'"),
                          ("epochs = 3.5", "epochs must be an integer"),
                          ('nesterov = "yes"', "nesterov must be true or false"),
                          ("batch_size = true", "batch_size must be an integer"),
                          ('milestones = [0.5, "a"]', "milestones must be a list of numbers"),
                          ("schedule = 5", "schedule must be a string"),
                          ("lr = nan", "lr must be a finite number"),
                          ("weight_decay = inf", "weight_decay must be a finite number"),
                          ("lr = 1", None), ("amp = 'bf16'", None)):  # fmt: skip
        (tmp_path / "t.toml").write_text(line + "\n")
        if message is None:
            make_config("paper", config_file=tmp_path / "t.toml")
        else:
            with pytest.raises(UserError, match=re.escape(message)):
                make_config("paper", config_file=tmp_path / "t.toml")
    with pytest.raises(UserError, match="schedule"):
        make_config("paper", schedule="linear")
    for bad, message in ((dict(num_workers=-1), "num_workers must be >= 0"),
                         (dict(weight_decay=-1e-4), "weight_decay must be >= 0"),
                         (dict(label_smoothing=1.0), "label_smoothing must be in [0, 1)"),
                         (dict(grad_clip=0.0), "grad_clip must be positive")):  # fmt: skip
        with pytest.raises(UserError, match=re.escape(message)):
            make_config("paper", **bad)


def test_crop_flip_is_exact() -> None:
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.uint8).view(2, 1, 4, 4)
    off = torch.tensor([[2, 2], [0, 4]])
    out = T._crop_flip(x, off, torch.tensor([False, True]), pad=2)
    assert torch.equal(out[0], x[0])  # offset == pad: no shift
    expected = torch.zeros(1, 4, 4, dtype=torch.uint8)
    expected[:, 2:, :2] = x[1, :, :2, 2:]  # shifted up-left by 2 with zero fill ...
    assert torch.equal(out[1], expected.flip(2))  # ... then mirrored


def test_same_command_twice_gives_same_weights_and_files(tmp_path: Path) -> None:
    cfg = _tiny_cfg(augment="crop_flip", crop_padding=2)
    a = train_model("cnn_small", dataset="digits", out_dir=tmp_path / "a", config=cfg,
                    activation="silu", progress=False, model_kwargs=TINY)  # fmt: skip
    b = train_model("cnn_small", dataset="digits", out_dir=tmp_path / "b", config=cfg,
                    activation="silu", progress=False, model_kwargs=TINY)  # fmt: skip
    assert _equal(_weights(tmp_path / "a"), _weights(tmp_path / "b"))
    for name in ("model.safetensors", "model.json", "train_log.csv", "manifest.json", "state.pt"):
        assert (tmp_path / "a" / name).is_file(), name
    log = pd.read_csv(tmp_path / "a" / "train_log.csv")
    assert list(log.columns) == list(T.LOG_COLUMNS) and len(log) == 2
    assert log.iteration.tolist() == [4, 8]  # 144 training images // 32
    _, meta = load_checkpoint(tmp_path / "a", build=False)
    assert meta["activation"] == "silu" and meta["input_size"] == [1, 16, 16]
    assert meta["train_config"]["seed"] == 0 and len(meta["mean"]) == 1
    assert meta["metrics"]["best_val_acc"] == a.best_val_acc
    cols = ["loss", "train_acc", "val_acc", "lr"]
    assert a.history[cols].equals(b.history[cols])
    model, _ = load_checkpoint(tmp_path / "a")
    assert _equal(model.state_dict(), a.model.state_dict())
    c = train_model("cnn_small", dataset="digits", out_dir=None,
                    config=_tiny_cfg(augment="crop_flip", crop_padding=2, seed=1),
                    activation="silu", progress=False, model_kwargs=TINY)  # fmt: skip
    assert not _equal(c.model.state_dict(), a.model.state_dict())


def test_compiled_training_matches_eager_and_saves_plain_weights(tmp_path: Path) -> None:
    """--compile changes speed, not the run: same losses and weights to float tolerance."""
    cfg = _tiny_cfg(epochs=1, channels_last=True)
    eager = train_model("cnn_small", dataset="digits", out_dir=None, config=cfg,
                        activation="silu", progress=False, model_kwargs=TINY)  # fmt: skip
    cfg_c = _tiny_cfg(epochs=1, channels_last=True, compile=True)
    from torch._dynamo.utils import counters

    counters.clear()
    comp = train_model("cnn_small", dataset="digits", out_dir=tmp_path / "c", config=cfg_c,
                       activation="silu", progress=False, model_kwargs=TINY)  # fmt: skip
    assert counters["stats"]["unique_graphs"] >= 1  # the step really went through dynamo
    assert comp.history.loss.iloc[0] == pytest.approx(eager.history.loss.iloc[0], rel=1e-4)
    saved = _weights(tmp_path / "c")
    assert not any(k.startswith("_orig_mod") for k in saved)  # the checkpoint is the plain model
    ref = eager.model.state_dict()
    for k, v in saved.items():
        torch.testing.assert_close(v, ref[k], rtol=1e-3, atol=1e-4, msg=k)
    _, meta = load_checkpoint(tmp_path / "c", build=False)
    assert meta["train_config"]["compile"] is True


def test_bf16_autocast_trains_on_cpu(tmp_path: Path) -> None:
    """--amp bf16 on CPU: autocast in the step (losses differ from float32), float32 weights."""
    kw = dict(dataset="digits", activation="la_silu", progress=False, model_kwargs=TINY)
    fp32 = train_model("cnn_small", out_dir=None, config=_tiny_cfg(epochs=1, device="cpu"), **kw)
    bf16 = train_model("cnn_small", out_dir=tmp_path / "b", config=_tiny_cfg(epochs=1, device="cpu", amp="bf16"), **kw)
    assert bf16.history.loss.iloc[0] == pytest.approx(fp32.history.loss.iloc[0], rel=0.05)
    assert bf16.history.loss.iloc[0] != fp32.history.loss.iloc[0]
    assert all(v.dtype == torch.float32 for v in _weights(tmp_path / "b").values() if v.is_floating_point())
    _, meta = load_checkpoint(tmp_path / "b", build=False)
    assert meta["train_config"]["amp"] == "bf16"


def test_resume_is_bit_identical(tmp_path: Path, monkeypatch) -> None:
    cfg = _tiny_cfg(epochs=3, augment="flip", select="best")
    kw = dict(dataset="digits", config=cfg, activation="la_silu", progress=False, model_kwargs=TINY)
    train_model("cnn_small", out_dir=tmp_path / "full", **kw)
    real = T._write_state
    calls = {"n": 0}

    def interrupt_after_first_epoch(*args, **kwargs):
        real(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(T, "_write_state", interrupt_after_first_epoch)
    with pytest.raises(KeyboardInterrupt):
        train_model("cnn_small", out_dir=tmp_path / "cut", **kw)
    assert not (tmp_path / "cut" / "model.safetensors").exists()
    assert len(pd.read_csv(tmp_path / "cut" / "train_log.csv")) == 1
    first_start = json.loads((tmp_path / "cut" / "manifest.json").read_text())["started"]
    time.sleep(1.1)  # the manifest's times have one-second resolution
    monkeypatch.setattr(T, "_write_state", real)
    train_model("cnn_small", out_dir=tmp_path / "cut", resume=True, **kw)
    man = json.loads((tmp_path / "cut" / "manifest.json").read_text())
    assert man["status"] == "finished" and man["started"] == first_start < man["finished"]
    assert _equal(_weights(tmp_path / "full"), _weights(tmp_path / "cut"))
    assert _equal(_weights(tmp_path / "full" / "last"), _weights(tmp_path / "cut" / "last"))
    full_log = pd.read_csv(tmp_path / "full" / "train_log.csv")
    cut_log = pd.read_csv(tmp_path / "cut" / "train_log.csv")
    assert full_log[["loss", "val_acc"]].equals(cut_log[["loss", "val_acc"]])
    with pytest.raises(UserError, match="cannot resume .* lr=0.05, now lr=0.01"):
        train_model("cnn_small", out_dir=tmp_path / "cut", resume=True,
                    **{**kw, "config": _tiny_cfg(epochs=3, augment="flip", lr=0.01)})  # fmt: skip


class _NanAfter(nn.Module):
    """Linear classifier that starts returning NaN after ``n`` forward calls in training."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.fc = nn.Linear(256, 10)
        self.n = n
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.calls += 1
        out = self.fc(x.flatten(1))
        return out * float("nan") if self.training and self.calls > self.n else out


def test_divergence_stops_with_clear_message_and_keeps_log(tmp_path: Path) -> None:
    ds = load_dataset("digits", split="train", limit=128)
    cfg = make_config("digits", epochs=3, batch_size=32, val_fraction=0.0, check_every=100)
    with pytest.raises(TrainingDivergedError) as err:
        train(_NanAfter(6), ds, config=cfg, out_dir=tmp_path, progress=False)
    msg = str(err.value)
    assert "training diverged at epoch 2 iteration 7 (loss=nan)" in msg
    assert msg.endswith("lower --lr")  # float32 training: no autocast to turn off
    assert str(tmp_path / "train_log.csv") in msg and "\n" not in msg
    assert len(pd.read_csv(tmp_path / "train_log.csv")) == 1
    assert not (tmp_path / "model.safetensors").exists()


def test_bn_recalibration_matches_exact_statistics() -> None:
    from robustbench_act.models import build_model

    ds = load_dataset("digits", split="train", limit=96)
    torch.manual_seed(0)
    m = build_model("cnn_small", num_classes=10, in_chans=1, **TINY)
    n = recalibrate_bn(m, ds, batches=3, batch_size=32, seed=0)
    assert n == 4 and m.training  # mode restored
    bn = m.features[0][1]
    x = (ds.images.float() / 255 - ds.mean[0]) / ds.std[0]
    with torch.no_grad():
        h = m.features[0][0](x)
    assert torch.allclose(bn.running_mean, h.mean((0, 2, 3)), atol=1e-5)
    assert bn.momentum == 0.1


def test_finetune_swaps_activation_and_recalibrates(tmp_path: Path) -> None:
    cfg = _tiny_cfg(epochs=1, val_fraction=0.0)
    train_model("cnn_small", dataset="digits", out_dir=tmp_path / "base", config=cfg,
                activation="relu", progress=False, model_kwargs=TINY)  # fmt: skip
    before = _weights(tmp_path / "base")
    ft = make_config("finetune", epochs=1, batch_size=32, limit=192, val_fraction=0.0,
                     augment="none", checkpoint=str(tmp_path / "base"), bn_recalibration_batches=2)  # fmt: skip
    r = train_model("cnn_small", dataset="digits", out_dir=tmp_path / "ft", config=ft,
                    activation="la_silu", progress=False)  # fmt: skip
    _, meta = load_checkpoint(tmp_path / "ft", build=False)
    assert meta["activation"] == "la_silu" and meta["finetuned_from"]["activation"] == "relu"
    assert meta["finetuned_from"]["bn_layers_recalibrated"] == 4
    assert meta["model_kwargs"] == {"widths": [4, 8, 8, 8]}
    model, _ = load_checkpoint(tmp_path / "ft")  # rebuilt with the new activation
    assert _equal(model.state_dict(), r.model.state_dict())
    assert not torch.equal(before["features.0.1.running_mean"], model.state_dict()["features.0.1.running_mean"])
    with pytest.raises(UserError, match="--checkpoint"):
        train_model("cnn_small", dataset="digits", out_dir=None, progress=False,
                    config=make_config("finetune", epochs=1))  # fmt: skip


def test_digits_recipe_reaches_90_percent_with_relu() -> None:
    r = train_model("cnn_small", dataset="digits", out_dir=None, config=make_config("digits"),
                    activation="relu", progress=False)  # fmt: skip
    te = load_dataset("digits", split="test")
    x = (te.images.float() / 255 - te.mean[0]) / te.std[0]
    with torch.no_grad():
        acc = (r.model(x).argmax(1) == te.labels).float().mean().item()
    assert acc > 0.9, acc


# ----------------------------------------------------------------------------- DDP


def _no_bn_model() -> nn.Module:
    """BatchNorm-free net: a DDP step then equals a single-process step exactly (up to floats)."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.GroupNorm(2, 8), nn.SiLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10),
    )  # fmt: skip


def _ddp_cfg():
    return make_config("digits", iterations=3, batch_size=32, limit=128, val_fraction=0.0,
                       augment="crop_flip", crop_padding=2, select="last")  # fmt: skip


def _ddp_worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    import torch.distributed as td

    torch.set_num_threads(1)
    td.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        ds = load_dataset("digits", split="train")
        res = train(_no_bn_model(), ds, config=_ddp_cfg(), out_dir=out_dir, progress=False)
        torch.save(res.model.state_dict(), f"{out_dir}/rank{rank}.pt")
        if rank == 0:  # one rank alone inside the job (no collectives): must not hang
            alone = train(_no_bn_model(), ds, config=_ddp_cfg(), progress=False, distributed=False)
            torch.save(alone.model.state_dict(), f"{out_dir}/alone.pt")
        td.barrier()
    finally:
        td.destroy_process_group()


def test_two_process_ddp_equals_single_process(tmp_path: Path) -> None:
    import multiprocessing

    import torch.multiprocessing as mp

    # single process first: it also pays the one-time imports (torch._dynamo via the optimizer,
    # timm via the manifest) that the forked children then inherit; on one thread like the
    # workers, so that "alone" (rank 0 without collectives) can be compared bit for bit
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single = train(_no_bn_model(), load_dataset("digits", split="train"), config=_ddp_cfg(),
                       out_dir=tmp_path / "one", progress=False).model.state_dict()  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    # fork (where available) skips re-importing torch in the children: seconds instead of ~30 s
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    mp.start_processes(_ddp_worker, args=(2, str(tmp_path / "init"), str(tmp_path / "ddp")),
                       nprocs=2, join=True, start_method=method)  # fmt: skip
    r0 = torch.load(tmp_path / "ddp" / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "ddp" / "rank1.pt", weights_only=True)
    written = _weights(tmp_path / "ddp")  # rank 0 wrote the checkpoint
    alone = torch.load(tmp_path / "ddp" / "alone.pt", weights_only=True)
    start = _no_bn_model().state_dict()
    for k in single:
        assert not torch.allclose(single[k], start[k])  # training moved every tensor
        assert torch.equal(r0[k], r1[k]) and torch.equal(written[k], r0[k])
        assert torch.allclose(r0[k], single[k], atol=1e-6, rtol=1e-5), k
        assert torch.equal(alone[k], single[k])
    ddp_log = pd.read_csv(tmp_path / "ddp" / "train_log.csv")
    one_log = pd.read_csv(tmp_path / "one" / "train_log.csv")
    assert ddp_log.iteration.tolist() == [3] and ddp_log.loss[0] == pytest.approx(one_log.loss[0], rel=1e-5)


# ----------------------------------------------------------------------------- CLI


def test_cli_train_digits_and_errors(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from robustbench_act.cli import app

    runner = CliRunner()
    base = ["train", "--dataset", "digits", "--activation", "la_silu", "--epochs", "1",
            "--limit", "200", "--seed", "2", "--quiet"]  # fmt: skip
    args = [*base, "--out", str(tmp_path / "run")]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "saved best checkpoint" in res.output
    _, meta = load_checkpoint(tmp_path / "run", build=False)
    assert meta["model"] == "cnn_small" and meta["activation"] == "la_silu" and meta["seed"] == 2
    assert meta["train_config"]["recipe"] == "digits" and meta["train_config"]["epochs"] == 1
    res = runner.invoke(app, [*args, "--resume"])  # already finished: nothing to redo
    assert res.exit_code == 0, res.output
    for bad, words in (
        (["--recipe", "fst"], "closest: fast"),
        (["--activation", "la_silo"], "la_silu"),
        (["--amp", "fp8"], "amp mode"),
        (["--batch-size", "5000"], "larger than"),
    ):
        res = runner.invoke(app, [*base, *bad, "--out", str(tmp_path / "bad")])
        assert res.exit_code == 2, (bad, res.output)
        assert words in res.output and "Traceback" not in res.output
