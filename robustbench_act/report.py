"""Figures and one self-contained ``report.html`` for a comparison of runs.

:func:`write_report` loads the runs once, builds the :class:`~robustbench_act.compare.ComparisonTable`
(refusing runs that saw different data unless ``allow_mismatch``), writes the tables
(``comparison.{md,tex,csv,html}``), every figure as PNG and PDF under ``figures/`` and
``report.html`` with the tables as HTML and the figures inlined as base64 PNG (no external
file, script or font is referenced). Each file is written atomically.

Figures (one colour, marker and line style per group, the same in every figure; the
reference group is black; Okabe-Ito colours, then Paul Tol's, both colour-blind safe;
legends sit outside the axes):

- ``accuracy_vs_severity``: top-1 vs severity (0 = clean), all corruptions and per group,
  mean over seeds with a +-1 std band when a group has several runs;
- ``corruption_heatmap``: group x corruption accuracy (mean over severities and seeds),
  annotated, plus the difference to the reference in percentage points;
- ``fluctuation_samples``: per-sample activation fluctuation (output and input of the
  activation) per severity of one representative corruption (gaussian_noise when present):
  boxes 5-95 %, means as white diamonds - LayerAct's claim is a lower mean AND spread of
  the output while the input fluctuates the same;
- ``fluctuation_vs_severity``: the cell-level fluctuation mean and across-sample std
  (averaged over corruptions) and the input fluctuation, vs severity;
- ``fluctuation_layers``: fluctuation per layer (mean over corrupted cells) vs layer index;
- ``unit_means``: distribution of per-unit mean activations on clean data (zero-like mean);
- ``bn_order`` (only with more than one order): accuracy, saturation, asymmetric
  saturation and post-BN sparsity per activation and order;
- ``corruption_preview``: one test image of the run's dataset under every evaluated
  corruption and severity (skipped, with a note, when the dataset cannot be loaded here).
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from robustbench_act.compare import compare_runs, write_comparison
from robustbench_act.figures import FIGURE_NAMES, FigureResult, make_figures, parse_figures, styles  # noqa: F401
from robustbench_act.fileio import atomic_write_text, make_folder
from robustbench_act.runset import RunSet, load_runs
from robustbench_act.tables import TABLE_CSS, ComparisonTable

# ----------------------------------------------------------------------------- html


def _unique(values: Iterable[Any]) -> list[str]:
    return list(dict.fromkeys(str(v) for v in values if v not in (None, "", [], {})))


def _header_rows(rs: RunSet, table: ComparisonTable, command: str | None) -> list[tuple[str, str]]:
    from robustbench_act.manifest import versions

    mans = [m for m in rs.manifests.values() if m]
    fp = table.data
    rows = [("generated", _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))]
    if command:
        rows.append(("report command", command))
    rows.append(("grouped by / reference", f"{'+'.join(table.by)} / {table.reference}"))
    runs = table.runs.reset_index()
    rows.append(("runs", f"{runs['run'].nunique()} runs, {len(runs)} models: "
                 + ", ".join(_unique(runs["run"]))[:2000]))  # fmt: skip
    if not fp.empty:
        rows.append(("dataset", ", ".join(_unique(fp["dataset"]))))
        rows.append(("images per cell", ", ".join(_unique(fp["n_images"]))))
        rows.append(("corruption seed", ", ".join(_unique(fp["corruption_seed"]))))
        rows.append(("corruptions", "; ".join(", ".join(c) for c in dict.fromkeys(fp["corruptions"]))))
        rows.append(("severities", "; ".join(", ".join(map(str, s)) for s in dict.fromkeys(fp["severities"]))))
    rows.append(("models", ", ".join(_unique(runs["model"]))))
    rows.append(("run commands", " | ".join(_unique(m.get("command") for m in mans)) or "–"))
    vers: dict[str, list[str]] = {}
    for m in mans:
        for k, v in (m.get("versions") or {}).items():
            vers.setdefault(k, [])
            if str(v) not in vers[k]:
                vers[k].append(str(v))
    if vers:
        rows.append(("versions (runs)", ", ".join(f"{k} {'/'.join(v)}" for k, v in vers.items())))
    rows.append(("git commit (runs)", ", ".join(_unique(m.get("git_commit") for m in mans)) or "–"))
    rows.append(("devices (runs)", ", ".join(_unique(m.get("device") for m in mans)) or "–"))
    rows.append(("versions (report)", ", ".join(f"{k} {v}" for k, v in versions().items())))
    return rows


def render_html(rs: RunSet, table: ComparisonTable, figures: Sequence[FigureResult], notes: Sequence[str],
                *, command: str | None = None) -> str:  # fmt: skip
    """The self-contained report page: header, notes, tables, inlined figures."""
    e = html.escape
    head = "".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in _header_rows(rs, table, command))
    parts = [
        "<!DOCTYPE html>",
        "<html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        "<title>actbench report</title>",
        f"<style>{TABLE_CSS}{REPORT_CSS}</style></head><body>",
        "<h1>actbench report</h1>",
        f"<table class='meta'>{head}</table>",
    ]
    all_notes = list(table.notes) + list(notes)
    if all_notes:
        parts.append("<div class='notes'><b>Notes</b><ul>" + "".join(f"<li>{e(n)}</li>" for n in all_notes)
                     + "</ul></div>")  # fmt: skip
    if figures:
        parts.append("<p class='toc'>Figures: " + " · ".join(
            f"<a href='#{f.name}'>{e(f.title)}</a>" for f in figures) + "</p>")  # fmt: skip
    parts.append("<h2>Comparison</h2>")
    parts.append(table.to_html(full=False, notes=False))
    for i, f in enumerate(figures, start=1):
        b64 = base64.b64encode(f.png).decode("ascii")
        parts.append(
            f"<h2 id='{f.name}'>{i}. {e(f.title)}</h2><figure><img alt='{e(f.title)}' "
            f"src='data:image/png;base64,{b64}'><figcaption>Figure {i}. {e(f.caption)} "
            f"(figures/{f.name}.png, .pdf)</figcaption></figure>"
        )
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


REPORT_CSS = (
    "h1{font-size:1.6em}h2{font-size:1.25em;margin-top:1.6em;border-bottom:1px solid #ccc}"
    "table.meta th{text-align:left;background:none;border-bottom:1px solid #eee;vertical-align:top}"
    "table.meta td{text-align:left;white-space:normal;max-width:70em}"
    "figure{margin:0.5em 0}figure img{max-width:100%;height:auto;border:1px solid #eee}"
    "figcaption{font-size:0.9em;color:#444;max-width:60em;margin-top:0.3em}"
    ".notes{background:#fff8e1;border-left:4px solid #e69f00;padding:0.3em 1em;margin:1em 0}"
    "p.toc a{color:#0072b2}"
)


def write_report(
    paths: Any,
    out_dir: str | Path,
    *,
    by: str | Sequence[str] = "activation",
    reference: str | None = None,
    allow_mismatch: bool = False,
    uncertainty: str = "auto",
    command: str | None = None,
    figures: str | Iterable[str] | None = None,
) -> Path:
    """Write tables, figures (PNG + PDF) and a self-contained report.html into ``out_dir``; its path.

    ``figures``: names (see :data:`FIGURE_NAMES`) to draw, default all; ``command``: the
    command line shown in the report header (default: this process's, when it is ``actbench``).
    """
    parse_figures(figures)  # a bad name fails before anything is read or written
    # samples.parquet is read later, filtered to what the figures need
    rs = paths if isinstance(paths, RunSet) else load_runs(
        [paths] if isinstance(paths, (str, Path)) else list(paths), samples=False)  # fmt: skip
    table = compare_runs(rs, by=by, reference=reference, allow_mismatch=allow_mismatch, uncertainty=uncertainty)
    out = Path(out_dir)
    make_folder(out)
    write_comparison(table, out)
    drawn, notes = make_figures(rs, table, out / "figures", figures)
    if command is None:
        command = " ".join(["actbench", *sys.argv[1:]]) if Path(sys.argv[0]).name == "actbench" else None
    return atomic_write_text(out / "report.html", render_html(rs, table, drawn, notes, command=command))
