"""Where frost textures come from: folder > $ACTBENCH_FROST_DIR > an installed package > procedural,
recorded in run manifests and exported datasets."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch import nn

import corruptions
from corruptions import frost as frost_mod
from corruptions.datasets import export_c_dataset
from robustbench_act.data import ImageDataset
from robustbench_act.errors import UserError
from robustbench_act.pipeline import run_models

COLOURS = [(200, 220, 255), (10, 20, 30), (90, 90, 90), (250, 0, 0), (0, 250, 0), (0, 0, 250)]


def _photos(folder: Path, colours=COLOURS) -> Path:
    folder.mkdir(parents=True)
    for i, c in enumerate(colours, start=1):
        Image.new("RGB", (96 + i, 80), c).save(folder / f"frost{i}.png")
    return folder


@pytest.fixture()
def fake_package(tmp_path: Path, monkeypatch) -> Path:
    """An importable package ``fakefrostpkg`` shipping frost1..6 in fakefrostpkg/frost/."""
    site = tmp_path / "site"
    pkg = site / "fakefrostpkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise ImportError('must not be imported')\n")
    _photos(pkg / "frost")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(frost_mod, "FROST_PACKAGES", (("fakefrostpkg", "frost"),))
    monkeypatch.delenv("ACTBENCH_FROST_DIR", raising=False)
    return pkg / "frost"


def _layer_colours(x: torch.Tensor) -> set[tuple[int, ...]]:
    """The frost colour each sample got (image all zeros, severity 1 cifar: x + 0.2 * frost)."""
    y = corruptions.apply(x, "frost", 1, quantize=False)
    return {tuple(int(round(v)) for v in (y[i, :, 0, 0] / 0.2 * 255).tolist()) for i in range(len(y))}


def test_installed_package_photographs_are_used_without_importing_it(fake_package: Path) -> None:
    info = frost_mod.frost_info()
    assert info == {"source": "package", "path": str(fake_package), "package": "fakefrostpkg",
                    "digest": frost_mod.frost_digest(fake_package)}
    assert "installed fakefrostpkg package" in frost_mod.frost_description()
    seen = _layer_colours(torch.zeros(40, 3, 32, 32))
    assert seen <= set(COLOURS[:5]) and len(seen) >= 3  # frost6 is never drawn (randint(5))
    assert "fakefrostpkg" not in sys.modules


def test_precedence_folder_then_environment_then_package_then_procedural(
        fake_package: Path, tmp_path: Path, monkeypatch) -> None:  # fmt: skip
    env_dir = _photos(tmp_path / "env", [(1, 2, 3)])
    given = _photos(tmp_path / "given", [(7, 8, 9)])
    monkeypatch.setenv("ACTBENCH_FROST_DIR", str(env_dir))
    try:
        frost_mod.set_frost_images(given)
        assert frost_mod.frost_info()["source"] == "folder"
        assert _layer_colours(torch.zeros(4, 3, 32, 32)) == {(7, 8, 9)}
        frost_mod.set_frost_images("procedural")  # forces the texture over everything
        assert frost_mod.frost_info()["source"] == "procedural"
    finally:
        frost_mod.set_frost_images(None)
    assert frost_mod.frost_info() == {"source": "environment", "path": str(env_dir), "package": None,
                                    "digest": frost_mod.frost_digest(env_dir)}
    assert _layer_colours(torch.zeros(4, 3, 32, 32)) == {(1, 2, 3)}
    monkeypatch.setenv("ACTBENCH_FROST_DIR", "procedural")
    assert frost_mod.frost_source() == "procedural" and "procedural ice texture" in frost_mod.frost_description()
    monkeypatch.delenv("ACTBENCH_FROST_DIR")
    assert frost_mod.frost_info()["source"] == "package"
    monkeypatch.setattr(frost_mod, "FROST_PACKAGES", (("fakefrostpkg", "no_such_folder"),))
    assert frost_mod.frost_info()["source"] == "procedural"  # a package without the photographs


def test_export_manifest_records_the_frost_source(fake_package: Path, tmp_path: Path) -> None:
    ds = ImageDataset(name="t", classes=["a", "b"], mean=(0.5,) * 3, std=(0.2,) * 3,
                      images=torch.zeros(3, 3, 32, 32, dtype=torch.uint8), labels=[0, 1, 0])  # fmt: skip
    out = export_c_dataset(ds, tmp_path / "c", corruptions="frost,contrast", severities=[1])
    man = json.loads((out / "manifest.json").read_text())
    assert man["frost"] == frost_mod.frost_info() and man["frost"]["source"] == "package"
    assert man["frost_source"] == str(fake_package)
    none = export_c_dataset(ds, tmp_path / "d", corruptions="contrast", severities=[1])
    assert json.loads((none / "manifest.json").read_text())["frost"] is None


def _run(out: Path, corrs: list[str], resume: bool = False):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    ds = ImageDataset(name="t", classes=["a", "b"], mean=(0.5,) * 3, std=(0.2,) * 3,
                      images=torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8),
                      labels=[0, 1, 0, 1, 0, 1])  # fmt: skip
    info = {"m": {"model": "tiny", "activation": "relu", "order": "conventional", "seed": 0}}
    config = {"dataset": "t", "corruptions": corrs, "severities": [1], "probes": "none", "clean": True}
    return run_models({"m": model}, info, ds, out=out, config=config, corruptions=corrs, severities=[1],
                      probes="none", batch_size=4, resume=resume)  # fmt: skip


def test_run_manifest_records_frost_and_resume_refuses_another_source(fake_package: Path, tmp_path: Path,
                                                                      monkeypatch) -> None:  # fmt: skip
    outcome = _run(tmp_path / "run", ["frost"])
    man = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert man["config"]["frost"]["source"] == "package" == outcome.manifest["config"]["frost"]["source"]
    assert json.loads(json.dumps(_run(tmp_path / "other", ["contrast"]).manifest))["config"]["frost"] is None
    # an interrupted run resumed under another frost source is refused, not mixed
    (tmp_path / "run" / "metrics.parquet").unlink()
    status = json.loads((tmp_path / "run" / "manifest.json").read_text())
    (tmp_path / "run" / "manifest.json").write_text(json.dumps({**status, "status": "incomplete"}))
    monkeypatch.setenv("ACTBENCH_FROST_DIR", "procedural")
    with pytest.raises(UserError, match="frost=.*ACTBENCH_FROST_DIR=procedural"):
        _run(tmp_path / "run", ["frost"], resume=True)


def test_a_sweep_does_not_mix_frost_sources(fake_package: Path, tmp_path: Path, monkeypatch) -> None:
    from robustbench_act.sweep import EVAL_DIR, check_frost_source, plan_cells

    cells = plan_cells(["cnn_small"], ["relu", "silu"], ["conventional"], [0])
    legacy = tmp_path / cells[0].name / EVAL_DIR  # evaluated before manifests named the source
    legacy.mkdir(parents=True)
    (legacy / "manifest.json").write_text(json.dumps({"config": {"corruptions": ["frost", "fog"]}}))
    check_frost_source(tmp_path, cells, ["fog"])  # no frost now: nothing to mix
    with pytest.raises(UserError, match="evaluated with frost from procedural, now it would be .*fakefrostpkg"):
        check_frost_source(tmp_path, cells, ["frost"])
    monkeypatch.setenv("ACTBENCH_FROST_DIR", "procedural")
    check_frost_source(tmp_path, cells, ["frost"])


def test_frost_sources_compare_by_the_photographs_not_their_path(tmp_path: Path, monkeypatch) -> None:
    """A sweep resumed on another machine (the same photographs elsewhere) is the same frost."""
    a = _photos(tmp_path / "a")
    b = _photos(tmp_path / "b")
    other = _photos(tmp_path / "c", colours=[(1, 2, 3)] * 6)
    monkeypatch.setenv("ACTBENCH_FROST_DIR", str(a))
    info_a = frost_mod.frost_info()
    monkeypatch.setenv("ACTBENCH_FROST_DIR", str(b))
    info_b = frost_mod.frost_info()
    assert info_a["path"] != info_b["path"] and info_a["digest"] == info_b["digest"]
    assert frost_mod.same_frost(info_a, info_b)
    monkeypatch.setenv("ACTBENCH_FROST_DIR", str(other))
    assert not frost_mod.same_frost(info_a, frost_mod.frost_info())
    monkeypatch.setenv("ACTBENCH_FROST_DIR", "procedural")
    proc = frost_mod.frost_info()
    assert proc["digest"] is None and not frost_mod.same_frost(info_a, proc)
    assert frost_mod.same_frost(proc, dict(proc))


def test_frost_dir_is_a_parameter_of_run(tmp_path: Path) -> None:
    """--frost-dir / RunSpec(frost_dir=...) picks the source for that run only, recorded in it."""
    import robustbench_act
    from robustbench_act.specs import RunSpec

    photos = _photos(tmp_path / "photos")
    before = frost_mod.frost_info()
    spec = RunSpec(activations=["relu"], seeds=[0], corruptions=["frost"], severities=[1], limit=16, batch_size=16,
                   probes="none", device="cpu", frost_dir=str(photos), out=str(tmp_path / "r"))  # fmt: skip
    from robustbench_act import train

    saved = dict(train.RECIPES["digits"])
    train.RECIPES["digits"]["epochs"] = 1
    try:
        out = robustbench_act.run(spec)
    finally:
        train.RECIPES["digits"].clear()
        train.RECIPES["digits"].update(saved)
    frost = out.manifest["config"]["frost"]
    assert frost["source"] == "folder" and frost["digest"] == frost_mod.frost_digest(photos)
    assert frost_mod.frost_info() == before  # the global default is untouched afterwards
    with pytest.raises(UserError, match="--frost-dir"):
        RunSpec(frost_dir=str(tmp_path / "nothing"))
