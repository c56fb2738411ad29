"""Run orchestration: the embedded default (train on digits, evaluate, compare) and checkpoint runs.

``run_default`` trains ``cnn_small`` once per activation on scikit-learn's bundled digits
(torch seeded identically before each build, so every activation starts from comparable
weights; the ``digits`` training recipe), saves each model under ``<out>/models/<act>/``,
then evaluates all of them together in ONE :func:`~robustbench_act.evaluate.evaluate_tables`
call (paired: every model sees the same corrupted images) and writes the results store.
``run_models`` is the shared tail: store begin/resume, evaluation with a per-cell flush,
finalisation and the summary; ``run_checkpoints`` loads checkpoints and calls it.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from robustbench_act.checkpoint_eval import (  # noqa: F401  (re-exported)
    check_classes,
    checkpoint_normalization,
    load_models,
    preprocessing_modules,
)
from robustbench_act.errors import UserError, unknown
from robustbench_act.parsing import (  # noqa: F401  (part of this module's API)
    parse_corruptions,
    parse_seeds,
    parse_severities,
    resolve_device,
)

DEFAULT_ACTIVATIONS = ("relu", "silu", "gelu", "la_silu", "la_hardsilu", "an_swish")
DEFAULT_MODEL = "cnn_small"
DEFAULT_DATASET = "digits"
DEFAULT_SEVERITIES = (1, 2, 3, 4, 5)
DEFAULT_SEEDS = (0, 1, 2)  # training seeds of the default run: enough for paired tests
DEFAULT_CORRUPTION_SEED = 0  # the benchmark data is fixed, whatever the training seeds
DEFAULT_BATCH_SIZE = 512
MODELS_DIR = "models"


@dataclass
class RunOutcome:
    """What a run produced: its folder, status, summary and metrics."""

    path: Path
    status: str
    summary: pd.DataFrame
    metrics: pd.DataFrame
    manifest: dict[str, Any]


# ----------------------------------------------------------------------------- option parsing



def parse_list(spec: str | Sequence[str] | None) -> list[str]:
    """'a,b,c' or a list -> names (an empty item is refused; see parsing.parse_names)."""
    from robustbench_act.parsing import parse_names

    return parse_names(spec, "list")


def stream_version() -> int:
    """The corruptions' random-stream version in force (recorded in every evaluation manifest)."""
    from corruptions.streams import stream_version as current

    return current()


def frost_provenance(corruptions: Sequence[str]) -> dict[str, Any] | None:
    """Where the frost corruption's textures come from (photographs or procedural), when frost is run."""
    if "frost" not in corruptions:
        return None
    from corruptions.frost import frost_info

    return frost_info()




def _slug(text: str) -> str:
    s = re.sub(r"[^A-Za-z0-9_.-]+", "-", text.strip()).strip("-.")
    return s[-40:] or "run"


def default_out(dataset: str, label: str = "") -> Path:
    """``results/<dataset>[-label]-<UTC timestamp>`` (a numbered suffix when taken)."""
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    base = Path("results") / "-".join(p for p in (_slug(dataset.replace(":", "-")), label, stamp) if p)
    out, k = base, 2
    while out.exists():
        out = base.with_name(f"{base.name}-{k}")
        k += 1
    return out


def _agree(value: Any) -> Any:
    """Rank 0's value on every rank (no-op in one process)."""
    from robustbench_act import distributed as dist

    return dist.broadcast_object(value)


def _checked(fn: Callable[[], Any]) -> Any:
    """Run ``fn`` on rank 0 only and share its result or its UserError with every rank."""
    from robustbench_act import distributed as dist

    if not dist.is_distributed():
        return fn()
    box: tuple[str, Any]
    if dist.is_main_process():
        try:
            box = ("ok", fn())
        except UserError as exc:
            box = ("error", str(exc))
    else:
        box = ("ok", None)
    box = dist.broadcast_object(box)
    if box[0] == "error":
        raise UserError(box[1])
    return box[1]


# ----------------------------------------------------------------------------- shared tail


def summarise_with(metrics: pd.DataFrame, baseline: str | pd.DataFrame | None) -> pd.DataFrame:
    """``metrics.summarise`` with ``baseline`` an activation, a metrics table, or "alexnet"."""
    from robustbench_act.metrics import summarise

    if isinstance(baseline, str) and baseline.lower() == "alexnet":
        return summarise(metrics, alexnet=True)
    return summarise(metrics, baseline=baseline)


def check_baseline(baseline: str | pd.DataFrame | None, activations: Sequence[str]) -> None:
    """A baseline activation name must be one of the evaluated activations (checked before running)."""
    if not isinstance(baseline, str) or baseline.lower() == "alexnet":
        return
    from robustbench_act.activations import canonical_spec

    try:
        spec = canonical_spec(baseline)
    except UserError:
        spec = baseline
    if spec not in activations and baseline not in activations:
        raise unknown("--baseline activation", baseline, [*activations, "alexnet", "a results folder"])


def check_plugins(corruptions: Sequence[str], severities: Sequence[int], dataset: Any, *, seed: int = 0,
                  preset: str | None = None, also: Sequence[str] = ()) -> None:  # fmt: skip
    """Run each plug-in corruption (and those in ``also``) once on the first image at every
    severity, before any output.

    Plug-ins are user code and some built-ins read user files (frost photographs): one
    that fails then fails here, in one line naming it (see ``corruptions.apply``), rather
    than after an output folder was started.
    """
    import corruptions as corr_pkg

    plugins = [c for c in corruptions if corr_pkg.get(c).source != "builtin" or c in also]
    if not plugins or not hasattr(dataset, "__getitem__") or len(dataset) == 0:
        return
    x = torch.as_tensor(dataset[0][0])[None]
    for name in plugins:
        for s in severities:
            corr_pkg.apply(x, name, int(s), seed=seed, indices=[0], preset=preset)


def run_models(models: Mapping[str, nn.Module], info: Mapping[str, Mapping[str, Any]], dataset: Any, *,
               out: str | Path, **options: Any) -> RunOutcome:
    """Evaluate ``models`` into the results store at ``out`` (resumable) and summarise.

    Options as :func:`_run_models`. The folder is locked while it is written (a second
    writer is refused); a run that fails before finishing any cell leaves no folder behind.
    """
    from robustbench_act import distributed as dist
    from robustbench_act.results import RunStore

    with RunStore(out).guard(active=dist.is_main_process()):
        return _run_models(models, info, dataset, out=out, **options)


def _run_models(models: Mapping[str, nn.Module], info: Mapping[str, Mapping[str, Any]], dataset: Any, *,
               out: str | Path, config: dict[str, Any], corruptions: Sequence[str],
               severities: Sequence[int], probes: str = "all", seed: int = 0,
               batch_size: int = DEFAULT_BATCH_SIZE, device: torch.device | None = None,
               amp: str | None = None, resume: bool = False, preset: str | None = None,
               clean: Any = None, progress: Callable[[dict[str, Any]], None] | None = None,
               on_cell_done: Callable[[Any], None] | None = None,
               baseline: str | pd.DataFrame | None = None, num_workers: int = 0,
               begun: str | None = None, manifest: dict[str, Any] | None = None,
               normalization: Mapping[str, tuple[Sequence[float], Sequence[float]]] | None = None,
               ) -> RunOutcome:
    """Evaluate ``models`` into the results store at ``out`` (resumable) and summarise.

    ``normalization[key]`` = (mean, std) a model was trained with (else the dataset's).
    """
    from robustbench_act import distributed as dist
    from robustbench_act.evaluate import evaluate_tables
    from robustbench_act.manifest import base_manifest
    from robustbench_act.results import RunStore, cell_order, load_run

    out = Path(out)
    store = RunStore(out)
    main = dist.is_main_process()
    run = out.name
    if manifest is None:
        config = {**config, "frost": config.get("frost", frost_provenance(corruptions)),
                  "streams": config.get("streams", stream_version())}  # fmt: skip
        manifest = {**base_manifest(seed=seed, config=config, device=device), "run": run}
    if begun is None:
        check_plugins(corruptions, severities, dataset, seed=seed, preset=preset)
        begun = _checked(lambda: store.begin(manifest, resume=resume))
    if begun == "complete":
        r = load_run(out, samples=False)
        return RunOutcome(out, "already complete", summarise_with(r.metrics, _canonical_baseline(baseline)), r.metrics,
                          r.manifest)
    skip = _agree(sorted(store.done_cells()) if main else None)

    def flush(cell: Any) -> None:
        if main:
            store.write_cell(cell)
        if on_cell_done is not None:
            on_cell_done(cell)

    evaluate_tables(models, dataset, corruptions=corruptions, severities=severities, probes=probes,
                    seed=seed, batch_size=batch_size, device=device, amp=amp, run=run, info=info,
                    preset=preset, clean=clean, on_cell_done=flush, skip_cells=skip,
                    progress=progress, num_workers=num_workers, keep_tables=False,
                    normalization=normalization)
    status = "complete"
    summary = pd.DataFrame()
    metrics = pd.DataFrame()
    if main:
        order = cell_order(corruptions, severities, clean=config.get("clean", True))
        finished = {**manifest, **{k: v for k, v in (store_manifest(out) or {}).items()
                                   if k in ("started", "resumed")}}
        base = _canonical_baseline(baseline)
        metrics = store.finalize(finished, order=order, summarise_fn=lambda m: summarise_with(m, base))
        summary = summarise_with(metrics, base)
        manifest = finished
    dist.barrier()
    return RunOutcome(out, status, summary, metrics, manifest)


def store_manifest(out: Path) -> dict[str, Any] | None:
    """The manifest currently in a run folder (None when absent)."""
    from robustbench_act.results import read_manifest

    return read_manifest(out)


# ----------------------------------------------------------------------------- the default


def _dataset_check(ds: Any, spec: str) -> None:
    if not hasattr(ds, "__getitem__"):
        raise UserError(f"{spec} is a precomputed corruption set; the default pipeline trains on a "
                        "clean dataset (use --dataset digits)")


def run_default(activations: Sequence[str] = DEFAULT_ACTIVATIONS, out: str | Path | None = None,
                seeds: int | Sequence[int] = DEFAULT_SEEDS, *, model: str = DEFAULT_MODEL,
                order: str = "conventional", dataset: str = DEFAULT_DATASET,
                corruptions: str | Sequence[str] = "all", severities: str | Sequence[int] = DEFAULT_SEVERITIES,
                probes: str = "all", batch_size: int = DEFAULT_BATCH_SIZE,
                device: str | torch.device | None = None, amp: str | None = None, limit: int | None = None,
                resume: bool = False, progress: Callable[[dict[str, Any]], None] | None = None,
                on_cell_done: Callable[[Any], None] | None = None, train_progress: bool = False,
                baseline: str | None = None, epochs: int | None = None, preset: str | None = None,
                on_trained: Callable[[str, Any], None] | None = None,
                corruption_seed: int = DEFAULT_CORRUPTION_SEED,
                spec: dict[str, Any] | None = None) -> RunOutcome:  # fmt: skip
    """Train ``model`` per activation and training seed on digits (the ``digits`` recipe) and
    evaluate all of them together on one set of corrupted images.

    ``seeds`` seed initialisation, data order and augmentation (several: mean +- sd and paired
    tests across seeds); ``corruption_seed`` keys the corruptions, the same for every model
    (the benchmark data is fixed, like CIFAR-10-C's one file).
    """
    from robustbench_act import distributed as dist
    from robustbench_act.activations import canonical_spec
    from robustbench_act.data import load_dataset
    from robustbench_act.models import check_model_name, check_order
    from robustbench_act.probes import require_level
    from robustbench_act.results import RunStore
    from robustbench_act.train import make_config

    check_model_name(model)  # before the output folder exists
    check_order(order)
    specs = _default_specs(activations, canonical_spec)
    seed_list = parse_seeds(seeds)
    probes = require_level(probes)
    sevs = parse_severities(severities)
    corrs = parse_corruptions(corruptions)
    dev = resolve_device(device)
    check_baseline(baseline, specs)
    test = load_dataset(dataset, split="test", limit=limit)
    _dataset_check(test, dataset)
    cfg = make_config("digits" if dataset == "digits" else "paper", seed=seed_list[0],
                      device=str(dev), epochs=epochs)
    out = Path(out) if out is not None else Path(_agree(str(default_out(dataset, "default"))))
    models_info = [{"model": model, "activation": a, "order": order, "seed": sd} for a in specs for sd in seed_list]
    config = {
        "mode": "default", "dataset": dataset, "dataset_name": test.name, "model": model,
        "order": order, "activations": specs, "seeds": seed_list, "corruptions": corrs, "severities": sevs,
        "corruption_seed": int(corruption_seed), "preset": preset, "limit": limit, "n_images": len(test),
        "num_classes": test.num_classes, "batch_size": batch_size, "probes": probes, "amp": amp,
        "train": cfg.to_dict(), "world_size": dist.world_size(), "clean": True, "frost": frost_provenance(corrs),
        "streams": stream_version(), "models": models_info, "spec": spec,
    }  # fmt: skip
    from robustbench_act.manifest import base_manifest

    store = RunStore(out)
    manifest = {**base_manifest(seed=seed_list[0], config=config, device=dev), "run": out.name}
    check_plugins(corrs, sevs, test, seed=int(corruption_seed), preset=preset)
    begun = _checked(lambda: store.begin(manifest, resume=resume))
    models: dict[str, nn.Module] = {}
    info: dict[str, dict[str, Any]] = {}
    with store.guard(active=dist.is_main_process()):  # locked; removed again if nothing finished
        if begun != "complete":
            for row in models_info:
                key = f"{row['activation']}/s{row['seed']}"
                folder = out / MODELS_DIR / f"{_slug(row['activation'])}-s{row['seed']}"
                models[key] = _trained_model(model, dataset, folder, dataclasses.replace(cfg, seed=row["seed"]), row,
                                             resume=resume, device=dev, train_progress=train_progress,
                                             on_trained=on_trained)  # fmt: skip
                info[key] = row
        return run_models(models, info, test, out=out, config=config, corruptions=corrs, severities=sevs,
                          probes=probes, seed=int(corruption_seed), batch_size=batch_size, device=dev, amp=amp,
                          resume=resume, preset=preset, progress=progress, on_cell_done=on_cell_done,
                          baseline=baseline, begun=begun, manifest=manifest)


def _default_specs(activations: str | Sequence[str], canonical: Callable[[str], str]) -> list[str]:
    acts = parse_list(activations) if isinstance(activations, str) else list(activations)
    if not acts:
        raise UserError("--activations is empty: name at least one activation (see actbench activations)")
    specs = [canonical(a) for a in acts]
    if len(set(specs)) != len(specs):
        raise UserError(f"--activations lists an activation twice: {', '.join(acts)}")
    return specs


def _trained_model(model: str, dataset: str, folder: Path, cfg: Any, row: Mapping[str, Any], *, resume: bool,
                   device: torch.device, train_progress: bool,
                   on_trained: Callable[[str, Any], None] | None) -> nn.Module:  # fmt: skip
    """Train one (activation, seed) into ``folder`` unless a finished checkpoint is there; load it."""
    from robustbench_act import distributed as dist
    from robustbench_act.checkpoint import load_checkpoint
    from robustbench_act.train import train_model

    if _agree(not _trained(folder)):  # under torchrun every rank trains (DDP)
        result = train_model(model, dataset=dataset, out_dir=folder, config=cfg, activation=row["activation"],
                             order=row["order"], resume=resume, progress=train_progress)  # fmt: skip
        if on_trained is not None and dist.is_main_process():
            on_trained(f"{row['activation']} (seed {row['seed']})", result)
    dist.barrier()
    net, _ = load_checkpoint(folder, device=device)
    return net


def _canonical_baseline(baseline: str | pd.DataFrame | None) -> str | pd.DataFrame | None:
    if not isinstance(baseline, str) or baseline.lower() == "alexnet":
        return baseline
    from robustbench_act.activations import canonical_spec

    try:
        return canonical_spec(baseline)
    except UserError:
        return baseline


def _trained(folder: Path) -> bool:
    """A finished training output: checkpoint files and a manifest saying "finished"."""
    import json

    from robustbench_act.checkpoint import is_checkpoint

    if not is_checkpoint(folder):
        return False
    try:
        return json.loads((folder / "manifest.json").read_text(encoding="utf-8")).get("status") == "finished"
    except (OSError, ValueError):
        return False


# ----------------------------------------------------------------------------- checkpoints
