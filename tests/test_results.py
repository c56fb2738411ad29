"""Results store: per-cell atomic parts, incomplete runs, finalisation, schema, loading."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from robustbench_act.errors import UserError
from robustbench_act.results import (
    SCHEMAS,
    CellResult,
    RunStore,
    cell_order,
    is_complete,
    load_run,
    load_runs,
)

IDENT = dict(run="r", model="m", activation="relu", order="conventional", seed=0, dataset="digits")
CONFIG = {"dataset": "digits", "corruptions": ["fog"], "severities": [1, 2], "corruption_seed": 0,
          "limit": None, "batch_size": 8, "probes": "all", "models": [IDENT]}


def _cell(corruption: str, severity: int, acc: float) -> CellResult:
    metrics = pd.DataFrame([{**IDENT, "corruption": corruption, "severity": severity, "metric": "top1",
                             "value": acc, "n": 2}])
    samples = pd.DataFrame([{**IDENT, "corruption": corruption, "severity": severity, "sample": i,
                             "stat": "correct", "value": float(i)} for i in range(2)])
    layers = pd.DataFrame([{**IDENT, "corruption": corruption, "severity": severity, "layer": "act#0",
                            "layer_index": 0, "stat": "fluct_l1_mean", "value": acc, "n": 2}])
    units = None
    if corruption == "clean":
        units = pd.DataFrame([{**IDENT, "layer": "act#0", "unit": u, "stat": "mean", "value": 0.1 * u}
                              for u in range(3)])
    return CellResult(corruption, severity, metrics=metrics, layers=layers, samples=samples, units=units)


def _manifest() -> dict:
    return {"config": CONFIG, "seed": 0, "started": "t0"}


def test_store_lifecycle_and_schema(tmp_path: Path) -> None:
    out = tmp_path / "run"
    store = RunStore(out)
    assert store.begin(_manifest()) == "new"
    assert json.loads((out / "manifest.json").read_text())["status"] == "incomplete"
    for key, acc in [(("fog", 2), 0.5), (("clean", 0), 0.9), (("fog", 1), 0.7)]:
        store.write_cell(_cell(*key, acc))
    assert store.done_cells() == {("clean", 0), ("fog", 1), ("fog", 2)}
    assert not (out / "metrics.parquet").exists()  # nothing consolidated before finalize
    assert not is_complete(out)
    with pytest.raises(UserError, match="incomplete"):
        load_run(out)
    partial = load_run(out, allow_incomplete=True)
    assert len(partial.metrics) == 3
    store.finalize(_manifest(), order=cell_order(["fog"], [1, 2]))
    assert is_complete(out)
    for name in ("metrics.parquet", "metrics.csv", "layers.parquet", "samples.parquet", "units.parquet",
                 "summary.csv", "manifest.json"):
        assert (out / name).is_file(), name
    assert not (out / "cells").exists()
    run = load_run(out)
    for table, cols in SCHEMAS.items():
        assert tuple(getattr(run, table).columns) == cols
    # canonical order: clean first, then severities ascending
    assert list(zip(run.metrics["corruption"], run.metrics["severity"])) == [("clean", 0), ("fog", 1), ("fog", 2)]
    assert list(run.samples["sample"]) == [0, 1] * 3
    assert run.manifest["status"] == "complete" and "finished" in run.manifest
    csv = pd.read_csv(out / "metrics.csv")
    assert list(csv.columns) == list(SCHEMAS["metrics"])
    summary = pd.read_csv(out / "summary.csv")
    assert summary.loc[0, "clean_top1"] == pytest.approx(0.9)
    assert summary.loc[0, "mca"] == pytest.approx(0.6)


def test_existing_folders_are_refused_without_resume(tmp_path: Path) -> None:
    out = tmp_path / "run"
    store = RunStore(out)
    store.begin(_manifest())
    store.write_cell(_cell("clean", 0, 0.9))
    with pytest.raises(UserError, match="--resume"):
        RunStore(out).begin(_manifest())
    changed = {**_manifest(), "config": {**CONFIG, "severities": [1]}}
    with pytest.raises(UserError, match="severities"):
        RunStore(out).begin(changed, resume=True)
    assert RunStore(out).begin(_manifest(), resume=True) == "resume"
    assert RunStore(out).done_cells() == {("clean", 0)}
    other = tmp_path / "not_a_run"
    other.mkdir()
    (other / "x.txt").write_text("hi")
    with pytest.raises(UserError, match="not an actbench results folder"):
        RunStore(other).begin(_manifest())


def test_rewriting_a_cell_replaces_it_and_temp_folders_are_ignored(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "run")
    store.begin(_manifest())
    store.write_cell(_cell("fog", 1, 0.1))
    store.write_cell(_cell("fog", 1, 0.2))
    (store.cells_dir / ".fog__s2.tmp123").mkdir()  # what a kill -9 mid-write leaves
    assert store.done_cells() == {("fog", 1)}
    assert store.read_cells()["metrics"]["value"].tolist() == [0.2]


def test_finalize_refuses_missing_cells(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "run")
    store.begin(_manifest())
    store.write_cell(_cell("clean", 0, 0.9))
    with pytest.raises(RuntimeError, match="missing"):
        store.finalize(_manifest())
    assert not is_complete(tmp_path / "run")


def test_load_runs_finds_runs_in_a_sweep_folder(tmp_path: Path) -> None:
    for name in ("a", "b"):
        store = RunStore(tmp_path / "sweep" / name)
        store.begin(_manifest())
        for key in cell_order(["fog"], [1, 2]):
            store.write_cell(_cell(*key, 0.5))
        store.finalize(_manifest())
    unfinished = RunStore(tmp_path / "sweep" / "c")
    unfinished.begin(_manifest())
    with pytest.warns(UserWarning, match="incomplete"):
        runs = load_runs(tmp_path / "sweep")
    assert len(runs.paths) == 2 and len(runs.metrics) == 6 and len(runs.units) == 6
    assert "runs" in runs.manifest
    with pytest.raises(UserError, match="not found"):
        load_runs([tmp_path / "nowhere"])
