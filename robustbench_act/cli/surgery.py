"""``actbench surgery``: build a model (no weights), swap its activations, show what changed."""

from __future__ import annotations

import json

import typer
from rich.console import Console

from robustbench_act.errors import unknown


def surgery_command(
    model: str = typer.Argument(..., help="Model name: built-in (resnet20...), timm, or tv:NAME."),
    to: str = typer.Option(..., "--to", help="Activation spec, e.g. la_silu or 'tanh'."),
    order: str = typer.Option("conventional", "--order", help="conventional or swapped."),
    gates: str = typer.Option("keep", "--gates", help="keep or swap the SE/attention gates."),
    num_classes: int = typer.Option(1000, "--num-classes", help="Classifier outputs."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Replace every activation of MODEL by --to and report counts, gates kept and leftovers.

    Exit code 1 when some activation could not be replaced.
    """
    from robustbench_act.activations import get_activation
    from robustbench_act.models import build_model, check_order
    from robustbench_act.surgery import reorder_bn_act, swap_activations

    check_order(order)
    if gates not in ("keep", "swap"):
        raise unknown("gates mode", gates, ("keep", "swap"))
    get_activation(to)  # fail fast on a bad spec, before building the model
    net = build_model(model, num_classes=num_classes)
    report = swap_activations(net, to, gates=gates, allow_remaining=True)
    reorder = reorder_bn_act(net) if order == "swapped" else None
    if as_json:
        out = {"model": model, **report.to_dict()}
        if reorder is not None:
            out["reorder"] = reorder.to_dict()
        typer.echo(json.dumps(out, indent=2))
    else:
        console = Console(highlight=False, soft_wrap=False)
        console.print(report)
        if reorder is not None:
            console.print(
                f"BN/activation reorder: {len(reorder.swapped)} pairs now act -> BN"
                + (f"; left: {len(reorder.left)}" if reorder.left else ""),
                markup=False,
            )
            for name, reason in reorder.left[:10]:
                console.print(f"  left {name}: {reason}", markup=False)
    if not report.ok:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add the ``surgery`` command to the actbench app."""
    from robustbench_act.cli.common import command

    app.command("surgery")(command(surgery_command))
