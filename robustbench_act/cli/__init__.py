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


def _is_user_error(exc: BaseException) -> bool:
    """Whether ``exc`` is a bad-input error (ours or the corruptions package's).

    ``corruptions`` is only consulted when some command already imported it: a
    CorruptionError cannot have been raised otherwise, and importing it here would load
    torch on every invocation (``--help`` included).
    """
    if isinstance(exc, UserError):
        return True
    corruptions_mod = sys.modules.get("corruptions")
    error_type = getattr(corruptions_mod, "CorruptionError", None)
    return error_type is not None and isinstance(exc, error_type)


def main() -> None:
    """Console-script entry point: run the app, turning user errors into one line + exit 2."""
    try:
        app(prog_name="actbench")
    except Exception as exc:
        if not _is_user_error(exc):
            raise
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", markup=True, highlight=False)
        sys.exit(2)
