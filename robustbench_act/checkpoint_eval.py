"""Evaluating checkpoints: load them (this project's format, plain state dicts, timm / Hugging
Face folders), check them against the dataset, resolve each model's preprocessing, and run
the evaluation into a results folder (:func:`run_checkpoints`, what ``actbench run
--checkpoint`` does).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from robustbench_act.errors import UserError


def load_models(checkpoints: Sequence[str | Path], *, device: torch.device, model: str | None = None,
                activation: str | None = None, order: str | None = None,
                num_classes: int | None = None, in_chans: int | None = None, download: bool = False,
                ) -> tuple[dict[str, nn.Module], dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """Load checkpoints (this project's format, timm/hub folders, or plain state dicts with ``model``).

    Keys are unique; ``download`` lets ``hf-hub:`` specs missing from the cache be fetched.
    """
    from robustbench_act import hub
    from robustbench_act.activations import canonical_spec
    from robustbench_act.checkpoint import is_checkpoint, load_checkpoint, read_meta

    models: dict[str, nn.Module] = {}
    info: dict[str, dict[str, Any]] = {}
    metas: list[dict[str, Any]] = []
    for ck in checkpoints:
        arch = {"activation": activation, "order": order, "num_classes": num_classes, "in_chans": in_chans}
        if is_checkpoint(ck) or hub.is_hub_spec(ck):
            # self-describing checkpoints (ours, timm config.json): an override that differs would
            # evaluate trained weights under another network, so it is refused
            saved = read_meta(ck) if is_checkpoint(ck) else hub.describe(ck, download=download)[1]
            given = {"model": model, "activation": activation, "order": order}
            for k, v in given.items():
                if v is None:
                    continue
                old = saved.get(k) or ("conventional" if k == "order" else None)
                same = canonical_spec(v) == canonical_spec(old) if k == "activation" and old else v == old
                if not same:
                    raise UserError(f"checkpoint {ck} was trained with {k} {old!r}, not {v!r}; drop --{k} "
                                    f"(to change it, fine-tune: actbench train --recipe finetune)")
            model_arg, arch = None, {}
        else:
            model_arg = model
        net, meta = load_checkpoint(ck, device=device, model=model_arg, download=download, **arch)
        assert net is not None
        act = str(meta.get("activation") or activation or "default")
        row = {
            "model": str(meta.get("model") or model or type(net).__name__),
            "activation": act,
            "order": str(meta.get("order") or order or "conventional"),
            "seed": int(meta.get("seed") if meta.get("seed") is not None
                        else (meta.get("train_config") or {}).get("seed", 0) or 0),
        }
        key = f"{len(models)}:{act}"
        models[key] = net
        info[key] = row
        metas.append({**{k_: v for k_, v in meta.items() if k_ in (
            "model", "activation", "order", "seed", "num_classes", "classes", "dataset", "format", "source",
            "mean", "std", "input_size")},
            "path": str(ck)})
    return models, info, metas


def checkpoint_normalization(models: Mapping[str, nn.Module], metas: Sequence[Mapping[str, Any]],
                             dataset: Any = None, *, mean: Sequence[float] | None = None,
                             std: Sequence[float] | None = None, normalize: bool = True,
                             ) -> dict[str, Any]:  # fmt: skip
    """Each model's input preprocessing (:func:`preprocess.resolve_input_config`), keyed like
    ``models``: a :class:`~robustbench_act.preprocess.InputConfig` per model."""
    from robustbench_act.preprocess import resolve_input_config

    return {key: resolve_input_config(net, meta, dataset, mean=mean, std=std, normalize=normalize)
            for (key, net), meta in zip(models.items(), metas)}  # fmt: skip


def preprocessing_modules(configs: Mapping[str, Any]) -> dict[str, nn.Module]:
    """The modules of :func:`checkpoint_normalization`'s configs (for ``run_models``)."""
    return {k: cfg.module() for k, cfg in configs.items()}


def check_classes(meta: Mapping[str, Any], dataset: Any, path: str | Path) -> None:
    """A checkpoint must predict the dataset's classes (count, and names when both record them)."""
    n = meta.get("num_classes")
    if n is not None and int(n) != int(dataset.num_classes):
        raise UserError(f"checkpoint {path} predicts {n} classes but {dataset.name} has "
                        f"{dataset.num_classes}; evaluate it on the dataset it was trained for")
    classes = meta.get("classes")
    if classes is None and isinstance(meta.get("dataset"), Mapping):
        classes = meta["dataset"].get("classes")
    ds_classes = getattr(dataset, "classes", None)
    if classes and ds_classes and [str(c) for c in classes] != [str(c) for c in ds_classes]:
        raise UserError(f"checkpoint {path} was trained on classes {list(classes)[:4]}..., "
                        f"not {dataset.name}'s {list(ds_classes)[:4]}...")


def load_baseline(baseline: str | None) -> Any:
    """--baseline as given: an activation name, 'alexnet', or a results folder's metrics table."""
    if baseline is None:
        return None
    p = Path(baseline).expanduser()
    if p.is_dir():
        from robustbench_act.results import load_run

        return load_run(p, samples=False).metrics
    if "/" in baseline or baseline.startswith("."):
        raise UserError(f"--baseline: results folder not found: {baseline}")
    return baseline


def run_checkpoints(spec: Any, *, device: torch.device, baseline: Any,
                    progress: Callable[[dict[str, Any]], None] | None = None,
                    say: Callable[[str], None] | None = None) -> Any:
    """Evaluate the checkpoints of a :class:`~robustbench_act.specs.RunSpec` into its results folder."""
    say = say or (lambda line: None)
    checkpoints, model, activation, order, dataset = spec.checkpoint, spec.model, spec.activation, spec.order, spec.dataset
    root, download, limit, corrs, sevs = spec.root, spec.download, spec.limit, list(spec.corruptions), list(spec.severities)
    from robustbench_act import distributed as dist
    from robustbench_act import pipeline
    from robustbench_act.data import load_dataset

    ds = load_dataset(dataset, split="test", root=root, download=download, limit=limit)
    clean = None
    family = not hasattr(ds, "__getitem__")
    if family:
        avail = set(ds.corruptions())
        missing = [c for c in corrs if c not in avail]
        if missing:
            from robustbench_act.errors import unknown

            if len(missing) == len(corrs):
                raise unknown(f"corruption in {dataset}", missing[0], sorted(avail))
            corrs = [c for c in corrs if c in avail]
            say(f"note: {dataset} lacks {', '.join(missing)}; evaluating the other {len(corrs)}")
        ds.check(corrs, sevs)
        clean = clean_counterpart(dataset, root, limit, ds.path)
        meta_ds = clean if clean is not None else ds.get(corrs[0], sevs[0])
    else:
        meta_ds = ds
    models, info, metas = load_models(
        checkpoints, device=device, model=model, activation=activation, order=order,
        num_classes=meta_ds.num_classes if model else None,
        in_chans=meta_ds.channels if model else None, download=download)
    for meta, ck in zip(metas, checkpoints):
        check_classes(meta, meta_ds, ck)
    for key, net in models.items():
        check_channels(net, meta_ds, checkpoints[int(key.split(":")[0])])
    pipeline.check_baseline(baseline, [info[k]["activation"] for k in models])
    inputs = checkpoint_normalization(models, metas, meta_ds, mean=spec.mean, std=spec.std,
                                      normalize=spec.normalize)  # fmt: skip
    for key, cfg in inputs.items():
        if cfg.source != "dataset" or cfg.input_size not in (None, tuple(getattr(meta_ds, "image_size", ()) or ())):
            size = f", resized to {cfg.input_size[0]}x{cfg.input_size[1]} ({cfg.interpolation}, crop {cfg.crop_pct:g})" \
                if cfg.input_size else ""
            say(f"note: {info[key]['activation']} input: mean/std from the {cfg.source} "
                      f"({list(cfg.mean)}, {list(cfg.std)}){size}")
    n_images = len(meta_ds)
    config = {
        "mode": "checkpoint", "dataset": dataset, "dataset_name": str(meta_ds.name),
        "checkpoints": [str(c) for c in checkpoints], "corruptions": corrs, "severities": sevs,
        "seed": spec.corruption_seed, "corruption_seed": spec.corruption_seed, "preset": spec.preset,
        "limit": limit, "n_images": n_images, "batch_size": spec.batch_size, "probes": spec.probes, "amp": spec.amp,
        "activations": [info[k]["activation"] for k in models], "world_size": dist.world_size(),
        "clean": not family or clean is not None,
        "frost": None if family else pipeline.frost_provenance(corrs), "streams": pipeline.stream_version(),
        "models": [dict(info[k]) for k in models], "checkpoint_meta": metas, "num_classes": meta_ds.num_classes,
        "preprocessing": {k: c.as_dict() for k, c in inputs.items()}, "spec": spec.resume_view(),
    }  # fmt: skip
    out_path = Path(spec.out) if spec.out is not None else Path(pipeline._agree(str(pipeline.default_out(dataset))))
    return pipeline.run_models(models, info, ds, out=out_path, config=config, corruptions=corrs,
                               severities=sevs, probes=spec.probes, seed=spec.corruption_seed,
                               batch_size=spec.batch_size, device=device, amp=spec.amp, resume=spec.resume,
                               preset=spec.preset, clean=clean, progress=progress, baseline=baseline,
                               num_workers=spec.workers, normalization=preprocessing_modules(inputs))


def clean_counterpart(spec: str, root: Path | None, limit: int | None, folder: Path) -> Any:
    """The clean test set aligned with a *-C family (CIFAR only, when it is on disk), else None.

    Looked for under --root (default $ACTBENCH_DATA / ./data) and, for RobustBench's
    layout (``DATA/CIFAR-10-C``), in DATA itself, where RobustBench keeps it.
    """
    from robustbench_act.data import C_FOLDER_NAMES, load_dataset

    kind = spec.partition(":")[0].lower()
    base = {"cifar10-c": "cifar10", "cifar100-c": "cifar100"}.get(kind)
    if base is None:
        return None
    roots: list[Path | None] = [root]
    if root is None and folder.name == C_FOLDER_NAMES[kind]:
        roots.append(folder.parent)
    for where in roots:
        try:
            return load_dataset(base, split="test", root=where, limit=limit)
        except UserError:
            continue
    return None


def check_channels(net: Any, ds: Any, path: Path) -> None:
    first = next((m for m in net.modules() if hasattr(m, "in_channels")), None)
    want = getattr(first, "in_channels", None)
    if want is not None and int(want) != int(ds.channels):
        raise UserError(f"checkpoint {path} takes {want}-channel images but {ds.name} has {ds.channels}")


