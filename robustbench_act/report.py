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
import io
import math
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from robustbench_act.compare import KEY, compare_runs, write_comparison
from robustbench_act.errors import unknown
from robustbench_act.fileio import atomic_write, atomic_write_text, make_folder
from robustbench_act.runset import GROUPS, RunSet, corruption_group, load_runs, order_corruptions
from robustbench_act.tables import TABLE_CSS, ComparisonTable

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


def _save(fig: Any, folder: Path, name: str) -> bytes:
    """Write ``name.png`` and ``name.pdf`` atomically; return the PNG bytes (for inlining)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=150)
    png = buf.getvalue()
    atomic_write(folder / f"{name}.png", lambda p: p.write_bytes(png))
    # the layout is fixed by the PNG draw (figure-relative, DPI-independent): reuse it for the PDF
    fig.set_layout_engine("none")
    atomic_write(folder / f"{name}.pdf", lambda p: fig.savefig(p, format="pdf"))
    return png


def _mean_std(frame: pd.DataFrame, by: list[str], value: str = "value") -> pd.DataFrame:
    g = frame.groupby(by, sort=False)[value]
    return pd.DataFrame({"mean": g.mean(), "std": g.std(ddof=1), "n": g.count()}).reset_index()


def _band(ax: Any, x: np.ndarray, mean: np.ndarray, std: np.ndarray, n: np.ndarray, s: Style) -> None:
    ax.plot(x, mean, color=s.color, marker=s.marker, linestyle=s.linestyle, linewidth=2, markersize=6)
    if np.nanmax(n, initial=0) > 1:
        ax.fill_between(x, mean - np.nan_to_num(std), mean + np.nan_to_num(std), color=s.color,
                        alpha=0.15, linewidth=0)  # fmt: skip


# ----------------------------------------------------------------------------- figures


_ORDER_LABELS = {"conventional": "conventional (Conv → BN → Act)", "swapped": "swapped (Conv → Act → BN)"}
_STAT_LABELS = {"fluct_l1_elem": "L1 fluctuation per element", "fluct_l2_elem": "L2 fluctuation per element",
                "fluct_l1": "L1 fluctuation", "fluct_l2": "L2 fluctuation"}  # fmt: skip


def _stat_label(stat: str) -> str:
    base = stat[3:] if stat.startswith("in_") else stat
    for suffix in ("_mean", "_std"):
        base = base[: -len(suffix)] if base.endswith(suffix) else base
    return _STAT_LABELS.get(base, base.replace("_", " "))


def fig_accuracy_vs_severity(rs: RunSet, table: ComparisonTable, st: dict[str, Style]) -> tuple[Any, str]:
    """Top-1 accuracy vs severity, overall and per corruption group."""
    m = rs.metrics[rs.metrics["metric"] == "top1"].copy()
    m["label"] = _labels(m, table.by)
    cor = m[m["corruption"] != "clean"]
    if cor.empty:
        raise _SkipFigureError("no corrupted cells")
    clean = m[m["corruption"] == "clean"]
    groups_present = [g for g in GROUPS if any(corruption_group(c) == g for c in cor["corruption"].unique())]
    panels = [("all corruptions", None)] + [(g, g) for g in groups_present]
    ncols = {1: 1, 2: 2, 3: 3, 4: 2}.get(len(panels), 3)
    nrows = math.ceil(len(panels) / ncols)
    fig = _new_figure(4.6 * ncols, 3.6 * nrows + 0.8)
    axes = fig.subplots(nrows, ncols, squeeze=False, sharex=True, sharey=True)
    cor = cor.assign(cgroup=cor["corruption"].map(corruption_group))
    keys = [*KEY, "label"]
    for ax, (title, grp) in zip(axes.flat, panels):
        sub = cor if grp is None else cor[cor["cgroup"] == grp]
        per_run = sub.groupby([*keys, "severity"])["value"].mean().reset_index()
        per_run = pd.concat([clean[[*keys, "severity", "value"]], per_run], ignore_index=True)
        agg = _mean_std(per_run, ["label", "severity"])
        for g in table.groups:
            a = agg[agg["label"] == g].sort_values("severity")
            if a.empty:
                continue
            _band(ax, a["severity"].to_numpy(float), a["mean"].to_numpy() * 100,
                  a["std"].to_numpy() * 100, a["n"].to_numpy(), st[g])  # fmt: skip
        ax.set_title(title)
        ax.set_xticks(sorted(per_run["severity"].unique()))
        ax.set_xticklabels(["clean" if s == 0 else str(s) for s in sorted(per_run["severity"].unique())])
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for i, ax in enumerate(axes.flat[: len(panels)]):
        if i + ncols >= len(panels):  # nothing drawn below it: label its x axis
            ax.tick_params(labelbottom=True)
            ax.set_xlabel("severity")
    for ax in axes[:, 0]:
        ax.set_ylabel("top-1 accuracy (%)")
    _legend_below(fig, table, st, table.groups)
    many = int(table.frame["n"].max()) > 1
    cap = ("Top-1 accuracy vs corruption severity (0 = clean), averaged over the corruptions of each "
           "panel" + ("; line = mean over runs (seeds), band = ±1 std." if many else "."))  # fmt: skip
    return fig, cap


def fig_corruption_heatmap(rs: RunSet, table: ComparisonTable, st: dict[str, Style]) -> tuple[Any, str]:
    """Group x corruption accuracy heatmap (and difference to the reference)."""
    cols = table.corruption_columns()
    if not cols:
        raise _SkipFigureError("no corrupted cells")
    groups = table.groups
    acc = np.array([[table.frame.at[g, c.key] * 100 for c in cols] for g in groups], float)
    with_diff = table.reference is not None and len(groups) > 1
    names = [c.label for c in cols]
    w = max(7.0, 0.62 * len(cols) + 2.8)
    h_one = 0.5 * len(groups) + 1.9
    fig = _new_figure(w, h_one * (2 if with_diff else 1) + 0.3 - (1.2 if with_diff else 0))
    axes = fig.subplots(2 if with_diff else 1, 1, squeeze=False)[:, 0]
    panels = [(axes[0], acc, "top-1 accuracy (%), mean over severities", "cividis", None)]
    if with_diff:
        ref = acc[groups.index(table.reference)]
        diff = acc - ref
        lim = max(float(np.nanmax(np.abs(diff))), 0.5)
        panels.append((axes[1], diff, f"difference to {table.reference} (percentage points)", "PuOr", lim))
    for ax, data, title, cmap, lim in panels:
        kw = {"vmin": -lim, "vmax": lim} if lim else {}
        im = ax.imshow(data, aspect="auto", cmap=cmap, **kw)
        ax.grid(False)
        ax.set_yticks(range(len(groups)))
        ax.set_yticklabels([table.group_label(g) for g in groups])
        for tick, g in zip(ax.get_yticklabels(), groups):
            tick.set_color(st[g].color)
        ax.set_xticks(range(len(names)))
        if ax is axes[-1]:
            ax.set_xticklabels([n.replace("_", " ") for n in names], rotation=40, ha="right")
        else:
            ax.set_xticklabels([])
        ax.set_title(title)
        norm = im.norm
        for i in range(data.shape[0]):
            for j in range(data.shape[1]):
                v = data[i, j]
                if np.isnan(v):
                    continue
                rgba = im.cmap(norm(v))
                lum = 0.2126 * rgba[0] + 0.7152 * rgba[1] + 0.0722 * rgba[2]
                txt = (f"{v:+.1f}" if abs(v) >= 0.05 else "0.0") if lim else f"{v:.1f}"
                ax.text(j, i, txt, ha="center", va="center", fontsize=10,
                        color="black" if lum > 0.5 else "white")  # fmt: skip
        # group separators
        grp = [corruption_group(n) for n in names]
        for j in range(1, len(grp)):
            if grp[j] != grp[j - 1]:
                ax.axvline(j - 0.5, color="white", linewidth=3)
        fig.colorbar(im, ax=ax, shrink=0.9, pad=0.01)
    cap = ("Top-1 accuracy per corruption (mean over severities and runs); white lines separate the "
           "groups noise | blur | weather | digital | extra"
           + (f"; the lower panel is the difference to {table.reference}." if with_diff else "."))  # fmt: skip
    return fig, cap


def _pick_cell(frame: pd.DataFrame) -> tuple[str, list[int]]:
    cor = frame[frame["corruption"] != "clean"]
    names = order_corruptions(cor["corruption"].unique())
    pick = "gaussian_noise" if "gaussian_noise" in names else next(
        (n for n in names if corruption_group(n) == "noise"), names[0])  # fmt: skip
    sevs = sorted(int(s) for s in cor.loc[cor["corruption"] == pick, "severity"].unique())
    return pick, sevs


_FLUCT_CANDIDATES = ("fluct_l1_elem", "fluct_l2_elem", "fluct_l1", "fluct_l2")


def _fluct_stat(stats: Iterable[str], prefix: str = "") -> str | None:
    avail = set(stats)
    for cand in _FLUCT_CANDIDATES:
        if prefix + cand in avail:
            return prefix + cand
    return None


def fig_fluctuation_samples(rs: RunSet, table: ComparisonTable, st: dict[str, Style]) -> tuple[Any, str]:
    """Per-sample fluctuation (output and input) per severity of one corruption, box per group."""
    if rs.metrics[rs.metrics["corruption"] != "clean"].empty:
        raise _SkipFigureError("no corrupted cells")
    corr, _ = _pick_cell(rs.metrics)
    cands = [p + c for p in ("", "in_") for c in _FLUCT_CANDIDATES]
    s = rs.read_samples(corruption=corr, stats=cands)
    if s is None or s.empty:
        raise _SkipFigureError("no per-sample fluctuation in samples.parquet (run with probes)")
    out_stat, in_stat = _fluct_stat(s["stat"].unique()), _fluct_stat(s["stat"].unique(), "in_")
    if out_stat is None:
        raise _SkipFigureError("samples.parquet has no fluctuation statistics")
    s = s[s["stat"].isin([out_stat, in_stat])].copy()
    sevs = sorted(int(v) for v in s["severity"].unique())
    s["label"] = _labels(s, table.by)
    groups = [g for g in table.groups if g in set(s["label"])]
    panels = [(out_stat, "activation output")] + ([(in_stat, "activation input")] if in_stat else [])
    boxes = len(groups) * len(sevs)
    side_by_side = boxes <= 12 and len(panels) == 2
    if side_by_side:  # few boxes: side by side
        fig = _new_figure(2 * max(5.5, 0.5 * boxes + 1.5), 4.8)
        axes = fig.subplots(1, 2, squeeze=False)[0]
    else:
        fig = _new_figure(min(max(7.0, 0.55 * boxes + 2.0), 16.0), 3.9 * len(panels) + 0.8)
        axes = fig.subplots(len(panels), 1, squeeze=False)[:, 0]
    k = len(groups)
    bw = 0.8 / max(k, 1)
    for ax, (stat, title) in zip(axes, panels):
        sub = s[s["stat"] == stat]
        for gi, g in enumerate(groups):
            data = [sub.loc[(sub["label"] == g) & (sub["severity"] == sv), "value"].to_numpy(float)
                    for sv in sevs]  # fmt: skip
            pos = [i + (gi - (k - 1) / 2) * bw for i in range(len(sevs))]
            keep = [j for j, d in enumerate(data) if len(d)]
            if not keep:
                continue
            c = st[g].color
            ax.boxplot([data[j] for j in keep], positions=[pos[j] for j in keep], widths=bw * 0.85,
                       whis=(5, 95), showfliers=False, patch_artist=True, showmeans=True,
                       boxprops={"facecolor": c, "alpha": 0.45, "edgecolor": c},
                       medianprops={"color": c, "linewidth": 1.5}, whiskerprops={"color": c},
                       capprops={"color": c},
                       meanprops={"marker": "D", "markerfacecolor": "white", "markeredgecolor": c,
                                  "markersize": 5})  # fmt: skip
        ax.set_xticks(range(len(sevs)))
        ax.set_xticklabels([str(v) for v in sevs])
        ax.set_xlim(-0.5, len(sevs) - 0.5)
        ax.grid(axis="x", visible=False)
        for i in range(1, len(sevs)):
            ax.axvline(i - 0.5, color="0.85", linewidth=1)
        ax.set_ylabel(_stat_label(stat))
        ax.set_title(f"{title} fluctuation per sample, {corr.replace('_', ' ')}")
        ax.set_ylim(bottom=0)
    for ax in axes if side_by_side else axes[-1:]:
        ax.set_xlabel("severity")
    _legend_below(fig, table, st, groups, kind="patch")
    cap = (f"Activation fluctuation ‖f(x+ε) − f(x)‖ per sample (layer average of `{out_stat}`) under "
           f"{corr}, by severity; boxes span the quartiles, whiskers 5–95 %, white diamonds are means. "
           "LayerAct's claim: a lower mean and a lower spread of the output fluctuation, while the input "
           "fluctuation (lower panel) is the same for every activation.")  # fmt: skip
    return fig, cap


def fig_fluctuation_vs_severity(rs: RunSet, table: ComparisonTable, st: dict[str, Style]) -> tuple[Any, str]:
    """Cell-level fluctuation mean, across-sample std and input fluctuation vs severity."""
    m = rs.metrics
    stats = {x[: -len("_mean")] for x in m["metric"].unique() if x.endswith("_mean")}
    out_stat, in_stat = _fluct_stat(stats), _fluct_stat(stats, "in_")
    if out_stat is None:
        raise _SkipFigureError("no fluctuation metrics (run with probes)")
    panels = [(f"{out_stat}_mean", "output fluctuation: mean"),
              (f"{out_stat}_std", "output fluctuation: std across samples")]  # fmt: skip
    if in_stat:
        panels.append((f"{in_stat}_mean", "input fluctuation: mean"))
    sub = m[m["metric"].isin([p for p, _ in panels]) & (m["corruption"] != "clean")].copy()
    sub["label"] = _labels(sub, table.by)
    per_run = sub.groupby([*KEY, "label", "metric", "severity"])["value"].mean().reset_index()
    agg = _mean_std(per_run, ["label", "metric", "severity"])
    fig = _new_figure(4.6 * len(panels), 4.4)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    groups = [g for g in table.groups if g in set(agg["label"])]
    for ax, (metric, title) in zip(axes, panels):
        for g in groups:
            a = agg[(agg["label"] == g) & (agg["metric"] == metric)].sort_values("severity")
            if len(a):
                _band(ax, a["severity"].to_numpy(float), a["mean"].to_numpy(), a["std"].to_numpy(),
                      a["n"].to_numpy(), st[g])  # fmt: skip
        ax.set_title(title)
        ax.set_xlabel("severity")
        ax.set_ylim(bottom=0)
        ax.set_xticks(sorted(agg["severity"].unique()))
    axes[0].set_ylabel(_stat_label(out_stat))
    _legend_below(fig, table, st, groups)
    cap = ("Cell-level activation fluctuation vs severity, averaged over all evaluated corruptions "
           "(per cell: mean and std across samples of the layer-averaged fluctuation); band = ±1 std over "
           "runs. Lower and flatter is more stable; the input panel is the contrast (it should match).")  # fmt: skip
    return fig, cap


def fig_fluctuation_layers(rs: RunSet, table: ComparisonTable, st: dict[str, Style]) -> tuple[Any, str]:
    """Fluctuation per layer (mean over corrupted cells) vs layer index, output and input."""
    lay = rs.layers
    if lay is None or lay.empty:
        raise _SkipFigureError("no layers.parquet (run with probes)")
    stats = {x[: -len("_mean")] for x in lay["stat"].unique() if x.endswith("_mean")}
    out_stat, in_stat = _fluct_stat(stats), _fluct_stat(stats, "in_")
    if out_stat is None:
        raise _SkipFigureError("layers.parquet has no fluctuation statistics")
    panels = [(f"{out_stat}_mean", "activation output")] + (
        [(f"{in_stat}_mean", "activation input")] if in_stat else [])  # fmt: skip
    sub = lay[lay["stat"].isin([p for p, _ in panels]) & (lay["corruption"] != "clean")].copy()
    sub["label"] = _labels(sub, table.by)
    per_run = sub.groupby([*KEY, "label", "stat", "layer_index"])["value"].mean().reset_index()
    agg = _mean_std(per_run, ["label", "stat", "layer_index"])
    fig = _new_figure(5.6 * len(panels), 4.4)
    axes = fig.subplots(1, len(panels), squeeze=False, sharey=False)[0]
    groups = [g for g in table.groups if g in set(agg["label"])]
    for ax, (stat, title) in zip(axes, panels):
        for g in groups:
            a = agg[(agg["label"] == g) & (agg["stat"] == stat)].sort_values("layer_index")
            if len(a):
                _band(ax, a["layer_index"].to_numpy(float), a["mean"].to_numpy(), a["std"].to_numpy(),
                      a["n"].to_numpy(), st[g])  # fmt: skip
        ax.set_title(f"{title} fluctuation per layer")
        ax.set_xlabel("layer index (input → output)")
        ax.set_ylim(bottom=0)
        ax.xaxis.get_major_locator().set_params(integer=True)
    axes[0].set_ylabel(_stat_label(out_stat))
    _legend_below(fig, table, st, groups)
    cap = ("Mean activation fluctuation per layer (activation call site), averaged over all corrupted "
           "cells; band = ±1 std over runs.")  # fmt: skip
    return fig, cap


def fig_unit_means(rs: RunSet, table: ComparisonTable, st: dict[str, Style]) -> tuple[Any, str]:
    """Distribution of per-unit mean activations (clean data) per group: zero-like mean."""
    u = rs.units
    if u is None or u.empty or "mean" not in set(u["stat"]):
        raise _SkipFigureError("no per-unit statistics (units.parquet; run with --probes all)")
    u = u[u["stat"] == "mean"].copy()
    u["label"] = _labels(u, table.by)
    groups = [g for g in table.groups if g in set(u["label"])]
    data = [u.loc[u["label"] == g, "value"].to_numpy(float) for g in groups]
    fig = _new_figure(10.0, 0.75 * len(groups) + 1.8)
    ax = fig.subplots()
    pos = list(range(len(groups)))[::-1]
    parts = ax.violinplot(data, positions=pos, **_horizontal(), showextrema=False, widths=0.85)
    for body, g in zip(parts["bodies"], groups):
        body.set_facecolor(st[g].color)
        body.set_edgecolor(st[g].color)
        body.set_alpha(0.45)
    ax.boxplot(data, positions=pos, **_horizontal(), widths=0.18, showfliers=False,
               whis=(5, 95), patch_artist=True, boxprops={"facecolor": "white"},
               medianprops={"color": "black"})  # fmt: skip
    ax.axvline(0, color="0.3", linewidth=1.2, linestyle="--")
    ax.set_yticks(pos)
    ax.set_yticklabels([table.group_label(g) for g in groups])
    for tick, g in zip(ax.get_yticklabels(), groups):
        tick.set_color(st[g].color)
    pooled = np.concatenate([d for d in data if len(d)])
    lo, hi = np.nanpercentile(pooled, [0.5, 99.5])
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    pad = 0.06 * (hi - lo or 1.0)
    ax.set_xlim(lo - pad, hi + pad)
    for p, d, g in zip(pos, data, groups):
        # the table's |unit mean| (probe: per layer, then averaged) when recorded, else the pooled value
        v = table.frame.at[g, "abs_unit_mean"] if "abs_unit_mean" in table.frame else np.nan
        v = float(np.mean(np.abs(d))) if pd.isna(v) else float(v)
        if len(d):
            ax.text(1.02, p, f"|unit mean|\n= {v:#.3g}", va="center", fontsize=11,
                    transform=ax.get_yaxis_transform(), clip_on=False)  # fmt: skip
    ax.set_xlabel("per-unit mean activation on clean data")
    ax.grid(axis="y", visible=False)
    cap = ("Distribution of the per-unit (channel) mean activation over the clean test set, pooled over "
           "layers and runs (axis clipped to the 0.5-99.5 % range); the text gives |unit mean| as in the "
           "table (mean over units of |unit mean|, averaged over runs). "
           "LayerAct's claim: a zero-like mean, "
           "i.e. a distribution centred on the dashed zero line.")  # fmt: skip
    return fig, cap


def fig_bn_order(rs: RunSet, table: ComparisonTable, st: dict[str, Style]) -> tuple[Any, str]:
    """Accuracy, saturation, asymmetric saturation and sparsity by activation and BN order."""
    runs = table.runs.reset_index()
    orders = sorted(runs["order"].astype(str).unique(), key=lambda o: (o != "conventional", o))
    if len(orders) < 2:
        raise _SkipFigureError("a single order")
    metrics = [(k, lbl, pct) for k, lbl, pct in (
        ("clean_top1", "clean accuracy (%)", True), ("mca", "mean corruption accuracy (%)", True),
        ("sat", "saturation", False), ("asym_sat", "asymmetric saturation", False),
        ("sparsity", "post-BN sparsity", False)) if k in runs and runs[k].notna().any()]  # fmt: skip
    if tuple(table.by) == ("activation",):
        acts, act_styles = list(table.groups), st
    else:
        acts = sorted(runs["activation"].astype(str).unique())
        act_styles = styles(acts)
    ncols = min(3, len(metrics))
    nrows = math.ceil(len(metrics) / ncols)
    fig = _new_figure(max(4.8, 0.9 * len(acts) + 1.5) * ncols, 3.9 * nrows + 0.7)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    bw = 0.8 / len(orders)
    for ax, (key, label, pct) in zip(axes.flat, metrics):
        scale = 100.0 if pct else 1.0
        agg = runs.groupby(["activation", "order"])[key].agg(["mean", "std", "count"]).reset_index()
        shown = [a for a in acts if agg.loc[agg["activation"] == a, "mean"].notna().any()]
        for oi, o in enumerate(orders):
            for ai, a in enumerate(shown):
                row = agg[(agg["activation"] == a) & (agg["order"] == o)]
                if row.empty or pd.isna(row["mean"].iloc[0]):
                    continue
                c = act_styles[a].color if a in act_styles else "0.5"
                x = ai + (oi - (len(orders) - 1) / 2) * bw
                err = row["std"].iloc[0] * scale if row["count"].iloc[0] > 1 else None
                if pct:  # accuracies: points (a bar would need a zero baseline)
                    ax.errorbar(x, row["mean"].iloc[0] * scale, yerr=err, fmt=MARKERS[oi % len(MARKERS)],
                                color=c, mfc=c if oi == 0 else "white", mew=2, ms=10, capsize=4,
                                elinewidth=1.5)  # fmt: skip
                else:
                    ax.bar(x, row["mean"].iloc[0] * scale, bw * 0.9, yerr=err, capsize=3,
                           color=c if oi == 0 else "white", edgecolor=c, linewidth=1.5,
                           hatch=HATCHES[oi % len(HATCHES)], alpha=0.85)  # fmt: skip
        pad = max(0.0, (2 - len(shown)) * 0.5)
        ax.set_xlim(-0.5 - pad, len(shown) - 0.5 + pad)
        ax.set_xticks(range(len(shown)))
        ax.set_xticklabels(shown, rotation=30 if len(shown) > 4 else 0, ha="right" if len(shown) > 4 else "center")
        ax.set_title(label)
        ax.grid(axis="x", visible=False)
    for ax in axes.flat[len(metrics):]:
        ax.set_visible(False)
    from matplotlib.legend_handler import HandlerTuple
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles = [(Line2D([], [], marker=MARKERS[i % len(MARKERS)], color="0.3", mfc="0.3" if i == 0 else "white",
                       mew=2, ms=9, linestyle="none"),
                Patch(facecolor="0.45" if i == 0 else "white", edgecolor="0.3", hatch=HATCHES[i % len(HATCHES)]))
               for i in range(len(orders))]  # fmt: skip
    fig.legend(handles=handles, labels=[_ORDER_LABELS.get(o, f"order {o}") for o in orders],
               handler_map={tuple: HandlerTuple(ndivide=None, pad=0.6)}, handlelength=3.5,
               loc="outside lower center", ncol=len(orders), frameon=False)  # fmt: skip
    cap = ("BatchNorm order study: clean and corruption accuracy, saturation (fraction of outputs at a "
           "bound), asymmetric saturation |s+ − s−| and post-BN sparsity (|z| < 0.1), per activation; "
           "filled = first order, hollow/hatched = second (legend), error bar = ±1 std over runs, "
           "colour = activation. Claim: with bounded activations the swapped order (Act → BN) is better "
           "and shows higher asymmetric saturation and sparsity.")  # fmt: skip
    return fig, cap


def fig_corruption_preview(rs: RunSet, table: ComparisonTable, st: dict[str, Style]) -> tuple[Any, str]:
    """One test image of the evaluated dataset under every corruption and severity."""
    import torch

    import corruptions
    from robustbench_act.data import load_dataset

    man = next((m for m in rs.manifests.values() if m), None)
    cfg = (man or {}).get("config") or {}
    spec = cfg.get("dataset")
    if not spec:
        raise _SkipFigureError("the manifests name no dataset")
    cor = rs.metrics[rs.metrics["corruption"] != "clean"]
    names = order_corruptions(cor["corruption"].unique())
    sevs = sorted(int(s) for s in cor["severity"].unique())
    if not names:
        raise _SkipFigureError("no corrupted cells")
    try:
        ds = load_dataset(spec, split="test", limit=1)
        if hasattr(ds, "get") and not hasattr(ds, "__getitem__"):
            raise _SkipFigureError(f"dataset {spec} is a precomputed -C copy")
        img = ds[0][0]
    except _SkipFigureError:
        raise
    except Exception as exc:  # not downloaded here, no such folder, ...: skip this figure only
        raise _SkipFigureError(f"dataset {spec!r} could not be loaded here ({str(exc).splitlines()[0][:160]})") from exc
    x = torch.as_tensor(img).unsqueeze(0)
    if x.dtype != torch.uint8:
        x = (x.float().clamp(0, 1) * 255).to(torch.uint8)
    seed = int(cfg.get("corruption_seed", cfg.get("seed", 0)) or 0)
    preset = cfg.get("preset")
    cols = ["clean", *[str(s) for s in sevs]]
    cell = 1.15
    fig = _new_figure(cell * len(cols) + 1.6, cell * len(names) + 0.6)
    axes = fig.subplots(len(names), len(cols), squeeze=False)
    grey = x.shape[1] == 1

    def show(ax: Any, t: torch.Tensor) -> None:
        a = t[0].permute(1, 2, 0).numpy()
        ax.imshow(a[..., 0] if grey else a, cmap="gray" if grey else None, vmin=0, vmax=255,
                  interpolation="nearest")  # fmt: skip
        ax.set_xticks([])
        ax.set_yticks([])
        ax.grid(False)
        for sp in ax.spines.values():
            sp.set_visible(False)

    for i, n in enumerate(names):
        show(axes[i, 0], x)
        axes[i, 0].set_ylabel(n.replace("_", " "), rotation=0, ha="right", va="center", fontsize=11)
        for j, sv in enumerate(sevs, start=1):
            try:
                y = corruptions.apply(x, n, sv, seed=seed, indices=[0], preset=preset)
            except Exception as exc:  # a plug-in corruption not registered here, a bad preset
                raise _SkipFigureError(f"corruption {n} could not be applied here ({exc})") from exc
            show(axes[i, j], y)
    for j, c in enumerate(cols):
        axes[0, j].set_title(c if c == "clean" else f"sev. {c}", fontsize=12)
    cap = (f"The first test image of {spec} under every evaluated corruption and severity "
           f"(corruption seed {seed}, image index 0: the same draw as in the evaluation).")
    return fig, cap


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
