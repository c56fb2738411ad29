"""Every malformed invocation of every command is a clean refusal.

Clean: exit code 2, one ``error: ...`` line on stderr, nothing on stdout, no traceback, and
no file created or changed anywhere under the test's folder. The table (``malformed.cases``,
several hundred invocations across run, train, sweep, compare, report, surgery,
activations and corruptions list/preview/export) runs through Typer's CliRunner; a sample
runs through the real console script, and the cases about permissions run there too, in
a process without root's permission override.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

try:  # tests/ on sys.path (pytest's default rootdir-less import mode)
    import clirun
    import malformed
except ImportError:  # tests/ imported as a package
    from tests import clirun, malformed

CASES = malformed.cases()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """The fixtures every case may name, under one root the tests watch for new files."""
    root = tmp_path_factory.mktemp("bad")
    fx = malformed.build_fixtures(root / "fx")
    (root / "scratch").mkdir()
    return root, fx


def _assert_clean(code: int, stdout: str, stderr: str, changed: list[str], cid: str,
                  exception: str | None = None) -> None:  # fmt: skip
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert exception is None, (cid, exception)
    assert "Traceback" not in stdout + stderr, (cid, stderr)
    assert code == 2, (cid, code, stdout, stderr)
    assert len(lines) == 1 and lines[0].startswith("error: "), (cid, stderr)
    assert not stdout.strip(), (cid, stdout)
    assert not changed, (cid, changed)


def test_the_table_is_large_distinct_and_covers_every_command() -> None:
    ids = [c[0] for c in CASES]
    assert len(ids) == len(set(ids)) and len(ids) >= 300
    argvs = {tuple(a) for _, a in CASES}
    assert len(argvs) == len(CASES)
    commands = {a[0] if a[0] != "corruptions" else f"corruptions {a[1]}" for _, a in CASES}
    assert commands == {"run", "train", "sweep", "compare", "report", "surgery", "activations",
                        "corruptions list", "corruptions preview", "corruptions export"}  # fmt: skip


@pytest.mark.parametrize(("cid", "argv"), CASES, ids=[c[0] for c in CASES])
def test_malformed_invocation_is_one_line_exit_2_and_writes_nothing(world, cid: str, argv: list[str]) -> None:
    root, fx = world
    _assert_clean(cid=cid, **clirun.invoke(argv, fx, root))  # type: ignore[arg-type]


def _console(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """The installed console script (or its entry point ``cli.main``) in a fresh process."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "OMP_NUM_THREADS": "1"}
    script = Path(sys.executable).with_name("actbench")
    cmd = [str(script)] if script.is_file() else [sys.executable, "-m", "robustbench_act"]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


# most fail before torch is imported (fast); a few load data or plug-ins first
CONSOLE_SAMPLE = ["run --seed 99999999999999999999999", "train --lr 1e308", "surgery resnet20 --num-classes -3",
                  "corruptions preview --size 1000000", "sweep --dry-run --parallel 0", "run --activations ',,'",
                  "compare m_config_list", "export p_kernel_raises"]  # fmt: skip


@pytest.mark.parametrize("cid", CONSOLE_SAMPLE)
def test_console_script_refuses_the_same_way(world, cid: str) -> None:
    root, fx = world
    args = [a.format(out=root / "scratch" / "out", **fx) for a in dict(CASES)[cid]]
    before = clirun.snapshot(root)
    res = _console(args, root / "scratch")
    _assert_clean(res.returncode, res.stdout, res.stderr, clirun.changes(before, clirun.snapshot(root)), cid)


def _unprivileged() -> list[str] | None:
    """A prefix running a command without root's permission override; None when there is none."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return None
    probe = subprocess.run([setpriv, "--bounding-set=-dac_override,-dac_read_search", "true"], capture_output=True)
    return [setpriv, "--bounding-set=-dac_override,-dac_read_search"] if probe.returncode == 0 else None


PERMISSION_CASES = malformed.permission_cases()


@pytest.fixture(scope="module")
def unprivileged_results(world) -> dict[str, dict]:
    """Every permission case, run through CliRunner in one child process that cannot override permissions."""
    import json

    root, fx = world
    prefix = _unprivileged()
    if prefix is None:
        pytest.skip("running as root without setpriv: permissions cannot be taken away")
    fx = {**fx, **malformed.build_permission_fixtures(root / "perm", fx)}
    tests = str(Path(__file__).resolve().parent)
    code = (f"import json, sys; sys.path.insert(0, {tests!r}); import clirun; "
            "print(json.dumps(clirun.invoke_all(**json.load(sys.stdin))))")  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(Path(tests).parent), "OMP_NUM_THREADS": "1"}
    payload = json.dumps({"cases": PERMISSION_CASES, "fx": fx, "root": str(root)})
    try:
        res = subprocess.run([*prefix, sys.executable, "-c", code], input=payload, capture_output=True, text=True,
                             env=env, timeout=600)  # fmt: skip
    finally:
        for dirpath, dirnames, filenames in os.walk(root / "perm"):  # let pytest clean up
            for n in dirnames + filenames:
                os.chmod(Path(dirpath) / n, 0o755)
        os.chmod(root / "perm", 0o755)
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("cid", [c[0] for c in PERMISSION_CASES])
def test_unreadable_inputs_and_read_only_outputs_are_refused(unprivileged_results, cid: str) -> None:
    _assert_clean(cid=cid, **unprivileged_results[cid])
