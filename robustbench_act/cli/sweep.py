"""``actbench sweep``: train and evaluate a grid of models x activations x orders x seeds."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from robustbench_act.errors import UserError


def _fail(exc: Exception) -> typer.Exit:
    from robustbench_act.cli.common import print_error

    print_error(str(exc))
    return typer.Exit(2)


def sweep_command(
    models: str = typer.Option("resnet20", "--models", help="Comma-separated model names."),
    activations: str = typer.Option("relu,silu,la_silu", "--activations", help="Comma-separated activation specs; ACT@ORDER trains ACT in that order only (e.g. tanh@swapped)."),
    orders: str = typer.Option("conventional", "--orders", help="Comma-separated: conventional, swapped."),
    seeds: str = typer.Option("0", "--seeds", help="Seeds: 0-4, 0,2,7 or one number."),
    dataset: str = typer.Option("cifar10", "--dataset", "-d", help="Training dataset (its test split is evaluated): cifar10, cifar100, digits, imagefolder:PATH."),
    out: Path = typer.Option(..., "--out", "-o", help="Sweep folder (one sub-folder per cell)."),
    recipe: str | None = typer.Option(None, "--recipe", "-r", help="Training recipe: paper, fast, digits [default: digits for digits, else paper]."),
    config_file: Path | None = typer.Option(None, "--config", help="TOML/YAML training settings (CLI options win)."),
    epochs: int | None = typer.Option(None, "--epochs", help="Override the recipe's training length in epochs."),
    iterations: int | None = typer.Option(None, "--iterations", help="Override the recipe's training length in iterations."),
    train_batch_size: int | None = typer.Option(None, "--train-batch-size", help="Override the recipe's batch size."),
    lr: float | None = typer.Option(None, "--lr", help="Override the recipe's learning rate."),
    corruptions: str = typer.Option("all", "--corruptions", help="Corruptions evaluated: all, common, a group, or names (none: clean only)."),
    severities: str = typer.Option("1-5", "--severities", help="Severities: 1-5, 1,3,5 or one number."),
    corruption_seed: int = typer.Option(0, "--corruption-seed", help="Seed of the corruptions (the same for every cell)."),
    probes: str = typer.Option("none", "--probes", help="Activation probes: none, fluctuation, all."),
    shard: str | None = typer.Option(None, "--shard", help="i/n: run only cells k with k % n == i (sorted cell list); "
                                                         "default in a Slurm array job: its task's share."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List the cells, their shard and status; run nothing."),
    parallel: int = typer.Option(1, "--parallel", help="Cells run at once (processes on the same device)."),
    limit: int | None = typer.Option(None, "--limit", help="First N training images and first N test images (smoke tests)."),
    eval_limit: int | None = typer.Option(None, "--eval-limit", help="Evaluate corruptions and probes on the first N test images (class-balanced); clean accuracy also on the whole test set."),
    batch_size: int = typer.Option(512, "--batch-size", help="Evaluation batch size."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N."),
    amp: str | None = typer.Option(None, "--amp", help="Evaluation autocast: bf16 or fp16 (training: the recipe's)."),
    root: Path | None = typer.Option(None, "--root", help="Dataset root for cifar10/cifar100."),
    download: bool = typer.Option(False, "--download", help="Let torchvision download CIFAR into --root."),
    as_json: bool = typer.Option(False, "--json", help="Print the status table as JSON."),
    progress: bool = typer.Option(True, "--progress/--quiet", help="Show training progress (sequential runs)."),
) -> None:  # fmt: skip
    """Train then evaluate every cell of a grid; resumable, shardable, parallel on one device."""
    try:
        _sweep(**locals())
    except UserError as exc:
        raise _fail(exc) from None


def _sweep(**o: object) -> None:
    from robustbench_act.inputs import name_list
    from robustbench_act.pipeline import parse_corruptions, parse_severities
    from robustbench_act.sweep import SweepOptions, parse_seeds, parse_shard, plan_cells, run_sweep

    if o["eval_limit"] is not None and int(o["eval_limit"]) <= 0:  # type: ignore[call-overload]
        raise UserError(f"--eval-limit must be positive, got {o['eval_limit']}")
    cells = plan_cells(name_list("--models", o["models"]), name_list("--activations", o["activations"]),  # type: ignore[arg-type]
                       name_list("--orders", o["orders"]), parse_seeds(o["seeds"]))  # type: ignore[arg-type]
    shard = parse_shard(o["shard"])  # type: ignore[arg-type]
    if o["shard"] is None:
        from robustbench_act.sweep import shard_from_slurm

        slurm = shard_from_slurm()
        if slurm is not None:
            shard = slurm[0]
            typer.echo(f"sweep: shard {shard[0]}/{shard[1]} from the Slurm array ({slurm[1]})", err=True)
    overrides = {k: v for k, v in (("epochs", o["epochs"]), ("iterations", o["iterations"]),
                                   ("batch_size", o["train_batch_size"]), ("lr", o["lr"])) if v is not None}  # fmt: skip
    if o["recipe"] is not None or o["config_file"] is not None or overrides:
        from robustbench_act.train import make_config

        make_config(o["recipe"], config_file=o["config_file"], **overrides)  # type: ignore[arg-type]  # validate early
    o["amp"] = _check_eval_options(o)
    opts = SweepOptions(
        out=str(o["out"]), dataset=str(o["dataset"]), recipe=o["recipe"],  # type: ignore[arg-type]
        train_overrides=overrides, config_file=str(o["config_file"]) if o["config_file"] else None,
        corruptions=parse_corruptions(str(o["corruptions"])), severities=parse_severities(str(o["severities"])),
        corruption_seed=int(o["corruption_seed"]), probes=str(o["probes"]), limit=o["limit"],  # type: ignore[arg-type]
        eval_limit=o["eval_limit"],  # type: ignore[arg-type]
        eval_batch_size=int(o["batch_size"]), device=str(o["device"]), amp=o["amp"],  # type: ignore[arg-type]
        root=str(o["root"]) if o["root"] else None, download=bool(o["download"]),
    )  # fmt: skip
    table, combined = run_sweep(cells, opts, shard=shard, parallel=int(o["parallel"]),  # type: ignore[arg-type]
                                dry_run=bool(o["dry_run"]), progress=bool(o["progress"]),
                                echo=lambda s: typer.echo(s, err=True))  # fmt: skip
    if o["dry_run"] and shard != (0, 1):
        table = table[table["shard"] == shard[0]]
    if o["as_json"]:
        typer.echo(json.dumps(table.to_dict(orient="records"), indent=2))
        return
    view = Table(title=f"sweep {o['out']} ({len(table)} cells, shard {shard[0]}/{shard[1]})")
    for col in ("cell", "shard", "status"):
        view.add_column(col, no_wrap=True)
    for rec in table.itertuples(index=False):
        view.add_row(rec.cell, str(rec.shard), rec.status)
    Console(highlight=False).print(view)
    if not o["dry_run"] and len(combined):
        typer.echo(f"combined metrics of {combined['run'].nunique()} cells: {Path(str(o['out'])) / 'metrics.parquet'}")


def _check_eval_options(o: dict[str, object]) -> str | None:
    """Probes, autocast, device and dataset checked before any cell runs; returns the amp mode."""
    from robustbench_act.data import load_dataset
    from robustbench_act.errors import unknown
    from robustbench_act.pipeline import resolve_device
    from robustbench_act.probes import require_level

    require_level(str(o["probes"]))
    amp = o["amp"]
    if amp is not None and amp not in ("bf16", "fp16", "none"):
        raise unknown("--amp mode", str(amp), ["bf16", "fp16", "none"])
    resolve_device(str(o["device"]))
    if not o["download"]:  # the data must be there (with --download the first cell fetches it)
        load_dataset(str(o["dataset"]), split="test", root=o["root"], limit=1)  # type: ignore[arg-type]
    return None if amp == "none" else str(amp) if amp else None


def register(app: typer.Typer) -> None:
    """Add the ``sweep`` command to the actbench app."""
    from robustbench_act.cli.common import command

    app.command("sweep")(command(sweep_command))
