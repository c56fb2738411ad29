"""What a training run writes as it goes: the epoch log, the resumable state, the manifest."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from robustbench_act import distributed as dist
from robustbench_act.errors import UserError
from robustbench_act.fileio import atomic_write, atomic_write_frame
from robustbench_act.train_config import _RESUME_KEYS, LOG_COLUMNS, LOG_NAME, TrainConfig


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}





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


