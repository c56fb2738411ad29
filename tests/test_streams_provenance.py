"""The random-stream version in run manifests, --resume and comparisons: never mixed silently."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

import corruptions
from robustbench_act.data import ImageDataset
from robustbench_act.errors import UserError
from robustbench_act.pipeline import run_models


def _run(out: Path, resume: bool = False, streams: int | None = None):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    ds = ImageDataset(name="t", classes=["a", "b"], mean=(0.5,) * 3, std=(0.2,) * 3,
                      images=torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8,
                                           generator=torch.Generator().manual_seed(1)),
                      labels=[0, 1, 0, 1, 0, 1])  # fmt: skip
    info = {"m": {"model": "tiny", "activation": "relu", "order": "conventional", "seed": 0}}
    config = {"dataset": "t", "corruptions": ["shot_noise"], "severities": [5], "probes": "none", "clean": True}
    with corruptions.using_streams(streams):
        return run_models({"m": model}, info, ds, out=out, config=config, corruptions=["shot_noise"],
                          severities=[5], probes="none", batch_size=4, resume=resume)  # fmt: skip


def _interrupt(run: Path, drop_streams: bool = False) -> None:
    (run / "metrics.parquet").unlink()
    man = json.loads((run / "manifest.json").read_text())
    if drop_streams:
        del man["config"]["streams"]
    (run / "manifest.json").write_text(json.dumps({**man, "status": "incomplete"}))


def test_run_manifests_record_the_version_and_resume_refuses_another(tmp_path: Path) -> None:
    assert _run(tmp_path / "v4").manifest["config"]["streams"] == 4
    assert json.loads((tmp_path / "v4" / "manifest.json").read_text())["config"]["streams"] == 4
    assert _run(tmp_path / "v1", streams=1).manifest["config"]["streams"] == 1
    _interrupt(tmp_path / "v4")
    with pytest.raises(UserError, match=r"streams=4, not 1.*--streams picks"):
        _run(tmp_path / "v4", resume=True, streams=1)
    assert _run(tmp_path / "v4", resume=True).manifest["config"]["streams"] == 4


def test_runs_from_before_versioning_resume_as_version_1_only(tmp_path: Path) -> None:
    _run(tmp_path / "old", streams=1)
    _interrupt(tmp_path / "old", drop_streams=True)
    with pytest.raises(UserError, match="streams=1, not 4"):
        _run(tmp_path / "old", resume=True)
    _run(tmp_path / "old", resume=True, streams=1)


def test_comparisons_name_runs_made_with_different_versions(tmp_path: Path) -> None:
    from robustbench_act.runset import check_same_data, load_runs

    _run(tmp_path / "a", streams=1)
    _run(tmp_path / "b")
    problems = check_same_data(load_runs([tmp_path / "a", tmp_path / "b"]))
    assert any(p.startswith("random-stream version differs: 1 (a) vs 4 (b)") or
               p.startswith("random-stream version differs: 4 (b) vs 1 (a)") for p in problems), problems  # fmt: skip


def test_run_and_sweep_specs_take_the_version_and_refuse_bad_ones() -> None:
    from robustbench_act.specs import RunSpec, SweepSpec

    assert RunSpec().streams == 4 and RunSpec(streams=1).streams == 1
    assert SweepSpec(out="x", models="cnn_small", activations="relu", streams="v1").streams == 1
    with pytest.raises(UserError, match=r"--streams: unknown random-stream version 5; valid: 1, 2, 3, 4"):
        RunSpec(streams=5)


def test_a_sweep_does_not_mix_stream_versions(tmp_path: Path) -> None:
    from robustbench_act.sweep import EVAL_DIR, check_stream_version, plan_cells

    cells = plan_cells(["cnn_small"], ["relu", "silu"], ["conventional"], [0])
    legacy = tmp_path / cells[0].name / EVAL_DIR  # evaluated before manifests named the version
    legacy.mkdir(parents=True)
    (legacy / "manifest.json").write_text(json.dumps({"config": {"corruptions": ["shot_noise"]}}))
    with pytest.raises(UserError, match=r"version 1, now it would be 4; add --streams 1"):
        check_stream_version(tmp_path, cells, None)
    check_stream_version(tmp_path, cells, 1)
    new = tmp_path / cells[1].name / EVAL_DIR
    new.mkdir(parents=True)
    (new / "manifest.json").write_text(json.dumps({"config": {"streams": 2}}))
    with pytest.raises(UserError, match=r"silu.*version 2, now it would be 1"):
        check_stream_version(tmp_path, cells, 1)


def test_clean_only_runs_compare_whatever_their_version(tmp_path: Path) -> None:
    from robustbench_act.runset import check_same_data, load_runs

    for name, version in (("a", 1), ("b", 2)):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
        ds = ImageDataset(name="t", classes=["a", "b"], mean=(0.5,) * 3, std=(0.2,) * 3,
                          images=torch.zeros(4, 3, 16, 16, dtype=torch.uint8), labels=[0, 1, 0, 1])  # fmt: skip
        info = {"m": {"model": "tiny", "activation": "relu", "order": "conventional", "seed": 0}}
        with corruptions.using_streams(version):
            run_models({"m": model}, info, ds, out=tmp_path / name, corruptions=[], severities=[1], probes="none",
                       config={"dataset": "t", "corruptions": [], "severities": [1], "probes": "none", "clean": True},
                       batch_size=4)  # fmt: skip
    assert not [p for p in check_same_data(load_runs([tmp_path / "a", tmp_path / "b"])) if "random-stream" in p]
