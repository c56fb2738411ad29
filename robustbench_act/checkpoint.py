"""Checkpoints: ``model.safetensors`` (weights) + ``model.json`` (how to rebuild and normalise).

This project's format is a folder holding both files (``save_checkpoint(DIR, ...)``), or a
file stem (``save_checkpoint("x/best.safetensors", ...)`` writes ``x/best.safetensors``
and ``x/best.json``).  The JSON records the model name, ``num_classes``, activation spec,
order, ``in_chans``, ``input_size`` [C, H, W], ``mean``/``std`` for input normalisation,
the dataset and its classes, the training config, seed, metrics, git commit and versions;
:func:`load_checkpoint` rebuilds the network with ``models.build_model`` from it.

Every checkpoint folder also gets a timm-style ``config.json`` (:mod:`robustbench_act.hub`),
and ``local-dir:DIR`` / ``hf-hub:ORG/NAME`` folders in timm's layout load too, as do the
LayerAct authors' released CIFAR ResNets (:mod:`robustbench_act.layeract_checkpoints`).
Plain torch/timm state-dict files (``.pth``/``.pt``/``.bin``/``.safetensors``) load too when
the caller names the architecture (``model=`` a module, or a model name plus arch kwargs).
Pickles are always read with ``torch.load(weights_only=True)``: a file that needs code
execution to unpickle is refused, never run.
"""

from __future__ import annotations

import json
import os
import pickle
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from robustbench_act.errors import UserError
from robustbench_act.fileio import atomic_write, atomic_write_json

FORMAT = "actbench-checkpoint"
FORMAT_VERSION = 1
WEIGHTS_NAME = "model.safetensors"
META_NAME = "model.json"
PLAIN_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt", ".safetensors")
WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "state_dict_ema", "model_ema")
ARCH_KEYS = ("num_classes", "activation", "order", "in_chans")


def checkpoint_paths(path: str | Path) -> tuple[Path, Path]:
    """(weights file, metadata file) for a checkpoint folder or file stem."""
    p = Path(path)
    if p.suffix in (".safetensors", ".json"):
        return p.with_suffix(".safetensors"), p.with_suffix(".json")
    return p / WEIGHTS_NAME, p / META_NAME


def is_checkpoint(path: str | Path) -> bool:
    """True when ``path`` is a checkpoint in this project's format (weights + metadata)."""
    w, m = checkpoint_paths(path)
    return w.is_file() and m.is_file()


def _state_for_saving(model: nn.Module | Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CPU, contiguous tensors; shared storage (tied weights) is copied so safetensors accepts it."""
    sd = model.state_dict() if isinstance(model, nn.Module) else dict(model)
    out: dict[str, torch.Tensor] = {}
    seen: set[tuple[int, int]] = set()
    for k, v in sd.items():
        t = v.detach().to("cpu").contiguous()
        key = (t.untyped_storage().data_ptr(), t.untyped_storage().nbytes())
        if t.numel() and key in seen:
            t = t.clone()
        elif t.numel():
            seen.add(key)
        out[k] = t
    return out


def save_checkpoint(path: str | Path, model: nn.Module, meta: dict[str, Any]) -> Path:
    """Write weights then metadata, each atomically; returns the checkpoint folder or stem."""
    from safetensors.torch import save_file

    from robustbench_act.manifest import git_commit, now_iso, versions

    wpath, mpath = checkpoint_paths(path)
    state = _state_for_saving(model)
    full = dict(meta)
    full.setdefault("git_commit", git_commit())
    full.setdefault("versions", versions())
    full.setdefault("saved", now_iso())
    full["format"] = FORMAT
    full["format_version"] = FORMAT_VERSION
    full["weights"] = wpath.name
    full["num_parameters"] = int(sum(p.numel() for p in model.parameters()))
    atomic_write(wpath, lambda p: save_file(state, str(p), metadata={"format": "pt", "producer": FORMAT}))
    if mpath.name == META_NAME and "model" in full:  # a checkpoint folder: timm / hub layout too
        from robustbench_act.hub import CONFIG_NAME, timm_config

        config = timm_config(full, model)
        if config is not None:
            atomic_write_json(mpath.parent / CONFIG_NAME, config)
    atomic_write_json(mpath, full)
    return Path(path)


def read_json(path: Path, what: str) -> Any:
    """A JSON file's content; unreadable or invalid JSON is a one-line UserError naming ``what``."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserError(f"unreadable {what} {path}: {exc}") from exc


def read_meta(path: str | Path) -> dict[str, Any]:
    """The metadata of a checkpoint in this project's format (no weights read)."""
    _, mpath = checkpoint_paths(path)
    if not mpath.is_file():
        raise UserError(f"no checkpoint metadata at {mpath}")
    meta = read_json(mpath, "checkpoint metadata")
    if not isinstance(meta, dict) or "model" not in meta:
        raise UserError(f"{mpath} is not an actbench checkpoint description (no 'model' entry)")
    return meta


def _strip_prefixes(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop DDP / torch.compile wrapper prefixes (``module.``, ``_orig_mod.``): timm's clean_state_dict."""
    from timm.models import clean_state_dict

    return clean_state_dict(sd)


def _unwrap(obj: Any, path: Path, *, ema: bool) -> dict[str, torch.Tensor]:
    """Find the tensor dict inside common wrappers ({'state_dict': ...}, {'model': ...}, ...)."""
    keys = ("state_dict_ema", "model_ema", *WRAPPER_KEYS) if ema else WRAPPER_KEYS
    for _ in range(3):
        if not isinstance(obj, Mapping):
            break
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return _strip_prefixes({str(k): v for k, v in obj.items()})
        inner = next((obj[k] for k in keys if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            break
        obj = inner
    if isinstance(obj, Mapping) and obj:
        tensors = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
        if tensors and len(tensors) >= len(obj) // 2:  # tolerate a few non-tensor extras
            return _strip_prefixes(tensors)
    raise UserError(f"{path} holds no state_dict (expected a dict of tensors, maybe under 'state_dict')")


def read_state_dict(path: str | Path, *, ema: bool = False) -> dict[str, torch.Tensor]:
    """Tensors of a plain state-dict file, safely: safetensors, or a weights-only pickle."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"checkpoint not found: {p}")
    if not os.access(p, os.R_OK):
        raise UserError(f"cannot read checkpoint {p}: permission denied")
    if p.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return _strip_prefixes(load_file(str(p), device="cpu"))
        except (SafetensorError, OSError, ValueError) as exc:
            raise UserError(f"{p} is not a readable safetensors file ({exc})") from exc
    try:
        with warnings.catch_warnings():  # protocol notices from the weights-only unpickler
            warnings.filterwarnings("ignore", category=UserWarning)
            obj = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        msg = str(exc)
        glob = next((ln.strip() for ln in msg.splitlines() if "GLOBAL" in ln), "")
        if glob:
            raise UserError(
                f"refused: {p} is not a plain state_dict; unpickling it would import code ({glob[:160]})"
            ) from exc
        op = next((ln.strip() for ln in msg.splitlines() if "Unsupported" in ln), "")
        why = op or (msg.splitlines() or ["unpickling failed"])[0]
        raise UserError(
            f"{p} is not a readable torch checkpoint (not a weights-only state_dict pickle: {why[:120]})"
        ) from exc
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, zipfile.BadZipFile, TypeError) as exc:
        first = (str(exc).splitlines() or [type(exc).__name__])[0][:160]
        raise UserError(f"{p} is not a readable torch checkpoint ({type(exc).__name__}: {first})") from exc
    return _unwrap(obj, p, ema=ema)


def load_into(model: nn.Module, state: Mapping[str, torch.Tensor], *, source: str | Path, strict: bool = True) -> None:
    """load_state_dict with a one-line error listing up to 5 missing and 5 unexpected keys."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if strict and (missing or unexpected):
        parts = []
        if missing:
            more = f" (+{len(missing) - 5} more)" if len(missing) > 5 else ""
            parts.append(f"missing {len(missing)} keys: {', '.join(missing[:5])}{more}")
        if unexpected:
            more = f" (+{len(unexpected) - 5} more)" if len(unexpected) > 5 else ""
            parts.append(f"unexpected {len(unexpected)} keys: {', '.join(unexpected[:5])}{more}")
        raise UserError(f"weights in {source} do not fit the model: {'; '.join(parts)}")
    bad = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if bad:
        k = bad[0]
        raise UserError(
            f"weights in {source} do not fit the model: {len(bad)} shape mismatches, e.g. {k} "
            f"{tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        )
    model.load_state_dict({k: v for k, v in state.items() if k in own}, strict=strict)


def build_from_meta(meta: Mapping[str, Any]) -> nn.Module:
    """Rebuild the network a checkpoint describes with ``models.build_model``."""
    from robustbench_act.models import build_model

    kwargs = dict(meta.get("model_kwargs") or {})
    try:
        return build_model(
            meta["model"],
            num_classes=int(meta["num_classes"]),
            activation=meta.get("activation"),
            order=meta.get("order") or "conventional",
            in_chans=int(meta.get("in_chans") or 3),
            **kwargs,
        )
    except KeyError as exc:
        raise UserError(f"checkpoint metadata lacks {exc.args[0]!r}") from exc


def load_checkpoint(
    path: str | Path,
    *,
    device: str | torch.device = "cpu",
    model: nn.Module | str | None = None,
    build: bool = True,
    ema: bool = False,
    strict: bool = True,
    download: bool = False,
    **arch: Any,
) -> tuple[nn.Module | None, dict[str, Any]]:
    """Load a checkpoint (this project's format, a timm/hub folder, or a plain state dict with ``model=``).

    ``path`` may be ``local-dir:DIR`` or ``hf-hub:ORG/NAME[@REV]`` (the local Hugging Face
    cache; fetched only with ``download=True``), see :mod:`robustbench_act.hub`. Returns
    ``(model in eval mode on device, metadata)``; with ``build=False`` and no ``model``,
    only the metadata is read and the model is None.
    """
    from robustbench_act import hub

    if hub.is_hub_spec(path):
        return _load_hub(str(path), device=device, model=model, build=build, strict=strict,
                         download=download, arch=arch)
    p = Path(path)
    if is_checkpoint(p):
        meta = read_meta(p)
        if model is None and not build:
            return None, meta
        wpath, _ = checkpoint_paths(p)
        net = _described_model(meta, model, arch, read_state_dict(wpath), source=p, strict=strict)
        return net.to(device).eval(), meta
    if p.is_dir():
        found = [c for c in sorted(p.iterdir()) if c.suffix in PLAIN_SUFFIXES]
        if (p / WEIGHTS_NAME).is_file():
            raise UserError(f"{p} has {WEIGHTS_NAME} but no {META_NAME}; pass the weights file with --model")
        if len(found) == 1 and model is not None:
            p = found[0]
        else:
            raise UserError(f"{p} is not a checkpoint: no {META_NAME} + {WEIGHTS_NAME} in it")
    if not p.exists():
        raise UserError(f"checkpoint not found: {p}")
    if p.suffix == ".json":
        raise UserError(f"{p}: its weights file {p.with_suffix('.safetensors').name} is missing")
    meta: dict[str, Any] = {"format": "state_dict", "source": str(p)}
    no_model = UserError(f"{p} is a plain weights file without {META_NAME}; name its architecture "
                         f"(--model NAME [--num-classes N] [--activation SPEC]) to load it")
    try:
        state = read_state_dict(p, ema=ema)
    except UserError:
        if model is None:  # the first thing to fix is the missing architecture
            raise no_model from None
        raise
    from robustbench_act import layeract_checkpoints as layeract

    if layeract.is_layeract_state(state):  # the LayerAct authors' released CIFAR ResNets
        state, found = layeract.convert_state(state, source=p)
        if not isinstance(model, nn.Module):
            meta = {**layeract.resolve_meta(found, arch, model, p), "source": str(p)}
            model = build_from_meta(meta)
    if model is None:
        raise no_model
    if isinstance(model, nn.Module):
        net = model
    else:
        meta.update({"model": model, **{k: v for k, v in arch.items() if v is not None}})
        if "num_classes" not in meta:
            meta["num_classes"] = _guess_num_classes(state)
        net = build_from_meta(meta)
    load_into(net, state, source=p, strict=strict)
    return net.to(device).eval(), meta


def _load_hub(spec: str, *, device: str | torch.device, model: nn.Module | str | None, build: bool,
              strict: bool, download: bool, arch: Mapping[str, Any]) -> tuple[nn.Module | None, dict[str, Any]]:
    """load_checkpoint for ``local-dir:`` / ``hf-hub:`` specs (a self-describing folder)."""
    from robustbench_act import hub

    folder, meta = hub.describe(spec, download=download)
    if is_checkpoint(folder):
        net, own = load_checkpoint(folder, device=device, model=model, build=build, strict=strict, **arch)
        return net, {**own, "source": spec}
    if model is None and not build:
        return None, meta
    state = read_state_dict(hub.weights_file(folder))
    net = _described_model(meta, model, arch, state, source=spec, strict=strict)
    return net.to(device).eval(), meta


def _described_model(meta: Mapping[str, Any], model: nn.Module | str | None, arch: Mapping[str, Any],
                     state: Mapping[str, torch.Tensor], *, source: str | Path, strict: bool) -> nn.Module:
    """``model`` (a module), or the network ``meta`` describes with the given overrides, loaded with ``state``."""
    if isinstance(model, nn.Module):
        net = model
    else:
        merged = dict(meta)
        if isinstance(model, str):
            merged["model"] = model
        merged.update({k: v for k, v in arch.items() if v is not None})
        net = build_from_meta(merged)
    load_into(net, state, source=source, strict=strict)
    return net


def _guess_num_classes(state: Mapping[str, torch.Tensor]) -> int:
    """Classifier width of a plain state dict (last 2-D weight), for loading without metadata."""
    for k in reversed(list(state)):
        v = state[k]
        if k.endswith("weight") and v.ndim == 2:
            return int(v.shape[0])
    raise UserError("cannot tell the number of classes from the weights; pass --num-classes")
