"""``actbench sweep``: train and evaluate a grid of models x activations x orders x seeds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table


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
    frost_dir: Path | None = typer.Option(None, "--frost-dir", help="Frost photographs folder, or 'procedural' [default: $ACTBENCH_FROST_DIR, an installed package's, else procedural]."),
    streams: int | None = typer.Option(None, "--streams", show_default=False, help="Output version of the corruptions: 4 (default), 3 (defocus blur by one convolution), 2 (and motion blur by FFT from 96x96 px) or 1 (runs made before 0.2: slower noise streams) [default: $CORRUPTIONS_STREAMS, else 4]."),
    as_json: bool = typer.Option(False, "--json", help="Print the status table as JSON."),
    progress: bool = typer.Option(True, "--progress/--quiet", help="Show training progress (sequential runs)."),
) -> None:  # fmt: skip
    """Train then evaluate every cell of a grid; resumable, shardable, parallel on one device."""
    from robustbench_act.api import run
    from robustbench_act.specs import SweepSpec

    spec = SweepSpec(models=models, activations=activations, orders=orders, seeds=seeds, dataset=dataset, out=out,
                     recipe=recipe, config_file=config_file, epochs=epochs, iterations=iterations,
                     train_batch_size=train_batch_size, lr=lr, corruptions=corruptions, severities=severities,
                     corruption_seed=corruption_seed, probes=probes, shard=shard, dry_run=dry_run, parallel=parallel,
                     limit=limit, eval_limit=eval_limit, batch_size=batch_size, device=device, amp=amp, root=root,
                     download=download, frost_dir=frost_dir, streams=streams, progress=progress)  # fmt: skip
    table, combined = run(spec, echo=lambda line: typer.echo(line, err=True))
    render(spec, table, combined, as_json=as_json)


def render(spec: Any, table: Any, combined: Any, *, as_json: bool) -> None:
    """The cells' status table (rich, or JSON) and where the combined metrics are."""
    if as_json:
        typer.echo(json.dumps(table.to_dict(orient="records"), indent=2))
        return
    shards = sorted(set(table["shard"])) if len(table) else [0]
    view = Table(title=f"sweep {spec.out} ({len(table)} cells, shard(s) {', '.join(map(str, shards))})")
    for col in ("cell", "shard", "status"):
        view.add_column(col, no_wrap=True)
    for rec in table.itertuples(index=False):
        view.add_row(rec.cell, str(rec.shard), rec.status)
    Console(highlight=False).print(view)
    if not spec.dry_run and len(combined):
        typer.echo(f"combined metrics of {combined['run'].nunique()} cells: {Path(spec.out) / 'metrics.parquet'}")


def register(app: typer.Typer) -> None:
    """Add the ``sweep`` command to the actbench app."""
    from robustbench_act.cli.common import command

    app.command("sweep")(command(sweep_command))
