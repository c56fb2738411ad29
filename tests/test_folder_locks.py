"""One writer per output folder; an interrupted or failed run leaves nothing misleading behind.

Covers the folder lock (a second process is refused with the holder's pid, a killed
holder's lock is stale and harmless, the lock file is gone after a normal end and never
taken for results), runs that fail before their first cell (no folder left), training
that refuses to resume another model, and the file modes of every output.
"""

from __future__ import annotations

import multiprocessing
import os
import stat
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from robustbench_act.cli import app
from robustbench_act.errors import UserError
from robustbench_act.fileio import LOCK_NAME, FolderLock, writing_folder
from robustbench_act.results import RunStore, is_complete, load_run

CTX = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
MANIFEST = {"config": {"dataset": "digits", "corruptions": [], "severities": [1], "models": []}, "seed": 0}
TRAIN = ["train", "--dataset", "digits", "--limit", "96", "--epochs", "1", "--batch-size", "32", "--quiet"]


def _hold(folder: str, ready, release) -> None:
    """Child: open a results folder for writing, say so, wait (or be killed)."""
    RunStore(folder).begin(MANIFEST)
    ready.set()
    release.wait(60)


def _race(folder: str, barrier, results) -> None:
    """Child: start the same fresh results folder as a sibling, at the same moment."""
    barrier.wait(10)
    try:
        results.put(RunStore(folder).begin(MANIFEST))
    except UserError as exc:
        results.put(f"refused: {exc}")
    time.sleep(0.05)  # keep the lock while the sibling tries


def test_second_writer_gets_the_holders_pid_and_a_killed_holders_lock_is_stale(tmp_path: Path) -> None:
    out = tmp_path / "run"
    ready, release = CTX.Event(), CTX.Event()
    holder = CTX.Process(target=_hold, args=(str(out), ready, release))
    holder.start()
    try:
        assert ready.wait(60)
        for resume in (False, True):  # two simultaneous --resume: the second is refused too
            with pytest.raises(UserError, match=f"^{out} is being written by pid {holder.pid};"):
                RunStore(out).begin(MANIFEST, resume=resume)
        res = CliRunner().invoke(app, [*TRAIN, "--out", str(out / "models" / "x")])  # nested: another lock
        assert res.exit_code == 0, res.output
    finally:
        holder.kill()  # SIGKILL: no clean-up ran
        holder.join()
    assert (out / LOCK_NAME).is_file()  # stale: left by the killed writer, harmless
    store = RunStore(out)
    assert store.begin(MANIFEST, resume=True) == "resume"
    assert store.done_cells() == set()
    store.release()
    assert not (out / LOCK_NAME).exists()


def test_two_processes_starting_one_fresh_folder_never_both_win(tmp_path: Path) -> None:
    for trial in range(30):
        folder = tmp_path / f"r{trial}"
        barrier, results = CTX.Barrier(2), CTX.Queue()
        kids = [CTX.Process(target=_race, args=(str(folder), barrier, results)) for _ in range(2)]
        for k in kids:
            k.start()
        outcomes = sorted(results.get(timeout=60) for _ in kids)
        for k in kids:
            k.join(60)
        assert outcomes[0] == "new" and outcomes[1].startswith(f"refused: {folder} is being written by pid "), outcomes


def test_lock_is_reentrant_in_one_process_and_its_file_goes_with_the_last_release(tmp_path: Path) -> None:
    outer = FolderLock(tmp_path).acquire()
    inner = FolderLock(tmp_path).acquire()
    assert (tmp_path / LOCK_NAME).read_text().strip() == str(os.getpid())
    inner.release()
    assert (tmp_path / LOCK_NAME).is_file()
    outer.release()
    assert not (tmp_path / LOCK_NAME).exists()


def test_writing_folder_removes_a_folder_it_created_when_the_block_fails(tmp_path: Path) -> None:
    new = tmp_path / "a" / "b"
    with pytest.raises(KeyboardInterrupt), writing_folder(new):
        assert (new / LOCK_NAME).is_file()
        raise KeyboardInterrupt
    assert not new.exists()
    (tmp_path / "kept").mkdir()
    (tmp_path / "kept" / "notes.txt").write_text("mine\n")
    with pytest.raises(UserError, match="holds files that are not this command's output"), \
            writing_folder(tmp_path / "kept", foreign=lambda p: ["notes.txt"]):  # fmt: skip
        pass
    assert sorted(p.name for p in (tmp_path / "kept").iterdir()) == ["notes.txt"]


def test_a_run_interrupted_before_its_first_cell_leaves_no_folder(tmp_path: Path) -> None:
    from robustbench_act.data import load_dataset
    from robustbench_act.models import build_model
    from robustbench_act.pipeline import run_models

    def stop(event: dict) -> None:
        raise KeyboardInterrupt

    net = build_model("cnn_small", num_classes=10, in_chans=1).eval()
    info = {"m": {"model": "cnn_small", "activation": "relu", "order": "conventional", "seed": 0}}
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        run_models({"m": net}, info, load_dataset("digits", limit=8), out=out, config=MANIFEST["config"],
                   corruptions=["contrast"], severities=[1], probes="none", progress=stop)  # fmt: skip
    assert not out.exists()


def _files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def test_outputs_are_0644_and_no_lock_file_stays(tmp_path: Path) -> None:
    saved = os.umask(0o022)
    try:
        ck, res, cmp = tmp_path / "ck", tmp_path / "res", tmp_path / "cmp"
        assert CliRunner().invoke(app, [*TRAIN, "--out", str(ck)]).exit_code == 0
        run = ["run", "--checkpoint", str(ck), "--corruptions", "contrast", "--severities", "1", "--limit", "16",
               "--quiet", "--out", str(res)]  # fmt: skip
        assert CliRunner().invoke(app, run).exit_code == 0
        assert CliRunner().invoke(app, ["compare", str(res), "--out", str(cmp)]).exit_code == 0
    finally:
        os.umask(saved)
    modes = {str(p.relative_to(tmp_path)): stat.S_IMODE(p.stat().st_mode) for p in _files(tmp_path)}
    assert "ck/model.safetensors" in modes and "res/metrics.parquet" in modes
    assert {k: oct(v) for k, v in modes.items() if v != 0o644} == {}
    assert not [p for p in tmp_path.rglob(LOCK_NAME)]
    (res / LOCK_NAME).write_text("12345\n")  # a stale lock: not results, not a reason to refuse
    assert is_complete(res) and len(load_run(res).metrics)
    assert CliRunner().invoke(app, ["compare", str(res), "--out", str(cmp)]).exit_code == 0


def test_resume_refuses_another_model_activation_order_or_dataset(tmp_path: Path) -> None:
    from PIL import Image

    out = tmp_path / "ck"
    base = [*TRAIN, "--recipe", "digits"]
    assert CliRunner().invoke(app, [*base, "--activation", "la_silu", "--out", str(out)]).exit_code == 0
    state = torch.load(out / "state.pt", weights_only=True)
    assert state["identity"]["activation"] == "la_silu" and state["identity"]["model"] == "cnn_small"
    folder = tmp_path / "imgs"
    for c in range(10):
        for i in range(12):
            (folder / "train" / str(c)).mkdir(parents=True, exist_ok=True)
            Image.new("L", (16, 16), color=20 * c + i).save(folder / "train" / str(c) / f"{i}.png")
    for change, word in ((["--activation", "relu"], "activation='la_silu', now activation='relu'"),
                         (["--activation", "la_silu", "--model", "resnet20"], "model='cnn_small'"),
                         (["--activation", "la_silu", "--order", "swapped"], "order='conventional'"),
                         (["--activation", "la_silu", "--model", "cnn_small", "--dataset", f"imagefolder:{folder}"],
                          "dataset='digits'")):
        before = (out / "state.pt").read_bytes()
        res = CliRunner().invoke(app, [*base, *change, "--resume", "--out", str(out)])
        assert res.exit_code == 2 and "cannot resume" in res.stderr and word in res.stderr, res.output
        assert (out / "state.pt").read_bytes() == before
    res = CliRunner().invoke(app, [*base, "--activation", "la_silu", "--resume", "--out", str(out)])
    assert res.exit_code == 0, res.output
