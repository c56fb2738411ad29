"""The report's figures (PNG + PDF), one style per group shared by every figure.

Each figure function takes the loaded runs, the comparison table and the styles and
returns (figure, caption); :func:`make_figures` draws those the data allow. The list is
in :mod:`robustbench_act.report`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from robustbench_act.errors import unknown
from robustbench_act.figures.accuracy import (
    fig_accuracy_vs_severity,
    fig_corruption_heatmap,
    fig_corruption_preview,
)
from robustbench_act.figures.probes import (
    fig_bn_order,
    fig_fluctuation_layers,
    fig_fluctuation_samples,
    fig_fluctuation_vs_severity,
    fig_unit_means,
)
from robustbench_act.figures.style import RC, FigureResult, Style, _save, _SkipFigureError, styles  # noqa: F401
from robustbench_act.runset import RunSet
from robustbench_act.tables import ComparisonTable

FIGURES: tuple[tuple[str, str, Callable[..., tuple[Any, str]]], ...] = (
    ("accuracy_vs_severity", "Accuracy vs severity", fig_accuracy_vs_severity),
    ("corruption_heatmap", "Accuracy per corruption", fig_corruption_heatmap),
    ("fluctuation_samples", "Activation fluctuation across samples", fig_fluctuation_samples),
    ("fluctuation_vs_severity", "Activation fluctuation vs severity", fig_fluctuation_vs_severity),
    ("fluctuation_layers", "Activation fluctuation per layer", fig_fluctuation_layers),
    ("unit_means", "Mean activation per unit (zero-like mean)", fig_unit_means),
    ("bn_order", "BatchNorm order: saturation and sparsity", fig_bn_order),
    ("corruption_preview", "Corruption preview", fig_corruption_preview),
)


FIGURE_NAMES = tuple(name for name, _, _ in FIGURES)


def parse_figures(figures: str | Iterable[str] | None) -> tuple[str, ...]:
    """Figure names from 'a,b' or a list (None or 'all': every figure); unknown names are errors."""
    if figures is None:
        return FIGURE_NAMES
    names = [f.strip() for f in figures.split(",")] if isinstance(figures, str) else [str(f) for f in figures]
    names = [n for n in names if n]
    if names == ["all"]:
        return FIGURE_NAMES
    for n in names:
        if n not in FIGURE_NAMES:
            raise unknown("figure", n, FIGURE_NAMES)
    return tuple(n for n in FIGURE_NAMES if n in names)


def make_figures(rs: RunSet, table: ComparisonTable, folder: str | Path,
                 figures: str | Iterable[str] | None = None) -> tuple[list[FigureResult], list[str]]:  # fmt: skip
    """Draw the figures (default all) that the data allow into ``folder`` (PNG + PDF); notes for skipped ones."""
    import matplotlib

    wanted = parse_figures(figures)
    folder = Path(folder)
    st = styles(table.groups)
    results: list[FigureResult] = []
    notes: list[str] = []
    with matplotlib.rc_context(RC):
        for name, title, fn in FIGURES:
            if name not in wanted:
                continue
            try:
                fig, caption = fn(rs, table, st)
            except _SkipFigureError as why:
                if name != "bn_order" or str(why) != "a single order":
                    notes.append(f"figure '{title}' skipped: {why}")
                continue
            png = _save(fig, folder, name)
            results.append(FigureResult(name, title, caption, png))
    return results, notes


