"""``actbench train``: train (or fine-tune) one model with one activation, seeded and resumable.

Also what ``torchrun --nproc-per-node N -m robustbench_act train ...`` runs: the process
group is joined here, ``--batch-size`` is the global batch, rank 0 writes the files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer


def train_command(
    model: str | None = typer.Option(None, "--model", "-m", help="Model name (resnet20 ... wrn28_10, cnn_small, any timm name) [default: cnn_small for digits, else resnet20]."),
    activation: str | None = typer.Option(None, "--activation", "-a", help="Activation spec put in every activation site, e.g. la_silu or 'la_silu(alpha=0.1)' [default: the model's own]."),
    order: str = typer.Option("conventional", "--order", help="conventional (conv-BN-act) or swapped (conv-act-BN)."),
    dataset: str = typer.Option("cifar10", "--dataset", "-d", help="cifar10, cifar100, digits or imagefolder:PATH."),
    seed: int | None = typer.Option(None, "--seed", "-s", help="Seed of init, data order, augmentation and the validation split [default: the config file's, else 0]."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (checkpoint, train_log.csv, manifest.json, state.pt)."),
    recipe: str | None = typer.Option(None, "--recipe", "-r", help="paper | fast | finetune | digits [default: digits for digits, finetune with --checkpoint, else paper]."),
    epochs: int | None = typer.Option(None, "--epochs", help="Train this many epochs (replaces the recipe's iterations)."),
    iterations: int | None = typer.Option(None, "--iterations", help="Train this many iterations (replaces the recipe's epochs)."),
    batch_size: int | None = typer.Option(None, "--batch-size", "-b", help="Global batch size (split across torchrun processes)."),
    lr: float | None = typer.Option(None, "--lr", help="Peak learning rate."),
    weight_decay: float | None = typer.Option(None, "--weight-decay", help="SGD weight decay."),
    schedule: str | None = typer.Option(None, "--schedule", help="multistep | cosine | onecycle | constant."),
    val_fraction: float | None = typer.Option(None, "--val-fraction", help="Stratified validation share of the training set (0: none, keep the last weights)."),
    limit: int | None = typer.Option(None, "--limit", help="Use only the first N training images (smoke tests)."),
    device: str | None = typer.Option(None, "--device", help="auto, cpu, cuda, cuda:1 ... [default: auto]."),
    amp: str | None = typer.Option(None, "--amp", help="Mixed precision: bf16, fp16, auto (bf16 on CUDA) or none."),
    config_file: Path | None = typer.Option(None, "--config", help="TOML/YAML file of training settings (CLI options win)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from OUT/state.pt (bit-identical to an uninterrupted run on CPU)."),
    checkpoint: str | None = typer.Option(None, "--checkpoint", help="finetune: the local checkpoint to start from."),
    download: bool = typer.Option(False, "--download", help="Let torchvision download CIFAR into --root."),
    root: Path | None = typer.Option(None, "--root", help="Dataset root for cifar10/cifar100 [default: $ACTBENCH_DATA or ./data]."),
    image_size: int | None = typer.Option(None, "--image-size", help="Resize images to this side (digits default 16)."),
    workers: int | None = typer.Option(None, "--workers", help="Loader processes for datasets decoded per image."),
    sync_bn: bool = typer.Option(False, "--sync-bn", help="torchrun on CUDA: use SyncBatchNorm."),
    channels_last: bool | None = typer.Option(None, "--channels-last/--no-channels-last", help="Train in channels_last memory format [default: the recipe's; fast: on CUDA only]."),
    compile_model: bool = typer.Option(False, "--compile", help="Compile the training step with torch.compile (faster after a one-off compile; needs a C++ compiler on CPU)."),
    progress: bool = typer.Option(True, "--progress/--quiet", help="Show progress (rich bar on a terminal, one line per epoch otherwise)."),
) -> None:  # fmt: skip
    """Train a model with one activation (paper, fast, finetune or digits recipe) and save a checkpoint."""
    from robustbench_act import distributed as dist
    from robustbench_act.api import run
    from robustbench_act.specs import TrainSpec

    try:
        dist.init_distributed()
        spec = TrainSpec(model=model, activation=activation, order=order, dataset=dataset, seed=seed, out=out,
                         recipe=recipe, epochs=epochs, iterations=iterations, batch_size=batch_size, lr=lr,
                         weight_decay=weight_decay, schedule=schedule, val_fraction=val_fraction, limit=limit,
                         device=device, amp=amp, config_file=config_file, resume=resume, checkpoint=checkpoint,
                         download=download, root=root, image_size=image_size, workers=workers, sync_bn=sync_bn,
                         channels_last=channels_last, compile=compile_model, progress=progress)  # fmt: skip
        result = run(spec)
    finally:
        dist.cleanup()
    if dist.is_main_process():
        render(result)


def render(result: Any) -> None:
    """One line: which checkpoint was saved where, its validation accuracy, iterations and time."""
    m = result.meta["metrics"]
    val = (f"best validation {m['best_val_acc']:.2f}% (epoch {m['best_epoch']})" if m["best_val_acc"] is not None
           else "no validation split")  # fmt: skip
    t = float(result.history["time"].iloc[-1]) if len(result.history) else 0.0
    typer.echo(f"saved {result.selected} checkpoint to {result.checkpoint} ({val}; {result.iterations} iterations, {t:.0f} s)")


def register(app: typer.Typer) -> None:
    """Add the ``train`` command to the actbench app."""
    from robustbench_act.cli.common import command

    app.command("train")(command(train_command))
