"""``actbench corruptions list|preview|export``: outputs, one-line errors with exit code 2, no partial files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from robustbench_act.cli import app
from robustbench_act.parsing import parse_severities

runner = CliRunner()


def _run(*args: str):
    return runner.invoke(app, ["corruptions", *args])


@pytest.fixture()
def photo(tmp_path) -> Path:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:48, 0:40]
    arr = np.stack([xx * 6, yy * 5, (xx + yy) * 3], axis=-1) + rng.integers(0, 20, (48, 40, 3))
    p = tmp_path / "photo.png"
    Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(p)
    return p


@pytest.fixture()
def folder(tmp_path) -> Path:
    """An imagefolder dataset: test/<class>/<image>.png, 3 classes x 2 images of 20 px."""
    rng = np.random.default_rng(1)
    for c in ("cat", "dog", "eel"):
        d = tmp_path / "ds" / "test" / c
        d.mkdir(parents=True)
        for i in range(2):
            Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(d / f"{i}.png")
    return tmp_path / "ds"


def _one_line_error(result, *needles: str) -> None:
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    lines = [ln for ln in result.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    for n in needles:
        assert n in lines[0], (n, lines[0])


def test_list_table_and_json():
    r = _run("list")
    assert r.exit_code == 0, r.output
    for name in ("motion_blur", "snow", "frost", "fog", "spatter", "jpeg_compression"):
        assert name in r.output
    r = _run("list", "--json", "--preset", "imagenet")
    rows = json.loads(r.output)
    assert len(rows) == 19
    snow = next(x for x in rows if x["name"] == "snow")
    assert snow["group"] == "weather" and snow["random"] is True and snow["preset"] == "imagenet"
    assert snow["severities"][4] == {"loc": 0.55, "scale": 0.3, "zoom": 2.5, "threshold": 0.85,
                                     "blur_radius": 12, "blur_sigma": 12, "blend": 0.55}  # fmt: skip
    _one_line_error(_run("list", "--preset", "imagenett"), "closest: imagenet")


def test_preview_image_and_dataset(tmp_path, photo):
    out = tmp_path / "grid.png"
    r = _run(
        "preview",
        str(photo),
        "--corruptions",
        "motion_blur,snow,fog",
        "--size",
        "32",
        "--out",
        str(out),
    )
    assert r.exit_code == 0, r.output
    grid = Image.open(out)
    assert grid.format == "PNG" and grid.size[0] > 6 * 32 and grid.size[1] > 3 * 32
    out2 = tmp_path / "sub" / "digits.png"
    r = _run(
        "preview",
        "--dataset",
        "digits",
        "--index",
        "3",
        "--corruptions",
        "weather",
        "--out",
        str(out2),
    )
    assert r.exit_code == 0, r.output
    assert out2.is_file()


def test_preview_errors_leave_no_file(tmp_path, photo):
    out = tmp_path / "grid.png"
    _one_line_error(
        _run("preview", str(photo), "--corruptions", "snwo", "--out", str(out)),
        "snwo",
        "closest: snow",
    )
    _one_line_error(
        _run("preview", str(tmp_path / "missing.jpg"), "--out", str(out)),
        "not found",
        "missing.jpg",
    )
    _one_line_error(_run("preview", "--out", str(out)), "IMAGE")
    _one_line_error(_run("preview", str(photo), "--out", str(out), "--size", "0"), "--size must be >= 8")
    _one_line_error(
        _run("preview", str(photo), "--out", str(tmp_path / "grid.txt")), "cannot write a .txt image", "png"
    )
    bad = tmp_path / "bad_plugin.py"
    bad.write_text("import corruptions\nraise ValueError('boom')\n")
    _one_line_error(_run("preview", str(photo), "--plugin", str(bad), "--out", str(out)), "boom")
    _one_line_error(
        _run("preview", str(photo), "--plugin", str(tmp_path / "nope.py"), "--out", str(out)),
        "nope.py",
    )
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == [
        "bad_plugin.py",
        "photo.png",
    ]


def test_plugin_corruption_in_list_and_preview(tmp_path, photo):
    plug = tmp_path / "plug.py"
    plug.write_text(
        "import corruptions\n"
        "@corruptions.register('invert_cli_test', group='extra', presets=[1, 1, 1, 1, 1], random=False)\n"
        "def invert(images, params, rng):\n"
        "    return 1 - images\n"
    )
    r = _run("list", "--json", "--plugin", str(plug))
    assert any(x["name"] == "invert_cli_test" for x in json.loads(r.output))
    out = tmp_path / "p.png"
    r = _run("preview", str(photo), "--corruptions", "invert_cli_test", "--out", str(out))
    assert r.exit_code == 0 and out.is_file()


def test_export_imagefolder_and_cifar_c(tmp_path, folder):
    out = tmp_path / "out_c"
    r = _run("export", "--dataset", f"imagefolder:{folder}", "--out", str(out), "--corruptions", "fog,snow",
             "--severities", "1,3", "--seed", "3")  # fmt: skip
    assert r.exit_code == 0, r.output
    assert np.load(out / "fog.npy").shape == (2 * 6, 20, 20, 3)
    man = json.loads((out / "manifest.json").read_text())
    assert (
        man["severities"] == [1, 3] and man["seed"] == 3 and man["classes"] == ["cat", "dog", "eel"]
    )
    out2 = tmp_path / "out_if"
    r = _run("export", "--dataset", f"imagefolder:{folder}", "--out", str(out2), "--format", "imagefolder",
             "--corruptions", "frost", "--severities", "5", "--limit", "4")  # fmt: skip
    assert r.exit_code == 0, r.output
    assert len(list((out2 / "frost" / "5").rglob("*.png"))) == 4


def test_export_errors(tmp_path, folder):
    out = tmp_path / "o"
    ds = f"imagefolder:{folder}"
    _one_line_error(
        _run("export", "--dataset", ds, "--out", str(out), "--severities", "0-7"), "--severities"
    )
    _one_line_error(
        _run("export", "--dataset", ds, "--out", str(out), "--corruptions", "fgo"), "closest: fog"
    )
    _one_line_error(_run("export", "--dataset", ds, "--out", str(out), "--format", "hdf"), "format")
    _one_line_error(
        _run("export", "--dataset", "imagefolder:/no/such/dir", "--out", str(out)), "not found"
    )
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


def test_parse_severities():
    assert parse_severities("1-5") == [1, 2, 3, 4, 5]
    assert parse_severities("5,1-2") == [1, 2, 5]
    for bad in ("", "0", "6", "a", "3-1", "1-9"):
        with pytest.raises(ValueError):
            parse_severities(bad)


def test_console_script_exit_code_without_traceback(tmp_path):
    exe = Path(sys.executable).with_name("actbench")
    res = subprocess.run(
        [str(exe), "corruptions", "preview", str(tmp_path / "none.png"), "--out", str(tmp_path / "g.png")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert res.returncode == 2
    assert "Traceback" not in res.stderr + res.stdout
    assert res.stderr.strip().startswith("error:") and len(res.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "g.png").exists()
