"""``actbench run``: the embedded default, or evaluate checkpoints on clean + corrupted data."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

_CORR_HELP = ("Corruptions: all, common, extra, noise, blur, weather, digital, plugins, or name,name; "
              "none for clean data only.")
_DATASET_HELP = ("digits (bundled, offline), cifar10, cifar100 (--download to fetch), imagefolder:PATH, "
                 "cifar10-c:PATH, cifar100-c:PATH, tinyimagenet-c:PATH, imagenet-c:PATH.")


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
    frost_dir: Path | None = typer.Option(None, "--frost-dir", show_default=False,
                                          help="Frost photographs folder, or 'procedural' [default: $ACTBENCH_FROST_DIR, an installed package's, else procedural]."),
    streams: int | None = typer.Option(None, "--streams", show_default=False,
                                       help="Output version of the corruptions: 4 (default), 3 (defocus blur by one convolution), 2 (and motion blur by FFT from 96x96 px) or 1 (runs made before 0.2: slower noise streams) [default: $CORRUPTIONS_STREAMS, else 4]."),
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
    options = dict(locals())  # the options, named as RunSpec's fields
    execute(options, as_json=options.pop("as_json"), quiet=options.pop("quiet"))


def execute(options: dict[str, Any], *, as_json: bool, quiet: bool) -> None:
    """Options -> RunSpec -> ``robustbench_act.run`` -> rendering; Ctrl-C says how to resume."""
    from robustbench_act import distributed as dist
    from robustbench_act.api import run
    from robustbench_act.evaluate import init_distributed
    from robustbench_act.specs import RunSpec, as_tuple

    init_distributed()
    prog = _Progress(quiet)
    try:
        activations = options.pop("activations")
        spec = RunSpec(**{**options, "checkpoint": as_tuple(options["checkpoint"]), "plugin": as_tuple(options["plugin"]),
                          "activations": () if activations is None else activations})  # fmt: skip
        outcome = run(spec, progress=prog, echo=prog.line, on_trained=prog.trained)
    except KeyboardInterrupt:
        prog.stop()
        out = options.get("out")
        where = f" --out {out}" if out is not None else ""
        Console(stderr=True).print(f"interrupted: finished cells are kept; complete the run with "
                                   f"`actbench run --resume{where}` and the same options", markup=False)
        raise typer.Exit(130) from None
    finally:
        prog.stop()
    if dist.is_main_process():
        render(outcome, spec, as_json=as_json, quiet=quiet)


def render(outcome: Any, spec: Any, *, as_json: bool, quiet: bool) -> None:
    """Print a run's comparison (rich table and notes, or JSON), its frost source and folder."""
    from robustbench_act.checkpoint_eval import load_baseline
    from robustbench_act.pipeline import _canonical_baseline

    table = comparison_of(outcome, _canonical_baseline(load_baseline(spec.baseline)))
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
        from corruptions.frost import frost_description

        console.print(frost_description(frost), markup=False)
    note = " (was already complete)" if outcome.status == "already complete" else ""
    console.print(f"results: {outcome.path}{note}", markup=False)


def register(app: typer.Typer) -> None:
    """Add ``actbench run``."""
    from robustbench_act.cli.common import command

    app.command("run")(command(run_command))
