"""The ``actbench`` command line: a thin Typer layer over the Python API.

Each sub-module of this package owns one command group and exposes ``register(app)``;
errors raised as :class:`UserError` (or a corruption/value error from our packages)
become a one-line message and exit code 2.
"""

from __future__ import annotations

import importlib
import sys

import typer
from rich.console import Console
from rich.markup import escape

from robustbench_act.errors import UserError

app = typer.Typer(
    name="actbench",
    help="Does this activation function make a CNN more robust to noise and corruptions?",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode="rich",
)

# Command modules, in the order their commands appear in --help.
_COMMAND_MODULES = (
    "run",
    "train",
    "sweep",
    "compare",
    "activations",
    "surgery",
    "corruptions",
)

err_console = Console(stderr=True, highlight=False, soft_wrap=True)


@app.callback()
def _root() -> None:
    """Does this activation function make a CNN more robust to noise and corruptions?"""


def _register_all() -> None:
    for mod_name in _COMMAND_MODULES:
        try:
            mod = importlib.import_module(f"robustbench_act.cli.{mod_name}")
        except ModuleNotFoundError as exc:  # only a missing command module itself is tolerated
            if exc.name == f"robustbench_act.cli.{mod_name}":
                continue
            raise
        mod.register(app)


_register_all()


def _user_error_types() -> tuple[type[BaseException], ...]:
    types: list[type[BaseException]] = [UserError]
    try:
        from corruptions import CorruptionError

        types.append(CorruptionError)
    except ImportError:  # pragma: no cover - corruptions ships with the project
        pass
    return tuple(types)


def main() -> None:
    """Console-script entry point: run the app, turning user errors into one line + exit 2."""
    try:
        app(prog_name="actbench")
    except _user_error_types() as exc:
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", markup=True, highlight=False)
        sys.exit(2)
