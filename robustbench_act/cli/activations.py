"""``actbench activations``: list the registered activation functions."""

from __future__ import annotations

import json
from dataclasses import asdict

import typer
from rich.console import Console
from rich.table import Table

from robustbench_act.errors import UserError

# Kept literal so that ``actbench --help`` does not import torch; a test checks it equals
# robustbench_act.activations.KINDS.
KIND_NAMES = ("element", "layeract", "anact")


def _fmt_bounds(bounds: tuple[float, float] | None) -> str:
    return "-" if bounds is None else f"[{bounds[0]:g}, {bounds[1]:g}]"


def activations_command(
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list instead of a table."),
    kind: str | None = typer.Option(None, "--kind", help=f"Only this kind ({', '.join(KIND_NAMES)})."),
) -> None:
    """List activation functions (name, kind, output bounds, description, aliases)."""
    from robustbench_act.activations import KINDS, describe_activations

    if kind is not None and kind not in KINDS:
        raise UserError(f"unknown activation kind {kind!r}; valid: {', '.join(KINDS)}")
    infos = [i for i in describe_activations() if kind is None or i.kind == kind]
    if as_json:
        typer.echo(json.dumps([asdict(i) for i in infos], indent=2))
        return
    table = Table(title="Activations", show_lines=False)
    for col in ("name", "kind", "bounds", "description", "aliases"):
        table.add_column(col, overflow="fold")
    for i in infos:
        table.add_row(i.name, i.kind, _fmt_bounds(i.bounds), i.description, ", ".join(i.aliases))
    console = Console(highlight=False, soft_wrap=False)
    console.print(table)
    console.print(
        "Specs take literal keyword arguments, e.g. la_silu(alpha=0.1, dims='last'); "
        "any element name X also works as an_X.",
        markup=False,
    )


def register(app: typer.Typer) -> None:
    """Add the ``activations`` command to the actbench app."""
    from robustbench_act.cli.common import command

    app.command("activations")(command(activations_command))
