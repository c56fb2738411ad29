"""Run one actbench invocation in this process and record what it did (output, files changed).

Used by ``tests/test_bad_inputs.py`` (and, in a child process without root's permission
override, through :func:`invoke_all`).
"""

from __future__ import annotations

from pathlib import Path


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """(size, mtime) of everything under ``root`` (folders: size only); unreadable folders skipped."""
    import os

    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = Path(dirpath) / n
            st = p.lstat()
            out[str(p.relative_to(root))] = (st.st_size, 0 if p.is_dir() else st.st_mtime_ns)
    return out


def changes(before: dict, after: dict) -> list[str]:
    """Paths created, removed or changed between two snapshots."""
    return sorted(set(before) ^ set(after)) + sorted(k for k in set(before) & set(after) if before[k] != after[k])


def invoke(argv: list[str], fx: dict[str, str], root: Path, *, console: bool = False) -> dict[str, object]:
    """Run one case in ``root/scratch``: what it did and what it changed.

    Through Typer's CliRunner, or with ``console`` through ``cli.main`` (the console script's
    entry point, which also folds the parser's own errors into one line) in this process.
    """
    import os

    args = [a.format(out=root / "scratch" / "out", **fx) for a in argv]
    before = snapshot(root)
    cwd = os.getcwd()
    os.chdir(root / "scratch")  # compare's --out defaults to the current folder
    try:
        code, stdout, stderr, exc = _main(args) if console else _runner(args)
    finally:
        os.chdir(cwd)
    return {"code": code, "stdout": stdout, "stderr": stderr,
            "exception": f"{type(exc).__name__}: {exc}" if exc is not None else None,
            "changed": changes(before, snapshot(root))}  # fmt: skip


def _runner(args: list[str]) -> tuple[int, str, str, BaseException | None]:
    from typer.testing import CliRunner

    from robustbench_act.cli import app

    res = CliRunner().invoke(app, args)
    exc = res.exception if not isinstance(res.exception, SystemExit) else None
    return res.exit_code, res.stdout, res.stderr, exc


def _main(args: list[str]) -> tuple[int, str, str, BaseException | None]:
    import contextlib
    import io
    import sys

    from robustbench_act.cli import main

    out, err, saved = io.StringIO(), io.StringIO(), sys.argv
    sys.argv, code, exc = ["actbench", *args], 0, None
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    except Exception as e:  # a traceback the user would see
        code, exc = 1, e
    finally:
        sys.argv = saved
    return code, out.getvalue(), err.getvalue(), exc


def invoke_all(cases: list[tuple[str, list[str]]], fx: dict[str, str], root: str) -> dict[str, dict]:
    """:func:`invoke` through ``cli.main`` for many cases (a child process without root's override)."""
    return {cid: invoke(argv, fx, Path(root), console=True) for cid, argv in cases}
