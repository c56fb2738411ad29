"""``actbench compare`` (comparison tables + paired tests) and ``actbench report`` (tables + figures)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.console import Console

_RUNS_HELP = "Run folders (holding metrics.parquet) or sweep folders (searched recursively)."
_BY_HELP = "Group rows by: activation, model, order, dataset, seed, run, or a combination (activation+order)."
_REF_HELP = "Reference group for mCE and paired tests [default: relu if present, else the first group]."
_FIGURES_HELP = (
    "Comma-separated figures to draw (default all): accuracy_vs_severity, corruption_heatmap, "
    "fluctuation_samples, fluctuation_vs_severity, fluctuation_layers, unit_means, bn_order, corruption_preview."
)
_UNC_HELP = ("What the tests and intervals resample: seeds (>= 3 paired seeds), images (paired bootstrap "
             "over the test images), none, or auto (seeds when possible, else images).")
_MISMATCH_HELP = "Compare runs even if they saw different data (dataset, corruption seed, image count, corruptions)."


def compare_command(
    run_dirs: list[Path] = typer.Argument(..., help=_RUNS_HELP, show_default=False),
    by: str = typer.Option("activation", "--by", help=_BY_HELP),
    reference: str | None = typer.Option(None, "--reference", help=_REF_HELP, show_default=False),
    formats: list[str] | None = typer.Option(
        None, "--format", help="File format to write: md, latex, csv, html (repeatable) [default: all four].",
        show_default=False,
    ),
    out: Path = typer.Option(Path("."), "--out", help="Folder for comparison.{md,tex,csv,html} (created if missing)."),
    allow_mismatch: bool = typer.Option(False, "--allow-mismatch", help=_MISMATCH_HELP),
    uncertainty: str = typer.Option("auto", "--uncertainty", help=_UNC_HELP),
) -> None:
    """Compare runs: accuracy, mCA per group, mCE, fluctuation; mean ± std over seeds, paired tests.

    Prints the summary table and writes comparison.md / .tex / .csv / .html (plus
    comparison_tests.csv with every paired test) atomically into --out, the current folder
    by default. Refuses runs that saw different data unless --allow-mismatch (exit 2).
    """
    from robustbench_act.api import run
    from robustbench_act.specs import CompareSpec
    from robustbench_act.tables import FORMATS

    spec = CompareSpec(runs=run_dirs, by=by, reference=reference, formats=tuple(formats or FORMATS), out=out,
                       allow_mismatch=allow_mismatch, uncertainty=uncertainty)  # fmt: skip
    render(spec, run(spec))


def render(spec: Any, table: Any) -> None:
    """The comparison as a rich table, its notes, and the files written."""
    console = Console(highlight=False)
    console.print(table.to_rich())
    for note in table.notes:
        console.print(f"note: {note}", markup=False)
    console.print(f"wrote {', '.join(Path(p).name for p in table.written)} to {spec.out}", markup=False,
                  soft_wrap=True)  # fmt: skip


def report_command(
    run_dirs: list[Path] = typer.Argument(..., help=_RUNS_HELP, show_default=False),
    out: Path = typer.Option(..., "--out", help="Folder for report.html, the tables and figures/."),
    by: str = typer.Option("activation", "--by", help=_BY_HELP),
    reference: str | None = typer.Option(None, "--reference", help=_REF_HELP, show_default=False),
    allow_mismatch: bool = typer.Option(False, "--allow-mismatch", help=_MISMATCH_HELP),
    uncertainty: str = typer.Option("auto", "--uncertainty", help=_UNC_HELP),
    figures: str = typer.Option("all", "--figures", help=_FIGURES_HELP),
) -> None:
    """Write a report: comparison tables, figures (PNG + PDF) and one self-contained report.html.

    Everything goes into --out: comparison.{md,tex,csv,html}, figures/<name>.{png,pdf} and
    report.html (tables + figures inlined, no external file needed). A figure the data do
    not allow (no probes, one BN order, dataset not loadable here) is skipped with a note.
    """
    import sys

    from robustbench_act.api import run
    from robustbench_act.specs import ReportSpec

    spec = ReportSpec(runs=run_dirs, out=out, by=by, reference=reference, allow_mismatch=allow_mismatch,
                      uncertainty=uncertainty, figures=figures, command=" ".join(["actbench", *sys.argv[1:]]))  # fmt: skip
    Console(highlight=False).print(f"wrote {run(spec)}", markup=False)


def register(app: typer.Typer) -> None:
    """Add the ``compare`` and ``report`` commands to the actbench app."""
    from robustbench_act.cli.common import command

    app.command("compare")(command(compare_command))
    app.command("report")(command(report_command))
