"""The ``actbench`` command line: a thin Typer layer over the Python API.

Each sub-module of this package owns one command group and exposes ``register(app)``;
errors raised as :class:`UserError` (or a corruption/value error from our packages)
become a one-line message and exit code 2.
"""

from __future__ import annotations

import importlib
import sys

import typer

from robustbench_act.errors import is_user_error

app = typer.Typer(
    name="actbench",
    help="Does this activation function make a CNN more robust to noise and corruptions?",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,  # --install-completion / --show-completion (bash, zsh, fish, PowerShell)
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


def _print_version(value: bool) -> None:
    """``--version``: print the version and stop (before any command runs; torch-free)."""
    if value:
        from robustbench_act import __version__

        typer.echo(f"actbench {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
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


_is_user_error = is_user_error  # the CLI's classification of errors (see errors.is_user_error)


def _one_line_error(message: str) -> None:
    from robustbench_act.cli.common import print_error  # imported with the command modules

    print_error(message)


def _parser_error_kind(exc: BaseException) -> str | None:
    """'NoArgsIsHelpError', 'UsageError' or 'ClickException' for the command-line parser's errors.

    Matched by class name along the MRO: recent Typer versions raise them from a vendored
    copy of click, older ones from click itself.
    """
    names = {cls.__name__ for cls in type(exc).__mro__}
    return next((k for k in ("NoArgsIsHelpError", "UsageError", "ClickException") if k in names), None)


def main() -> None:
    """Console-script entry point: run the app; bad input becomes one line + exit 2.

    Covers our own errors and the command-line parser's (unknown option or command,
    missing or unparsable value), which Typer would otherwise draw as a multi-line box.
    """
    args = sys.argv[1:]
    from robustbench_act.cpu import (
        requested_corruption_kernels,
        requested_layeract_kernel,
        set_thread_defaults,
    )
    from robustbench_act.memory import keep_freed_memory

    set_thread_defaults()  # before any command imports torch (see robustbench_act/cpu.py)
    keep_freed_memory()  # ... and so is glibc's malloc policy (robustbench_act/memory.py)
    try:
        requested_layeract_kernel()  # a bad ACTBENCH_LAYERACT_KERNEL fails before any output
        requested_corruption_kernels()  # ... and a bad CORRUPTIONS_KERNELS
        code = app(prog_name="actbench", args=args, standalone_mode=False)
    except typer.Abort:
        _one_line_error("aborted")
        sys.exit(1)
    except Exception as exc:
        kind = _parser_error_kind(exc)
        if kind == "NoArgsIsHelpError":  # a bare command group: show its help, exit 2 as before
            app(prog_name="actbench", args=[*args, "--help"], standalone_mode=False)
            sys.exit(2)
        if kind is not None:
            ctx = getattr(exc, "ctx", None)
            where = f" (see '{ctx.command_path} --help')" if kind == "UsageError" and ctx is not None else ""
            _one_line_error(exc.format_message() + where)  # type: ignore[attr-defined]
            sys.exit(getattr(exc, "exit_code", 2))
        if not _is_user_error(exc):
            raise
        _one_line_error(str(exc))
        sys.exit(2)
    sys.exit(code if isinstance(code, int) else 0)
