"""``actbench compare`` (comparison tables + paired tests) and ``actbench report`` (tables + figures)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from robustbench_act.errors import UserError

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


def _fail(exc: Exception) -> typer.Exit:
    from robustbench_act.cli.common import print_error

    print_error(str(exc))
    return typer.Exit(2)


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
    from robustbench_act.compare import compare_runs, write_comparison
    from robustbench_act.fileio import writing_folder
    from robustbench_act.tables import FORMATS, formats_of

    try:
        fmts = list(dict.fromkeys(formats_of(formats or FORMATS)))
        table = compare_runs(run_dirs, by=by, reference=reference, allow_mismatch=allow_mismatch,
                             uncertainty=uncertainty)
        with writing_folder(out):  # one writer at a time
            written = write_comparison(table, out, fmts)
    except UserError as exc:
        raise _fail(exc) from None
    console = Console(highlight=False)
    console.print(table.to_rich())
    for note in table.notes:
        console.print(f"note: {note}", markup=False)
    console.print(f"wrote {', '.join(p.name for p in written)} to {out}", markup=False, soft_wrap=True)


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

    from robustbench_act.fileio import writing_folder
    from robustbench_act.inputs import name_list
    from robustbench_act.report import write_report

    try:
        name_list("--figures", figures)
        with writing_folder(out):  # one writer at a time; a new folder is removed again on error
            path = write_report(run_dirs, out, by=by, reference=reference, allow_mismatch=allow_mismatch,
                                uncertainty=uncertainty, figures=figures,
                                command=" ".join(["actbench", *sys.argv[1:]]))  # fmt: skip
    except UserError as exc:
        raise _fail(exc) from None
    Console(highlight=False).print(f"wrote {path}", markup=False)


def register(app: typer.Typer) -> None:
    """Add the ``compare`` and ``report`` commands to the actbench app."""
    from robustbench_act.cli.common import command

    app.command("compare")(command(compare_command))
    app.command("report")(command(report_command))
