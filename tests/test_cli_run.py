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
ONE_SEED = ["--seeds", "0"]


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
    for seed in (0, 1, 2):  # the default trains three seeds per activation
        assert (out / "models" / f"relu-s{seed}" / "model.safetensors").is_file()
    run = load_run(out)
    for table, cols in SCHEMAS.items():
        assert tuple(getattr(run, table).columns) == cols
        assert len(getattr(run, table)) > 0, table
    m = run.metrics
    assert set(m.activation) == {"relu", "la_silu"} and set(m.model) == {"cnn_small"}
    assert set(zip(m.corruption, m.severity)) == {("clean", 0)} | {
        (c, s) for c in ("gaussian_noise", "contrast", "pixelate") for s in (1, 3)}
    assert (m.n == 48).all() and set(m.run) == {"run"} and set(m.seed) == {0, 1, 2}
    cfg = run.manifest["config"]
    assert cfg["severities"] == [1, 3] and cfg["n_images"] == 48 and cfg["probes"] == "all"
    assert cfg["corruptions"] == ["gaussian_noise", "contrast", "pixelate"]
    assert cfg["seeds"] == [0, 1, 2] and cfg["corruption_seed"] == 0
    assert run.manifest["numerics"]["torch_threads"] == torch.get_num_threads()
    assert run.manifest["numerics"]["layeract_cpu_kernel"] == "eager"  # the suite's (conftest)
    assert run.manifest["status"] == "complete" and "torch" in run.manifest["versions"]
    summary = pd.read_csv(out / "summary.csv")
    for col in ("clean_top1", "mca", "mca_noise", "mca_digital", "fluct_l1_elem_mean",
                "in_fluct_l1_elem_mean", "abs_unit_mean"):
        assert col in summary.columns, col
    # the comparison table is printed: mean +- sd over the three seeds, tested across seeds
    assert "la_silu" in result.output and "mCA" in result.output and "±" in result.output
    assert "rel. fluct." in result.output and "mCA (15)" in result.output


def test_same_command_twice_gives_identical_metrics(default_run: tuple[Path, object], tmp_path: Path) -> None:
    out_a, _ = default_run
    out_b = tmp_path / "run"
    result = CliRunner().invoke(app, [*REDUCED, "--out", str(out_b), "--quiet", "--json", "--baseline", "relu"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    records = report["summary"]
    assert {r["activation"] for r in records} == {"relu", "la_silu"}
    relu = [r for r in records if r["activation"] == "relu"]
    # mCE against the seed-mean ReLU error: ReLU averages exactly 100 %
    assert sum(r["mce"] for r in relu) / 3 == pytest.approx(1.0)
    assert report["comparison"]["groups"]["relu"]["mce"]["mean"] == pytest.approx(1.0)
    assert report["comparison"]["uncertainty"] == "seeds"
    assert report["definitions"]["mce"]["better"] == "min" and "Hendrycks" in report["definitions"]["mce"]["formed"]
    a, b = load_run(out_a), load_run(out_b)
    for table in ("metrics", "layers", "samples", "units"):
        pd.testing.assert_frame_equal(getattr(a, table), getattr(b, table))
    # resuming a complete run recomputes nothing and prints the same summary
    again = CliRunner().invoke(app, [*REDUCED, "--out", str(out_b), "--resume", "--json", "--quiet",
                                     "--baseline", "relu"])
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout) == report


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--severities", "0-3"], "--severities must be in 1..5"),
        (["--severities", "x"], "bad --severities"),
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
    ckpt = out / "models" / "relu-s0"
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
    ckpt = out / "models" / "la_silu-s0"
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
    torch.save(load_file(out / "models" / "relu-s0" / "model.safetensors"), plain)
    res = CliRunner().invoke(app, [
        "run", "--checkpoint", str(plain), "--model", "cnn_small", "--activation", "relu",
        "--plugin", str(plugin), "--corruptions", "contrast,invert_test", "--severities", "1,3",
        "--limit", "48", "--batch-size", "32", "--baseline", str(out), "--json", "--quiet",
        "--out", str(tmp_path / "p")])
    assert res.exit_code == 0, res.output
    rec = json.loads(res.stdout)["summary"][0]
    assert rec["activation"] == "relu" and rec["acc_invert_test"] is not None
    assert rec["mce"] is not None and rec["rel_mce"] is not None
    # the plain state dict rebuilt with --model/--activation gives the trained model's numbers
    mine = load_run(tmp_path / "p").metrics
    ref = load_run(out).metrics
    key = ["corruption", "severity", "metric"]
    a = mine[(mine.corruption == "contrast") & mine.metric.isin(["top1", "nll"])].set_index(key)["value"]
    b = ref[(ref.activation == "relu") & (ref.seed == 0) & (ref.corruption == "contrast")
            & ref.metric.isin(["top1", "nll"])]
    pd.testing.assert_series_equal(a, b.set_index(key)["value"])


def test_training_seeds_share_the_fixed_benchmark_data(default_run: tuple[Path, object], tmp_path: Path) -> None:
    """--seed 1 trains other weights but corrupts exactly like the seed-0 run: no flag needed."""
    from robustbench_act.compare import compare_runs

    out_a, _ = default_run
    out_b = tmp_path / "seed1"
    result = CliRunner().invoke(app, [*REDUCED, "--activations", "relu", "--seed", "1", "--out", str(out_b),
                                      "--quiet"])  # fmt: skip
    assert result.exit_code == 0, result.output
    b = load_run(out_b)
    assert b.manifest["config"]["corruption_seed"] == 0 and set(b.metrics["seed"]) == {1}
    table = compare_runs([out_a, out_b], by="activation", reference="relu")  # same data: accepted
    assert "relu" in set(table.frame.index.astype(str))
    # the seed-1 ReLU of both runs is the same model on the same images: one copy counted
    assert any("identical copies counted once" in n for n in table.notes)
    a = load_run(out_a).metrics
    m1 = a[(a.activation == "relu") & (a.seed == 1)].drop(columns="run").reset_index(drop=True)
    pd.testing.assert_frame_equal(m1, b.metrics.drop(columns="run").reset_index(drop=True))


def test_one_seed_shows_image_uncertainty_and_mce_agrees_with_compare(tmp_path: Path) -> None:
    from robustbench_act.compare import compare_runs

    out = tmp_path / "one"
    res = CliRunner().invoke(app, [*REDUCED, *ONE_SEED, "--corruptions", "common", "--severities", "1-5",
                                   "--baseline", "relu", "--out", str(out), "--json", "--quiet",
                                   "--probes", "none"])  # fmt: skip
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report["comparison"]["uncertainty"] == "images"
    assert any("bootstrap over 48 test images" in n for n in report["comparison"]["notes"])
    tests = [t for t in report["comparison"]["tests"] if t["column"] == "mca"]
    assert tests and tests[0]["ci_low"] <= tests[0]["mean_diff"] <= tests[0]["ci_high"]
    summary = pd.read_csv(out / "summary.csv").set_index("activation")
    table = compare_runs(out, reference="relu")
    # one mCE: run --baseline relu, its summary.csv and compare --reference relu agree
    assert summary.loc["la_silu", "mce"] == pytest.approx(table.frame.at["la_silu", "mce"], rel=1e-12)
    assert summary.loc["la_silu", "mean_err"] == pytest.approx(1 - summary.loc["la_silu", "mca_common"])
    assert "mca_common" in summary.columns


def test_bad_seeds_are_refused(tmp_path: Path) -> None:
    for bad, msg in (("2-0", "low > high"), ("a", "bad --seeds"), ("0-99999999", "at most"), ("", "empty")):
        res = CliRunner().invoke(app, [*REDUCED, "--seeds", bad, "--out", str(tmp_path / "x")])
        assert res.exit_code == 2 and msg in res.output, (bad, res.output)
    res = CliRunner().invoke(app, ["run", "--checkpoint", str(tmp_path), "--seeds", "1", "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "default run's training seeds" in res.output
    assert not (tmp_path / "x").exists()
