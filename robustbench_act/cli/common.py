"""What every command shares: its options checked before it runs, bad input as one line + exit 2.

``command(fn, **path_kinds)`` wraps a Typer command function. Before ``fn`` runs, every
numeric option is range-checked (``inputs.RULES``, by parameter name) and every path
option checked for kind and permission (``inputs.PATH_RULES``, by name, overridden by
``path_kinds``, e.g. ``out="out_file"``); a :class:`UserError` or a corruptions error,
raised there or inside the command, becomes ``error: <one line>`` on stderr and exit
code 2 (also under Typer's CliRunner, which bypasses ``cli.main``).
"""

from __future__ import annotations

import functools
import inspect
import re
from collections.abc import Callable
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

from robustbench_act import inputs
from robustbench_act.errors import is_user_error

_err = Console(stderr=True, highlight=False, soft_wrap=True)


def print_error(message: str) -> None:
    """``error: <message>`` on stderr, folded onto one line."""
    _err.print(f"[bold red]error:[/] {escape(one_line(message))}", markup=True, highlight=False)


def one_line(message: str) -> str:
    """A message on one line; one that embeds a traceback (an error re-raised from a data
    loader worker) becomes the original error's own message."""
    lines = [ln.strip() for ln in str(message).splitlines() if ln.strip()]
    if any("Traceback (most recent call last)" in ln for ln in lines):
        head, sep, rest = lines[-1].partition(": ")
        return rest if sep and re.fullmatch(r"[\w.]+", head) else lines[-1]
    return " ".join(" ".join(lines).split())


def _labels(fn: Callable[..., Any]) -> dict[str, str]:
    """Parameter name -> how the user spells it (the first --long option, or a noun for arguments)."""
    out = {}
    for name, param in inspect.signature(fn).parameters.items():
        decls = [d for d in getattr(param.default, "param_decls", None) or () if d.startswith("--")]
        if decls:
            out[name] = decls[0].split("/")[0]
        else:
            out[name] = inputs.ARGUMENT_LABELS.get(name, name.upper())
    return out


def command(fn: Callable[..., Any] | None = None, **path_kinds: str) -> Any:
    """Wrap a command function: inputs checked first, user errors one line with exit code 2."""
    if fn is None:
        return functools.partial(command, **path_kinds)
    labels = _labels(fn)
    names = set(labels)
    kinds = {k: v for k, v in {**inputs.PATH_RULES, **path_kinds}.items() if k in names}

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            inputs.check_numbers(kwargs, labels)
            inputs.check_paths(kwargs, kinds, labels)
            return fn(*args, **kwargs)
        except Exception as exc:
            if not is_user_error(exc):
                raise
            print_error(str(exc))
            raise typer.Exit(2) from None

    return wrapper
