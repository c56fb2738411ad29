"""``actbench run``: the embedded default, or evaluate checkpoints on clean + corrupted data."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from robustbench_act.errors import UserError

_CORR_HELP = ("Corruptions: all, common, extra, noise, blur, weather, digital, plugins, or name,name; "
              "none for clean data only.")
_DATASET_HELP = ("digits (bundled, offline), cifar10, cifar100 (--download to fetch), imagefolder:PATH, "
                 "cifar10-c:PATH, cifar100-c:PATH, tinyimagenet-c:PATH, imagenet-c:PATH.")


def _user_errors() -> tuple[type[BaseException], ...]:
    types: list[type[BaseException]] = [UserError]
    try:
        from corruptions import CorruptionError

        types.append(CorruptionError)
    except ImportError:  # pragma: no cover
        pass
    return tuple(types)


def _fail(msg: str) -> typer.Exit:
    from robustbench_act.cli.common import print_error

    print_error(msg)
    return typer.Exit(2)


# ----------------------------------------------------------------------------- progress


class _Progress:
    """Rich bars (overall cells, current pass) on a terminal; plain lines otherwise; nothing if quiet."""

    def __init__(self, quiet: bool):
        from robustbench_act import distributed as dist

        self.quiet = quiet or not dist.is_main_process()
        self.console = Console(stderr=True, highlight=False, soft_wrap=True)
        self.rich = not self.quiet and self.console.is_terminal
        self.bar: Any = None
        self.t0 = time.perf_counter()
        self.overall: Any = None
        self.current: Any = None

    def line(self, text: str) -> None:
        """A plain status line (stderr)."""
        if self.quiet:
            return
        if self.bar is not None:
            self.bar.console.print(text, markup=False)
        else:
            self.console.print(text, markup=False)

    def __call__(self, ev: dict[str, Any]) -> None:
        if self.quiet:
            return
        kind = ev.get("event")
        if kind == "plan":
            self.t0 = time.perf_counter()
            if self.rich:
                from rich.progress import (
                    BarColumn,
                    MofNCompleteColumn,
                    Progress,
                    TextColumn,
                    TimeElapsedColumn,
                    TimeRemainingColumn,
                )

                self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                    TimeElapsedColumn(), TimeRemainingColumn(), console=self.console,
                                    transient=True)
                self.bar.start()
                self.overall = self.bar.add_task("cells", total=ev["cells"])
                self.current = self.bar.add_task("clean", total=None)
            else:
                self.line(f"evaluating {ev['cells']} cells in {ev['passes']} passes over the data")
        elif kind == "batch" and self.bar is not None:
            self.bar.update(self.current, description=str(ev["corruption"]), completed=ev["batch"],
                            total=ev["batches"])
        elif kind == "cell" and self.bar is not None:
            self.bar.update(self.overall, completed=ev["done"])
        elif kind == "pass" and self.bar is None:
            self.line(f"[{ev['done']}/{ev['total']} cells] {ev['corruption']} done "
                      f"({time.perf_counter() - self.t0:.1f} s)")

    def trained(self, spec: str, result: Any) -> None:
        """One line per trained model."""
        acc = getattr(result, "best_val_acc", None)
        extra = f", validation accuracy {acc:.1f}%" if isinstance(acc, (int, float)) else ""
        self.line(f"trained {spec}{extra} ({time.perf_counter() - self.t0:.1f} s)")

    def stop(self) -> None:
        """Remove the bars."""
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


# ----------------------------------------------------------------------------- output


def comparison_of(outcome: Any, baseline: Any) -> Any:
    """The run's comparison table (mean +- sd over seeds, paired tests) with its mCE against the
    run's baseline: the same numbers as ``actbench compare <run> --reference <baseline>``."""
    from robustbench_act.compare import compare_runs

    by_activation = isinstance(baseline, str) and baseline.lower() != "alexnet"
    table = compare_runs(outcome.path, reference=baseline if by_activation else None)
    if baseline is not None and not by_activation:  # mCE against AlexNet / another run: summary.csv
        table.columns = [c for c in table.columns if c.key not in ("mce", "rel_mce")]
        label = "AlexNet (ImageNet-C)" if isinstance(baseline, str) else "the --baseline run"
        table.notes.append(f"mCE against {label} is in summary.csv (the table's tests compare "
                           f"with {table.reference})")  # fmt: skip
    return table


def json_report(outcome: Any, table: Any) -> str:
    """JSON of a run: per-model summary rows, group means/sds, tests, metric definitions, notes."""
    from robustbench_act.definitions import definition, is_known

    def clean(v: Any) -> Any:
        v = v.item() if hasattr(v, "item") else v
        return None if isinstance(v, float) and math.isnan(v) else v

    rows = [{k: clean(v) for k, v in rec.items()} for rec in outcome.summary.to_dict(orient="records")]
    keys = [c.key for c in table.columns]
    groups = {g: {k: {"mean": clean(table.frame.at[g, k]), "std": clean(table.frame.at[g, f"{k}_std"]),
                      "n": clean(table.frame.at[g, f"{k}_count"])} for k in keys if k in table.frame}
              for g in table.groups}  # fmt: skip
    tests = [{k: clean(v) for k, v in rec.items()} for rec in table.tests.to_dict(orient="records")]
    defs = {k: definition(k).as_dict() for k in sorted({*keys, *(c for r in rows for c in r)}) if is_known(k)}
    return json.dumps({"summary": rows, "comparison": {"reference": table.reference, "uncertainty": table.uncertainty,
                       "groups": groups, "tests": tests, "notes": table.notes}, "definitions": defs}, indent=2)


# ----------------------------------------------------------------------------- command


def run_command(
    checkpoint: list[Path] | None = typer.Option(
        None, "--checkpoint", "-c", show_default=False,
        help="Checkpoint file or folder written by actbench train, local-dir:DIR (timm layout) or "
             "hf-hub:ORG/NAME[@REV] from the local Hugging Face cache (repeatable: evaluated together)."),
    model: str | None = typer.Option(None, "--model", show_default=False,
                                     help="Model to build (default run: cnn_small) or the architecture of a plain state_dict."),
    activation: str | None = typer.Option(None, "--activation", show_default=False,
                                          help="Activation spec of the model (rebuild a plain state_dict, or one model from scratch)."),
    activations: str | None = typer.Option(None, "--activations", show_default=False,
                                           help="Activations of the default run, comma-separated (default: relu,silu,gelu,la_silu,la_hardsilu,an_swish)."),
    order: str | None = typer.Option(None, "--order", show_default=False,
                                     help="conventional (conv-BN-act) or swapped (conv-act-BN)."),
    dataset: str = typer.Option("digits", "--dataset", "-d", help=_DATASET_HELP),
    root: Path | None = typer.Option(None, "--root", show_default=False,
                                     help="Folder holding torchvision datasets (default: $ACTBENCH_DATA or ./data)."),
    download: bool = typer.Option(False, "--download", help="Let torchvision download CIFAR, and huggingface_hub "
                                                            "an hf-hub: checkpoint, if missing."),
    corruptions: str = typer.Option("all", "--corruptions", help=_CORR_HELP),
    severities: str = typer.Option("1-5", "--severities", help="Severities: 1-5, 1,3,5 or one number."),
    seeds: str | None = typer.Option(
        None, "--seeds", "--seed", show_default=False,
        help="Training seeds of the default run: 0-2 (default), 0,2,7 or one number; every seed is "
             "evaluated on the same corrupted images."),
    corruption_seed: int = typer.Option(
        0, "--corruption-seed",
        help="Seed of the corruptions: fixed benchmark data, independent of the training seeds."),
    limit: int | None = typer.Option(None, "--limit", show_default=False, help="Evaluate the first N test images."),
    batch_size: int = typer.Option(512, "--batch-size", help="Evaluation batch size."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N, mps."),
    amp: str | None = typer.Option(None, "--amp", show_default=False, help="Autocast evaluation: bf16 (or fp16)."),
    plugin: list[Path] | None = typer.Option(None, "--plugin", show_default=False,
                                             help="Python file registering extra corruptions (repeatable)."),
    probes: str = typer.Option("all", "--probes", help="Activation probes: none, fluctuation, all."),
    mean: str | None = typer.Option(None, "--mean", show_default=False,
                                    help="Input mean per channel (e.g. 0.5,0.5,0.5) for weights trained elsewhere "
                                         "[default: the checkpoint's, else the model's pretrained_cfg, else the dataset's]."),
    std: str | None = typer.Option(None, "--std", show_default=False, help="Input std per channel (with --mean)."),
    normalize: bool = typer.Option(True, "--normalize/--no-normalize",
                                   help="--no-normalize: the model takes [0, 1] input (RobustBench models)."),
    baseline: str | None = typer.Option(None, "--baseline", show_default=False,
                                        help="Baseline for CE / relative mCE: an activation of this run, a run folder, or alexnet (ImageNet-C)."),
    preset: str | None = typer.Option(None, "--preset", show_default=False,
                                      help="Corruption severity table: cifar, tinyimagenet, imagenet (default: from the image size)."),
    workers: int = typer.Option(0, "--workers", help="Data loader processes (datasets decoded per image)."),
    resume: bool = typer.Option(False, "--resume", help="Complete an interrupted run in --out without recomputing finished cells."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON (stdout) instead of the table."),
    out: Path | None = typer.Option(None, "--out", "-o", show_default=False,
                                    help="Results folder (default: ./results/<run-name>)."),
) -> None:
    """Evaluate on clean and corrupted data with activation probes; write a results folder.

    Without --checkpoint this is the embedded default: train cnn_small per activation on the
    bundled digits, evaluate all on the 19 corruptions x 5 severities, print the comparison.
    """
    from robustbench_act.evaluate import init_distributed

    init_distributed()
    prog = _Progress(quiet)
    try:
        outcome = _run(checkpoint=checkpoint, model=model, activation=activation, activations=activations,
                       order=order, dataset=dataset, root=root, download=download, corruptions=corruptions,
                       severities=severities, seeds=seeds, corruption_seed=corruption_seed,
                       limit=limit, batch_size=batch_size,
                       device=device, amp=amp, plugin=plugin, probes=probes, baseline=baseline,
                       preset=preset, workers=workers, resume=resume, out=out, prog=prog,
                       pre={"mean": mean, "std": std, "normalize": normalize})
    except _user_errors() as exc:
        prog.stop()
        raise _fail(str(exc)) from None
    except KeyboardInterrupt:
        prog.stop()
        where = f" --out {out}" if out is not None else ""
        Console(stderr=True).print(f"interrupted: finished cells are kept; complete the run with "
                                   f"`actbench run --resume{where}` and the same options", markup=False)
        raise typer.Exit(130) from None
    prog.stop()
    from robustbench_act import distributed as dist

    if not dist.is_main_process():
        return
    from robustbench_act.pipeline import _canonical_baseline

    table = comparison_of(outcome, _canonical_baseline(_baseline(baseline)))
    if as_json:
        print(json_report(outcome, table))
        return
    if quiet:
        return
    console = Console(highlight=False)
    if not console.is_terminal:
        console = Console(highlight=False, width=max(console.width, 200))
    console.print(table.to_rich())
    for line in table.notes:
        console.print(f"note: {line}", markup=False)
    frost = outcome.manifest.get("config", {}).get("frost")
    if frost:
        from corruptions.weather import frost_description

        console.print(frost_description(frost), markup=False)
    note = " (was already complete)" if outcome.status == "already complete" else ""
    console.print(f"results: {outcome.path}{note}", markup=False)


def _run(*, checkpoint: list[Path] | None, model: str | None, activation: str | None,
         activations: str | None, order: str | None, dataset: str, root: Path | None, download: bool,
         corruptions: str, severities: str, seeds: str | None, corruption_seed: int,
         limit: int | None, batch_size: int,
         device: str, amp: str | None, plugin: list[Path] | None, probes: str, baseline: str | None,
         preset: str | None, workers: int, resume: bool, out: Path | None, prog: _Progress,
         pre: dict[str, Any]) -> Any:
    import corruptions as corr_pkg
    from robustbench_act import pipeline
    from robustbench_act.inputs import name_list
    from robustbench_act.preprocess import parse_floats
    from robustbench_act.probes import require_level

    for p in plugin or []:
        corr_pkg.load_plugin(p)
    if batch_size < 1:
        raise UserError(f"--batch-size must be >= 1, got {batch_size}")
    if limit is not None and limit < 1:
        raise UserError(f"--limit must be positive, got {limit}")
    if workers < 0:
        raise UserError(f"--workers must be >= 0, got {workers}")

    if amp is not None and amp not in ("bf16", "fp16", "none"):
        from robustbench_act.errors import unknown

        raise unknown("--amp mode", amp, ["bf16", "fp16", "none"])
    amp = None if amp == "none" else amp
    if preset is not None and preset not in corr_pkg.PRESETS:
        from robustbench_act.errors import unknown

        raise unknown("preset", preset, corr_pkg.PRESETS)
    probes = require_level(probes)
    sevs = pipeline.parse_severities(severities)
    corrs = pipeline.parse_corruptions(corruptions)
    dev = pipeline.resolve_device(device)
    base = _baseline(baseline)

    pre = {"mean": parse_floats(pre["mean"], "--mean"), "std": parse_floats(pre["std"], "--std"),
           "normalize": pre["normalize"]}
    if not checkpoint:
        if pre["mean"] or pre["std"] or not pre["normalize"]:
            raise UserError("--mean/--std/--no-normalize describe checkpoints trained elsewhere; "
                            "the default run trains its own models")
        if activations and activation:
            raise UserError("give --activations (several) or --activation (one), not both")
        acts = (name_list("--activations", activations) or name_list("--activation", activation)
                or list(pipeline.DEFAULT_ACTIVATIONS))
        if dataset != "digits":
            from robustbench_act.data import load_dataset

            load_dataset(dataset, split="test", root=root, download=download, limit=limit)  # its errors first
            raise UserError(f"no --checkpoint given: the built-in training covers --dataset digits only; "
                            f"train a model for {dataset} with `actbench train` and pass --checkpoint")
        return pipeline.run_default(
            acts, out, pipeline.parse_seeds(seeds if seeds is not None else list(pipeline.DEFAULT_SEEDS)),
            model=model or pipeline.DEFAULT_MODEL, order=order or "conventional",
            dataset=dataset, corruptions=corrs, severities=sevs, probes=probes, batch_size=batch_size,
            device=dev, amp=amp, limit=limit, resume=resume, progress=prog, baseline=base,
            preset=preset, on_trained=prog.trained, corruption_seed=corruption_seed)
    if activations is not None:
        raise UserError("--activations chooses the default run's activations; with --checkpoint use --activation")
    if seeds is not None:
        raise UserError("--seeds are the default run's training seeds; a checkpoint has its own "
                        "(the corruptions follow --corruption-seed)")
    return _run_checkpoints(checkpoint, model=model, activation=activation, order=order, dataset=dataset,
                            root=root, download=download, corrs=corrs, sevs=sevs,
                            seed=corruption_seed, limit=limit,
                            batch_size=batch_size, dev=dev, amp=amp, probes=probes, base=base,
                            preset=preset, workers=workers, resume=resume, out=out, prog=prog, pre=pre)


def _baseline(baseline: str | None) -> Any:
    if baseline is None:
        return None
    p = Path(baseline).expanduser()
    if p.is_dir():
        from robustbench_act.results import load_run

        return load_run(p, samples=False).metrics
    if "/" in baseline or baseline.startswith("."):
        raise UserError(f"--baseline: results folder not found: {baseline}")
    return baseline


def _run_checkpoints(checkpoints: list[Path], *, model: str | None, activation: str | None,
                     order: str | None, dataset: str, root: Path | None, download: bool,
                     corrs: list[str], sevs: list[int], seed: int, limit: int | None, batch_size: int,
                     dev: Any, amp: str | None, probes: str, base: Any, preset: str | None,
                     workers: int, resume: bool, out: Path | None, prog: _Progress,
                     pre: dict[str, Any]) -> Any:
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
            prog.line(f"note: {dataset} lacks {', '.join(missing)}; evaluating the other {len(corrs)}")
        ds.check(corrs, sevs)
        clean = _clean_counterpart(dataset, root, limit, ds.path)
        meta_ds = clean if clean is not None else ds.get(corrs[0], sevs[0])
    else:
        meta_ds = ds
    models, info, metas = pipeline.load_models(
        checkpoints, device=dev, model=model, activation=activation, order=order,
        num_classes=meta_ds.num_classes if model else None,
        in_chans=meta_ds.channels if model else None, download=download)
    for meta, ck in zip(metas, checkpoints):
        pipeline.check_classes(meta, meta_ds, ck)
    for key, net in models.items():
        _check_channels(net, meta_ds, checkpoints[int(key.split(":")[0])])
    pipeline.check_baseline(base, [info[k]["activation"] for k in models])
    inputs = pipeline.checkpoint_normalization(models, metas, meta_ds, mean=pre.get("mean"), std=pre.get("std"),
                                               normalize=pre.get("normalize", True))  # fmt: skip
    for key, cfg in inputs.items():
        if cfg.source != "dataset" or cfg.input_size not in (None, tuple(getattr(meta_ds, "image_size", ()) or ())):
            size = f", resized to {cfg.input_size[0]}x{cfg.input_size[1]} ({cfg.interpolation}, crop {cfg.crop_pct:g})" \
                if cfg.input_size else ""
            prog.line(f"note: {info[key]['activation']} input: mean/std from the {cfg.source} "
                      f"({list(cfg.mean)}, {list(cfg.std)}){size}")
    n_images = len(meta_ds)
    config = {
        "mode": "checkpoint", "dataset": dataset, "dataset_name": str(meta_ds.name),
        "checkpoints": [str(c) for c in checkpoints], "corruptions": corrs, "severities": sevs,
        "seed": seed, "corruption_seed": seed, "preset": preset, "limit": limit, "n_images": n_images,
        "batch_size": batch_size, "probes": probes, "amp": amp,
        "activations": [info[k]["activation"] for k in models], "world_size": dist.world_size(),
        "clean": not family or clean is not None,
        "frost": None if family else pipeline.frost_provenance(corrs),
        "models": [dict(info[k]) for k in models], "checkpoint_meta": metas, "num_classes": meta_ds.num_classes,
        "preprocessing": {k: c.as_dict() for k, c in inputs.items()},
    }  # fmt: skip
    out_path = Path(out) if out is not None else Path(pipeline._agree(str(pipeline.default_out(dataset))))
    return pipeline.run_models(models, info, ds, out=out_path, config=config, corruptions=corrs,
                               severities=sevs, probes=probes, seed=seed, batch_size=batch_size,
                               device=dev, amp=amp, resume=resume, preset=preset, clean=clean,
                               progress=prog, baseline=base, num_workers=workers,
                               normalization=pipeline.preprocessing_modules(inputs))


def _clean_counterpart(spec: str, root: Path | None, limit: int | None, folder: Path) -> Any:
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


def _check_channels(net: Any, ds: Any, path: Path) -> None:
    first = next((m for m in net.modules() if hasattr(m, "in_channels")), None)
    want = getattr(first, "in_channels", None)
    if want is not None and int(want) != int(ds.channels):
        raise UserError(f"checkpoint {path} takes {want}-channel images but {ds.name} has {ds.channels}")


def register(app: typer.Typer) -> None:
    """Add ``actbench run``."""
    from robustbench_act.cli.common import command

    app.command("run")(command(run_command))
