"""Probe figures: activation fluctuation (samples, severity, layers), unit means, BN order."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from robustbench_act.compare import KEY
from robustbench_act.figures.style import (
    _ORDER_LABELS,
    HATCHES,
    MARKERS,
    Style,
    _band,
    _horizontal,
    _labels,
    _legend_below,
    _mean_std,
    _new_figure,
    _SkipFigureError,
    _stat_label,
    styles,
)
from robustbench_act.runset import RunSet, corruption_group, order_corruptions
from robustbench_act.tables import ComparisonTable


def _pick_cell(frame: pd.DataFrame) -> tuple[str, list[int]]:
    cor = frame[frame["corruption"] != "clean"]
    names = order_corruptions(cor["corruption"].unique())
    pick = "gaussian_noise" if "gaussian_noise" in names else next(
        (n for n in names if corruption_group(n) == "noise"), names[0])  # fmt: skip
    sevs = sorted(int(s) for s in cor.loc[cor["corruption"] == pick, "severity"].unique())
    return pick, sevs


# the scale-free relative fluctuation first (activations with different output scales compare fairly)
_FLUCT_CANDIDATES = ("fluct_l1_rel", "fluct_l1_elem", "fluct_l2_elem", "fluct_l1", "fluct_l2")


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


