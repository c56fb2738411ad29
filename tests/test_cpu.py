"""CPU thread defaults: affinity-sized thread pools, passive OpenMP waiting set by the CLI."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from robustbench_act.cpu import allowed_cpus, default_threads, set_openmp_defaults


def test_threads_follow_the_affinity_mask() -> None:
    want = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert allowed_cpus() == want
    assert default_threads() == want
    assert default_threads(want + 5) == 1
    assert default_threads(2) == max(1, want // 2)


def test_openmp_policy_is_a_default_only() -> None:
    env: dict[str, str] = {}
    set_openmp_defaults(env)
    assert env == {"OMP_WAIT_POLICY": "PASSIVE"}
    env = {"OMP_WAIT_POLICY": "ACTIVE"}
    set_openmp_defaults(env)
    assert env == {"OMP_WAIT_POLICY": "ACTIVE"}


@pytest.mark.parametrize(("preset", "want"), [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_cli_sets_the_policy_before_torch_loads(preset: str | None, want: str) -> None:
    """A command sees the policy in its environment, so torch's OpenMP runtime reads it."""
    code = (
        "import os, sys\n"
        "from robustbench_act import cli\n"
        "sys.argv = ['actbench', 'activations']\n"
        "try:\n    cli.main()\nexcept SystemExit:\n    pass\n"
        "print('POLICY', os.environ.get('OMP_WAIT_POLICY'))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if preset:
        env["OMP_WAIT_POLICY"] = preset
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout
    assert f"POLICY {want}" in out
