"""The actbench app as a whole: start-up cost and how errors reach the user."""

from __future__ import annotations

import subprocess
import sys

import corruptions
from robustbench_act.activations import KINDS
from robustbench_act.cli import _is_user_error
from robustbench_act.cli.activations import KIND_NAMES
from robustbench_act.errors import UserError


def test_help_does_not_import_torch():
    """``actbench --help`` (and shell completion) must not pay torch's multi-second import."""
    code = (
        "import sys\n"
        "from robustbench_act.cli import app\n"
        "from typer.testing import CliRunner\n"
        "res = CliRunner().invoke(app, ['--help'])\n"
        "assert res.exit_code == 0, res.output\n"
        "assert 'activations' in res.output and 'corruptions' in res.output, res.output\n"
        "print(sorted(m for m in ('torch', 'numpy', 'corruptions') if m in sys.modules))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"


def test_activation_kind_help_matches_registry():
    assert KIND_NAMES == KINDS


def test_user_error_classification():
    assert _is_user_error(UserError("bad"))
    assert _is_user_error(corruptions.CorruptionError("unknown corruption"))
    assert not _is_user_error(ValueError("a bug, not bad input"))
    assert not _is_user_error(RuntimeError("a bug, not bad input"))
