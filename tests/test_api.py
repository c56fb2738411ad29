"""The Python API: frozen, validated specs and run(spec), the same folders as the CLI."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

import robustbench_act
from robustbench_act.cli import app
from robustbench_act.errors import UserError
from robustbench_act.results import load_run
from robustbench_act.specs import CompareSpec, ReportSpec, RunSpec, SweepSpec, TrainSpec

SMALL = dict(activations=["relu", "la_silu"], corruptions=["gaussian_noise"], severities=[1, 5], seeds=[0],
             limit=40, batch_size=20, device="cpu", probes="none")  # fmt: skip


@pytest.fixture(scope="module", autouse=True)
def _one_epoch() -> object:
    from robustbench_act import train

    saved = dict(train.RECIPES["digits"])
    train.RECIPES["digits"]["epochs"] = 1
    yield
    train.RECIPES["digits"].clear()
    train.RECIPES["digits"].update(saved)


def test_specs_normalise_validate_and_freeze() -> None:
    spec = RunSpec(activations="relu, la_silu", corruptions="noise", severities="1-3", seeds="0-2")
    assert spec.activations == ("relu", "la_silu") and spec.severities == (1, 2, 3) and spec.seeds == (0, 1, 2)
    assert spec.corruptions == ("gaussian_noise", "shot_noise", "impulse_noise")
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.seeds = (5,)  # type: ignore[misc]
    assert json.loads(json.dumps(spec.as_dict()))["severities"] == [1, 2, 3]
    assert "resume" not in spec.resume_view() and "out" not in spec.resume_view()
    for bad, msg in ((dict(severities=[0]), "--severities must be in 1..5"), (dict(corruptions="fgo"), "fog"),
                     (dict(activations="relu,,silu"), "empty item"), (dict(batch_size=0), "--batch-size"),
                     (dict(corruption_seed=-1), "--corruption-seed"), (dict(probes="most"), "--probes"),
                     (dict(amp="fp8"), "--amp"), (dict(checkpoint=["x.pt"], seeds=[1]), "training seeds"),
                     (dict(mean=[0.5]), "checkpoints trained elsewhere")):  # fmt: skip
        with pytest.raises(UserError, match=msg):
            RunSpec(**bad)
    with pytest.raises(UserError, match="--out is required"):
        TrainSpec()
    with pytest.raises(UserError, match="unknown uncertainty"):
        CompareSpec(runs=["x"], uncertainty="maybe")
    with pytest.raises(UserError, match="not an actbench spec"):
        robustbench_act.run(object())


def test_run_spec_writes_what_the_cli_writes(tmp_path: Path) -> None:
    """RunSpec(activations=[...], corruptions=[...], severities=[1, 5], out=...) == actbench run."""
    outcome = robustbench_act.run(RunSpec(**SMALL, out=str(tmp_path / "api")))
    res = CliRunner().invoke(app, ["run", "--activations", "relu,la_silu", "--corruptions", "gaussian_noise",
                                   "--severities", "1,5", "--seeds", "0", "--limit", "40", "--batch-size", "20",
                                   "--device", "cpu", "--probes", "none", "--quiet", "--out", str(tmp_path / "cli")])  # fmt: skip
    assert res.exit_code == 0, res.output
    a, b = load_run(tmp_path / "api"), load_run(tmp_path / "cli")
    pd.testing.assert_frame_equal(a.metrics.drop(columns="run"), b.metrics.drop(columns="run"))
    assert a.manifest["config"]["spec"] == b.manifest["config"]["spec"] == outcome.manifest["config"]["spec"]
    # --resume compares the spec: another severity set is refused
    with pytest.raises(UserError, match="--resume"):
        robustbench_act.run(RunSpec(**{**SMALL, "severities": [1]}, out=str(tmp_path / "api"), resume=True))
    again = robustbench_act.run(RunSpec(**SMALL, out=str(tmp_path / "api"), resume=True))
    assert again.status == "already complete"
    # compare and report through their specs
    table = robustbench_act.run(CompareSpec(runs=[str(tmp_path / "api")], formats="md",
                                            out=str(tmp_path / "cmp")))  # fmt: skip
    assert [Path(p).name for p in table.written] == ["comparison.md"] and table.uncertainty == "images"
    report = robustbench_act.run(ReportSpec(runs=[str(tmp_path / "api")], out=str(tmp_path / "rep"),
                                            figures="accuracy_vs_severity"))  # fmt: skip
    assert report.name == "report.html" and (tmp_path / "rep" / "figures" / "accuracy_vs_severity.png").is_file()


def test_train_and_sweep_specs(tmp_path: Path) -> None:
    result = robustbench_act.run(TrainSpec(out=str(tmp_path / "t"), dataset="digits", limit=160, epochs=1,
                                           device="cpu", progress=False))  # fmt: skip
    assert result.checkpoint is not None and (tmp_path / "t" / "model.safetensors").is_file()
    spec = SweepSpec(out=str(tmp_path / "s"), models="cnn_small", activations="relu,tanh@swapped", seeds="0-1",
                     dataset="digits", dry_run=True, corruptions="none")  # fmt: skip
    table, combined = robustbench_act.run(spec)
    assert table.cell.tolist() == ["cnn_small-relu-conventional-s0", "cnn_small-relu-conventional-s1",
                                   "cnn_small-tanh-swapped-s0", "cnn_small-tanh-swapped-s1"]
    assert set(table.status) == {"pending"} and combined.empty
