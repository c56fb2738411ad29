"""keep_freed_memory: freed buffers are reused instead of fresh zero-filled pages, and the
environment's own choice is respected."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from robustbench_act.memory import KEEP_FREED_ENV, keep_freed_memory

glibc = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")

#: touches a fresh 64 MiB malloc block, frees it, and counts the page faults of a second round
_FAULTS = """
import ctypes, resource, sys
from robustbench_act.memory import keep_freed_memory
applied = keep_freed_memory() if sys.argv[1] == "keep" else False
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
size = 64 * 2**20
def one_round():
    p = libc.malloc(size)
    ctypes.memset(p, 1, size)
    libc.free(p)
one_round()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
one_round()
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _second_round_faults(mode: str) -> tuple[bool, int]:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": ":".join(sys.path)}
    out = subprocess.run([sys.executable, "-c", _FAULTS, mode], capture_output=True, text=True, env=env, check=True)
    applied, faults = out.stdout.split()
    return applied == "True", int(faults)


@glibc
def test_freed_blocks_are_reused_without_new_page_faults() -> None:
    applied, kept = _second_round_faults("keep")
    assert applied and kept < 100
    not_applied, default = _second_round_faults("default")
    assert not not_applied and default > 10_000  # 64 MiB of 4 KiB pages, mapped afresh


def test_the_environments_choice_is_left_alone() -> None:
    assert keep_freed_memory({KEEP_FREED_ENV: "0"}) is False
    assert keep_freed_memory({"MALLOC_TRIM_THRESHOLD_": "131072"}) is False
    assert keep_freed_memory({"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=131072"}) is False
