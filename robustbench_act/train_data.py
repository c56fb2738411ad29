"""Training batches: seeded permutation and crop+flip augmentation on the device, evaluation batches."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from robustbench_act import distributed as dist
from robustbench_act.data import ImageDataset, dataset_tensors
from robustbench_act.errors import UserError
from robustbench_act.train_config import TrainConfig


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


