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
  float32 on CPU: 87.2% test accuracy (results/cifar10jpeg-fast-resnet20-relu), short of
  the 89% this recipe is meant to reach there: it needs a longer schedule, not yet tuned.
  Batch 256 at lr 0.2 (twice the updates, same epochs) gave 87.3%: short of epochs, not updates.
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
import dataclasses
import hashlib
import math
import sys
import time
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from robustbench_act import distributed as dist
from robustbench_act.data import ImageDataset, dataset_info, dataset_tensors, split_train_val
from robustbench_act.errors import UserError, unknown
from robustbench_act.fileio import (
    atomic_write,
    atomic_write_frame,
    atomic_write_json,
    read_json,
    writing_folder,
)
from robustbench_act.parsing import resolve_device

SCHEDULES = ("multistep", "cosine", "onecycle", "constant")
AMPS = ("bf16", "fp16", "auto")
AUGMENTS = ("crop_flip", "flip", "crop", "none")
SELECTS = ("best", "last")
LOG_COLUMNS = ("epoch", "iteration", "loss", "train_acc", "val_acc", "lr", "images_per_s", "time")
STATE_NAME = "state.pt"
LOG_NAME = "train_log.csv"
MANIFEST_NAME = "manifest.json"
# fields whose change makes a saved state.pt unusable for --resume
_RESUME_KEYS = (
    "epochs", "iterations", "batch_size", "lr", "momentum", "weight_decay", "nesterov",
    "schedule", "milestones", "gamma", "warmup", "label_smoothing", "augment", "crop_padding",
    "val_fraction", "seed", "limit",
)  # fmt: skip


@dataclass
class TrainConfig:
    """Everything that decides a training run (recipe defaults, then file, then CLI)."""

    recipe: str = "paper"
    epochs: int | None = None  # give epochs or iterations
    iterations: int | None = 64000
    batch_size: int = 128  # global batch (all DDP ranks together)
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    nesterov: bool = False
    schedule: str = "multistep"  # multistep | cosine | onecycle | constant
    milestones: tuple[float, ...] = (0.5, 0.75)  # fractions of the run (<=1) or iterations
    gamma: float = 0.1
    warmup: float = 0.0  # epochs of linear warm-up (one-cycle: the rising part)
    label_smoothing: float = 0.0
    amp: str | None = None  # None | bf16 | fp16 | auto (bf16 on CUDA, off on CPU)
    channels_last: bool | None = False  # None: on CUDA only
    augment: str = "crop_flip"  # crop_flip | flip | crop | none
    crop_padding: int = 4
    val_fraction: float = 0.1  # split off the training set when no val_set is given
    select: str = "best"  # checkpoint: best validation accuracy, or the last weights
    seed: int = 0
    device: str = "auto"
    limit: int | None = None  # keep the first N training images
    eval_every: int = 1  # epochs between validation passes (always after the last)
    data_on_device: bool | None = None  # None: when the dataset fits in one tensor
    num_workers: int = 0  # loader processes for datasets decoded per item
    grad_clip: float | None = None
    checkpoint: str | None = None  # finetune: the starting checkpoint
    bn_recalibration_batches: int = 50  # finetune: batches for BN re-estimation
    sync_bn: bool = False  # DDP: convert BatchNorm to SyncBatchNorm (CUDA only)
    compile: bool = False  # run the training forward/backward through torch.compile (inductor)
    check_every: int = 50  # iterations between non-finite-loss checks / progress updates
    extra: dict[str, Any] = field(default_factory=dict)  # free-form notes kept in the manifest

    def validate(self) -> TrainConfig:
        """Raise a one-line UserError for impossible settings; returns self."""
        if self.schedule not in SCHEDULES:
            raise unknown("schedule", self.schedule, SCHEDULES)
        if self.amp is not None and self.amp not in AMPS:
            raise unknown("amp mode", str(self.amp), AMPS)
        if self.augment not in AUGMENTS:
            raise unknown("augmentation", self.augment, AUGMENTS)
        if self.select not in SELECTS:
            raise unknown("checkpoint selection", self.select, SELECTS)
        if (self.epochs is None) == (self.iterations is None):
            raise UserError("give exactly one of epochs and iterations")
        from robustbench_act.inputs import check_numbers

        check_numbers({f.name: getattr(self, f.name) for f in dataclasses.fields(self)})  # ranges
        if any(not math.isfinite(m) or m < 0 for m in self.milestones):
            raise UserError(f"milestones must be finite numbers >= 0, got {list(self.milestones)}")
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (tuples as lists)."""
        d = dataclasses.asdict(self)
        d["milestones"] = list(self.milestones)
        return d


RECIPES: dict[str, dict[str, Any]] = {
    "paper": dict(
        epochs=None, iterations=64000, batch_size=128, lr=0.1, momentum=0.9, weight_decay=1e-4,
        nesterov=False, schedule="multistep", milestones=(0.5, 0.75), gamma=0.1, warmup=0.0,
        label_smoothing=0.0, amp=None, channels_last=False, augment="crop_flip",
        val_fraction=0.1, select="best",
    ),
    "fast": dict(
        epochs=35, iterations=None, batch_size=512, lr=0.4, momentum=0.9, weight_decay=5e-4,
        nesterov=True, schedule="onecycle", warmup=5.0, label_smoothing=0.1, amp="auto",
        channels_last=None, augment="crop_flip", val_fraction=0.0, select="last",
        data_on_device=True, eval_every=5,
    ),
    "finetune": dict(
        epochs=10, iterations=None, batch_size=128, lr=0.01, momentum=0.9, weight_decay=1e-4,
        nesterov=False, schedule="cosine", warmup=0.0, label_smoothing=0.0, amp=None,
        augment="crop_flip", val_fraction=0.1, select="best", bn_recalibration_batches=50,
    ),
    "digits": dict(
        epochs=5, iterations=None, batch_size=64, lr=0.05, momentum=0.9, weight_decay=5e-4,
        nesterov=True, schedule="onecycle", warmup=1.0, label_smoothing=0.0, amp=None,
        channels_last=False, augment="none", val_fraction=0.1, select="best", check_every=20,
    ),
}  # fmt: skip


def config_fields() -> list[str]:
    """Names of the TrainConfig fields (valid keys of config files)."""
    return [f.name for f in dataclasses.fields(TrainConfig)]


def load_config(path: str | Path) -> dict[str, Any]:
    """Read training settings from a TOML or YAML file (top level or a [train] table)."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"config file not found: {p}")
    try:
        if p.suffix == ".toml":
            try:
                import tomllib
            except ImportError:  # Python 3.10: the tomli backport, if installed
                try:
                    import tomli as tomllib
                except ImportError:
                    raise UserError("TOML config files need Python >= 3.11 or `pip install tomli`; "
                                    "use a .yaml file instead") from None
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        elif p.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        else:
            raise UserError(f"config file {p} must be .toml, .yaml or .yml")
    except UserError:
        raise
    except Exception as exc:  # parse errors of either format
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise UserError(f"cannot parse config file {p}: {first}") from exc
    if not isinstance(data, dict):
        raise UserError(f"config file {p} must hold a table of settings")
    if isinstance(data.get("train"), dict):
        data = data["train"]
    valid = config_fields()
    for key in data:
        if key.replace("-", "_") not in valid:
            raise unknown("training setting", key, valid)
    values = {k.replace("-", "_"): v for k, v in data.items()}
    for key, value in values.items():
        problem = _type_problem(key, value)
        if problem:
            raise UserError(f"config file {p}: {key} must be {problem}, got {value!r}")
    return values


def _type_problem(key: str, value: Any) -> str | None:
    """What ``value`` should be for the TrainConfig field ``key`` (None when it fits).

    Config files are untyped (TOML/YAML scalars); the CLI's options are typed by Typer.
    """
    if key == "milestones":
        ok = isinstance(value, list | tuple) and all(_is_number(v) for v in value)
        return None if ok else "a list of numbers"
    if key == "extra":
        return None if isinstance(value, dict) else "a table"
    hint = typing.get_type_hints(TrainConfig)[key]
    args = typing.get_args(hint) or (hint,)
    if value is None:
        return None if type(None) in args else "set (null is not allowed here)"
    kind = next(a for a in args if a is not type(None))
    if kind is bool:
        return None if isinstance(value, bool) else "true or false"
    if kind is int:
        return None if isinstance(value, int) and not isinstance(value, bool) else "an integer"
    if kind is float:
        return None if _is_number(value) else "a number"
    return None if isinstance(value, kind) else ("a string" if kind is str else f"a {kind.__name__}")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def default_recipe(dataset: str, checkpoint: str | None = None) -> str:
    """Recipe when none is named: finetune with a checkpoint, digits for digits, else paper."""
    if checkpoint:
        return "finetune"
    return "digits" if dataset.split(":")[0].lower() == "digits" else "paper"


def make_config(
    recipe: str | None = None, *, config_file: str | Path | None = None, **overrides: Any
) -> TrainConfig:
    """Recipe defaults, then a config file, then explicit overrides (None means 'not given')."""
    from_file = load_config(config_file) if config_file else {}
    name = recipe or from_file.get("recipe") or "paper"
    if name not in RECIPES:
        raise unknown("recipe", name, RECIPES)
    values: dict[str, Any] = {"recipe": name, **RECIPES[name]}
    for layer in (from_file, {k: v for k, v in overrides.items() if v is not None}):
        layer = dict(layer)
        layer.pop("recipe", None)
        if "epochs" in layer and "iterations" not in layer:
            values["iterations"] = None
        if "iterations" in layer and "epochs" not in layer:
            values["epochs"] = None
        values.update(layer)
    valid = set(config_fields())
    bad = [k for k in values if k not in valid]
    if bad:
        raise unknown("training setting", bad[0], valid)
    if values.get("milestones") is not None:
        values["milestones"] = tuple(float(m) for m in values["milestones"])
    return TrainConfig(**values).validate()


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


def derive_seed(*parts: Any) -> int:
    """A stable 63-bit seed from any parts (same inputs, same seed, on every platform)."""
    h = hashlib.sha256("|".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(h[:8], "little") & ((1 << 63) - 1)



def amp_dtype(amp: str | None, device: torch.device) -> torch.dtype | None:
    """Autocast dtype for the amp setting on this device (None: full precision)."""
    if amp is None:
        return None
    if amp == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    return torch.bfloat16 if amp == "bf16" else torch.float16


def _autocast(device: torch.device, dtype: torch.dtype | None) -> Any:
    if dtype is None:
        import contextlib

        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


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


def _crop_flip(
    x: torch.Tensor, offsets: torch.Tensor | None, flips: torch.Tensor | None, pad: int
) -> torch.Tensor:
    """Random crop with zero padding and horizontal flip, for a whole uint8 batch on its device."""
    if offsets is not None and pad > 0:
        b, c, h, w = x.shape
        xp = F.pad(x, (pad, pad, pad, pad))
        dev = x.device
        oy, ox = offsets[:, 0].to(dev), offsets[:, 1].to(dev)
        rows = (oy[:, None] + torch.arange(h, device=dev))[:, None, :, None]
        cols = (ox[:, None] + torch.arange(w, device=dev))[:, None, None, :]
        bi = torch.arange(b, device=dev)[:, None, None, None]
        ci = torch.arange(c, device=dev)[None, :, None, None]
        x = xp[bi, ci, rows, cols]
    if flips is not None:
        f = flips.to(x.device)[:, None, None, None]
        x = torch.where(f, x.flip(3), x)
    return x


class _Batches:
    """Feeds (normalised float images, labels) batches: seeded order, augmentation, sharding."""

    def __init__(self, ds: Any, cfg: TrainConfig, device: torch.device, mean: Any, std: Any,
                 channels_last: bool) -> None:  # fmt: skip
        self.ds = ds
        self.cfg = cfg
        self.device = device
        self.n = len(ds)
        self.world = dist.world_size()
        self.rank = dist.rank()
        if cfg.batch_size % self.world:
            raise UserError(
                f"batch size {cfg.batch_size} is the global batch and must divide by the "
                f"{self.world} processes"
            )
        self.local = cfg.batch_size // self.world
        self.steps = self.n // cfg.batch_size
        if self.steps == 0:
            raise UserError(f"batch size {cfg.batch_size} is larger than the {self.n} training images")
        self.in_memory = _in_memory(ds)
        self.images: torch.Tensor | None = None
        self.labels: torch.Tensor | None = None
        if self.in_memory:
            imgs, labs = dataset_tensors(ds)
            on_dev = cfg.data_on_device if cfg.data_on_device is not None else True
            where = device if on_dev else torch.device("cpu")
            self.images, self.labels = imgs.to(where), labs.to(where)
        self.mean = torch.tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        self.channels_last = channels_last

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 -> float32 (x/255 - mean)/std, as evaluate.Normalize."""
        x = (x.float() / 255.0 - self.mean) / self.std
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def epoch(self, e: int, skip: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches of epoch ``e`` (0-based); all randomness from a generator seeded (seed, e)."""
        cfg = self.cfg
        g = torch.Generator().manual_seed(derive_seed("train-data", cfg.seed, e))
        perm = torch.randperm(self.n, generator=g)
        bsz = cfg.batch_size
        crop = cfg.augment in ("crop_flip", "crop") and cfg.crop_padding > 0
        flip = cfg.augment in ("crop_flip", "flip")
        lo, hi = self.rank * self.local, (self.rank + 1) * self.local
        batches = [perm[s * bsz : (s + 1) * bsz] for s in range(self.steps)]
        augs = []
        for _ in range(self.steps):
            off = torch.randint(0, 2 * cfg.crop_padding + 1, (bsz, 2), generator=g) if crop else None
            fl = torch.rand(bsz, generator=g) < 0.5 if flip else None
            augs.append((off[lo:hi] if off is not None else None, fl[lo:hi] if fl is not None else None))
        local_idx = [b[lo:hi] for b in batches]
        if self.in_memory:
            assert self.images is not None and self.labels is not None
            for s in range(skip, self.steps):
                idx = local_idx[s].to(self.images.device)
                x = self.images[idx].to(self.device, non_blocking=True)
                y = self.labels[idx].to(self.device, non_blocking=True)
                yield self.normalise(_crop_flip(x, *augs[s], cfg.crop_padding)), y
            return
        loader = torch.utils.data.DataLoader(
            self.ds, batch_sampler=[b.tolist() for b in local_idx[skip:]],
            num_workers=cfg.num_workers, pin_memory=self.device.type == "cuda",
        )  # fmt: skip
        for s, (x, y) in enumerate(loader, start=skip):
            x = x.to(self.device, non_blocking=True)
            y = torch.as_tensor(y).to(self.device, non_blocking=True)
            yield self.normalise(_crop_flip(x, *augs[s], cfg.crop_padding)), y


def _in_memory(ds: Any) -> bool:
    base = ds
    while isinstance(base, torch.utils.data.Subset):
        base = base.dataset
    return not isinstance(base, ImageDataset) or base.in_memory


def _eval_batches(ds: Any, batch: int, device: torch.device, norm: _Batches) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """This rank's contiguous shard of ``ds`` in batches (no augmentation)."""
    n = len(ds)
    world, rank = dist.world_size(), dist.rank()
    start, stop = n * rank // world, n * (rank + 1) // world
    if _in_memory(ds):
        imgs, labs = dataset_tensors(ds)
        for s in range(start, stop, batch):
            e = min(s + batch, stop)
            yield norm.normalise(imgs[s:e].to(device)), labs[s:e].to(device)
        return
    sub = torch.utils.data.Subset(ds, list(range(start, stop)))
    for x, y in torch.utils.data.DataLoader(sub, batch_size=batch):
        yield norm.normalise(x.to(device)), torch.as_tensor(y).to(device)


@torch.no_grad()
def accuracy(model: nn.Module, ds: Any, *, device: torch.device, norm: _Batches, batch: int,
             amp: torch.dtype | None) -> float:  # fmt: skip
    """Top-1 accuracy (%) of ``model`` on ``ds`` (sharded and all-reduced under DDP)."""
    was = model.training
    model.eval()
    correct = torch.zeros((), dtype=torch.float64, device=device)
    count = torch.zeros((), dtype=torch.float64, device=device)
    for x, y in _eval_batches(ds, batch, device, norm):
        with _autocast(device, amp):
            out = model(x)
        correct += (out.argmax(1) == y).sum()
        count += len(y)
    dist.all_reduce_sum(correct)
    dist.all_reduce_sum(count)
    model.train(was)
    return float(100.0 * correct / count.clamp_min(1))


def _unwrap_model(model: nn.Module) -> nn.Module:
    while hasattr(model, "module") and isinstance(model.module, nn.Module):
        model = model.module
    return getattr(model, "_orig_mod", model)


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


class _Reporter:
    """Rich progress on a TTY, one plain line per epoch otherwise, nothing when disabled."""

    def __init__(self, enabled: bool, total_iters: int, n_epochs: int) -> None:
        self.enabled = enabled and dist.is_main_process()
        self.rich = self.enabled and sys.stderr.isatty()
        self.total = total_iters
        self.n_epochs = n_epochs
        self.progress: Any = None
        self.task: Any = None
        self.t0 = time.perf_counter()
        self.it0 = 0

    def start(self, done: int) -> None:
        self.it0 = done
        self.t0 = time.perf_counter()
        if self.rich:
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

            self.progress = Progress(
                TextColumn("epoch {task.fields[epoch]}"), BarColumn(),
                TextColumn("it {task.completed}/{task.total}"),
                TextColumn("loss {task.fields[loss]} acc {task.fields[acc]} {task.fields[ips]}"),
                TimeRemainingColumn(), console=Console(stderr=True), transient=False,
            )  # fmt: skip
            self.progress.start()
            self.task = self.progress.add_task(
                "train", total=self.total, completed=done, epoch="-", loss="-", acc="-", ips=""
            )

    def update(self, it: int, epoch: int, loss: float | None = None, acc: float | None = None) -> None:
        if self.progress is not None:
            fields: dict[str, Any] = {"epoch": f"{epoch + 1}/{self.n_epochs}"}
            if loss is not None:
                fields["loss"] = f"{loss:.3f}"
            if acc is not None:
                fields["acc"] = f"{acc:.1f}%"
            self.progress.update(self.task, completed=it, **fields)

    def epoch_end(self, row: Mapping[str, Any]) -> None:
        if not self.enabled:
            return
        val = "" if math.isnan(row["val_acc"]) else f" val {row['val_acc']:.2f}%"
        done = row["iteration"] - self.it0
        rate = (time.perf_counter() - self.t0) / max(done, 1)
        eta = rate * (self.total - row["iteration"])
        line = (
            f"epoch {row['epoch']}/{self.n_epochs} it {row['iteration']}/{self.total} "
            f"loss {row['loss']:.4f} train {row['train_acc']:.2f}%{val} lr {row['lr']:.4g} "
            f"{row['images_per_s']:.0f} img/s eta {eta:.0f}s"
        )
        if self.progress is not None:
            self.progress.update(self.task, completed=row["iteration"], loss=f"{row['loss']:.3f}",
                                 acc=f"{row['train_acc']:.1f}%", ips=f"{row['images_per_s']:.0f} img/s")  # fmt: skip
            self.progress.console.print(line, highlight=False)
        else:
            print(line, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


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


def _fit(model: nn.Module, train_set: Any, cfg: TrainConfig, *, val_set: Any, out: Path | None,
         resume: bool, progress: bool, meta: dict[str, Any] | None) -> TrainResult:  # fmt: skip
    """The body of :func:`train` (the caller holds ``out``'s lock)."""
    main = dist.is_main_process()
    device = resolve_device(cfg.device)
    if cfg.limit is not None and len(train_set) > cfg.limit:
        train_set = _first(train_set, cfg.limit)
    if val_set is None and cfg.val_fraction > 0:
        train_set, val_set = split_train_val(train_set, cfg.val_fraction, cfg.seed)
    info = dataset_info(train_set)
    mean, std = info.get("mean"), info.get("std")
    if mean is None or std is None:
        raise UserError("the training set carries no mean/std; load it with data.load_dataset")
    cl = cfg.channels_last if cfg.channels_last is not None else device.type == "cuda"
    adt = amp_dtype(cfg.amp, device)
    feeder = _Batches(train_set, cfg, device, mean, std, cl)
    steps = feeder.steps
    total = int(cfg.iterations) if cfg.iterations is not None else int(cfg.epochs) * steps
    n_epochs = math.ceil(total / steps)
    # a warm-up longer than 30% of the run (e.g. the fast recipe cut to 2 epochs) is shortened
    warmup_iters = min(int(round(cfg.warmup * steps)), int(0.3 * total))

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
    if cfg.compile:
        # compiles the training step only; validation, checkpoints and state use ``net`` itself
        run_model = torch.compile(run_model)
    opt = torch.optim.SGD(
        net.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
        nesterov=cfg.nesterov and cfg.momentum > 0,
    )
    scaler = torch.amp.GradScaler(device.type, enabled=adt == torch.float16)
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)

    history: list[dict[str, Any]] = []
    best: dict[str, Any] = {"acc": None, "epoch": None, "state": None}
    start_epoch, it, elapsed = 0, 0, 0.0
    state_path = out / STATE_NAME if out is not None else None
    if resume:
        if out is None:
            raise UserError("resume needs an output folder holding state.pt")
        if state_path is not None and state_path.is_file():
            st = _read_state(state_path, cfg, _identity(net, meta, info))
            net.load_state_dict(st["model"])
            opt.load_state_dict(st["optimizer"])
            if st.get("scaler"):
                scaler.load_state_dict(st["scaler"])
            history = list(st["history"])
            best = dict(st["best"])
            start_epoch, it = int(st["epoch"]), int(st["iteration"])
            elapsed = float(history[-1]["time"]) if history else 0.0
    if out is not None and main:
        manifest = _manifest(cfg, device, info, val_set, status="running", total=total, n_epochs=n_epochs)
        atomic_write_json(out / MANIFEST_NAME, manifest)

    reporter = _Reporter(progress, total, n_epochs)
    reporter.start(it)
    t_start = time.perf_counter() - elapsed
    try:
        for epoch in range(start_epoch, n_epochs):
            torch.manual_seed(derive_seed("train-global", cfg.seed, epoch))
            net.train()
            loss_sum = torch.zeros((), dtype=torch.float64, device=device)
            correct = torch.zeros((), dtype=torch.float64, device=device)
            bad_at = torch.full((), -1, dtype=torch.long, device=device)
            seen = 0
            t_epoch = time.perf_counter()
            for x, y in feeder.epoch(epoch):
                if it >= total:
                    break
                lr = cfg.lr * lr_multiplier(cfg, it, total, warmup_iters)
                for group in opt.param_groups:
                    group["lr"] = lr
                with _autocast(device, adt):
                    logits = run_model(x)
                    loss = criterion(logits.float(), y)
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                if cfg.grad_clip:
                    scaler.unscale_(opt)
                    nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
                scaler.step(opt)
                scaler.update()
                ld = loss.detach()
                loss_sum += ld.double() * len(y)
                correct += (logits.detach().argmax(1) == y).sum()
                bad_at = torch.where((bad_at < 0) & ~torch.isfinite(ld), torch.full_like(bad_at, it), bad_at)
                seen += len(y)
                it += 1
                if it % cfg.check_every == 0:
                    _check_finite(bad_at, loss_sum, epoch, out, history, main)
                    if reporter.rich:
                        reporter.update(it, epoch, float(loss_sum / max(seen, 1)), float(100 * correct / max(seen, 1)))
                elif reporter.rich:
                    reporter.update(it, epoch)  # bar only: no device sync
            _check_finite(bad_at, loss_sum, epoch, out, history, main)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            dt = time.perf_counter() - t_epoch
            stats = torch.stack([loss_sum, correct, torch.tensor(float(seen), dtype=torch.float64, device=device)])
            dist.all_reduce_sum(stats)
            g_loss, g_correct, g_seen = (float(v) for v in stats)
            val_acc = float("nan")
            last_epoch = epoch == n_epochs - 1
            if val_set is not None and ((epoch + 1) % cfg.eval_every == 0 or last_epoch):
                val_acc = accuracy(net, val_set, device=device, norm=feeder,
                                   batch=max(cfg.batch_size * 2 // dist.world_size(), 1), amp=adt)  # fmt: skip
                if best["acc"] is None or val_acc > best["acc"]:
                    best = {"acc": val_acc, "epoch": epoch + 1, "state": _cpu_state(net)}
            row = {
                "epoch": epoch + 1, "iteration": it, "loss": g_loss / max(g_seen, 1.0),
                "train_acc": 100.0 * g_correct / max(g_seen, 1.0), "val_acc": val_acc,
                "lr": lr, "images_per_s": g_seen / max(dt, 1e-9),
                "time": time.perf_counter() - t_start,
            }  # fmt: skip
            history.append(row)
            reporter.epoch_end(row)
            if out is not None and main:
                _write_log(out, history)
                _write_state(state_path, net, opt, scaler, history, best, epoch + 1, it, cfg,
                             _identity(net, meta, info))
            dist.barrier()
    finally:
        reporter.close()

    last_val = history[-1]["val_acc"] if history else float("nan")
    selected = "best" if cfg.select == "best" and best["state"] is not None else "last"
    last_state = _cpu_state(net)
    if selected == "best":
        net.load_state_dict(best["state"])
    net.eval()
    frame = pd.DataFrame(history, columns=list(LOG_COLUMNS))
    full_meta = dict(meta or {})
    full_meta.setdefault("model", type(net).__name__)
    full_meta.setdefault("num_classes", info.get("num_classes"))
    full_meta.setdefault("in_chans", info.get("channels"))
    size = info.get("image_size") or [None, None]
    full_meta.update({
        "input_size": [info.get("channels"), *size], "mean": list(mean), "std": list(std),
        "dataset": info.get("name"), "classes": info.get("classes"), "seed": cfg.seed,
        "train_config": cfg.to_dict(), "selected": selected,
        "metrics": {
            "best_val_acc": best["acc"], "best_epoch": best["epoch"],
            "last_val_acc": None if math.isnan(last_val) else last_val,
            "last_train_acc": history[-1]["train_acc"] if history else None,
            "epochs": n_epochs, "iterations": it,
        },
    })  # fmt: skip
    ck: Path | None = None
    if out is not None and main:
        from robustbench_act.checkpoint import save_checkpoint

        ck = save_checkpoint(out, net, full_meta)
        if selected == "best":
            save_checkpoint(out / "last", _LoadedState(last_state), {**full_meta, "selected": "last"})
        _write_log(out, history)
        manifest = _manifest(cfg, device, info, val_set, status="finished", total=total, n_epochs=n_epochs)
        manifest["metrics"] = full_meta["metrics"]
        manifest["time_s"] = history[-1]["time"] if history else 0.0
        atomic_write_json(out / MANIFEST_NAME, manifest)
    dist.barrier()
    return TrainResult(
        model=net, history=frame, best_val_acc=best["acc"], best_epoch=best["epoch"],
        last_val_acc=None if math.isnan(last_val) else last_val, selected=selected,
        iterations=it, out_dir=out, checkpoint=ck, meta=full_meta,
    )  # fmt: skip


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
                  history: list[dict[str, Any]], main: bool) -> None:  # fmt: skip
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
    if out is not None:
        if main:
            _write_log(out, history)
        where = str(out / LOG_NAME)
    word = "nan" if math.isnan(loss) else ("inf" if math.isinf(loss) else f"{loss:.4g}")
    raise TrainingDivergedError(
        f"training diverged at epoch {epoch + 1} iteration {i + 1} (loss={word}); "
        f"log kept at {where}; lower --lr or use --amp none"
    )


def _write_log(out: Path, history: list[dict[str, Any]]) -> None:
    atomic_write_frame(out / LOG_NAME, pd.DataFrame(history, columns=list(LOG_COLUMNS)))


def _write_state(path: Path | None, net: nn.Module, opt: torch.optim.Optimizer, scaler: Any,
                 history: list[dict[str, Any]], best: dict[str, Any], epoch: int, it: int,
                 cfg: TrainConfig, identity: dict[str, Any]) -> None:  # fmt: skip
    if path is None:
        return
    state = {
        "model": _cpu_state(net), "optimizer": opt.state_dict(),
        "scaler": scaler.state_dict() if scaler.is_enabled() else None,
        "history": history, "best": best, "epoch": epoch, "iteration": it,
        "config": cfg.to_dict(), "identity": identity,
        "rng": {"torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []},
    }  # fmt: skip
    atomic_write(path, lambda p: torch.save(state, p))


def _read_state(path: Path, cfg: TrainConfig, identity: dict[str, Any]) -> dict[str, Any]:
    """The saved state of an interrupted run, refused when it trained another model or setting."""
    try:
        st = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise UserError(f"cannot resume: {path} is unreadable ({type(exc).__name__}); delete it to restart") from exc
    if not isinstance(st, dict) or not {"model", "optimizer", "history", "best", "epoch"} <= set(st):
        raise UserError(f"cannot resume: {path} is not a training state written by actbench; delete it to restart")
    saved = {**st.get("config", {}), **st.get("identity", {})}  # states of older versions: no identity
    now = {**cfg.to_dict(), **identity}
    diffs = [k for k in (*_RESUME_KEYS, *identity) if k in saved and saved[k] != now[k]]
    if diffs:
        k = diffs[0]

        def show(v: Any) -> str:
            return "None (the model's own)" if k == "activation" and v is None else repr(v)

        raise UserError(
            f"cannot resume from {path}: it was trained with {k}={show(saved[k])}, now {k}={show(now[k])}; "
            f"use the same settings or a new --out folder"
        )
    return st


def _manifest(cfg: TrainConfig, device: torch.device, info: dict[str, Any], val_set: Any, *,
              status: str, total: int, n_epochs: int) -> dict[str, Any]:  # fmt: skip
    from robustbench_act.manifest import base_manifest, now_iso

    m = base_manifest(seed=cfg.seed, config=cfg.to_dict(), device=device)
    m.update({
        "kind": "train", "status": status, "dataset": info, "total_iterations": total,
        "epochs": n_epochs, "val_size": len(val_set) if val_set is not None else 0,
        "world_size": dist.world_size(),
    })  # fmt: skip
    if status == "finished":
        m["finished"] = now_iso()
    return m


# ----------------------------------------------------------------------------- fine-tuning


@torch.no_grad()
def recalibrate_bn(model: nn.Module, dataset: Any, *, batches: int, batch_size: int, seed: int,
                   device: str | torch.device = "cpu", augment: str = "none") -> int:  # fmt: skip
    """Re-estimate BatchNorm running statistics on training data (after an activation swap).

    ``torch.optim.swa_utils.update_bn`` on the first ``batches`` normalised batches of the
    seeded training order (epochs repeat when the data is shorter): running statistics
    reset, then their cumulative average (momentum None) in train mode; momenta and the
    training flag are restored. Returns the number of BN layers updated.
    """
    from torch.optim.swa_utils import update_bn

    dev = resolve_device(device)
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return 0
    info = dataset_info(dataset)
    cfg = TrainConfig(epochs=1, iterations=None, batch_size=min(batch_size, len(dataset)),
                      augment=augment, seed=seed, val_fraction=0.0)  # fmt: skip
    feeder = _Batches(dataset, cfg, dev, info["mean"], info["std"], channels_last=False)

    def inputs() -> Iterator[torch.Tensor]:
        done, epoch = 0, 0
        while done < batches:
            for x, _ in feeder.epoch(10_000 + epoch):
                yield x
                done += 1
                if done >= batches:
                    return
            epoch += 1

    was, momenta = model.training, [(m, m.momentum) for m in bns]
    try:
        update_bn(inputs(), model)
    finally:  # update_bn restores these itself, but not when a forward raises
        for m, momentum in momenta:
            m.momentum = momentum
        model.train(was)
    return len(bns)


def prepare_finetune(checkpoint: str | Path, train_set: Any, *, activation: str | None,
                     config: TrainConfig) -> tuple[nn.Module, dict[str, Any]]:  # fmt: skip
    """Load a checkpoint, swap its activations (surgery), re-estimate BN statistics."""
    from robustbench_act.checkpoint import load_checkpoint

    device = resolve_device(config.device)
    model, meta = load_checkpoint(checkpoint, device=device)
    assert model is not None
    meta = dict(meta)
    old = meta.get("activation")
    if activation and activation != old:
        from robustbench_act.surgery import swap_activations

        swap_activations(model, activation)
        meta["activation"] = activation
    model.to(device)
    n_bn = recalibrate_bn(model, train_set, batches=config.bn_recalibration_batches,
                          batch_size=config.batch_size, seed=config.seed, device=device)  # fmt: skip
    meta["finetuned_from"] = {"checkpoint": str(checkpoint), "activation": old, "bn_layers_recalibrated": n_bn}
    for k in ("metrics", "train_config", "format", "format_version", "weights", "saved", "selected"):
        meta.pop(k, None)
    return model, meta


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
