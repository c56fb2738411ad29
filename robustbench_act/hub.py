"""Checkpoints in timm / Hugging Face layout: ``config.json`` beside ``model.safetensors``.

- Writing: every checkpoint folder ``actbench train`` writes also holds a timm-style
  ``config.json`` (``architecture``, ``num_classes``, ``num_features``, ``model_args``,
  ``label_names``, ``pretrained_cfg`` with ``input_size``, ``mean``, ``std``, ...), so
  ``timm.create_model("local-dir:DIR")`` and the hub tooling load the folder. Built-in
  CIFAR nets are named by their timm registration (``cifar_resnet20``; registered when
  ``robustbench_act.models`` is imported) with the activation and order in
  ``model_args``; for a timm architecture with swapped activations timm rebuilds its
  default activations (the ``actbench`` block says which ones the weights were trained
  with, and actbench's loader uses it). torchvision models (``tv:``) get no config.json.
- Reading: ``local-dir:PATH`` (a folder with config.json and model.safetensors or
  pytorch_model.bin; this project's model.json wins when present) and ``hf-hub:ORG/NAME``
  (``@REVISION`` optional), read offline from the local Hugging Face cache
  (``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else ``~/.cache/huggingface/hub``; layout
  ``models--ORG--NAME/snapshots/<commit>/``). Only with ``download=True`` is a missing
  repository fetched, through huggingface_hub when it is installed.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import nn

from robustbench_act.errors import UserError

CONFIG_NAME = "config.json"
HUB_WEIGHTS = ("model.safetensors", "pytorch_model.bin")
PREFIXES = ("hf-hub:", "local-dir:")
SMALL_IMAGE_MAX = 64  # no resize/crop below this side (data.SMALL_IMAGE_MAX)


def is_hub_spec(spec: str | os.PathLike) -> bool:
    """True for ``hf-hub:...`` and ``local-dir:...`` checkpoint specs."""
    return str(spec).startswith(PREFIXES)


# ----------------------------------------------------------------------------- writing


def timm_architecture(model_name: str) -> str | None:
    """The name timm builds ``model_name`` under (built-ins: their timm registration); None for tv:."""
    from robustbench_act.models.timm_entrypoints import BUILTIN_ENTRYPOINTS

    if model_name in BUILTIN_ENTRYPOINTS:
        return BUILTIN_ENTRYPOINTS[model_name].__name__
    if model_name.startswith(("tv:", "torchvision:")):
        return None
    return model_name


def _module_names(model: nn.Module) -> tuple[str | None, str | None]:
    """(first convolution, last linear layer) module names, timm's first_conv / classifier."""
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    return (convs[0] if convs else None), (linears[-1] if linears else None)


def timm_config(meta: Mapping[str, Any], model: nn.Module) -> dict[str, Any] | None:
    """The timm ``config.json`` of a checkpoint described by ``meta`` (None for torchvision models)."""
    arch = timm_architecture(str(meta["model"]))
    if arch is None:
        return None
    from robustbench_act.models.timm_entrypoints import BUILTIN_ENTRYPOINTS

    builtin = meta["model"] in BUILTIN_ENTRYPOINTS
    in_chans = int(meta.get("in_chans") or 3)
    size = list(meta.get("input_size") or [in_chans, 224, 224])
    args: dict[str, Any] = {"in_chans": in_chans, **dict(meta.get("model_kwargs") or {})}
    if builtin:  # our entrypoints rebuild the swapped activations and the order themselves
        args.update(activation=meta.get("activation"), order=meta.get("order") or "conventional")
    first_conv, classifier = _module_names(model)
    small = max(size[1:] or [224]) <= SMALL_IMAGE_MAX
    config: dict[str, Any] = {
        "architecture": arch,
        "num_classes": int(meta["num_classes"]),
        "num_features": getattr(model, "num_features", None),
        "global_pool": "avg",
        "model_args": args,
        "pretrained_cfg": {
            "input_size": size, "fixed_input_size": False, "interpolation": "bilinear",
            "crop_pct": 1.0 if small else 0.875, "crop_mode": "center",
            "mean": list(meta.get("mean") or []), "std": list(meta.get("std") or []),
            "num_classes": int(meta["num_classes"]), "first_conv": first_conv,
            "classifier": classifier, "custom_load": False,
        },
        "actbench": {"model": meta["model"], "activation": meta.get("activation"),
                     "order": meta.get("order") or "conventional"},
    }  # fmt: skip
    if meta.get("classes"):
        config["label_names"] = [str(c) for c in meta["classes"]]
    return config


# ----------------------------------------------------------------------------- locating


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache: $HF_HUB_CACHE, $HUGGINGFACE_HUB_CACHE, $HF_HOME/hub or ~/.cache/..."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return Path(os.environ[var]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "huggingface")
    return Path(home).expanduser() / "hub"


def _split_repo(spec: str) -> tuple[str, str]:
    """('org/name', revision) of an ``hf-hub:org/name[@revision]`` spec."""
    repo, _, rev = spec[len("hf-hub:"):].partition("@")
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", repo):
        raise UserError(f"bad Hugging Face repository {repo!r} in {spec!r}: use hf-hub:ORG/NAME[@REVISION]")
    return repo, rev or "main"


def _cached_snapshot(repo: str, revision: str) -> Path | None:
    """The cached snapshot folder of ``repo`` at ``revision`` (a branch/tag in refs/, or a commit)."""
    base = hf_cache_dir() / f"models--{repo.replace('/', '--')}"
    ref = base / "refs" / revision
    commit = ref.read_text(encoding="utf-8").strip() if ref.is_file() else revision
    snap = base / "snapshots" / commit
    return snap if snap.is_dir() else None


def _download(repo: str, revision: str) -> Path:
    """Fetch the repository's config and weights into the cache with huggingface_hub (``download=True``)."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise UserError(f"hf-hub:{repo} is not in the Hugging Face cache and huggingface_hub is not "
                        "installed to fetch it (pip install huggingface_hub, or copy it into the cache)") from None
    try:
        return Path(snapshot_download(repo, revision=revision, cache_dir=str(hf_cache_dir()),
                                      allow_patterns=[CONFIG_NAME, *HUB_WEIGHTS]))  # fmt: skip
    except Exception as exc:  # network, authentication, unknown repository
        first = (str(exc).splitlines() or [type(exc).__name__])[0][:160]
        raise UserError(f"could not download hf-hub:{repo}@{revision}: {first}") from exc


def resolve_folder(spec: str | os.PathLike, *, download: bool = False) -> Path:
    """The local folder of an ``hf-hub:`` / ``local-dir:`` spec (offline unless ``download``)."""
    text = str(spec)
    if text.startswith("local-dir:"):
        folder = Path(text[len("local-dir:"):]).expanduser()
        if not folder.is_dir():
            raise UserError(f"local-dir checkpoint folder not found: {folder}")
        return folder
    repo, revision = _split_repo(text)
    snap = _cached_snapshot(repo, revision)
    if snap is not None:
        return snap
    if not download:
        raise UserError(f"hf-hub:{repo}@{revision} is not in the Hugging Face cache ({hf_cache_dir()}); "
                        "pass --download to fetch it, or set HF_HUB_CACHE / HF_HOME to the cache holding it")
    return _download(repo, revision)


# ----------------------------------------------------------------------------- reading


def read_config(folder: Path) -> dict[str, Any]:
    """The checkpoint description of a timm ``config.json`` (new nested or legacy flat layout)."""
    from robustbench_act.checkpoint import read_json

    path = folder / CONFIG_NAME
    if not path.is_file():
        raise UserError(f"{folder} has no {CONFIG_NAME} (a timm / Hugging Face checkpoint folder needs one)")
    cfg = read_json(path, "model config")
    if not isinstance(cfg, dict) or "architecture" not in cfg:
        raise UserError(f"{path} is not a timm model config (no 'architecture')")
    pre = dict(cfg.get("pretrained_cfg") or {k: v for k, v in cfg.items() if k != "architecture"})
    args = dict(cfg.get("model_args") or {})
    extra = dict(cfg.get("actbench") or {})
    num_classes = cfg.get("num_classes", pre.get("num_classes"))
    if num_classes is None:
        raise UserError(f"{path} does not say how many classes the model predicts (num_classes)")
    args.pop("num_classes", None)  # timm records it here too; the top-level value decides
    args.pop("pretrained", None)
    in_chans = int(args.pop("in_chans", None) or (pre.get("input_size") or [3])[0])
    activation, order = args.pop("activation", None), args.pop("order", None)
    labels = cfg.get("label_names", pre.get("label_names"))
    return {
        "format": "timm-config", "model": _our_name(str(cfg["architecture"])),
        "num_classes": int(num_classes), "in_chans": in_chans,
        "activation": activation or extra.get("activation"),
        "order": order or extra.get("order") or "conventional", "model_kwargs": args,
        "mean": pre.get("mean"), "std": pre.get("std"), "input_size": pre.get("input_size"),
        "classes": list(labels) if isinstance(labels, (list, tuple)) else None,
    }  # fmt: skip


def _our_name(architecture: str) -> str:
    """A timm architecture name as build_model knows it (cifar_resnet20 -> resnet20)."""
    from robustbench_act.models.timm_entrypoints import BUILTIN_ENTRYPOINTS

    names = {fn.__name__: ours for ours, fn in BUILTIN_ENTRYPOINTS.items()}
    return names.get(architecture, architecture)


def weights_file(folder: Path) -> Path:
    """model.safetensors, else pytorch_model.bin (read weights-only) of a checkpoint folder."""
    found = next((folder / n for n in HUB_WEIGHTS if (folder / n).is_file()), None)
    if found is None:
        raise UserError(f"{folder} has no weights ({' or '.join(HUB_WEIGHTS)})")
    return found


def describe(spec: str | os.PathLike, *, download: bool = False) -> tuple[Path, dict[str, Any]]:
    """(folder, checkpoint metadata) of a hub spec, without reading the weights."""
    from robustbench_act.checkpoint import is_checkpoint, read_meta

    folder = resolve_folder(spec, download=download)
    meta = read_meta(folder) if is_checkpoint(folder) else read_config(folder)
    return folder, {**meta, "source": str(spec)}
