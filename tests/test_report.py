"""Tests of robustbench_act.report: figures (PNG + PDF), self-contained report.html, CLI."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from test_compare import make_run, make_sweep

from robustbench_act.errors import UserError
from robustbench_act.report import FIGURE_NAMES, styles, write_report

# few cells and samples: the figures need shape, not volume
SMALL = {"corruptions": {"gaussian_noise": "noise", "defocus_blur": "blur", "contrast": "digital"},
         "severities": (1, 3, 5), "n": 16, "n_layers": 4, "units": 8}  # fmt: skip


def _png_ok(path: Path) -> bool:
    data = path.read_bytes()
    return data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def _pdf_ok(path: Path) -> bool:
    data = path.read_bytes()
    return data[:5] == b"%PDF-" and len(data) > 1000


def _assert_self_contained(text: str) -> None:
    srcs = re.findall(r"""\bsrc\s*=\s*['"]([^'"]*)""", text)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    hrefs = re.findall(r"""\bhref\s*=\s*['"]([^'"]*)""", text)
    assert all(h.startswith("#") for h in hrefs), hrefs
    assert "<link" not in text and "<script" not in text and "@import" not in text and "url(" not in text


def test_full_report_all_figures(tmp_path):
    # two BN orders (bn_order figure) on the offline digits dataset (corruption preview)
    sweep = make_sweep(tmp_path / "sweep", activations=("relu", "tanh", "la_silu"), seeds=(0, 1),
                       orders=("conventional", "swapped"), dataset="digits", **SMALL)  # fmt: skip
    out = tmp_path / "report"
    path = write_report([sweep], out, reference="relu")
    assert path == out / "report.html"
    for name in FIGURE_NAMES:
        assert _png_ok(out / "figures" / f"{name}.png"), name
        assert _pdf_ok(out / "figures" / f"{name}.pdf"), name
    for suffix in ("md", "tex", "csv", "html"):
        assert (out / f"comparison.{suffix}").stat().st_size > 0
    text = path.read_text(encoding="utf-8")
    _assert_self_contained(text)
    assert text.count("<img ") == len(FIGURE_NAMES)
    assert "skipped" not in text  # every figure could be drawn
    # header: runs, dataset, commands and versions from the manifests; the tables as HTML
    assert "digits" in text and "actbench run --activation tanh" in text and "torch 2.x" in text
    assert "relu (ref)" in text and "<table>" in text and "Summary" in text
    assert not list(out.rglob("*.tmp"))


def test_report_skips_what_the_data_do_not_allow(tmp_path):
    # one order (no bn_order figure), no probe tables, a dataset that cannot be loaded here
    for act in ("relu", "silu"):
        make_run(tmp_path / "runs" / act, activation=act, seed=0, dataset="imagefolder:/nonexistent/x",
                 write_extra=False, **SMALL)  # fmt: skip
    out = tmp_path / "report"
    skipped = ("bn_order", "corruption_preview", "fluctuation_samples", "unit_means")
    path = write_report([tmp_path / "runs"], out, figures=("corruption_heatmap", *skipped))
    text = path.read_text(encoding="utf-8")
    _assert_self_contained(text)
    assert _png_ok(out / "figures" / "corruption_heatmap.png")
    assert _pdf_ok(out / "figures" / "corruption_heatmap.pdf")
    for name in skipped:
        assert not (out / "figures" / f"{name}.png").exists()
    assert "Corruption preview&#x27; skipped: dataset" in text
    assert "no per-sample fluctuation" in text
    assert "bn_order" not in text  # a single order is not worth a note


def test_report_refuses_mismatch_before_writing(tmp_path):
    make_run(tmp_path / "a", activation="relu", seed=0, write_extra=False, **SMALL)
    make_run(tmp_path / "b", activation="silu", seed=0, corruption_seed=3, write_extra=False, **SMALL)
    with pytest.raises(UserError, match="corruption seed differs"):
        write_report([tmp_path / "a", tmp_path / "b"], tmp_path / "out")
    assert not (tmp_path / "out").exists()
    with pytest.raises(UserError, match="unknown figure 'heatmap'; closest: corruption_heatmap"):
        write_report([tmp_path / "a"], tmp_path / "out", figures="heatmap")


def test_styles_are_distinct_and_stable():
    groups = [f"act{i}" for i in range(16)]
    st = styles(groups)
    assert st["act0"].color == "#000000"  # the reference (first) is black
    assert len({(s.color, s.marker, s.linestyle) for s in st.values()}) == 16
    assert styles(groups[:3]) == {g: st[g] for g in groups[:3]}


def test_cli_report(tmp_path):
    from typer.testing import CliRunner

    from robustbench_act.cli import app

    sweep = make_sweep(tmp_path / "sweep", activations=("relu", "la_silu"), seeds=(0, 1), **SMALL)
    runner = CliRunner()
    out = tmp_path / "out"
    res = runner.invoke(app, ["report", str(sweep), "--out", str(out), "--figures", "unit_means,fluctuation_layers"])
    assert res.exit_code == 0, res.output
    assert (out / "report.html").is_file() and (out / "comparison.md").is_file()
    assert sorted(p.name for p in (out / "figures").iterdir()) == [
        "fluctuation_layers.pdf", "fluctuation_layers.png", "unit_means.pdf", "unit_means.png"]  # fmt: skip
    res = runner.invoke(app, ["report", str(sweep), "--out", str(out), "--figures", "nope"])
    assert res.exit_code == 2
    assert len(res.output.strip().splitlines()) == 1 and "unknown figure" in res.output


def test_report_figures_are_byte_reproducible(tmp_path):
    # the same runs twice give the same PNG and PDF bytes (no write-time stamp in the PDF)
    for act in ("relu", "silu"):
        make_run(tmp_path / "runs" / act, activation=act, seed=0, dataset="imagefolder:/nonexistent/x",
                 write_extra=False, **SMALL)  # fmt: skip
    outs = [tmp_path / "a", tmp_path / "b"]
    for out in outs:
        write_report([tmp_path / "runs"], out, figures=("corruption_heatmap",))
    for suffix in ("png", "pdf"):
        first, second = ((o / "figures" / f"corruption_heatmap.{suffix}").read_bytes() for o in outs)
        assert first == second, suffix
    assert b"CreationDate" not in (outs[0] / "figures" / "corruption_heatmap.pdf").read_bytes()
