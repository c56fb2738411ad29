"""The four tidy tables of one evaluated cell (metrics, layers, samples, units), built column-wise."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from torch import nn

from robustbench_act.metrics import ClassificationSums
from robustbench_act.probes import SAMPLE_FLUCT_STATS, ModelProbe
from robustbench_act.results import (
    FLOAT_COLUMNS,
    INT_COLUMNS,
    KEYS,
    SCHEMAS,
    CellResult,
    conform,
    empty_frame,
)

CLEAN = ("clean", 0)


def _repeat_str(value: Any, n: int) -> Any:
    """A pandas string array of ``n`` copies of ``value`` (cheap: one element, then take)."""
    return pd.array([str(value)], dtype="str").take(np.zeros(n, dtype=np.intp))


def _records_frame(table: str, idents: list[dict[str, Any]], extra: dict[str, list[Any]]) -> pd.DataFrame:
    """A table from per-row identity dicts plus column lists, built with the schema's dtypes."""
    raw: dict[str, list[Any]] = {c: [r[c] for r in idents] for c in KEYS}
    raw.update(extra)
    cols: dict[str, Any] = {}
    for c in SCHEMAS[table]:
        if c in INT_COLUMNS:
            cols[c] = np.asarray(raw[c], dtype=np.int64)
        elif c in FLOAT_COLUMNS:
            cols[c] = np.asarray(raw[c], dtype=np.float64)
        else:
            cols[c] = pd.array([str(v) for v in raw[c]], dtype="str")
    return conform(pd.DataFrame(cols, copy=False), table)


def _cell_frames(cell: tuple[str, int], mods: Mapping[Any, nn.Module], rows: Mapping[Any, dict],
                 sums: Mapping[tuple[Any, tuple[str, int]], ClassificationSums],
                 probe: Mapping[Any, ModelProbe], gathered: list[Any], positions: np.ndarray,
                 probes: str) -> CellResult:
    """Build the metrics/layers/samples/units frames of one cell for every model."""
    corr, sev = cell
    m_id: list[dict[str, Any]] = []
    m_cols: dict[str, list[Any]] = {"metric": [], "value": [], "n": []}
    l_id: list[dict[str, Any]] = []
    l_cols: dict[str, list[Any]] = {"layer": [], "layer_index": [], "stat": [], "value": [], "n": []}
    u_id: list[dict[str, Any]] = []
    u_cols: dict[str, list[Any]] = {"layer": [], "unit": [], "stat": [], "value": []}
    s_parts: dict[str, list[Any]] = {c: [] for c in (*KEYS, "sample", "stat", "value")}
    for k in mods:
        ident = rows[k]
        acc = sums[(k, cell)]
        n = acc.n
        metrics = dict(acc.results())
        layer_rows: list[tuple[str, int, str, float]] = []
        pr = probe[k]
        if pr.level != "none":
            if cell == CLEAN:
                if probes == "all":
                    pm, layer_rows, pu = pr.clean_records()
                    metrics.update(pm)
                    for layer, unit, stat, value in pu:
                        u_id.append(ident)
                        u_cols["layer"].append(layer)
                        u_cols["unit"].append(unit)
                        u_cols["stat"].append(stat)
                        u_cols["value"].append(value)
            else:
                pm, layer_rows = pr.fluct_records(cell, n)
                metrics.update(pm)
        for metric, value in metrics.items():
            m_id.append(ident)
            m_cols["metric"].append(metric)
            m_cols["value"].append(value)
            m_cols["n"].append(n)
        for layer, li, stat, value in layer_rows:
            l_id.append(ident)
            l_cols["layer"].append(layer)
            l_cols["layer_index"].append(li)
            l_cols["stat"].append(stat)
            l_cols["value"].append(value)
            l_cols["n"].append(n)
        # per-sample rows, vectorised
        arr = np.concatenate([g[1][(k, cell)] for g in gathered], axis=1)
        stats = ["correct", "nll"] + (list(SAMPLE_FLUCT_STATS) if arr.shape[0] > 2 else [])
        n_s = arr.shape[1]
        total = n_s * len(stats)
        for c in KEYS:
            s_parts[c].append(_repeat_str(ident[c], total) if c != "seed" else np.full(total, ident[c]))
        s_parts["sample"].append(np.tile(positions[:n_s], len(stats)))
        s_parts["stat"].append(pd.array(stats, dtype="str").take(np.repeat(np.arange(len(stats)), n_s)))
        s_parts["value"].append(arr[: len(stats)].astype(np.float64).reshape(-1))

    def cat(parts: list[Any]) -> Any:
        return parts[0] if len(parts) == 1 else (
            np.concatenate(parts) if isinstance(parts[0], np.ndarray) else pd.concat(
                [pd.Series(p) for p in parts], ignore_index=True).array)

    m_cols.update(corruption=[corr] * len(m_id), severity=[sev] * len(m_id))
    l_cols.update(corruption=[corr] * len(l_id), severity=[sev] * len(l_id))
    metrics_f = _records_frame("metrics", m_id, m_cols) if m_id else empty_frame("metrics")
    layers_f = _records_frame("layers", l_id, l_cols) if l_id else None
    units_f = _records_frame("units", u_id, u_cols) if u_id else None
    samples_f = None
    if s_parts["value"]:
        total = sum(len(v) for v in s_parts["value"])
        cols = {c: cat(s_parts[c]) for c in KEYS}
        cols.update(corruption=_repeat_str(corr, total), severity=np.full(total, sev, dtype=np.int64),
                    sample=cat(s_parts["sample"]), stat=cat(s_parts["stat"]), value=cat(s_parts["value"]))
        samples_f = conform(pd.DataFrame(cols), "samples")
    return CellResult(corr, sev, metrics=metrics_f, layers=layers_f, samples=samples_f, units=units_f)
