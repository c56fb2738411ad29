"""git_commit: '-dirty' follows the code, not result files (committed results regenerate clean)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from robustbench_act.manifest import git_commit

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")


def _repo(tmp_path: Path) -> Path:
    run = lambda *a: subprocess.run(["git", *a], cwd=tmp_path, check=True, capture_output=True)  # noqa: E731
    run("init", "-q")
    for rel in ("robustbench_act/mod.py", "corruptions/k.py", "pyproject.toml", "results/r.csv"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x\n")
    run("add", "-A")
    run("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    return tmp_path / "robustbench_act"


def test_result_changes_leave_the_commit_clean_and_code_changes_mark_it_dirty(tmp_path):
    pkg = _repo(tmp_path)
    clean = git_commit(pkg)
    assert clean and not clean.endswith("-dirty")
    (tmp_path / "results" / "r.csv").write_text("changed\n")
    (tmp_path / "results" / "new.csv").write_text("untracked\n")
    assert git_commit(pkg) == clean
    for rel in ("corruptions/k.py", "pyproject.toml", "robustbench_act/mod.py"):
        (tmp_path / rel).write_text("changed\n")
        assert git_commit(pkg) == clean + "-dirty", rel
        subprocess.run(["git", "checkout", "-q", "--", rel], cwd=tmp_path, check=True)
