"""The actbench app as a whole: start-up cost and how errors reach the user."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

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


@pytest.mark.parametrize("command", [
    ["train", "--dataset", "digits", "--limit", "128", "--batch-size", "32", "--epochs", "1", "--quiet"],
    ["sweep", "--models", "cnn_small", "--activations", "relu", "--seeds", "0", "--dataset", "digits"],
    ["compare", "RESULTS"],
])  # fmt: skip
def test_out_that_is_a_file_is_one_line_exit_2(tmp_path, command) -> None:
    from typer.testing import CliRunner

    from robustbench_act.cli import app

    blocker = tmp_path / "blocker"
    blocker.write_text("not a folder")
    results = Path(__file__).resolve().parents[1] / "results" / "digits-default"
    args = [str(results) if a == "RESULTS" else a for a in command]
    for out in (blocker, blocker / "sub"):
        result = CliRunner().invoke(app, [*args, "--out", str(out)])
        assert result.exit_code == 2, result.output
        assert result.output.strip() == f"error: cannot create folder {out}: {blocker} is a file"
    assert blocker.read_text() == "not a folder"


def _console(*args: str) -> subprocess.CompletedProcess:
    """The real entry point (``main``), as the console script runs it."""
    return subprocess.run([sys.executable, "-m", "robustbench_act", *args], capture_output=True,
                          text=True, timeout=120)  # fmt: skip


@pytest.mark.parametrize(("args", "message"), [
    (["report", "--format", "docx"], "error: No such option: --format"),
    (["run", "--batch-size", "abc"], "error: Invalid value for '--batch-size'"),
    (["nosuchcmd"], "error: No such command 'nosuchcmd'"),
    (["surgery"], "error: Missing argument"),
])  # fmt: skip
def test_parser_errors_are_one_line_exit_2(args: list[str], message: str) -> None:
    res = _console(*args)
    assert res.returncode == 2, res.stderr
    assert res.stdout == "" and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert res.stderr.startswith(message) and "Traceback" not in res.stderr


def test_bare_group_shows_help_and_help_exits_0() -> None:
    bare = _console("corruptions")
    assert bare.returncode == 2 and "preview" in bare.stdout + bare.stderr
    helped = _console("--help")
    assert helped.returncode == 0 and "activations" in helped.stdout
