"""Accuracy figures: accuracy vs severity, per-corruption heat map, corruption preview."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from robustbench_act.compare import KEY
from robustbench_act.figures.style import (
    Style,
    _band,
    _labels,
    _legend_below,
    _mean_std,
    _new_figure,
    _SkipFigureError,
)
from robustbench_act.runset import GROUPS, RunSet, corruption_group, order_corruptions
from robustbench_act.tables import ComparisonTable


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


