"""Sweeps: cell planning and sharding, train+evaluate per cell, skip/resume, parallel, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

import robustbench_act.train as T
from robustbench_act.errors import UserError
from robustbench_act.sweep import (
    Cell,
    SweepOptions,
    cell_status,
    parse_seeds,
    parse_shard,
    plan_cells,
    run_sweep,
    shard_cells,
)


def _opts(out: Path, **kw) -> SweepOptions:
    base = dict(out=str(out), dataset="digits", recipe="digits", limit=96,
                train_overrides={"epochs": 1, "batch_size": 32, "val_fraction": 0.0},
                corruptions=["gaussian_noise"], severities=[2], eval_batch_size=256, device="cpu")  # fmt: skip
    base.update(kw)
    return SweepOptions(**base)


def test_planning_and_sharding() -> None:
    assert parse_seeds("0-2,5") == [0, 1, 2, 5] and parse_seeds(3) == [3]
    with pytest.raises(UserError):
        parse_seeds("a-b")
    assert parse_shard("1/3") == (1, 3) and parse_shard(None) == (0, 1)
    with pytest.raises(UserError, match="bad shard"):
        parse_shard("3/3")
    cells = plan_cells(["resnet20"], ["silu", "relu", "la_silu(alpha=0.1)"], ["swapped", "conventional"], [1, 0])
    assert len(cells) == 12 and cells == sorted(cells)
    assert cells[0] == Cell("resnet20", "la_silu(alpha=0.1)", "conventional", 0)
    assert cells[0].name == "resnet20-la_silu_alpha_0.1-conventional-s0"
    shards = [shard_cells(cells, i, 5) for i in range(5)]
    assert sorted(c for s in shards for c in s) == cells
    assert shards[1] == [cells[1], cells[6], cells[11]]
    with pytest.raises(UserError, match="order"):
        plan_cells(["resnet20"], ["relu"], ["sideways"], [0])
    with pytest.raises(UserError, match="closest"):
        plan_cells(["resnet20"], ["rleu"], ["conventional"], [0])
    with pytest.raises(UserError, match="resnet20"):  # refused before any cell trains
        plan_cells(["resnet20", "resnet2O"], ["relu"], ["conventional"], [0])


def test_cli_bad_model_writes_nothing(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from robustbench_act.cli import app

    out = tmp_path / "sweep"
    result = CliRunner().invoke(app, ["sweep", "--models", "resnet2O", "--activations", "relu",
                                      "--seeds", "0", "--dataset", "digits", "--out", str(out)])  # fmt: skip
    assert result.exit_code == 2, result.output
    assert result.output.strip().startswith("error: unknown model 'resnet2O'")
    assert not out.exists()


def test_sweep_trains_evaluates_skips_and_resumes(tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "sw"
    cells = plan_cells(["cnn_small"], ["relu", "silu"], ["conventional"], [0])
    # interrupt the second cell's training after its first epoch (2 epochs planned)
    opts = _opts(out, train_overrides={"epochs": 2, "batch_size": 32, "val_fraction": 0.0})
    real = T._write_state

    def boom(*a, **k):
        real(*a, **k)
        raise KeyboardInterrupt

    monkeypatch.setattr(T, "_write_state", boom)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(cells[1:], opts, progress=False, echo=lambda s: None)
    assert cell_status(out, cells[1]) == "training"
    monkeypatch.setattr(T, "_write_state", real)
    lines: list[str] = []
    table, combined = run_sweep(cells, opts, progress=False, echo=lines.append)
    assert table.status.tolist() == ["done", "done"]
    assert any("relu" in ln and "trained + evaluated" in ln for ln in lines)
    assert any("silu" in ln and "resumed training + evaluated" in ln for ln in lines)
    for c in cells:
        assert (out / c.name / "train" / "model.safetensors").is_file()
        assert (out / c.name / "eval" / "metrics.parquet").is_file()
    assert sorted(combined.run.unique()) == [c.name for c in cells]
    assert set(combined.corruption) == {"clean", "gaussian_noise"}
    pd.testing.assert_frame_equal(pd.read_parquet(out / "metrics.parquet"), combined, check_dtype=False)
    man = json.loads((out / "sweep.json").read_text())
    assert man["kind"] == "sweep" and man["status_counts"] == {"done": 2}
    lines.clear()
    run_sweep(cells, opts, progress=False, echo=lines.append)  # nothing left to do
    assert "0 to run" in lines[0]


def test_parallel_sweep_and_cli(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from robustbench_act.cli import app

    out = tmp_path / "par"
    cells = plan_cells(["cnn_small"], ["relu", "tanh"], ["conventional"], [0, 1])
    table, combined = run_sweep(cells, _opts(out), parallel=2, shard=(0, 2), progress=False,
                                echo=lambda s: None)  # fmt: skip
    assert table.status.tolist() == ["done", "pending", "done", "pending"]
    assert combined.run.nunique() == 2
    runner = CliRunner()
    args = ["sweep", "--models", "cnn_small", "--activations", "relu,tanh", "--seeds", "0-1",
            "--dataset", "digits", "--out", str(out), "--epochs", "1", "--limit", "96",
            "--corruptions", "gaussian_noise", "--severities", "2", "--device", "cpu", "--quiet"]  # fmt: skip
    res = runner.invoke(app, [*args, "--dry-run", "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert [r["status"] for r in rows] == ["done", "pending", "done", "pending"]
    res = runner.invoke(app, [*args, "--shard", "5/2"])
    assert res.exit_code == 2 and "bad shard" in res.output
    res = runner.invoke(app, [*args[:-9], "--out", str(tmp_path / "x"), "--recipe", "fst"])
    assert res.exit_code == 2 and "closest: fast" in res.output


def test_eval_limit_runs_seed_major_and_measures_clean_on_the_whole_test_set(tmp_path: Path) -> None:
    out = tmp_path / "el"
    cells = plan_cells(["cnn_small"], ["relu", "tanh"], ["conventional"], [0, 1])
    lines: list[str] = []
    run_sweep(cells, _opts(out, eval_limit=40), progress=False, echo=lines.append)
    ran = [ln.split(": ")[0].split("] ")[1] for ln in lines if ln.startswith("[")]
    assert ran == [c.name for c in sorted(cells, key=lambda c: (c.seed, c.activation))]
    for c in cells:
        sub = pd.read_parquet(out / c.name / "eval" / "metrics.parquet")
        full = pd.read_parquet(out / c.name / "clean" / "metrics.parquet")
        assert set(sub.n) == {40} and set(full.n) == {96}
        assert set(full.corruption) == {"clean"} and "gaussian_noise" in set(sub.corruption)
    assert any("on the whole test set" in ln for ln in lines)
    from typer.testing import CliRunner

    from robustbench_act.cli import app

    res = CliRunner().invoke(app, ["sweep", "--dataset", "digits", "--out", str(tmp_path / "y"),
                                   "--eval-limit", "0"])  # fmt: skip
    assert res.exit_code == 2 and "--eval-limit must be positive" in res.output
    assert not (tmp_path / "y").exists()


def test_activation_with_its_own_order() -> None:
    cells = plan_cells(["resnet20"], ["relu", "tanh", "tanh@swapped"], ["conventional"], [0])
    assert [(c.activation, c.order) for c in cells] == [
        ("relu", "conventional"), ("tanh", "conventional"), ("tanh", "swapped")]
    with pytest.raises(UserError, match="order"):
        plan_cells(["resnet20"], ["tanh@sideways"], ["conventional"], [0])


def test_compare_of_an_eval_limited_sweep_reads_eval_and_names_clean_only_on_request(tmp_path: Path) -> None:
    from robustbench_act.compare import compare_runs

    out = tmp_path / "cmp"
    cells = plan_cells(["cnn_small"], ["relu", "tanh"], ["conventional"], [0])
    run_sweep(cells, _opts(out, eval_limit=40), progress=False, echo=lambda s: None)
    t = compare_runs(out)  # only the eval/ runs: same images, so no mismatch
    assert set(t.data["n_images"]) == {40}
    full = compare_runs([out / c.name / "clean" for c in cells])
    assert set(full.data["n_images"]) == {96}


def test_a_diverged_cell_is_a_result_not_retried(tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "dv"
    cells = plan_cells(["cnn_small"], ["relu"], ["conventional"], [0])
    real = T._step

    def nan_loss(*args, **kwargs):  # the loss of every step becomes NaN
        logits, loss = real(*args, **kwargs)
        return logits, loss * float("nan")

    monkeypatch.setattr(T, "_step", nan_loss)
    with pytest.raises(UserError, match="1 sweep cell"):
        run_sweep(cells, _opts(out), progress=False, echo=lambda s: None)
    monkeypatch.setattr(T, "_step", real)
    man = json.loads((out / cells[0].name / "train" / "manifest.json").read_text())
    assert man["status"] == "diverged" and "diverged at epoch 1" in man["error"]
    assert cell_status(out, cells[0]) == "diverged"
    lines: list[str] = []
    table, _ = run_sweep(cells, _opts(out), progress=False, echo=lines.append)
    assert "1 diverged (not retried" in lines[0] and "0 to run" in lines[0]
    assert table.status.tolist() == ["diverged"]
