"""Shared figure style: one colour, marker and line style per group; helpers to draw and save."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from robustbench_act.fileio import atomic_write
from robustbench_act.tables import ComparisonTable

#: Reference black, then Okabe-Ito (without yellow), then Paul Tol's muted/bright extras.
PALETTE = (
    "#000000", "#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9",
    "#882255", "#999933", "#332288", "#44AA99", "#AA4499", "#117733", "#DDCC77",
)  # fmt: skip
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "h", "p", "*", "d", "H")
LINESTYLES = ("-", "--", "-.", ":")
HATCHES = ("", "///", "...", "xxx", "\\\\\\")
RC = {
    "font.size": 13,
    "axes.titlesize": 14,
    "axes.labelsize": 13,
    "xtick.labelsize": 12,
    "ytick.labelsize": 12,
    "legend.fontsize": 12,
    "figure.titlesize": 15,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "pdf.fonttype": 42,
    "savefig.dpi": 150,
}


@dataclass(frozen=True)
class Style:
    """How one group is drawn in every figure."""

    color: str
    marker: str
    linestyle: str


def styles(groups: Sequence[str]) -> dict[str, Style]:
    """Colour, marker and line style per group, in the given order (reference first)."""
    out = {}
    for i, g in enumerate(groups):
        out[g] = Style(PALETTE[i % len(PALETTE)], MARKERS[i % len(MARKERS)],
                       LINESTYLES[(i // len(PALETTE)) % len(LINESTYLES)])  # fmt: skip
    return out


@dataclass
class FigureResult:
    """A produced figure: file stem, caption, and its PNG bytes."""

    name: str
    title: str
    caption: str
    png: bytes


class _SkipFigureError(Exception):
    """A figure cannot be drawn from these data (a note says why)."""


# ----------------------------------------------------------------------------- helpers


def _labels(frame: pd.DataFrame, by: Sequence[str]) -> pd.Series:
    """Group label of every row of a tidy table (the same labels as the comparison table)."""
    cols = [frame[k].astype(str) for k in by]
    out = cols[0]
    for c in cols[1:]:
        out = out + "/" + c
    return out


def _horizontal() -> dict[str, Any]:
    """Keyword for horizontal violin/box plots across matplotlib versions."""
    import matplotlib

    major, minor = (int(x) for x in matplotlib.__version__.split(".")[:2])
    return {"orientation": "horizontal"} if (major, minor) >= (3, 10) else {"vert": False}


def _new_figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _legend_below(fig: Any, table: ComparisonTable, st: dict[str, Style], groups: Sequence[str],
                  *, kind: str = "line") -> None:  # fmt: skip
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles = []
    for g in groups:
        s = st[g]
        if kind == "line":
            handles.append(Line2D([], [], color=s.color, marker=s.marker, linestyle=s.linestyle,
                                  linewidth=2, markersize=7, label=table.group_label(g)))  # fmt: skip
        else:
            handles.append(Patch(facecolor=s.color, alpha=0.6, edgecolor=s.color, label=table.group_label(g)))
    ncol = min(len(handles), 6)
    fig.legend(handles=handles, loc="outside lower center", ncol=ncol, frameon=False)


# matplotlib stamps the write time into these formats; without it the same figure gives the same bytes
_NO_DATE = {"pdf": {"CreationDate": None}, "svg": {"Date": None}, "ps": {"CreationDate": None},
            "eps": {"CreationDate": None}}  # fmt: skip


def save_figure(fig: Any, path: Path, fmt: str) -> None:
    """Write ``fig`` to ``path`` in ``fmt`` atomically, without a write-time stamp (byte-reproducible)."""
    atomic_write(path, lambda p: fig.savefig(p, format=fmt, metadata=_NO_DATE.get(fmt)))


def _save(fig: Any, folder: Path, name: str) -> bytes:
    """Write ``name.png`` and ``name.pdf`` atomically; return the PNG bytes (for inlining)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=150)
    png = buf.getvalue()
    atomic_write(folder / f"{name}.png", lambda p: p.write_bytes(png))
    # the layout is fixed by the PNG draw (figure-relative, DPI-independent): reuse it for the PDF
    fig.set_layout_engine("none")
    save_figure(fig, folder / f"{name}.pdf", "pdf")
    return png


def _mean_std(frame: pd.DataFrame, by: list[str], value: str = "value") -> pd.DataFrame:
    g = frame.groupby(by, sort=False)[value]
    return pd.DataFrame({"mean": g.mean(), "std": g.std(ddof=1), "n": g.count()}).reset_index()


def _band(ax: Any, x: np.ndarray, mean: np.ndarray, std: np.ndarray, n: np.ndarray, s: Style) -> None:
    ax.plot(x, mean, color=s.color, marker=s.marker, linestyle=s.linestyle, linewidth=2, markersize=6)
    if np.nanmax(n, initial=0) > 1:
        ax.fill_between(x, mean - np.nan_to_num(std), mean + np.nan_to_num(std), color=s.color,
                        alpha=0.15, linewidth=0)  # fmt: skip


_ORDER_LABELS = {"conventional": "conventional (Conv → BN → Act)", "swapped": "swapped (Conv → Act → BN)"}
_STAT_LABELS = {"fluct_l1_rel": "relative L1 fluctuation", "fluct_l1_elem": "L1 fluctuation per element", "fluct_l2_elem": "L2 fluctuation per element",
                "fluct_l1": "L1 fluctuation", "fluct_l2": "L2 fluctuation"}  # fmt: skip


def _stat_label(stat: str) -> str:
    base = stat[3:] if stat.startswith("in_") else stat
    for suffix in ("_mean", "_std"):
        base = base[: -len(suffix)] if base.endswith(suffix) else base
    return _STAT_LABELS.get(base, base.replace("_", " "))


