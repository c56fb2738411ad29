"""Distributed helpers for ``torchrun`` runs (training and sharded evaluation).

``torchrun --nproc-per-node N -m robustbench_act train ...`` sets ``RANK``/``WORLD_SIZE``/
``LOCAL_RANK``; :func:`init_distributed` then joins the process group (nccl when CUDA is
available, gloo on CPU) and pins each rank to its GPU.  Every helper is a no-op in a single
process, so code calls them unconditionally.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

_LOCAL_DEPTH = 0  # > 0 inside local_only(): helpers act as in a single process


def _dist() -> Any:
    import torch.distributed as td

    return td


def _group_active() -> bool:
    td = _dist()
    return _LOCAL_DEPTH == 0 and td.is_available() and td.is_initialized()


@contextlib.contextmanager
def local_only() -> Iterator[None]:
    """Inside this block every helper behaves as in one process (rank 0 of 1, no collectives).

    For work one rank does alone inside a torchrun job (e.g. rank 0 trains a small model
    while the others wait at a barrier): ``train(..., distributed=False)`` uses it.
    """
    global _LOCAL_DEPTH
    _LOCAL_DEPTH += 1
    try:
        yield
    finally:
        _LOCAL_DEPTH -= 1


def is_distributed() -> bool:
    """True inside an initialised process group with more than one process."""
    return _group_active() and _dist().get_world_size() > 1


def rank() -> int:
    """This process's global rank (0 when not distributed)."""
    return _dist().get_rank() if _group_active() else 0


def world_size() -> int:
    """Number of processes (1 when not distributed)."""
    return _dist().get_world_size() if _group_active() else 1


def local_rank() -> int:
    """Rank within this machine (``LOCAL_RANK``; 0 when not set)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main_process() -> bool:
    """True on rank 0 (or in a single process): the one that writes files and prints."""
    return rank() == 0


def init_distributed(backend: str | None = None, *, timeout_s: float = 1800.0) -> tuple[int, int]:
    """Join the process group when launched by torchrun (``WORLD_SIZE`` > 1); return (rank, world).

    Backend: nccl when CUDA is available, else gloo (override with ``backend``).  With CUDA,
    the current device becomes ``cuda:LOCAL_RANK``.  Idempotent; a no-op in one process.
    """
    td = _dist()
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or not td.is_available():
        return 0, 1
    if not td.is_initialized():
        if backend is None:
            backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local_rank())
        td.init_process_group(backend=backend, timeout=_dt.timedelta(seconds=timeout_s))
    return td.get_rank(), td.get_world_size()


def cleanup() -> None:
    """Leave the process group (if any)."""
    td = _dist()
    if td.is_available() and td.is_initialized():
        td.destroy_process_group()


def barrier() -> None:
    """Wait for all ranks (no-op in one process)."""
    if is_distributed():
        td = _dist()
        if td.get_backend() == "nccl":
            td.barrier(device_ids=[torch.cuda.current_device()])
        else:
            td.barrier()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over all ranks in place and return it (no-op in one process).

    Works for CUDA tensors under gloo and CPU tensors under nccl by staging a copy.
    """
    if not is_distributed():
        return tensor
    td = _dist()
    backend = td.get_backend()
    need_cpu = backend == "gloo" and tensor.device.type != "cpu"
    need_cuda = backend == "nccl" and tensor.device.type != "cuda"
    if need_cpu or need_cuda:
        staged = tensor.to("cpu" if need_cpu else torch.device("cuda", torch.cuda.current_device()))
        td.all_reduce(staged, op=td.ReduceOp.SUM)
        tensor.copy_(staged)
        return tensor
    td.all_reduce(tensor, op=td.ReduceOp.SUM)
    return tensor


def all_reduce_min(tensor: torch.Tensor) -> torch.Tensor:
    """Element-wise minimum of ``tensor`` over all ranks, in place (no-op in one process)."""
    if not is_distributed():
        return tensor
    td = _dist()
    staged = tensor
    if td.get_backend() == "gloo" and tensor.device.type != "cpu":
        staged = tensor.to("cpu")
    elif td.get_backend() == "nccl" and tensor.device.type != "cuda":
        staged = tensor.to(torch.device("cuda", torch.cuda.current_device()))
    td.all_reduce(staged, op=td.ReduceOp.MIN)
    if staged is not tensor:
        tensor.copy_(staged)
    return tensor


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s Python object on every rank (no-op in one process)."""
    if not is_distributed():
        return obj
    box = [obj]
    _dist().broadcast_object_list(box, src=src)
    return box[0]


def shard_range(n: int, rank_: int | None = None, world: int | None = None) -> tuple[int, int]:
    """Contiguous [start, stop) of ``n`` items for a rank (sizes differ by at most one)."""
    r = rank() if rank_ is None else rank_
    w = world_size() if world is None else world
    return n * r // w, n * (r + 1) // w


def all_reduce_sum_many(tensors: list[torch.Tensor]) -> None:
    """In-place sum of several tensors across processes, through one flat float64 buffer."""
    if not is_distributed() or not tensors:
        return
    td = _dist()
    dev = tensors[0].device
    flat = torch.cat([t.reshape(-1).to(device=dev, dtype=torch.float64) for t in tensors])
    if td.get_backend() == "gloo" and flat.device.type != "cpu":
        flat = flat.cpu()
    td.all_reduce(flat)
    off = 0
    for t in tensors:
        k = t.numel()
        t.copy_(flat[off:off + k].view_as(t).to(t))
        off += k


def all_gather_object(obj: Any) -> list[Any]:
    """Every rank's Python object, in rank order (a one-element list in one process)."""
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * world_size()
    _dist().all_gather_object(out, obj)
    return out


def wrap_ddp(model: nn.Module, device: torch.device) -> nn.Module:
    """DistributedDataParallel around ``model`` when distributed, else the model itself."""
    if not is_distributed():
        return model
    from torch.nn.parallel import DistributedDataParallel

    if device.type == "cuda":
        return DistributedDataParallel(model, device_ids=[device.index], output_device=device.index)
    return DistributedDataParallel(model)
