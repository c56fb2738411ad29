"""``actbench run`` end to end on a reduced default (2 activations, 3 corruptions, 2 severities)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from robustbench_act.cli import app
from robustbench_act.results import SCHEMAS, load_run

REDUCED = ["run", "--activations", "relu,la_silu", "--corruptions", "gaussian_noise,contrast,pixelate",
           "--severities", "1,3", "--limit", "48", "--batch-size", "32", "--device", "cpu"]


@pytest.fixture(scope="module", autouse=True)
def _one_epoch() -> object:
    """The digits recipe trimmed to one epoch so the pipeline test stays fast."""
    from robustbench_act import train

    saved = dict(train.RECIPES["digits"])
    train.RECIPES["digits"]["epochs"] = 1
    yield
    train.RECIPES["digits"].clear()
    train.RECIPES["digits"].update(saved)


@pytest.fixture(scope="module")
def default_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    out = tmp_path_factory.mktemp("a") / "run"
    result = CliRunner().invoke(app, [*REDUCED, "--out", str(out)])
    return out, result


def test_default_pipeline_writes_a_complete_results_folder(default_run: tuple[Path, object]) -> None:
    out, result = default_run
    assert result.exit_code == 0, result.output
    for name in ("metrics.parquet", "metrics.csv", "layers.parquet", "samples.parquet", "units.parquet",
                 "summary.csv", "manifest.json"):
        assert (out / name).is_file(), name
    assert (out / "models" / "relu" / "model.safetensors").is_file()
    run = load_run(out)
    for table, cols in SCHEMAS.items():
        assert tuple(getattr(run, table).columns) == cols
        assert len(getattr(run, table)) > 0, table
    m = run.metrics
    assert set(m.activation) == {"relu", "la_silu"} and set(m.model) == {"cnn_small"}
    assert set(zip(m.corruption, m.severity)) == {("clean", 0)} | {
        (c, s) for c in ("gaussian_noise", "contrast", "pixelate") for s in (1, 3)}
    assert (m.n == 48).all() and set(m.run) == {"run"}
    cfg = run.manifest["config"]
    assert cfg["severities"] == [1, 3] and cfg["n_images"] == 48 and cfg["probes"] == "all"
    assert cfg["corruptions"] == ["gaussian_noise", "contrast", "pixelate"]
    assert run.manifest["status"] == "complete" and "torch" in run.manifest["versions"]
    summary = pd.read_csv(out / "summary.csv")
    for col in ("clean_top1", "mca", "mca_noise", "mca_digital", "fluct_l1_elem_mean",
                "in_fluct_l1_elem_mean", "abs_unit_mean"):
        assert col in summary.columns, col
    # the comparison table is printed
    assert "la_silu" in result.output and "mCA" in result.output


def test_same_command_twice_gives_identical_metrics(default_run: tuple[Path, object], tmp_path: Path) -> None:
    out_a, _ = default_run
    out_b = tmp_path / "run"
    result = CliRunner().invoke(app, [*REDUCED, "--out", str(out_b), "--quiet", "--json", "--baseline", "relu"])
    assert result.exit_code == 0, result.output
    records = json.loads(result.stdout)
    assert {r["activation"] for r in records} == {"relu", "la_silu"}
    by_act = {r["activation"]: r for r in records}
    assert by_act["relu"]["mce"] == pytest.approx(1.0) and by_act["relu"]["rel_mce"] == pytest.approx(1.0)
    a, b = load_run(out_a), load_run(out_b)
    for table in ("metrics", "layers", "samples", "units"):
        pd.testing.assert_frame_equal(getattr(a, table), getattr(b, table))
    # resuming a complete run recomputes nothing and prints the same summary
    again = CliRunner().invoke(app, [*REDUCED, "--out", str(out_b), "--resume", "--json", "--quiet",
                                     "--baseline", "relu"])
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout) == records


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--severities", "0-3"], "severity must be 1..5"),
        (["--severities", "x"], "bad severities"),
        (["--corruptions", "gausian_noise"], "gaussian_noise"),
        (["--activations", "rleu"], "relu"),
        (["--model", "resnet2O"], "resnet20"),
        (["--model", "tv:resnet1"], "resnet18"),
        (["--order", "swaped"], "swapped"),
        (["--workers", "-1"], "--workers must be >= 0"),
        (["--probes", "some"], "--probes"),
        (["--dataset", "cifar10", "--root", "/nonexistent"], "--download"),
        (["--dataset", "imagefolder:/nonexistent/x"], "not found"),
        (["--checkpoint", "/nonexistent/ckpt"], "not found"),
        (["--amp", "fp8"], "amp"),
        (["--activations", "relu,silu", "--baseline", "gelu"], "baseline"),
        (["--device", "cuda:7"] if not torch.cuda.is_available() else ["--device", "tpu"], "device"),
    ],
)
def test_user_errors_are_one_line_exit_2_and_leave_no_results(tmp_path: Path, args: list[str], message: str) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["run", "--out", str(out), *args])
    assert result.exit_code == 2, result.output
    err = result.output.strip()
    assert err.startswith("error:") and len(err.splitlines()) == 1, err
    assert message in err
    assert "Traceback" not in result.output
    assert not out.exists(), sorted(p.name for p in out.iterdir())


def test_checkpoint_errors(tmp_path: Path, default_run: tuple[Path, object]) -> None:
    out, _ = default_run
    ckpt = out / "models" / "relu"
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint at all")
    from safetensors.torch import load_file

    plain = tmp_path / "plain.pth"
    torch.save(load_file(ckpt / "model.safetensors"), plain)
    cases = [
        (["--checkpoint", str(garbage), "--model", "cnn_small"], "garbage.pth"),
        (["--checkpoint", str(plain), "--model", "cifar_resnet20", "--activation", "relu"], "missing"),
        (["--checkpoint", str(garbage)], "--model"),
        (["--checkpoint", str(ckpt), "--activation", "gelu"], "trained with activation"),
    ]
    for args, message in cases:
        result = CliRunner().invoke(app, ["run", "--out", str(tmp_path / "o"), "--dataset", "digits", *args])
        assert result.exit_code == 2, (args, result.output)
        err = result.output.strip()
        assert err.startswith("error:") and len(err.splitlines()) == 1, err
        assert message in err
    assert not (tmp_path / "o").exists()


def test_checkpoint_run_and_class_mismatch(tmp_path: Path, default_run: tuple[Path, object]) -> None:
    out, _ = default_run
    ckpt = out / "models" / "la_silu"
    res = CliRunner().invoke(app, ["run", "--checkpoint", str(ckpt), "--corruptions", "contrast",
                                   "--severities", "2", "--limit", "20", "--out", str(tmp_path / "c"),
                                   "--probes", "none", "--quiet"])
    assert res.exit_code == 0, res.output
    m = load_run(tmp_path / "c").metrics
    assert set(m.activation) == {"la_silu"} and set(m.corruption) == {"clean", "contrast"}
    # a folder of 3-class images does not match a 10-class checkpoint
    root = tmp_path / "imgs"
    from PIL import Image

    for c in ("a", "b", "c"):
        (root / c).mkdir(parents=True)
        Image.new("L", (16, 16)).save(root / c / "0.png")
    bad = CliRunner().invoke(app, ["run", "--checkpoint", str(ckpt), "--dataset", f"imagefolder:{root}",
                                   "--out", str(tmp_path / "d")])
    assert bad.exit_code == 2 and "classes" in bad.output, bad.output
    assert not (tmp_path / "d").exists()


def test_plugin_corruption_baseline_run_and_plain_state_dict(tmp_path: Path,
                                                              default_run: tuple[Path, object]) -> None:
    out, _ = default_run
    plugin = tmp_path / "plug.py"
    plugin.write_text(
        "import corruptions\n"
        "@corruptions.register('invert_test', group='extra', presets=[0.2, 0.4, 0.6, 0.8, 1.0], random=False)\n"
        "def invert(x, p, rng):\n"
        "    return (1 - p['value']) * x + p['value'] * (1 - x)\n"
    )
    from safetensors.torch import load_file

    plain = tmp_path / "relu.pth"
    torch.save(load_file(out / "models" / "relu" / "model.safetensors"), plain)
    res = CliRunner().invoke(app, [
        "run", "--checkpoint", str(plain), "--model", "cnn_small", "--activation", "relu",
        "--plugin", str(plugin), "--corruptions", "contrast,invert_test", "--severities", "1,3",
        "--limit", "48", "--batch-size", "32", "--baseline", str(out), "--json", "--quiet",
        "--out", str(tmp_path / "p")])
    assert res.exit_code == 0, res.output
    rec = json.loads(res.stdout)[0]
    assert rec["activation"] == "relu" and rec["acc_invert_test"] is not None
    assert rec["mce"] is not None and rec["rel_mce"] is not None
    # the plain state dict rebuilt with --model/--activation gives the trained model's numbers
    mine = load_run(tmp_path / "p").metrics
    ref = load_run(out).metrics
    key = ["corruption", "severity", "metric"]
    a = mine[(mine.corruption == "contrast") & mine.metric.isin(["top1", "nll"])].set_index(key)["value"]
    b = ref[(ref.activation == "relu") & (ref.corruption == "contrast") & ref.metric.isin(["top1", "nll"])]
    pd.testing.assert_series_equal(a, b.set_index(key)["value"])


def test_training_seeds_can_share_one_corruption_seed(default_run: tuple[Path, object], tmp_path: Path) -> None:
    """--seed 1 --corruption-seed 0 trains other weights but corrupts exactly like --seed 0."""
    from robustbench_act.compare import compare_runs

    out_a, _ = default_run
    out_b = tmp_path / "seed1"
    args = [*REDUCED, "--activations", "relu", "--seed", "1", "--corruption-seed", "0"]
    result = CliRunner().invoke(app, [*args, "--out", str(out_b), "--quiet"])
    assert result.exit_code == 0, result.output
    b = load_run(out_b)
    assert b.manifest["config"]["corruption_seed"] == 0
    assert set(b.metrics["seed"]) == {1}
    table = compare_runs([out_a, out_b], by="activation", reference="relu")  # same data: accepted
    assert "relu" in set(table.frame.index.astype(str))
