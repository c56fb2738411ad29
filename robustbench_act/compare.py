"""Comparison across runs: which activation is more robust, by how much, and how sure we are.

Reads results stores (run folders holding ``metrics.parquet``, or sweep folders holding
many of them; :mod:`robustbench_act.runset`), checks that every run saw the same data,
reduces each run to one row of summary numbers (:func:`robustbench_act.metrics.summarise`,
CE / mCE normalised by the reference group), aggregates the rows per group (``by``:
activation, model, order, dataset, or a combination such as ``activation+order``) as mean,
std and n over seeds, and compares every group with the reference group.

Every metric's meaning comes from :mod:`robustbench_act.definitions`; the statistics from
:mod:`robustbench_act.stats`. Runs of a group are paired with the reference's runs that
share every model key except the grouping keys and the run id (for ``by="activation"``:
model, order, seed, dataset). Which uncertainty a table shows is chosen once for it
(``uncertainty``):

- ``seeds``: with >= 3 paired seeds for every group, paired t-tests (exact sign-flip when
  the differences have zero variance) and Wilcoxon tests across seeds, 95 % t intervals
  and Cohen's d_z;
- ``images``: otherwise (e.g. one seed), a paired bootstrap over the test images, which
  every model saw identically corrupted (95 % percentile intervals, bootstrap p);
- ``auto`` picks seeds when possible, else images when per-image results exist.

p-values are Holm-corrected within a family (the summary table's columns x groups, and
separately the per-corruption table's). Marks: ``*`` p < 0.05, ``**`` p < 0.01 (primary
test, Holm), ``†`` Wilcoxon Holm p < 0.05 (seeds only). The best group mean per column is
bold where the column has a better direction.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from robustbench_act.definitions import definition
from robustbench_act.errors import UserError, unknown
from robustbench_act.metrics import COMMON, GROUP_ORDER, KEY_COLUMNS, Baseline, group_of, summarise
from robustbench_act.runset import (  # noqa: F401  (re-exported: the public compare API)
    RunSet,
    _as_runset,
    _names,
    check_same_data,
    corruption_group,
    data_fingerprints,
    find_run_folders,
    load_runs,
    order_corruptions,
)
from robustbench_act.stats import (  # noqa: F401  (re-exported)
    MIN_PAIRS,
    bootstrap_diff,
    holm,
    paired_tests,
    significance_mark,
)
from robustbench_act.tables import FORMAT_SUFFIX, FORMATS, Column, ComparisonTable, formats_of

KEY = KEY_COLUMNS
GROUP_KEYS = ("activation", "model", "order", "dataset", "run", "seed")
UNCERTAINTIES = ("auto", "seeds", "images", "none")
#: Summary probe columns: the first present of each candidate list (relative fluctuation first:
#: it is scale-free, so activations with different output scales compare fairly).
_PROBE_DISPLAY: tuple[tuple[str, ...], ...] = (
    ("fluct_l1_rel_mean", "fluct_l1_elem_mean", "fluct_l1_mean"),
    ("fluct_l1_rel_std", "fluct_l1_elem_std", "fluct_l1_std"),
    ("in_fluct_l1_rel_mean", "in_fluct_l1_elem_mean", "in_fluct_l1_mean"),
    ("abs_unit_mean",),
    ("sat",),
    ("asym_sat",),
    ("sparsity",),
)
_SUMMARY_KEYS = ("clean_top1", "mca", "mca_common", *(f"mca_{g}" for g in GROUP_ORDER), "mce", "rel_mce")
#: per-image statistic behind each image-decomposable column (bootstrap over images)
_IMAGE_STAT = {"fluct_l1_rel_mean": "fluct_l1_rel", "fluct_l1_elem_mean": "fluct_l1_elem"}


def parse_by(by: str | Sequence[str]) -> tuple[str, ...]:
    """Grouping keys from 'activation', 'activation+order', 'model,order' or a sequence."""
    parts = [p.strip() for p in re.split(r"[+,]", by)] if isinstance(by, str) else [str(p) for p in by]
    parts = [p for p in parts if p]
    if not parts:
        raise UserError("--by needs at least one key (e.g. activation)")
    for p in parts:
        if p not in GROUP_KEYS:
            raise unknown("grouping key", p, GROUP_KEYS)
    return tuple(dict.fromkeys(parts))


def _labels(frame: pd.DataFrame, by: tuple[str, ...]) -> np.ndarray:
    """Group label of each row of a frame holding the ``by`` columns: values joined by '/'."""
    return frame[list(by)].astype(str).agg("/".join, axis=1).to_numpy(dtype=object)


def _column(key: str, section: str) -> Column:
    d = definition(key)
    label = key[4:] if section == "corruption" else d.label
    return Column(key, label, d.better, d.percent, section)


def _columns_for(per_run: pd.DataFrame) -> list[Column]:
    cols = [_column(k, "summary") for k in _SUMMARY_KEYS if k in per_run and per_run[k].notna().any()]
    for cands in _PROBE_DISPLAY:
        hit = next((c for c in cands if c in per_run and per_run[c].notna().any()), None)
        if hit:
            cols.append(_column(hit, "summary"))
    names = order_corruptions(c[4:] for c in per_run.columns if c.startswith("acc_"))
    return cols + [_column(f"acc_{c}", "corruption") for c in names]


def _resolve_reference(labels: list[str], reference: str | None, by: tuple[str, ...]) -> str | None:
    uniq = sorted(set(labels))
    if reference is not None:
        if reference in uniq:
            return reference
        hits = [u for u in uniq if u.lower() == reference.lower()]
        if len(hits) == 1:
            return hits[0]
        raise unknown(f"reference {'+'.join(by)}", reference, uniq)
    if len(uniq) < 2:
        return uniq[0] if uniq else None
    starts = [u for u in uniq if u.split("/")[0] == "relu"]
    return starts[0] if starts else uniq[0]


def _join_keys(frame: pd.DataFrame, keys: Sequence[str]) -> np.ndarray:
    """One hashable pairing key per row joining ``keys`` with '|'."""
    if not keys:
        return np.full(len(frame), "all", dtype=object)
    return frame[list(keys)].astype(str).agg("|".join, axis=1).to_numpy(dtype=object)


# ----------------------------------------------------------------------------- per-run rows


def summarise_runs(metrics: pd.DataFrame, baseline: Baseline | None = None) -> pd.DataFrame:
    """One row per run (index: KEY) of :func:`metrics.summarise` (CE / mCE against ``baseline``)."""
    from robustbench_act.runset import _normalise_metrics

    m = _normalise_metrics(metrics)
    out = summarise(m, baseline=baseline).set_index(list(KEY))
    present = pd.MultiIndex.from_frame(m[list(KEY)].drop_duplicates())
    return out[out.index.isin(present)]


def _drop_copies(per_run: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Runs of one model key (same model, activation, order, seed, dataset) count once.

    Exact copies (every number equal) are kept once with a note; runs of one key whose
    numbers differ cannot both be that seed, so they are refused.
    """
    idx = per_run.index.to_frame(index=False)
    ident = [k for k in KEY if k != "run"]
    key = _join_keys(idx, ident)
    keep = np.ones(len(per_run), dtype=bool)
    notes = []
    num = per_run.select_dtypes("number").to_numpy(float)
    for k in pd.unique(key):
        rows = np.flatnonzero(key == k)
        if len(rows) < 2:
            continue
        runs = [str(idx["run"].iloc[r]) for r in rows]
        if not all(np.array_equal(num[rows[0]], num[r], equal_nan=True) for r in rows[1:]):
            raise UserError(f"runs {_names(runs)} are the same model, activation, order, seed and dataset "
                            f"({k.replace('|', ', ')}) but their numbers differ; compare one of them")
        keep[rows[1:]] = False
        notes.append(f"identical copies counted once: {', '.join(runs)}")
    return per_run[keep], notes


def _floor_notes(rs: RunSet) -> list[str]:
    """Cells where a run scores at chance level (floor effect: differences there carry no signal)."""
    m = rs.metrics
    t = m[(m["metric"] == "top1") & (m["corruption"] != "clean")]
    notes = []
    for run, g in t.groupby("run", sort=False):
        k = _num_classes(rs.manifests.get(str(run)) or {})
        if not k or k < 2:
            continue
        chance = 1.0 / k
        n = pd.to_numeric(g["n"], errors="coerce").clip(lower=1)
        at = g[g["value"] <= chance + 2.0 * np.sqrt(chance * (1 - chance) / n)]
        for act, a in at.groupby("activation", sort=False):
            cells = _cell_list(a, many_seeds=g.loc[g["activation"] == act, "seed"].nunique() > 1)
            notes.append(f"{run} {act}: {len(a)} of {len(g[g['activation'] == act])} corrupted cells at chance "
                         f"level ({chance:.1%}): {_short(cells)} (floor effect: they pull mCA down alike)")
    return notes


def _cell_list(cells: pd.DataFrame, *, many_seeds: bool) -> str:
    """'fog s2, fog s3', or 'seed 0: fog s2, fog s3; seed 2: fog s5' when the run holds several seeds."""
    def names(c: pd.DataFrame) -> str:
        return ", ".join(f"{n} s{int(v)}" for n, v in zip(c["corruption"], c["severity"]))

    if not many_seeds:
        return names(cells)
    return "; ".join(f"seed {int(seed)}: {names(c)}" for seed, c in cells.groupby("seed"))


def _num_classes(manifest: dict[str, Any]) -> int | None:
    cfg = manifest.get("config") or {}
    k = cfg.get("num_classes")
    if k is None:
        metas = cfg.get("checkpoint_meta") or []
        k = next((m.get("num_classes") for m in metas if isinstance(m, dict) and m.get("num_classes")), None)
    return int(k) if k else None


def _short(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ----------------------------------------------------------------------------- tests


def _pair_values(values: pd.Series, labels: np.ndarray, pk: np.ndarray, group: str, ref: str,
                 ) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Values of ``group`` and ``ref`` paired by key ``pk``."""
    df = pd.DataFrame({"pk": pk, "label": labels, "v": values.to_numpy(float)})
    a = df[df["label"] == group].groupby("pk")["v"].mean()
    b = df[df["label"] == ref].groupby("pk")["v"].mean()
    common = a.index.intersection(b.index)
    return a.loc[common].to_numpy(float), b.loc[common].to_numpy(float)


def _seed_tests(per_run: pd.DataFrame, columns: list[Column], labels: np.ndarray, pk: np.ndarray,
                groups: list[str], ref: str) -> list[dict[str, Any]]:  # fmt: skip
    rows = []
    for g in groups:
        for col in columns:
            a, b = _pair_values(per_run[col.key], labels, pk, g, ref)
            rows.append({"group": g, "column": col.key, "family": col.section, "uncertainty": "seeds",
                         **paired_tests(a, b)})  # fmt: skip
    return rows


def _image_values(rs: RunSet, runs: Sequence[str], columns: list[Column]) -> dict[str, pd.DataFrame]:
    """Per run: a frame (index sample) with one column per image-decomposable table column."""
    stats = ["correct", *sorted({_IMAGE_STAT[c.key] for c in columns if c.key in _IMAGE_STAT})]
    s = rs.read_samples(stats=stats)
    if s is None or s.empty:
        return {}
    s = s[s["run"].astype(str).isin(set(runs))]
    out = {}
    for run, g in s.groupby("run", sort=False):
        wide = g.pivot_table(index="sample", columns=["stat", "corruption", "severity"], values="value",
                             aggfunc="mean")  # fmt: skip
        out[str(run)] = pd.DataFrame({c.key: v for c in columns
                                      if (v := _image_column(wide, c.key)) is not None})  # fmt: skip
    return out


def _image_column(wide: pd.DataFrame, key: str) -> pd.Series | None:
    """A sample's value of column ``key``: its mean over the cells the column averages."""
    stat = _IMAGE_STAT.get(key, "correct")
    if stat not in wide.columns.get_level_values(0):
        return None
    w = wide[stat]
    cells = list(w.columns)
    if key == "clean_top1":
        sel = [c for c in cells if c[0] == "clean"]
    elif key in ("mca", *_IMAGE_STAT):
        sel = [c for c in cells if c[0] != "clean"]
    elif key == "mca_common":
        sel = [c for c in cells if c[0] in COMMON]
    elif key.startswith("mca_"):
        sel = [c for c in cells if c[0] != "clean" and group_of(c[0]) == key[4:]]
    elif key.startswith("acc_"):
        sel = [c for c in cells if c[0] == key[4:]]
    else:
        return None
    return w[sel].mean(axis=1) if sel else None


def _image_tests(rs: RunSet, per_run: pd.DataFrame, columns: list[Column], labels: np.ndarray,
                 pk: np.ndarray, groups: list[str], ref: str) -> list[dict[str, Any]]:  # fmt: skip
    runs = [str(r) for r in per_run.index.get_level_values("run")]
    values = _image_values(rs, runs, columns)
    rows = []
    for g in groups:
        diffs, pairs = [], 0
        for key in pd.unique(pk):
            a = [runs[i] for i in np.flatnonzero((labels == g) & (pk == key))]
            b = [runs[i] for i in np.flatnonzero((labels == ref) & (pk == key))]
            pairs += bool(a and b)
            if a and b and a[0] in values and b[0] in values:
                diffs.append(values[a[0]] - values[b[0]])
        cols = [c for c in columns if diffs and c.key in diffs[0].columns]
        res = bootstrap_diff(np.nanmean([d[[c.key for c in cols]].to_numpy(float) for d in diffs], axis=0)) \
            if cols else None
        for col in columns:
            row = {"group": g, "column": col.key, "family": col.section, "uncertainty": "images",
                   "n_pairs": pairs, "test": "none", "p": math.nan, "w_p": math.nan}  # fmt: skip
            if res is not None and col in cols:
                j = cols.index(col)
                row.update(mean_diff=float(res["mean"][j]), ci_low=float(res["ci_low"][j]),
                           ci_high=float(res["ci_high"][j]), p=float(res["p"][j]), n_images=res["n_images"],
                           test="paired bootstrap over images")  # fmt: skip
            else:
                row["note"] = "no per-image values for this column"
            rows.append(row)
    return rows


def _finish_tests(rows: list[dict[str, Any]], columns: list[Column], ref: str) -> pd.DataFrame:
    tests = pd.DataFrame(rows)
    if tests.empty:
        return tests
    for c in ("mean_diff", "ci_low", "ci_high", "effect_dz", "t_p", "w_p", "p", "n_images"):
        if c not in tests:
            tests[c] = math.nan
    tests.insert(1, "reference", ref)
    for name in ("p", "w_p"):
        adj = pd.Series(np.nan, index=tests.index)
        for _, fam in tests.groupby("family"):
            adj[fam.index] = holm(fam[name].to_numpy(float))
        tests[f"{name}_holm"] = adj
    tests["mark"] = [significance_mark(p, w) for p, w in zip(tests["p_holm"], tests["w_p_holm"])]
    better = {c.key: c.better for c in columns}
    tests["better"] = [(d > 0 if better[c] == "max" else d < 0) if better[c] and not math.isnan(d) else None
                       for c, d in zip(tests["column"], tests["mean_diff"].astype(float))]  # fmt: skip
    return tests


def _uncertainty(mode: str, n_pairs: int, has_images: bool) -> str:
    if mode not in UNCERTAINTIES:
        raise unknown("uncertainty", mode, UNCERTAINTIES)
    if mode == "auto":
        return "seeds" if n_pairs >= MIN_PAIRS else "images" if has_images else "none"
    return mode


# ----------------------------------------------------------------------------- compare


def compare_runs(paths_or_runs: Any, *, by: str | Sequence[str] = "activation", reference: str | None = None,
                 allow_mismatch: bool = False, uncertainty: str = "auto") -> ComparisonTable:  # fmt: skip
    """Compare runs grouped by ``by`` against ``reference`` (default 'relu' if present, else the first group)."""
    rs = _as_runset(paths_or_runs)
    by_keys = parse_by(by)
    _uncertainty(uncertainty, 0, False)  # validate the name before any work
    notes: list[str] = list(rs.notes)
    fp = data_fingerprints(rs)
    notes += _data_notes(rs, fp, allow_mismatch)
    if "run" in by_keys:  # every run is its own group: two trainings of one seed (e.g. fp32 and bf16) pair
        plain = summarise_runs(rs.metrics)
    else:
        plain, copies = _drop_copies(summarise_runs(rs.metrics))
        notes += copies
    ref = _resolve_reference(list(_labels(plain.index.to_frame(index=False), by_keys)), reference, by_keys)
    pair_keys = [k for k in KEY if k not in by_keys and k != "run"]
    base = Baseline(str(ref), lambda idx: _labels(idx, by_keys) == ref, tuple(k for k in pair_keys if k != "seed"))
    per_run = summarise_runs(rs.metrics, base if ref is not None else None)
    per_run = per_run[per_run.index.isin(plain.index)]
    idx = per_run.index.to_frame(index=False)
    labels = _labels(idx, by_keys)
    columns = _columns_for(per_run)
    notes += _pooling_notes(idx, by_keys, pair_keys) + _floor_notes(rs)
    order = sorted(set(labels), key=lambda g: (g != ref, g))
    frame = _aggregate(per_run, labels, order, by_keys)
    tests, mode = _tests(rs, per_run, columns, labels, _join_keys(idx, pair_keys), order, ref, uncertainty)
    notes += _uncertainty_notes(mode, tests) if len(order) > 1 else []
    return ComparisonTable(frame=frame, columns=columns, tests=tests, by=by_keys, reference=ref,
                           runs=per_run.assign(group=labels), notes=notes, data=fp, uncertainty=mode)  # fmt: skip


def _data_notes(rs: RunSet, fp: pd.DataFrame, allow_mismatch: bool) -> list[str]:
    notes = []
    problems = check_same_data(rs, fp)
    if problems:
        if not allow_mismatch:
            raise UserError("runs did not see the same data: " + "; ".join(problems)
                            + " (pass --allow-mismatch to compare anyway)")  # fmt: skip
        notes.append("compared despite different data: " + "; ".join(problems))
    incomplete = fp.loc[fp["status"].fillna("complete") != "complete", "run"].tolist()
    if incomplete:
        notes.append(f"incomplete run(s): {_names(incomplete, 6)}")
    return notes


def _pooling_notes(idx: pd.DataFrame, by_keys: tuple[str, ...], pair_keys: list[str]) -> list[str]:
    return [f"each group pools {idx[k].nunique()} {k}s ({', '.join(sorted(idx[k].astype(str).unique())[:5])}); "
            f"tests pair runs by {', '.join(pair_keys)}"
            for k in ("model", "order", "dataset") if k not in by_keys and idx[k].nunique() > 1]  # fmt: skip


def _aggregate(per_run: pd.DataFrame, labels: np.ndarray, order: list[str], by_keys: tuple[str, ...]) -> pd.DataFrame:
    frame = pd.DataFrame(index=pd.Index(order, name="+".join(by_keys)))
    grouped = per_run.groupby(labels)
    frame["n"] = grouped.size().reindex(order).astype(int)
    num_cols = [c for c in per_run.columns if pd.api.types.is_numeric_dtype(per_run[c])]
    means = grouped[num_cols].mean().reindex(order)
    stds = grouped[num_cols].std(ddof=1).reindex(order)
    counts = grouped[num_cols].count().reindex(order)
    parts = [frame] + [pd.DataFrame({c: means[c], f"{c}_std": stds[c], f"{c}_count": counts[c]}) for c in num_cols]
    return pd.concat(parts, axis=1)


def _tests(rs: RunSet, per_run: pd.DataFrame, columns: list[Column], labels: np.ndarray, pk: np.ndarray,
           order: list[str], ref: str | None, uncertainty: str) -> tuple[pd.DataFrame, str]:  # fmt: skip
    groups = [g for g in order if g != ref]
    if ref is None or not groups:
        return pd.DataFrame(), "none"
    n_pairs = min(len(set(pk[labels == g]) & set(pk[labels == ref])) for g in groups)
    has_images = bool(rs.folders) or len(rs.samples) > 0
    mode = _uncertainty(uncertainty, n_pairs, has_images)
    if mode == "seeds":
        rows = _seed_tests(per_run, columns, labels, pk, groups, ref)
    elif mode == "images":
        rows = _image_tests(rs, per_run, columns, labels, pk, groups, ref)
    else:
        return pd.DataFrame(), "none"
    return _finish_tests(rows, columns, ref), mode


def _uncertainty_notes(mode: str, tests: pd.DataFrame) -> list[str]:
    if mode == "none":
        return ["no tests: fewer than 3 paired seeds and no per-image results (nothing to resample)"]
    if tests.empty:
        return []
    if mode == "seeds":
        few = tests[tests["note"].astype(str) == "fewer than 3 paired seeds"]
        return [f"no test where fewer than {MIN_PAIRS} seeds pair up ({len(few)} of {len(tests)} comparisons)"] \
            if len(few) else []
    n_img = tests["n_images"].dropna()
    seeds = int(tests["n_pairs"].max())
    return [f"fewer than {MIN_PAIRS} paired seeds: intervals and tests are a paired bootstrap over "
            f"{int(n_img.max()) if len(n_img) else 0} test images ({'one seed' if seeds == 1 else f'{seeds} seeds averaged'}); "
            "they show test-set uncertainty, not seed-to-seed variation"]  # fmt: skip


def write_comparison(table: ComparisonTable, out_dir: str | Path, formats: Iterable[str] = FORMATS,
                     *, stem: str = "comparison") -> list[Path]:  # fmt: skip
    """Write ``comparison.<suffix>`` per format (and ``comparison_tests.csv`` with csv) atomically."""
    from robustbench_act.fileio import atomic_write_text

    out = Path(out_dir)
    written = []
    for f in formats_of(formats):
        written.append(atomic_write_text(out / f"{stem}{FORMAT_SUFFIX[f]}", table.formatted(f)))
        if f == "csv" and not table.tests.empty:
            written.append(atomic_write_text(out / f"{stem}_tests.csv",
                                             table.tests.to_csv(index=False, float_format="%.6g")))  # fmt: skip
    return written
