"""Tests of robustbench_act.compare: tables equal direct aggregates, statistics, data checks, CLI."""

from __future__ import annotations

import json
import re
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from robustbench_act.compare import (
    compare_runs,
    holm,
    paired_tests,
    significance_mark,
)
from robustbench_act.errors import UserError

KEYS = ["run", "model", "activation", "order", "seed", "dataset"]
CORRS = {
    "gaussian_noise": "noise", "shot_noise": "noise", "impulse_noise": "noise",
    "defocus_blur": "blur", "motion_blur": "blur", "snow": "weather", "fog": "weather",
    "contrast": "digital", "jpeg_compression": "digital", "speckle_noise": "extra",
}  # fmt: skip
# activation -> (clean acc, robustness, fluctuation scale, fluctuation spread, unit mean, bounded)
PROFILES = {
    "relu": (0.910, 1.00, 1.00, 0.55, 0.35, False),
    "silu": (0.915, 0.98, 0.90, 0.50, 0.22, False),
    "la_silu": (0.917, 1.08, 0.62, 0.30, 0.03, False),
    "tanh": (0.890, 0.95, 0.80, 0.45, 0.05, True),
    "gelu": (0.915, 0.99, 0.88, 0.50, 0.20, False),
}
GROUP_DROP = {"noise": 0.070, "blur": 0.045, "weather": 0.035, "digital": 0.040, "extra": 0.050}


def make_run(folder: Path, *, activation: str, seed: int, order: str = "conventional",
             model: str = "resnet20", dataset: str = "cifar10", corruptions: dict | None = None,
             severities=(1, 2, 3, 4, 5), n: int = 48, n_layers: int = 6, units: int = 12,
             corruption_seed: int = 0, n_images: int | None = None, status: str = "complete",
             write_extra: bool = True, run_id: str | None = None) -> Path:  # fmt: skip
    """Write one realistic synthetic run folder (all four parquet files and the manifest)."""
    corruptions = CORRS if corruptions is None else corruptions
    clean, robust, fscale, fspread, umean, bounded = PROFILES[activation]
    rng = np.random.default_rng(zlib.crc32(f"{activation}|{seed}|{order}|{model}".encode()))
    if bounded and order == "swapped":
        clean += 0.012
    run = run_id or f"{model}-{activation}-{order}-s{seed}"
    base = dict(run=run, model=model, activation=activation, order=order, seed=seed, dataset=dataset)
    mrows, lrows, srows, urows = [], [], [], []
    seed_off = rng.normal(0, 0.004)
    cells = [("clean", 0)] + [(c, s) for c in corruptions for s in severities]
    for corr, sev in cells:
        group = corruptions.get(corr)
        drop = 0.0 if corr == "clean" else GROUP_DROP[group] * sev / robust ** (3 if group == "noise" else 1)
        acc = float(np.clip(clean + seed_off - drop + rng.normal(0, 0.003), 0, 1))
        for metric, val in (("top1", acc), ("top5", min(1.0, acc + 0.07)), ("nll", 1.5 - acc),
                            ("ece", 0.05 + drop / 3)):  # fmt: skip
            mrows.append({**base, "corruption": corr, "severity": sev, "metric": metric, "value": val, "n": n})
        if corr == "clean":
            continue
        amp = 0.05 * sev * (1.6 if group == "noise" else 1.0)
        fl = amp * fscale * rng.lognormal(0, fspread, n)
        inf = amp * rng.lognormal(0, 0.35, n)
        if write_extra:
            for stat, arr in (("fluct_l1_elem", fl), ("fluct_l2_elem", fl * 1.3), ("in_fluct_l1_elem", inf)):
                srows.append(pd.DataFrame({**base, "corruption": corr, "severity": sev,
                                           "sample": np.arange(n), "stat": stat, "value": arr}))  # fmt: skip
        for stat, arr in (("fluct_l1_elem", fl), ("fluct_l2_elem", fl * 1.3), ("in_fluct_l1_elem", inf)):
            for suffix, v in (("mean", arr.mean()), ("std", arr.std(ddof=1))):
                mrows.append({**base, "corruption": corr, "severity": sev, "metric": f"{stat}_{suffix}",
                              "value": float(v), "n": n})  # fmt: skip
        for li in range(n_layers):
            depth = 0.6 + 0.15 * li
            lrows.append({**base, "corruption": corr, "severity": sev, "layer": f"layer{li}",
                          "layer_index": li, "stat": "fluct_l1_elem_mean",
                          "value": float(fl.mean() * depth), "n": n})  # fmt: skip
            lrows.append({**base, "corruption": corr, "severity": sev, "layer": f"layer{li}",
                          "layer_index": li, "stat": "in_fluct_l1_elem_mean",
                          "value": float(inf.mean() * depth), "n": n})  # fmt: skip
    unit_means = umean + rng.normal(0, 0.12 if activation != "la_silu" else 0.04, (n_layers, units))
    for li in range(n_layers):
        for u in range(units):
            urows.append({**base, "layer": f"layer{li}", "unit": u, "stat": "mean",
                          "value": float(unit_means[li, u])})  # fmt: skip
    mrows.append({**base, "corruption": "clean", "severity": 0, "metric": "abs_unit_mean",
                  "value": float(np.abs(unit_means).mean()), "n": n})  # fmt: skip
    if bounded:
        sp, sn = (0.30, 0.05) if order == "swapped" else (0.12, 0.10)
        sp, sn = sp + rng.normal(0, 0.01), sn + rng.normal(0, 0.01)
        for metric, val in (("sat_pos", sp), ("sat_neg", sn), ("sat", sp + sn), ("asym_sat", abs(sp - sn)),
                            ("sparsity", 0.35 if order == "swapped" else 0.12)):  # fmt: skip
            mrows.append({**base, "corruption": "clean", "severity": 0, "metric": metric,
                          "value": float(val), "n": n})  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(mrows).to_parquet(folder / "metrics.parquet", index=False)
    if write_extra:
        pd.DataFrame(lrows).to_parquet(folder / "layers.parquet", index=False)
        pd.concat(srows, ignore_index=True).to_parquet(folder / "samples.parquet", index=False)
        pd.DataFrame(urows).to_parquet(folder / "units.parquet", index=False)
    manifest = {
        "command": f"actbench run --activation {activation} --seed {seed}", "run": run,
        "config": {"dataset": dataset, "corruptions": list(corruptions), "severities": list(severities),
                   "corruption_seed": corruption_seed, "limit": n, "n_images": n_images or n},  # fmt: skip
        "seed": seed, "status": status,
        "versions": {"python": "3.12", "torch": "2.x", "robustbench_act": "0.1.0"},
        "git_commit": "abc1234",
    }  # fmt: skip
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def make_sweep(root: Path, activations=("relu", "silu", "la_silu"), seeds=(0, 1, 2, 3, 4, 5),
               orders=("conventional",), **kw) -> Path:  # fmt: skip
    """A sweep folder: one run folder per (activation, order, seed)."""
    for a in activations:
        for o in orders:
            for s in seeds:
                make_run(root / f"{a}-{o}" / f"seed{s}", activation=a, seed=s, order=o, **kw)
    return root


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    return make_sweep(tmp_path_factory.mktemp("sweep"), write_extra=False)


def _direct_per_run(root: Path) -> pd.DataFrame:
    """Independent computation of per-run clean / mCA / group accuracy from the stores."""
    m = pd.concat([pd.read_parquet(p) for p in sorted(root.rglob("metrics.parquet"))])
    t = m[m.metric == "top1"]
    rows = []
    for keys, g in t.groupby(KEYS):
        row = dict(zip(KEYS, keys))
        row["clean_top1"] = g[g.corruption == "clean"].value.mean()
        per_c = g[g.corruption != "clean"].groupby("corruption").value.mean()
        row["mca"] = per_c.mean()
        for grp in ("noise", "blur", "weather", "digital", "extra"):
            row[f"mca_{grp}"] = per_c[[c for c in per_c.index if CORRS[c] == grp]].mean()
        for c in per_c.index:
            row[f"acc_{c}"] = per_c[c]
        fl = m[(m.metric == "fluct_l1_elem_mean") & (m.corruption != "clean")]
        for kk, v in zip(KEYS, keys):
            fl = fl[fl[kk] == v]
        row["fluct_l1_elem_mean"] = fl.value.mean()
        err = 1 - g[g.corruption != "clean"].set_index(["corruption", "severity"]).value
        row["_err"] = err
        row["_clean_err"] = 1 - row["clean_top1"]
        rows.append(row)
    return pd.DataFrame(rows)


def test_table_values_equal_direct_aggregates(sweep):
    table = compare_runs([sweep], reference="relu")
    direct = _direct_per_run(sweep)
    assert table.reference == "relu"
    assert table.groups[0] == "relu"
    assert set(table.groups) == {"relu", "silu", "la_silu"}
    for act, g in direct.groupby("activation"):
        assert table.frame.at[act, "n"] == len(g) == 6
        for col in ["clean_top1", "mca", "mca_noise", "mca_extra", "acc_fog", "fluct_l1_elem_mean"]:
            assert table.frame.at[act, col] == pytest.approx(g[col].mean(), rel=1e-12)
            assert table.frame.at[act, f"{col}_std"] == pytest.approx(g[col].std(ddof=1), rel=1e-9)
    # mCE against the mean ReLU error of the same model/order/dataset (15-benchmark subset only)
    ref = direct[direct.activation == "relu"]
    ref_err = pd.concat(list(ref["_err"]), axis=1).mean(axis=1)
    ref_clean = ref["_clean_err"].mean()
    bench = [c for c in CORRS if c != "speckle_noise"]
    for act, g in direct.groupby("activation"):
        mces, rels = [], []
        for _, row in g.iterrows():
            e = row["_err"]
            ce = [e[c].sum() / ref_err[c].sum() for c in bench]
            rce = [(e[c] - row["_clean_err"]).sum() / (ref_err[c] - ref_clean).sum() for c in bench]
            mces.append(np.mean(ce))
            rels.append(np.mean(rce))
        assert table.frame.at[act, "mce"] == pytest.approx(np.mean(mces), rel=1e-9)
        assert table.frame.at[act, "rel_mce"] == pytest.approx(np.mean(rels), rel=1e-9)
    assert table.frame.at["relu", "mce"] == pytest.approx(1.0)
    # the paired tests use the seed-paired per-run values
    d = direct.set_index(["activation", "seed"])["mca"]
    t = stats.ttest_rel(d["la_silu"].sort_index(), d["relu"].sort_index())
    row = table.tests[(table.tests.group == "la_silu") & (table.tests.column == "mca")].iloc[0]
    assert row["t_p"] == pytest.approx(t.pvalue, rel=1e-9)
    assert row["n_pairs"] == 6


def test_formatted_outputs_mark_best_and_significance(sweep):
    table = compare_runs(sweep)
    md = table.to_markdown()
    # la_silu is the most robust profile: its mCA is bold and significantly better than relu
    line = next(ln for ln in md.splitlines() if ln.startswith("| la_silu"))
    mca = table.frame.at["la_silu", "mca"] * 100
    assert f"**{mca:.2f} ± " in line
    assert table.mark("la_silu", "mca").startswith("*")
    assert "relu (ref)" in md and "\\*" in md
    tex = table.to_latex()
    assert "\\toprule" in tex and "\\textbf{" in tex and "\\pm" in tex and "\\_" in tex
    html = table.to_html()
    assert "<table>" in html and "class='best'" in html
    csv = table.formatted("csv")
    back = pd.read_csv(__import__("io").StringIO(csv), index_col=0)
    assert back.loc["silu", "mca"] == pytest.approx(table.frame.at["silu", "mca"], rel=1e-5)
    with pytest.raises(UserError, match="unknown format"):
        table.formatted("docx")


def test_group_by_other_keys_and_unknown_reference(tmp_path):
    root = make_sweep(tmp_path, activations=("relu", "tanh"), seeds=(0, 1, 2),
                      orders=("conventional", "swapped"), write_extra=False)  # fmt: skip
    t = compare_runs(root, by="activation+order", reference="tanh/conventional")
    assert set(t.groups) == {"relu/conventional", "relu/swapped", "tanh/conventional", "tanh/swapped"}
    assert any(c.key == "asym_sat" for c in t.columns)
    t2 = compare_runs(root, by="order", reference="conventional")
    assert t2.frame.at["conventional", "n"] == 6
    # order comparison pairs runs by (model, activation, seed, dataset)
    pairs = t2.tests.set_index("column")["n_pairs"]
    assert pairs["mca"] == 6 and pairs["clean_top1"] == 6
    assert pairs["asym_sat"] == 3  # saturation is measured for the bounded tanh only
    sat = t2.cell("swapped", next(c for c in t2.columns if c.key == "asym_sat"))[0]
    assert sat.endswith("(n=3)")
    with pytest.raises(UserError, match="closest: tanh/conventional"):
        compare_runs(root, by="activation+order", reference="tanh/conventionl")
    with pytest.raises(UserError, match="unknown grouping key"):
        compare_runs(root, by="activaton")


def test_significance_tests_match_scipy_and_holm_by_hand():
    x = [0.71, 0.73, 0.72, 0.75, 0.74, 0.70, 0.76]
    y = [0.70, 0.71, 0.715, 0.72, 0.735, 0.705, 0.73]
    res = paired_tests(x, y)
    t = stats.ttest_rel(x, y)
    w = stats.wilcoxon(x, y)
    assert res["t_stat"] == pytest.approx(t.statistic)
    assert res["t_p"] == pytest.approx(t.pvalue)
    assert res["w_stat"] == pytest.approx(w.statistic)
    assert res["w_p"] == pytest.approx(w.pvalue)
    assert res["n_pairs"] == 7 and res["mean_diff"] == pytest.approx(np.mean(np.subtract(x, y)))
    assert res["p"] == res["t_p"] and res["test"] == "paired t"
    d = np.subtract(x, y)
    half = stats.t.ppf(0.975, 6) * d.std(ddof=1) / np.sqrt(7)
    assert (res["ci_low"], res["ci_high"]) == pytest.approx((d.mean() - half, d.mean() + half))
    assert res["effect_dz"] == pytest.approx(d.mean() / d.std(ddof=1))
    # identical samples: no difference, p = 1; a single pair: no test
    assert paired_tests([1, 2, 3], [1, 2, 3])["p"] == 1.0
    assert np.isnan(paired_tests([1.0], [2.0])["p"])
    # Holm by hand: p sorted 0.01, 0.02, 0.03, 0.04 with m = 4 -> 0.04, 0.06, 0.06, 0.06
    p = [0.03, 0.01, np.nan, 0.04, 0.02]
    adj = holm(p)
    assert adj[1] == pytest.approx(0.04)
    assert adj[4] == pytest.approx(0.06)  # max(0.04, 3 * 0.02)
    assert adj[0] == pytest.approx(0.06)  # max(0.06, 2 * 0.03)
    assert adj[3] == pytest.approx(0.06)  # max(0.06, 1 * 0.04)
    assert np.isnan(adj[2])
    assert holm([0.5, 0.6])[1] == pytest.approx(1.0)
    assert significance_mark(0.004, 0.03) == "**†"
    assert significance_mark(0.03, 0.2) == "*"
    assert significance_mark(0.2, float("nan")) == ""


def test_mismatched_runs_refused_then_accepted(tmp_path):
    make_run(tmp_path / "a", activation="relu", seed=0, write_extra=False)
    make_run(tmp_path / "b", activation="silu", seed=0, corruption_seed=7, write_extra=False)
    make_run(tmp_path / "c", activation="la_silu", seed=0, write_extra=False,
             corruptions={k: v for k, v in CORRS.items() if k != "fog"})  # fmt: skip
    with pytest.raises(UserError) as exc:
        compare_runs([tmp_path / "a", tmp_path / "b", tmp_path / "c"])
    msg = str(exc.value)
    assert "\n" not in msg
    assert "corruption seed differs: 0" in msg and "7 (resnet20-silu-conventional-s0)" in msg
    assert "lacking fog (resnet20-la_silu-conventional-s0)" in msg and "--allow-mismatch" in msg
    t = compare_runs([tmp_path / "a", tmp_path / "b", tmp_path / "c"], allow_mismatch=True)
    assert any("despite different data" in n for n in t.notes)
    assert np.isnan(t.frame.at["la_silu", "acc_fog"])
    make_run(tmp_path / "d", activation="silu", seed=1, n_images=1000, write_extra=False)
    with pytest.raises(UserError, match="image count differs: 48"):
        compare_runs([tmp_path / "a", tmp_path / "d"])


def test_several_models_per_run_and_clashing_run_ids(tmp_path):
    # the layout of `actbench run --activations relu,silu --seed S --out .../s0`: one folder, two models,
    # and two such folders whose run id is the same folder name "s0"
    for parent, seed in (("a", 0), ("b", 1)):
        parts = [make_run(tmp_path / "tmp" / f"{parent}{act}", activation=act, seed=seed, run_id="s0",
                          write_extra=False) for act in ("relu", "silu")]  # fmt: skip
        dest = tmp_path / "runs" / parent / "s0"
        dest.mkdir(parents=True)
        pd.concat([pd.read_parquet(p / "metrics.parquet") for p in parts]).to_parquet(dest / "metrics.parquet")
        (dest / "manifest.json").write_text((parts[0] / "manifest.json").read_text())
    t = compare_runs(tmp_path / "runs")
    assert sorted(t.runs.index.get_level_values("run").unique()) == ["a/s0", "b/s0"]
    assert t.frame.at["silu", "n"] == 2 and t.frame.at["relu", "n"] == 2
    assert (t.tests["n_pairs"] == 2).all()


def test_missing_folder_and_empty_folder(tmp_path):
    with pytest.raises(UserError, match="not found"):
        compare_runs([tmp_path / "nope"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no results under"):
        compare_runs([tmp_path / "empty"])


def test_cli_compare_writes_files_and_refuses_mismatch(sweep, tmp_path):
    from typer.testing import CliRunner

    from robustbench_act.cli import app

    runner = CliRunner()
    out = tmp_path / "out"
    res = runner.invoke(app, ["compare", str(sweep), "--out", str(out), "--reference", "relu"])
    assert res.exit_code == 0, res.output
    for suffix in ("md", "tex", "csv", "html"):
        assert (out / f"comparison.{suffix}").stat().st_size > 0
    assert (out / "comparison_tests.csv").is_file()
    assert "la_silu" in res.output
    res = runner.invoke(app, ["compare", str(sweep), "--out", str(out / "md"), "--format", "md"])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (out / "md").iterdir()) == ["comparison.md"]

    make_run(tmp_path / "x" / "a", activation="relu", seed=0, write_extra=False)
    make_run(tmp_path / "x" / "b", activation="silu", seed=0, dataset="cifar100", write_extra=False)
    res = runner.invoke(app, ["compare", str(tmp_path / "x"), "--out", str(tmp_path / "o2")])
    assert res.exit_code == 2
    lines = [ln for ln in res.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and re.search(r"error: .*dataset differs", lines[0]), res.output
    assert not (tmp_path / "o2").exists()
    res = runner.invoke(app, ["compare", str(tmp_path / "x"), "--out", str(tmp_path / "o2"),
                              "--allow-mismatch"])  # fmt: skip
    assert res.exit_code == 0, res.output


def test_no_significance_from_two_pairs_or_from_zero_variance():
    """The issue's reproductions: n = 2 gave p = 3.5e-16 (t = inf); equal differences p = 0."""
    two = paired_tests([0.9, 0.8], [0.8, 0.7])
    assert np.isnan(two["p"]) and two["test"] == "none" and "fewer than 3" in two["note"]
    assert np.isnan(two["ci_low"]) and two["mean_diff"] == pytest.approx(0.1)
    same = paired_tests([0.9, 0.8, 0.7], [0.8, 0.7, 0.6])  # three equal differences
    assert same["test"] == "exact sign-flip" and same["p"] == pytest.approx(2 / 8)
    assert np.isnan(same["t_p"]) and np.isnan(same["ci_low"])
    five = paired_tests([1.0] * 5, [0.5] * 5)
    assert five["p"] == pytest.approx(2 / 32)  # the smallest two-sided p with 5 pairs


def test_two_seeds_are_not_tested_across_seeds_but_over_images(tmp_path):
    root = make_sweep(tmp_path, seeds=(0, 1))
    t = compare_runs(root)
    assert t.uncertainty == "images"
    assert "bootstrap over 48 test images" in " ".join(t.notes)
    assert "intervals over the test images are in the tests table" in t.legend
    row = t.tests[(t.tests.group == "la_silu") & (t.tests.column == "mca")].iloc[0]
    assert row["n_pairs"] == 2 and row["test"] == "none"  # the synthetic runs have no 'correct' rows
    seeds = compare_runs(root, uncertainty="seeds")
    r = seeds.tests[(seeds.tests.group == "la_silu") & (seeds.tests.column == "mca")].iloc[0]
    assert np.isnan(r["p"]) and r["mark"] == ""
    assert "± is the std over seeds." in seeds.legend and "test images" not in seeds.legend
    with pytest.raises(UserError, match="unknown uncertainty 'sedes'"):
        compare_runs(root, uncertainty="sedes")


def test_verbatim_copy_of_a_run_counts_once(tmp_path):
    import shutil

    make_run(tmp_path / "runs" / "a", activation="relu", seed=0, write_extra=False)
    make_run(tmp_path / "runs" / "b", activation="silu", seed=0, write_extra=False)
    shutil.copytree(tmp_path / "runs" / "b", tmp_path / "runs" / "b_copy")
    t = compare_runs(tmp_path / "runs")
    assert t.frame.at["silu", "n"] == 1
    assert any("identical copies counted once" in n for n in t.notes)
    # same model key, different numbers: cannot both be seed 0
    make_run(tmp_path / "runs2" / "a", activation="silu", seed=0, write_extra=False)
    make_run(tmp_path / "runs2" / "b", activation="silu", seed=0, write_extra=False, model="resnet20",
             run_id="other", dataset="cifar10")
    df = pd.read_parquet(tmp_path / "runs2" / "b" / "metrics.parquet")
    df["value"] = df["value"] * 0.99
    df.to_parquet(tmp_path / "runs2" / "b" / "metrics.parquet")
    with pytest.raises(UserError, match="numbers differ"):
        compare_runs(tmp_path / "runs2")
    # grouped by run they are two models (e.g. one seed trained in fp32 and in bf16), paired
    by_run = compare_runs(tmp_path / "runs2", by="run", reference="other")
    assert sorted(by_run.frame.index) == ["other", "resnet20-silu-conventional-s0"]
    assert set(by_run.frame["n"]) == {1}
    assert by_run.tests[by_run.tests.group != "other"]["n_pairs"].max() == 1


def _floor_notes(tmp_path, at_chance, seeds=(0,)):
    """Notes of comparing a 10-class relu run (its cells ``at_chance(df)`` at 10%) with a silu run."""
    folder = make_run(tmp_path / "r", activation="relu", seed=0, write_extra=False)
    one = pd.read_parquet(folder / "metrics.parquet")
    df = pd.concat([one.assign(seed=s) for s in seeds], ignore_index=True)
    df.loc[(df.metric == "top1") & at_chance(df), "value"] = 0.1
    df.to_parquet(folder / "metrics.parquet")
    man = json.loads((folder / "manifest.json").read_text())
    man["config"]["num_classes"] = 10
    (folder / "manifest.json").write_text(json.dumps(man))
    make_run(tmp_path / "s", activation="silu", seed=0, write_extra=False)
    return " ".join(compare_runs(tmp_path).notes)


def test_cells_at_chance_level_are_named(tmp_path):
    notes = _floor_notes(tmp_path, lambda df: (df.corruption == "contrast") & (df.severity >= 4))
    assert "2 of 50 corrupted cells at chance level (10.0%): contrast s4, contrast s5" in notes


def test_cells_at_chance_level_name_their_seed_when_a_run_has_several(tmp_path):
    notes = _floor_notes(tmp_path, lambda df: (df.corruption == "contrast") & (
        ((df.seed == 0) & (df.severity == 5)) | ((df.seed == 1) & (df.severity >= 4))), seeds=(0, 1))
    assert ("3 of 100 corrupted cells at chance level (10.0%): seed 0: contrast s5; "
            "seed 1: contrast s4, contrast s5") in notes


def test_every_output_format_names_the_data(tmp_path):
    # md, tex and html say which dataset, how many test images and which corruption seed; the CSV
    # carries each group's dataset and image count as columns
    for act in ("relu", "silu"):
        make_run(tmp_path / act, activation=act, seed=0, dataset="imagefolder:data/cifar10-jpeg-q75",
                 n_images=2000, corruption_seed=7, write_extra=False)  # fmt: skip
    table = compare_runs(tmp_path)
    line = "Data: imagefolder:data/cifar10-jpeg-q75; 2000 test images per run; corruption seed 7."
    for text in (table.to_markdown(), table.to_latex(), table.to_html()):
        assert line in text
    back = pd.read_csv(__import__("io").StringIO(table.to_csv()), index_col=0)
    assert list(back["dataset"]) == ["imagefolder:data/cifar10-jpeg-q75"] * 2
    assert list(back["n_images"]) == [2000, 2000]
    assert back.loc["silu", "mca"] == pytest.approx(table.frame.at["silu", "mca"], rel=1e-5)
