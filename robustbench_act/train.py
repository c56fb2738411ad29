"""Training from scratch or fine-tuning, deterministic and resumable, single process or DDP.

Recipes (``RECIPES``; every field can be overridden by a config file or the CLI):

- ``paper``: the LayerAct CIFAR protocol — SGD lr 0.1, momentum 0.9, weight decay 1e-4,
  batch 128, 64k iterations, lr x0.1 at 32k and 48k (milestones 0.5/0.75 of the run),
  random crop (pad 4) + horizontal flip, stratified 45k/5k train/validation split,
  best-validation checkpoint.
- ``fast``: a GPU-efficient schedule — batch 512, lr 0.4 one-cycle (5 warm-up epochs, linear
  decay), nesterov, weight decay 5e-4, label smoothing 0.1, 35 epochs over all 50k images,
  bf16 autocast and channels_last on CUDA, data held on the GPU as uint8 with crop+flip done
  there.  Measured with ResNet-20 (ReLU, seed 0) on the CIFAR-10 JPEG q75 copy, run in
  float32 on CPU: 87.2% test accuracy (results/cifar10jpeg-fast-resnet20-relu), the
  recipe's expectation on this copy (consistent with other ResNet-20 runs on it; batch 256
  at lr 0.2, twice the updates, gave 87.3%). The CIFAR study's 15-epoch variant (batch 128,
  lr 0.1, results/cifar10jpeg-resnet20/study.toml) reaches 85.3%.
  ``--compile`` (torch.compile of the training step) and ``--channels-last`` change only
  its speed (measured figures in docs/benchmarks.md).
- ``finetune``: start from a local checkpoint, swap the activation (surgery), re-estimate
  the BatchNorm statistics on training data, then train 10 epochs at lr 0.01 (cosine).
- ``digits``: the tiny recipe of the embedded default — cnn_small on 16x16 digits, 5 epochs
  (about 99% validation accuracy with relu, a few seconds per activation on 2 CPU cores).

Determinism: the data order and the augmentation of epoch ``e`` come from a
``torch.Generator`` seeded with ``(seed, e)``, and the global RNG (dropout, stochastic
depth) is reseeded from ``(seed, e)`` at the start of each epoch; parameter init is the
caller's (seed torch before ``build_model``).  Same command twice gives the same weights on
CPU, and a run resumed from ``state.pt`` ends bit-identical to an uninterrupted one.

Batches: each epoch is a fresh permutation cut into full batches (the last partial batch
is dropped).  ``batch_size`` is the *global* batch: under DDP every rank takes a
contiguous ``batch_size / world_size`` slice of each global batch (after augmentation
drawn for the whole batch), so a multi-process step equals a single-process step.

Inputs are normalised as ``(x / 255 - mean) / std`` with the training set's constants,
which the checkpoint records (``evaluate.Normalize`` applies the same at test time).
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from robustbench_act import distributed as dist
from robustbench_act.cpu import warn_if_emulated_bf16
from robustbench_act.data import ImageDataset, dataset_info, split_train_val
from robustbench_act.errors import UserError
from robustbench_act.fileio import (
    atomic_write_json,
    read_json,
    writing_folder,
)
from robustbench_act.finetune import prepare_finetune, recalibrate_bn  # noqa: F401  (re-exported)
from robustbench_act.parsing import resolve_device
from robustbench_act.train_config import (  # noqa: F401  (re-exported: the training API)
    _RESUME_KEYS,
    AMPS,
    AUGMENTS,
    LOG_COLUMNS,
    LOG_NAME,
    MANIFEST_NAME,
    RECIPES,
    SCHEDULES,
    SELECTS,
    STATE_NAME,
    TrainConfig,
    config_fields,
    default_recipe,
    load_config,
    make_config,
)
from robustbench_act.train_data import (  # noqa: F401  (re-exported)
    _autocast,
    _Batches,
    _crop_flip,
    _eval_batches,
    _in_memory,
    accuracy,
    amp_dtype,
    derive_seed,
)
from robustbench_act.train_progress import _Reporter
from robustbench_act.train_state import _cpu_state, _manifest, _read_state, _write_log, _write_state  # noqa: F401


@dataclass
class TrainResult:
    """What train() returns: the selected model, the per-epoch log and where files went."""

    model: nn.Module
    history: pd.DataFrame
    best_val_acc: float | None
    best_epoch: int | None
    last_val_acc: float | None
    selected: str
    iterations: int
    out_dir: Path | None
    checkpoint: Path | None
    meta: dict[str, Any]


class TrainingDivergedError(UserError):
    """The loss became NaN/inf; the log written so far is kept."""


# ----------------------------------------------------------------------------- helpers





def lr_multiplier(cfg: TrainConfig, it: int, total: int, warmup_iters: int) -> float:
    """Learning-rate factor at iteration ``it`` (0-based) of ``total``."""
    if cfg.schedule == "onecycle":
        peak = max(warmup_iters, 1)
        if it < peak:
            return (it + 1) / peak
        return max(0.0, (total - it) / max(total - peak, 1))
    warm = (it + 1) / warmup_iters if warmup_iters and it < warmup_iters else 1.0
    if cfg.schedule == "multistep":
        marks = [m * total if m <= 1.0 else m for m in cfg.milestones]
        return warm * cfg.gamma ** sum(it >= m for m in marks)
    if cfg.schedule == "cosine":
        t = max(0, it - warmup_iters) / max(total - warmup_iters, 1)
        return warm * 0.5 * (1.0 + math.cos(math.pi * min(t, 1.0)))
    return warm


def _unwrap_model(model: nn.Module) -> nn.Module:
    while hasattr(model, "module") and isinstance(model.module, nn.Module):
        model = model.module
    return getattr(model, "_orig_mod", model)



# ----------------------------------------------------------------------------- training


def train(
    model: nn.Module,
    train_set: Any,
    *,
    config: TrainConfig,
    val_set: Any = None,
    out_dir: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    meta: dict[str, Any] | None = None,
    distributed: bool | None = None,
) -> TrainResult:
    """Train ``model`` on ``train_set`` per ``config``; write checkpoint, log and state to out_dir.

    Without ``val_set`` and with ``config.val_fraction > 0`` a stratified validation split
    (seeded by ``config.seed``) is taken from ``train_set``.  Returns the selected weights
    (best validation accuracy, or last) in eval mode.  ``distributed``: None uses the
    torchrun process group when there is one (DDP, all ranks must call); False trains in
    this process alone even inside a torchrun job (no collectives; this process writes).
    """
    if distributed is False and dist.is_distributed():
        with dist.local_only():
            return train(model, train_set, config=config, val_set=val_set, out_dir=out_dir,
                         resume=resume, progress=progress, meta=meta, distributed=None)  # fmt: skip
    if distributed and not dist.is_distributed():
        raise UserError("distributed=True needs a torchrun process group with more than one process")
    cfg = config.validate()
    out = Path(out_dir) if out_dir is not None else None
    with _output_folder(out):
        return _fit(model, train_set, cfg, val_set=val_set, out=out, resume=resume, progress=progress,
                    meta=meta)


# what a training run writes (checkpoint.WEIGHTS_NAME, META_NAME, hub.CONFIG_NAME, the "last" checkpoint)
_OUTPUT_NAMES = (STATE_NAME, LOG_NAME, MANIFEST_NAME, "model.safetensors", "model.json", "config.json", "last")


def _foreign_files(folder: Path) -> list[str]:
    """Files in a training output folder that a training run did not write (hidden files aside)."""
    import os

    names = [n for n in sorted(os.listdir(folder)) if not n.startswith(".") and n not in _OUTPUT_NAMES]
    if (folder / MANIFEST_NAME).is_file():
        kind = read_json(folder / MANIFEST_NAME, "manifest").get("kind")
        if kind != "train":
            names.insert(0, f"{MANIFEST_NAME} of a {kind or 'non-training'} output")
    return names


@contextlib.contextmanager
def _output_folder(out: Path | None) -> Iterator[None]:
    """Rank 0 creates and locks ``out`` for the block (refusing foreign files); all ranks learn if it could."""
    with contextlib.ExitStack() as stack:
        error = None
        if out is not None and dist.is_main_process():
            try:
                stack.enter_context(writing_folder(out, foreign=_foreign_files))
            except UserError as exc:
                error = str(exc)
        if out is not None:
            error = dist.broadcast_object(error)
        if error:
            raise UserError(error)
        yield


def _identity(net: nn.Module, meta: dict[str, Any] | None, info: dict[str, Any]) -> dict[str, Any]:
    """What a run trains: model, activation, order and data; a resumed run must train the same."""
    from robustbench_act.activations import canonical_spec

    m = meta or {}
    act = m.get("activation")
    return {"model": m.get("model") or type(net).__name__, "activation": canonical_spec(act) if act else None,
            "order": m.get("order") or "conventional", "dataset": m.get("dataset_spec"),
            "classes": info.get("classes"), "image_size": list(info.get("image_size") or []),
            "channels": info.get("channels")}  # fmt: skip


@dataclass
class _Fit:
    """Everything one training run holds between its steps (set up by :func:`_prepare`)."""

    cfg: TrainConfig
    device: torch.device
    out: Path | None
    net: nn.Module
    run_model: Any  # net, DDP-wrapped and/or compiled
    opt: torch.optim.Optimizer
    scaler: Any
    criterion: nn.Module
    feeder: _Batches
    adt: torch.dtype | None
    info: dict[str, Any]
    meta: dict[str, Any] | None
    val_set: Any
    total: int
    n_epochs: int
    warmup_iters: int
    history: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] = field(default_factory=lambda: {"acc": None, "epoch": None, "state": None})
    start_epoch: int = 0
    it: int = 0
    elapsed: float = 0.0
    started: str | None = None  # ISO time the run (its first part, when resumed) started

    @property
    def main(self) -> bool:
        """This process writes the files."""
        return dist.is_main_process()

    @property
    def state_path(self) -> Path | None:
        """Where the resumable state is written."""
        return self.out / STATE_NAME if self.out is not None else None


def _started_before(out: Path) -> str | None:
    """``started`` of the manifest an interrupted run left in ``out``, if any."""
    try:
        return json.loads((out / MANIFEST_NAME).read_text(encoding="utf-8")).get("started")
    except (OSError, ValueError, AttributeError):
        return None


def _fit(model: nn.Module, train_set: Any, cfg: TrainConfig, *, val_set: Any, out: Path | None,
         resume: bool, progress: bool, meta: dict[str, Any] | None) -> TrainResult:  # fmt: skip
    """The body of :func:`train` (the caller holds ``out``'s lock)."""
    f = _prepare(model, train_set, cfg, val_set=val_set, out=out, meta=meta)
    if resume:
        _restore(f)
    if out is not None and f.main:
        manifest = _manifest(cfg, f.device, f.info, f.val_set, status="running", total=f.total, n_epochs=f.n_epochs)
        if resume:  # a resumed run started when its first part did
            manifest["started"] = _started_before(out) or manifest["started"]
        f.started = manifest["started"]
        atomic_write_json(out / MANIFEST_NAME, manifest)
    reporter = _Reporter(progress, f.total, f.n_epochs)
    reporter.start(f.it)
    t_start = time.perf_counter() - f.elapsed
    try:
        for epoch in range(f.start_epoch, f.n_epochs):
            row = _train_epoch(f, epoch, reporter)
            row["time"] = time.perf_counter() - t_start
            f.history.append(row)
            reporter.epoch_end(row)
            if out is not None and f.main:
                _write_log(out, f.history)
                _write_state(f.state_path, f.net, f.opt, f.scaler, f.history, f.best, epoch + 1, f.it, cfg,
                             _identity(f.net, meta, f.info))  # fmt: skip
            dist.barrier()
    finally:
        reporter.close()
    return _finish(f)


def _prepare(model: nn.Module, train_set: Any, cfg: TrainConfig, *, val_set: Any, out: Path | None,
             meta: dict[str, Any] | None) -> _Fit:  # fmt: skip
    """Data split and feeder, the model on its device (channels_last, SyncBN, DDP, compile), SGD."""
    device = resolve_device(cfg.device)
    if cfg.limit is not None and len(train_set) > cfg.limit:
        train_set = _first(train_set, cfg.limit)
    if val_set is None and cfg.val_fraction > 0:
        train_set, val_set = split_train_val(train_set, cfg.val_fraction, cfg.seed)
    info = dataset_info(train_set)
    if info.get("mean") is None or info.get("std") is None:
        raise UserError("the training set carries no mean/std; load it with data.load_dataset")
    cl = cfg.channels_last if cfg.channels_last is not None else device.type == "cuda"
    adt = amp_dtype(cfg.amp, device)
    if adt == torch.bfloat16:
        warn_if_emulated_bf16(device.type)
    feeder = _Batches(train_set, cfg, device, info["mean"], info["std"], cl)
    total = int(cfg.iterations) if cfg.iterations is not None else int(cfg.epochs) * feeder.steps
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick the fastest kernels
    net = _unwrap_model(model).to(device)
    if cl:
        net = net.to(memory_format=torch.channels_last)
    if dist.is_distributed() and cfg.sync_bn:
        if device.type != "cuda":
            raise UserError("--sync-bn needs CUDA (SyncBatchNorm does not run on CPU)")
        net = nn.SyncBatchNorm.convert_sync_batchnorm(net)
    net.train()
    run_model = dist.wrap_ddp(net, device)
    if cfg.compile:  # the training step only; validation, checkpoints and state use ``net`` itself
        run_model = torch.compile(run_model)
    opt = torch.optim.SGD(net.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                          nesterov=cfg.nesterov and cfg.momentum > 0)  # fmt: skip
    return _Fit(cfg=cfg, device=device, out=out, net=net, run_model=run_model, opt=opt,
                scaler=torch.amp.GradScaler(device.type, enabled=adt == torch.float16),
                criterion=nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing), feeder=feeder, adt=adt,
                info=info, meta=meta, val_set=val_set, total=total, n_epochs=math.ceil(total / feeder.steps),
                # a warm-up longer than 30% of the run (e.g. the fast recipe cut to 2 epochs) is shortened
                warmup_iters=min(int(round(cfg.warmup * feeder.steps)), int(0.3 * total)))  # fmt: skip


def _restore(f: _Fit) -> None:
    """Continue from ``state.pt`` (when there is one): weights, optimizer, scaler, log, best, counters."""
    if f.out is None:
        raise UserError("resume needs an output folder holding state.pt")
    if f.state_path is None or not f.state_path.is_file():
        return
    st = _read_state(f.state_path, f.cfg, _identity(f.net, f.meta, f.info))
    f.net.load_state_dict(st["model"])
    f.opt.load_state_dict(st["optimizer"])
    if st.get("scaler"):
        f.scaler.load_state_dict(st["scaler"])
    f.history, f.best = list(st["history"]), dict(st["best"])
    f.start_epoch, f.it = int(st["epoch"]), int(st["iteration"])
    f.elapsed = float(f.history[-1]["time"]) if f.history else 0.0


def _train_epoch(f: _Fit, epoch: int, reporter: _Reporter) -> dict[str, Any]:
    """One epoch of SGD steps, then validation when due; the log row (without its time)."""
    cfg, device = f.cfg, f.device
    torch.manual_seed(derive_seed("train-global", cfg.seed, epoch))
    f.net.train()
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.float64, device=device)
    bad_at = torch.full((), -1, dtype=torch.long, device=device)
    seen, lr = 0, cfg.lr
    t_epoch = time.perf_counter()
    for x, y in f.feeder.epoch(epoch):
        if f.it >= f.total:
            break
        lr = cfg.lr * lr_multiplier(cfg, f.it, f.total, f.warmup_iters)
        logits, loss = _step(f, x, y, lr)
        ld = loss.detach()
        loss_sum += ld.double() * len(y)
        correct += (logits.detach().argmax(1) == y).sum()
        bad_at = torch.where((bad_at < 0) & ~torch.isfinite(ld), torch.full_like(bad_at, f.it), bad_at)
        seen += len(y)
        f.it += 1
        if f.it % cfg.check_every == 0:
            _check_finite(bad_at, loss_sum, epoch, f.out, f.history, f.main, autocast=f.adt is not None)
            if reporter.rich:
                reporter.update(f.it, epoch, float(loss_sum / max(seen, 1)), float(100 * correct / max(seen, 1)))
        elif reporter.rich:
            reporter.update(f.it, epoch)  # bar only: no device sync
    _check_finite(bad_at, loss_sum, epoch, f.out, f.history, f.main, autocast=f.adt is not None)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    dt = time.perf_counter() - t_epoch
    stats = torch.stack([loss_sum, correct, torch.tensor(float(seen), dtype=torch.float64, device=device)])
    dist.all_reduce_sum(stats)
    g_loss, g_correct, g_seen = (float(v) for v in stats)
    return {"epoch": epoch + 1, "iteration": f.it, "loss": g_loss / max(g_seen, 1.0),
            "train_acc": 100.0 * g_correct / max(g_seen, 1.0), "val_acc": _validate(f, epoch),
            "lr": lr, "images_per_s": g_seen / max(dt, 1e-9)}  # fmt: skip


def _step(f: _Fit, x: torch.Tensor, y: torch.Tensor, lr: float) -> tuple[torch.Tensor, torch.Tensor]:
    """One SGD step at learning rate ``lr``: forward (autocast), backward, optional clipping."""
    for group in f.opt.param_groups:
        group["lr"] = lr
    with _autocast(f.device, f.adt):
        logits = f.run_model(x)
        loss = f.criterion(logits.float(), y)
    f.opt.zero_grad(set_to_none=True)
    f.scaler.scale(loss).backward()
    if f.cfg.grad_clip:
        f.scaler.unscale_(f.opt)
        nn.utils.clip_grad_norm_(f.net.parameters(), f.cfg.grad_clip)
    f.scaler.step(f.opt)
    f.scaler.update()
    return logits, loss


def _validate(f: _Fit, epoch: int) -> float:
    """Validation accuracy when due (every ``eval_every`` epochs and the last); keeps the best weights."""
    if f.val_set is None or not ((epoch + 1) % f.cfg.eval_every == 0 or epoch == f.n_epochs - 1):
        return float("nan")
    val_acc = accuracy(f.net, f.val_set, device=f.device, norm=f.feeder,
                       batch=max(f.cfg.batch_size * 2 // dist.world_size(), 1), amp=f.adt)  # fmt: skip
    if f.best["acc"] is None or val_acc > f.best["acc"]:
        f.best = {"acc": val_acc, "epoch": epoch + 1, "state": _cpu_state(f.net)}
    return val_acc


def _finish(f: _Fit) -> TrainResult:
    """Select the best or last weights, write the checkpoint(s), the log and the finished manifest."""
    cfg, history, best, net, info, out = f.cfg, f.history, f.best, f.net, f.info, f.out
    last_val = history[-1]["val_acc"] if history else float("nan")
    selected = "best" if cfg.select == "best" and best["state"] is not None else "last"
    last_state = _cpu_state(net)
    if selected == "best":
        net.load_state_dict(best["state"])
    net.eval()
    full_meta = dict(f.meta or {})
    full_meta.setdefault("model", type(net).__name__)
    full_meta.setdefault("num_classes", info.get("num_classes"))
    full_meta.setdefault("in_chans", info.get("channels"))
    full_meta.update({
        "input_size": [info.get("channels"), *(info.get("image_size") or [None, None])],
        "mean": list(info["mean"]), "std": list(info["std"]), "dataset": info.get("name"),
        "classes": info.get("classes"), "seed": cfg.seed, "train_config": cfg.to_dict(), "selected": selected,
        "metrics": {"best_val_acc": best["acc"], "best_epoch": best["epoch"],
                    "last_val_acc": None if math.isnan(last_val) else last_val,
                    "last_train_acc": history[-1]["train_acc"] if history else None,
                    "epochs": f.n_epochs, "iterations": f.it},
    })  # fmt: skip
    ck: Path | None = None
    if out is not None and f.main:
        from robustbench_act.checkpoint import save_checkpoint

        ck = save_checkpoint(out, net, full_meta)
        if selected == "best":
            save_checkpoint(out / "last", _LoadedState(last_state), {**full_meta, "selected": "last"})
        _write_log(out, history)
        manifest = _manifest(cfg, f.device, info, f.val_set, status="finished", total=f.total, n_epochs=f.n_epochs)
        manifest["metrics"] = full_meta["metrics"]
        manifest["started"] = f.started or manifest["started"]
        manifest["time_s"] = history[-1]["time"] if history else 0.0
        atomic_write_json(out / MANIFEST_NAME, manifest)
    dist.barrier()
    return TrainResult(model=net, history=pd.DataFrame(history, columns=list(LOG_COLUMNS)), best_val_acc=best["acc"],
                       best_epoch=best["epoch"], last_val_acc=None if math.isnan(last_val) else last_val,
                       selected=selected, iterations=f.it, out_dir=out, checkpoint=ck, meta=full_meta)  # fmt: skip


class _LoadedState(nn.Module):
    """A stand-in module exposing a saved state dict (to write the 'last' checkpoint)."""

    def __init__(self, state: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self._state = state

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:  # type: ignore[override]
        return self._state

    def parameters(self, recurse: bool = True) -> Iterator[nn.Parameter]:  # type: ignore[override]
        return iter(())


def _first(ds: Any, n: int) -> Any:
    if isinstance(ds, ImageDataset):
        return ds.subset(range(n))
    return torch.utils.data.Subset(ds, list(range(n)))


def _check_finite(bad_at: torch.Tensor, loss_sum: torch.Tensor, epoch: int, out: Path | None,
                  history: list[dict[str, Any]], main: bool, *, autocast: bool) -> None:  # fmt: skip
    """Raise TrainingDivergedError when some iteration produced a NaN/inf loss (one device sync).

    Under DDP the earliest bad iteration over all ranks is agreed on, so all ranks stop together.
    """
    never = torch.iinfo(torch.long).max
    first = torch.where(bad_at < 0, torch.full_like(bad_at, never), bad_at)
    dist.all_reduce_min(first)
    i = int(first)
    if i == never:
        return
    loss = float(loss_sum)
    where = "not written (no output folder)"
    word = "nan" if math.isnan(loss) else ("inf" if math.isinf(loss) else f"{loss:.4g}")
    message = (f"training diverged at epoch {epoch + 1} iteration {i + 1} (loss={word}); "
               f"log kept at {out / LOG_NAME if out is not None else where}; "
               f"lower --lr{' or use --amp none' if autocast else ''}")  # fmt: skip
    if out is not None and main:
        _write_log(out, history)
        _mark_diverged(out, message, epoch + 1, i + 1)
    raise TrainingDivergedError(message)


def _mark_diverged(out: Path, message: str, epoch: int, iteration: int) -> None:
    """Record the divergence in the manifest (status "diverged"): it is a result, not a crash."""
    from robustbench_act.fileio import read_json

    path = out / MANIFEST_NAME
    manifest = read_json(path, "manifest") if path.is_file() else {}
    manifest.update(status="diverged", error=message, diverged_at={"epoch": epoch, "iteration": iteration})
    atomic_write_json(path, manifest)






# ----------------------------------------------------------------------------- one call


def train_model(
    model_name: str,
    *,
    dataset: str,
    out_dir: str | Path | None,
    config: TrainConfig,
    activation: str | None = None,
    order: str = "conventional",
    root: str | Path | None = None,
    download: bool = False,
    resume: bool = False,
    progress: bool = True,
    image_size: int | None = None,
    model_kwargs: dict[str, Any] | None = None,
    distributed: bool | None = None,
) -> TrainResult:
    """Load the data, build (seeded) or fine-tune the model, train, write the checkpoint.

    ``distributed=False`` trains in this process alone inside a torchrun job (see train()).
    """
    from robustbench_act.data import load_dataset

    train_set = load_dataset(dataset, split="train", root=root, download=download,
                             limit=config.limit, image_size=image_size)  # fmt: skip
    if not isinstance(train_set, ImageDataset):
        raise UserError(f"{dataset} is an evaluation-only dataset; train on its clean counterpart")
    if config.recipe == "finetune" or config.checkpoint:
        if not config.checkpoint:
            raise UserError("the finetune recipe needs --checkpoint PATH (a local checkpoint)")
        model, meta = prepare_finetune(config.checkpoint, train_set, activation=activation, config=config)
        if meta.get("num_classes") not in (None, train_set.num_classes):
            raise UserError(
                f"checkpoint has {meta['num_classes']} classes, {dataset} has {train_set.num_classes}"
            )
    else:
        from robustbench_act.models import build_model

        torch.manual_seed(derive_seed("init", config.seed))
        model = build_model(model_name, num_classes=train_set.num_classes, activation=activation,
                            order=order, in_chans=train_set.channels, **(model_kwargs or {}))  # fmt: skip
        meta = {"model": model_name, "num_classes": train_set.num_classes, "activation": activation,
                "order": order, "in_chans": train_set.channels}  # fmt: skip
        if model_kwargs:
            meta["model_kwargs"] = dict(model_kwargs)
    meta["dataset_spec"] = dataset
    return train(model, train_set, config=config, out_dir=out_dir, resume=resume,
                 progress=progress, meta=meta, distributed=distributed)  # fmt: skip
