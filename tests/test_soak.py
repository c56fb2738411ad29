"""Soak: ``run`` and ``train`` killed (SIGKILL) at 10 seeded random moments each, then resumed.

Each command runs once uninterrupted; a second copy is started with ``--resume`` and
killed after a random delay, ten times in a row, then resumed to the end. Its tables
(run) or weights and training log (train) must equal the uninterrupted ones bit for bit,
and no lock survives. The processes are forked from this one where the platform allows
it (a fresh interpreter per kill would spend most of the time importing torch).
"""

from __future__ import annotations

import multiprocessing
import os
import random
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
import torch

from robustbench_act.fileio import LOCK_NAME

CTX = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
KILLS = 10
EPOCHS = 16
TRAIN = ["train", "--dataset", "digits", "--limit", "320", "--epochs", str(EPOCHS), "--batch-size", "32",
         "--activation", "la_silu", "--quiet"]  # fmt: skip
CELLS = 1 + 19 * 2  # clean + 19 corruptions x 2 severities (cells are flushed a corruption at a time)
RUN = ["run", "--corruptions", "all", "--severities", "1,3", "--limit", "64", "--batch-size", "32",
       "--quiet"]  # fmt: skip


def _command(argv: list[str], log: str) -> None:
    """Child: the console script's entry point with ``argv``, output into ``log``."""
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    torch.set_num_threads(1)
    import sys

    from robustbench_act.cli import main

    sys.argv = ["actbench", *argv]
    main()


def _complete(argv: list[str], log: Path) -> float:
    t0 = time.perf_counter()
    p = CTX.Process(target=_command, args=(argv, str(log)))
    p.start()
    p.join(600)
    assert p.exitcode == 0, log.read_text()[-3000:]
    return time.perf_counter() - t0


def _killed_then_resumed(argv: list[str], progress: Callable[[], int], units: int, seconds: float, log: Path,
                         seed: int) -> list[tuple[int, float]]:  # fmt: skip
    """Start ``argv --resume`` and SIGKILL it at a random point, KILLS times; then finish it.

    A point is a random number of finished units (cells, epochs) on disk, a few more than
    at the last kill, plus a random part of one unit's time: kills land all over the work.
    """
    rng = random.Random(seed)
    landed = []
    for _ in range(KILLS):
        if progress() >= units:
            break
        step = rng.randint(0, max(1, units // KILLS))  # spread the kills over the whole run
        target, extra = min(units - 1, progress() + step), rng.uniform(0.0, seconds / units)
        p = CTX.Process(target=_command, args=([*argv, "--resume"], str(log)))
        p.start()
        deadline = time.monotonic() + 300
        while p.is_alive() and progress() < target and time.monotonic() < deadline:
            time.sleep(0.005)
        p.join(extra)
        if p.is_alive():
            p.kill()
            landed.append((target, round(extra, 3)))
        p.join()
    _complete([*argv, "--resume"], log)
    return landed


def _epochs(folder: Path) -> Callable[[], int]:
    def count() -> int:
        try:
            return len(pd.read_csv(folder / "train_log.csv"))
        except (OSError, ValueError):  # not there yet, or being replaced
            return 0

    return count


def _cells(folder: Path) -> Callable[[], int]:
    def count() -> int:
        cells = folder / "cells"
        return len([p for p in cells.iterdir() if not p.name.startswith(".")]) if cells.is_dir() else 0

    return count


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


@pytest.mark.slow
def test_train_and_run_killed_at_random_points_resume_to_identical_outputs(tmp_path: Path) -> None:
    log = tmp_path / "log.txt"
    full, cut = tmp_path / "a" / "ck", tmp_path / "b" / "ck"  # same names: same run labels
    seconds = _complete([*TRAIN, "--out", str(full)], log)
    kills = _killed_then_resumed([*TRAIN, "--out", str(cut)], _epochs(cut), EPOCHS, seconds, log, seed=15)
    assert len(kills) >= KILLS - 1, kills  # (almost) every kill landed while it was working
    a, b = _weights(full), _weights(cut)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    cols = ["epoch", "iteration", "loss", "train_acc", "val_acc", "lr"]
    pd.testing.assert_frame_equal(pd.read_csv(full / "train_log.csv")[cols], pd.read_csv(cut / "train_log.csv")[cols])

    full_run, cut_run = tmp_path / "a" / "run", tmp_path / "b" / "run"
    argv = [*RUN, "--checkpoint", str(full)]
    seconds = _complete([*argv, "--out", str(full_run)], log)
    kills = _killed_then_resumed([*argv, "--out", str(cut_run)], _cells(cut_run), CELLS, seconds, log, seed=16)
    assert len(kills) >= KILLS - 1, kills
    from robustbench_act.results import load_run

    x, y = load_run(full_run), load_run(cut_run)
    for table in ("metrics", "layers", "samples", "units"):
        pd.testing.assert_frame_equal(getattr(x, table), getattr(y, table), check_exact=True)
    assert len(y.manifest.get("resumed", [])) >= 1
    assert not list(tmp_path.rglob(LOCK_NAME)), "a lock survived a finished command"
