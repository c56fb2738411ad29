"""Comparison tables and paired statistics across runs: which activation is more robust, by how much.

Reads results stores (run folders holding ``metrics.parquet``, or sweep folders holding
many of them), checks that every run saw the same data, reduces each run to one row of
summary numbers, aggregates the rows per group (``by``: activation, model, order, dataset,
or a combination such as ``activation+order``) as mean, std and n over seeds, and tests
every group against a reference group with paired tests across seeds.

Definitions (all accuracies and errors are fractions in the numeric frame; the formatted
tables show them in %):

- ``clean_top1``: top-1 accuracy on the clean test set.
- ``acc_<c>``: top-1 accuracy on corruption ``c``, mean over its evaluated severities.
- ``mca``: mean corruption accuracy, the mean of ``acc_<c>`` over every evaluated
  corruption (extra ones included, as in the LayerAct paper); ``mca_<group>`` the same
  over the corruptions of one group (noise, blur, weather, digital, extra).
- ``ce_<c>`` = sum_s E_{c,s} / sum_s E^ref_{c,s} and relative CE
  ``rce_<c>`` = sum_s (E_{c,s} - E_clean) / sum_s (E^ref_{c,s} - E^ref_clean), where E^ref is
  the error of the reference group averaged over its runs with the same model, order and
  dataset (over all reference runs when none matches); ``mce`` / ``rel_mce`` average them
  over the 15 benchmark corruptions that were evaluated (over all evaluated corruptions
  when none of the 15 was). The reference group's mCE is 100 % by construction.
- probe columns (``fluct_l1_elem_mean``, ...): the mean over the corrupted cells of the
  per-cell probe metric; clean-only probe metrics (``abs_unit_mean``, ``sat``, ...) are
  the clean cell's value.

Statistics: runs of a group are paired with the reference's runs that share every model
key except the grouping keys and the run id (for ``by="activation"``: model, order, seed,
dataset; duplicates of one pair key are averaged). For every non-reference group and every
table column with >= 2 pairs, a paired t-test (``scipy.stats.ttest_rel``) and a Wilcoxon
signed-rank test (``scipy.stats.wilcoxon``, scipy's defaults) are run; each test's p-values
are Holm-corrected within a family: the summary table's columns x groups, and separately
the per-corruption table's corruptions x groups. Table marks:
``*`` t-test Holm p < 0.05, ``**`` < 0.01, ``†`` Wilcoxon Holm p < 0.05. With n pairs the
smallest two-sided exact Wilcoxon p is 2 / 2^n (0.0625 for 5 seeds, 0.03125 for 6), so after
Holm over m tests † needs 2^(n-1) > 20 m, i.e. many seeds (the LayerAct paper used 30).
The best group mean per column is bold (higher is better for accuracies, lower for
mCE and fluctuation, lower for |unit mean|, i.e. zero-like; none for neutral columns).
"""

from __future__ import annotations

import html
import math
import re
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from robustbench_act.errors import UserError, unknown
from robustbench_act.metrics import COMMON, GROUP_ORDER, KEY_COLUMNS, group_of, summarise
from robustbench_act.metrics import GROUPS as GROUP_MEMBERS

#: The columns identifying one evaluated model (one row of the per-run summary).
KEY = KEY_COLUMNS
#: Keys one can group by.
GROUP_KEYS = ("activation", "model", "order", "dataset", "run", "seed")
GROUPS = GROUP_ORDER
#: Probe columns shown in the summary table: (candidates in preference order, label, better).
_PROBE_DISPLAY: tuple[tuple[tuple[str, ...], str, str | None], ...] = (
    (("fluct_l1_elem_mean", "fluct_l1_mean", "fluct_l2_elem_mean"), "fluct. mean", "min"),
    (("fluct_l1_elem_std", "fluct_l1_std", "fluct_l2_elem_std"), "fluct. std", "min"),
    (("in_fluct_l1_elem_mean", "in_fluct_l1_mean", "in_fluct_l2_elem_mean"), "input fluct.", None),
    (("abs_unit_mean",), "|unit mean|", "min"),
    (("sat",), "saturation", None),
    (("asym_sat",), "asym. sat.", None),
    (("sparsity",), "sparsity", None),
)
MARK_LEGEND = (
    "Marks vs the reference (paired across seeds, Holm-corrected within each table over all "
    "its groups and columns): "
    "* paired t-test p < 0.05, ** p < 0.01, † Wilcoxon signed-rank p < 0.05. "
    "Bold: best mean per column (higher accuracy; lower mCE, fluctuation, |unit mean|)."
)
FORMATS = ("md", "latex", "csv", "html")
_FORMAT_ALIASES = {"md": "md", "markdown": "md", "latex": "latex", "tex": "latex", "csv": "csv",
                   "html": "html"}  # fmt: skip
FORMAT_SUFFIX = {"md": ".md", "latex": ".tex", "csv": ".csv", "html": ".html"}


# ----------------------------------------------------------------------------- loading


@dataclass
class RunSet:
    """Loaded results stores: the tidy tables of every run, its manifest and folder."""

    metrics: pd.DataFrame
    layers: pd.DataFrame = field(default_factory=pd.DataFrame)
    samples: pd.DataFrame = field(default_factory=pd.DataFrame)
    units: pd.DataFrame = field(default_factory=pd.DataFrame)
    manifests: dict[str, dict] = field(default_factory=dict)  # run id -> manifest
    folders: dict[str, Path] = field(default_factory=dict)  # run id -> folder
    notes: list[str] = field(default_factory=list)
    renames: dict[Path, dict[str, str]] = field(default_factory=dict)  # folder -> stored id -> id here

    @property
    def runs(self) -> list[str]:
        """Run ids in load order."""
        return list(dict.fromkeys(self.metrics["run"].astype(str)))

    def read_samples(self, *, corruption: str | None = None, stats: Sequence[str] | None = None) -> pd.DataFrame:
        """Per-sample rows of one corruption / some stats: from memory if loaded, else read filtered
        from each folder's samples.parquet (a full-size store does not fit in memory at once)."""
        if len(self.samples) or not self.folders:
            s = self.samples
            if len(s) and corruption is not None:
                s = s[s["corruption"] == corruption]
            if len(s) and stats is not None:
                s = s[s["stat"].isin(list(stats))]
            return s
        filters = []
        if corruption is not None:
            filters.append(("corruption", "==", corruption))
        if stats is not None:
            filters.append(("stat", "in", list(stats)))
        frames = []
        for folder in dict.fromkeys(self.folders.values()):
            p = folder / "samples.parquet"
            if not p.is_file():
                continue
            try:
                f = pd.read_parquet(p, filters=filters or None)
            except Exception as exc:  # a damaged file: one line naming it
                raise UserError(f"unreadable {p}: {exc}") from exc
            ren = self.renames.get(folder)
            if ren and len(f):
                f = f.assign(run=f["run"].astype(str).map(lambda r, ren=ren: ren.get(r, r)))
            frames.append(f)
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def find_run_folders(paths: Iterable[str | Path]) -> tuple[list[Path], list[Path]]:
    """(complete, incomplete) run folders at or under each path, deduplicated, in order."""
    from robustbench_act.results import find_runs, is_complete, read_manifest

    found: dict[Path, None] = {}
    skipped: dict[Path, None] = {}
    for raw in paths:
        p = Path(raw).expanduser()
        if p.is_file() and p.name in ("metrics.parquet", "manifest.json"):
            p = p.parent
        if not p.exists():
            raise UserError(f"results folder not found: {p}")
        if read_manifest(p) is not None:
            found[p.resolve()] = None  # named explicitly: load_run says why if it is unfinished
            continue
        runs = find_runs(p)
        if not runs:
            raise UserError(f"no results under {p} (no run folder with manifest.json found in it or below it)")
        for d in runs:
            (found if is_complete(d) else skipped)[d.resolve()] = None
    return list(found), [d for d in skipped if d not in found]


def load_runs(paths: Iterable[str | Path], *, samples: bool = True) -> RunSet:
    """Read every complete run folder under ``paths`` (``results.load_run``) into a :class:`RunSet`."""
    from robustbench_act import results

    folders, skipped = find_run_folders(paths)
    if not folders:
        raise UserError(f"no complete run among the given folders ({len(skipped)} unfinished)")
    loaded = [results.load_run(f, samples=samples) for f in folders]
    ids = [list(dict.fromkeys(r.metrics["run"].astype(str))) for r in loaded]
    seen: dict[str, int] = {}
    for rids in ids:
        for rid in rids:
            seen[rid] = seen.get(rid, 0) + 1
    clash = {rid for rid, k in seen.items() if k > 1}
    renames: dict[Path, dict[str, str]] = {}
    if clash:  # e.g. relu/s0 and silu/s0: name those runs by their folder below the common parent
        import os

        root = Path(os.path.commonpath([str(f) for f in folders]))
        for i, (folder, run) in enumerate(zip(folders, loaded)):
            if clash & set(ids[i]):
                rel = folder.relative_to(root).as_posix() if folder != root else folder.name
                rename = {rid: (rel if len(ids[i]) == 1 else f"{rel}:{rid}") for rid in ids[i]}
                for t in ("metrics", "layers", "samples", "units"):
                    frame = getattr(run, t)
                    if len(frame):
                        setattr(run, t, frame.assign(run=frame["run"].astype(str).map(rename)))
                ids[i] = [rename[r] for r in ids[i]]
                renames[folder] = rename
    manifests: dict[str, dict] = {}
    by_run: dict[str, Path] = {}
    for folder, run, rids in zip(folders, loaded, ids):
        for rid in rids:
            by_run[rid] = folder
            manifests[rid] = run.manifest
    tables = {t: pd.concat([getattr(r, t) for r in loaded], ignore_index=True)
              for t in ("metrics", "layers", "samples", "units")}  # fmt: skip
    if tables["metrics"].empty:
        raise UserError("the given results folders hold no metrics (all metrics.parquet are empty)")
    notes = [f"skipped {len(skipped)} unfinished run(s): {_names([str(d) for d in skipped])}"] if skipped else []
    return RunSet(metrics=_normalise_metrics(tables["metrics"]), layers=tables["layers"],
                  samples=tables["samples"], units=tables["units"], manifests=manifests,
                  folders=by_run, notes=notes, renames=renames)  # fmt: skip


def _normalise_metrics(m: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in (*KEY, "corruption", "severity", "metric", "value") if c not in m.columns]
    if missing:
        raise UserError(f"metrics table lacks column(s) {', '.join(missing)}")
    m = m.copy()
    for c in ("run", "model", "activation", "order", "dataset", "corruption", "metric"):
        m[c] = m[c].astype(object).where(m[c].notna(), "-").astype(str)
    m["severity"] = pd.to_numeric(m["severity"], errors="coerce").fillna(0).astype(int)
    m["value"] = pd.to_numeric(m["value"], errors="coerce").astype(float)
    return m


def _as_runset(paths_or_runs: Any, *, samples: bool = False) -> RunSet:
    if isinstance(paths_or_runs, RunSet):
        return paths_or_runs
    if isinstance(paths_or_runs, pd.DataFrame):
        return RunSet(metrics=_normalise_metrics(paths_or_runs))
    if hasattr(paths_or_runs, "metrics") and hasattr(paths_or_runs, "manifests"):  # results.Run
        r = paths_or_runs
        mans = {str(m.get("run") or Path(p).name): m for p, m in zip(r.paths, r.manifests)}
        return RunSet(metrics=_normalise_metrics(r.metrics), layers=r.layers, samples=r.samples,
                      units=r.units, manifests=mans,
                      folders={k: Path(p) for k, p in zip(mans, r.paths)})  # fmt: skip
    if isinstance(paths_or_runs, (str, Path)):
        paths_or_runs = [paths_or_runs]
    paths = list(paths_or_runs)
    if not paths:
        raise UserError("give at least one results folder")
    return load_runs(paths, samples=samples)


# ----------------------------------------------------------------------------- corruptions


def corruption_group(name: str) -> str:
    """Group (noise/blur/weather/digital/extra) of a corruption (see ``metrics.group_of``)."""
    return group_of(name)


def order_corruptions(names: Iterable[str]) -> list[str]:
    """Corruption names in canonical order: by group, then Hendrycks order, then by name."""
    canon = [c for g in GROUPS for c in GROUP_MEMBERS.get(g, ())]

    def key(n: str) -> tuple[int, int, str]:
        g = corruption_group(n)
        gi = GROUPS.index(g) if g in GROUPS else len(GROUPS)
        return (gi, canon.index(n) if n in canon else len(canon), n)

    return sorted(set(names), key=key)


# ----------------------------------------------------------------------------- data check


def _names(runs: Sequence[str], k: int = 3) -> str:
    runs = sorted(runs)
    more = f" +{len(runs) - k} more" if len(runs) > k else ""
    return ", ".join(runs[:k]) + more


def data_fingerprints(rs: RunSet) -> pd.DataFrame:
    """Per run: dataset, corruption seed, image count, corruption set and severities seen."""
    m = rs.metrics
    rows = []
    for run, g in m.groupby("run", sort=False):
        cfg = (rs.manifests.get(str(run)) or {}).get("config") or {}
        cor = g[g["corruption"] != "clean"]
        clean_n = g.loc[(g["corruption"] == "clean") & (g["metric"] == "top1"), "n"] if "n" in g else []
        n_images = cfg.get("n_images")
        if n_images is None and len(clean_n):
            n_images = int(pd.to_numeric(clean_n, errors="coerce").max())
        if n_images is None:
            n_images = cfg.get("limit")
        rows.append(
            {
                "run": str(run),
                "dataset": cfg.get("dataset_name") or cfg.get("dataset")
                or ",".join(sorted(g["dataset"].unique())),
                "corruption_seed": cfg.get("corruption_seed", cfg.get("seed")),
                "n_images": n_images,
                "corruptions": tuple(order_corruptions(cor["corruption"].unique())),
                "severities": tuple(sorted(int(s) for s in cor["severity"].unique())),
                "status": (rs.manifests.get(str(run)) or {}).get("status"),
            }
        )
    return pd.DataFrame(rows)


def check_same_data(rs: RunSet, fp: pd.DataFrame | None = None) -> list[str]:
    """Differences in the data the runs saw, one phrase per differing field (empty: same data)."""
    fp = data_fingerprints(rs) if fp is None else fp
    problems: list[str] = []
    labels = {
        "dataset": "dataset",
        "corruption_seed": "corruption seed",
        "n_images": "image count",
        "severities": "severities",
    }
    for col, label in labels.items():
        known = fp[fp[col].notna()] if col != "severities" else fp
        groups: dict[Any, list[str]] = {}
        for run, val in zip(known["run"], known[col]):
            groups.setdefault(val if not isinstance(val, float) else int(val), []).append(run)
        if len(groups) > 1:
            parts = [
                f"{_fmt_value(v)} ({_names(r)})"
                for v, r in sorted(groups.items(), key=lambda kv: -len(kv[1]))
            ]
            problems.append(f"{label} differs: " + " vs ".join(parts))
    sets: dict[tuple, list[str]] = {}
    for run, val in zip(fp["run"], fp["corruptions"]):
        sets.setdefault(val, []).append(run)
    if len(sets) > 1:
        union = order_corruptions(c for s in sets for c in s)
        parts = []
        for s, r in sorted(sets.items(), key=lambda kv: -len(kv[1])):
            lack = [c for c in union if c not in s]
            desc = f"all {len(union)}" if not lack else "lacking " + ", ".join(lack[:4]) + (
                f" +{len(lack) - 4}" if len(lack) > 4 else ""
            )
            parts.append(f"{desc} ({_names(r)})")
        problems.append("corruption set differs: " + " vs ".join(parts))
    return problems


def _fmt_value(v: Any) -> str:
    if isinstance(v, tuple):
        return ",".join(str(x) for x in v) or "none"
    return str(v)


# ----------------------------------------------------------------------------- per-run summary


def summarise_runs(metrics: pd.DataFrame) -> pd.DataFrame:
    """One row per run (index: KEY): clean_top1, acc_<c>, mca, mca_<group>, probe summaries.

    ``metrics.summarise`` without a baseline; its unnormalised ``ce_*``/``mce`` columns are
    dropped because :func:`compare_runs` normalises them by the reference group.
    """
    m = _normalise_metrics(metrics)
    out = summarise(m).set_index(list(KEY))
    # keep only key combinations that exist (a pivot with dropna=False may form their product)
    present = pd.MultiIndex.from_frame(m[list(KEY)].drop_duplicates())
    out = out[out.index.isin(present)]
    drop = [c for c in out.columns if c.startswith("ce_") or c in ("mce", "rel_mce")]
    return out.drop(columns=drop)


def _cell_errors(metrics: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    """Per run: top-1 error per (corruption, severity) cell (wide) and clean error."""
    m = metrics[metrics["metric"] == "top1"]
    key = list(KEY)
    clean = 1.0 - m[m["corruption"] == "clean"].groupby(key, dropna=False)["value"].mean()
    cor = m[m["corruption"] != "clean"]
    err = 1.0 - cor.groupby([*key, "corruption", "severity"], dropna=False)["value"].mean()
    return err.unstack(["corruption", "severity"]), clean


# ----------------------------------------------------------------------------- statistics


def holm(pvalues: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (NaN entries stay NaN and do not count in m)."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full_like(p, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    m = len(ok)
    if m == 0:
        return out
    order = ok[np.argsort(p[ok], kind="mergesort")]
    running = 0.0
    for i, idx in enumerate(order):
        running = max(running, min(1.0, (m - i) * p[idx]))
        out[idx] = running
    return out


def paired_tests(x: Sequence[float], y: Sequence[float]) -> dict[str, float]:
    """Paired t-test and Wilcoxon signed-rank of x vs y (scipy defaults); NaN with < 2 pairs."""
    from scipy import stats

    a = np.asarray(x, dtype=float)
    b = np.asarray(y, dtype=float)
    ok = ~(np.isnan(a) | np.isnan(b))
    a, b = a[ok], b[ok]
    res = {"n_pairs": int(len(a)), "mean_diff": float(np.mean(a - b)) if len(a) else math.nan,
           "t_stat": math.nan, "t_p": math.nan, "w_stat": math.nan, "w_p": math.nan}  # fmt: skip
    if len(a) < 2:
        return res
    d = a - b
    if np.all(d == 0):
        res.update(t_stat=0.0, t_p=1.0, w_stat=0.0, w_p=1.0)
        return res
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = stats.ttest_rel(a, b)
        res.update(t_stat=float(t.statistic), t_p=float(t.pvalue))
        try:
            w = stats.wilcoxon(a, b)
            res.update(w_stat=float(w.statistic), w_p=float(w.pvalue))
        except ValueError:
            pass
    return res


def significance_mark(t_p: float, w_p: float) -> str:
    """Table mark for Holm-adjusted p-values: '*' / '**' (t-test), '†' (Wilcoxon)."""
    mark = ""
    if not math.isnan(t_p) and t_p < 0.01:
        mark = "**"
    elif not math.isnan(t_p) and t_p < 0.05:
        mark = "*"
    if not math.isnan(w_p) and w_p < 0.05:
        mark += "†"
    return mark


# ----------------------------------------------------------------------------- table


@dataclass(frozen=True)
class Column:
    """A table column: key in the frame, label, which direction is better, unit, section."""

    key: str
    label: str
    better: str | None  # "max", "min" or None (neutral)
    percent: bool
    section: str  # "summary" or "corruption"


@dataclass
class ComparisonTable:
    """A comparison of groups of runs: numeric frame, column specs, paired tests, notes."""

    frame: pd.DataFrame  # index: group label; columns <key>, <key>_std, <key>_count, n
    columns: list[Column]
    tests: pd.DataFrame
    by: tuple[str, ...]
    reference: str | None
    runs: pd.DataFrame  # per-run summary, index KEY, plus column "group"
    notes: list[str] = field(default_factory=list)
    data: pd.DataFrame = field(default_factory=pd.DataFrame)  # data fingerprints per run

    # -- cell helpers --------------------------------------------------------------
    @property
    def groups(self) -> list[str]:
        """Group labels in table order (reference first)."""
        return list(self.frame.index)

    def summary_columns(self) -> list[Column]:
        """Columns of the summary table."""
        return [c for c in self.columns if c.section == "summary"]

    def corruption_columns(self) -> list[Column]:
        """Per-corruption accuracy columns."""
        return [c for c in self.columns if c.section == "corruption"]

    def mark(self, group: str, key: str) -> str:
        """Significance mark of ``group`` vs the reference on column ``key``."""
        if self.tests.empty:
            return ""
        hit = self.tests[(self.tests["group"] == group) & (self.tests["column"] == key)]
        if hit.empty:
            return ""
        return str(hit["mark"].iloc[0])

    def best(self, col: Column) -> set[str]:
        """Groups with the best mean on ``col`` (ties all count; empty for neutral columns or < 2 groups)."""
        if col.better is None or len(self.frame) < 2 or col.key not in self.frame:
            return set()
        s = self.frame[col.key].dropna()
        if len(s) < 2:
            return set()
        top = s.max() if col.better == "max" else s.min()
        return {str(g) for g, v in s.items() if abs(v - top) <= 1e-12 * max(1.0, abs(top))}

    def cell(self, group: str, col: Column) -> tuple[str, bool, str]:
        """(text, is_best, mark) of one cell: 'mean ± std' in display units."""
        mean = self.frame.at[group, col.key] if col.key in self.frame else math.nan
        std = self.frame.at[group, f"{col.key}_std"] if f"{col.key}_std" in self.frame else math.nan
        cnt = self.frame.at[group, f"{col.key}_count"] if f"{col.key}_count" in self.frame else 0
        n = self.frame.at[group, "n"]
        if mean is None or (isinstance(mean, float) and math.isnan(mean)):
            return "–", False, ""
        dec = self._decimals(col)
        text = _fmt_fixed(mean, col.percent, dec)
        if cnt > 1 and not math.isnan(std):
            text += " ± " + _fmt_fixed(std, col.percent, dec)
        if 0 < cnt < n:
            text += f" (n={int(cnt)})"
        return text, group in self.best(col), self.mark(group, col.key)

    def _decimals(self, col: Column) -> int | None:
        """Decimals shared by a column's cells: 2 for %, else 3 significant digits of the largest."""
        if col.percent:
            return 2
        vals = self.frame[col.key].abs().dropna() if col.key in self.frame else pd.Series(dtype=float)
        vmax = float(vals.max()) if len(vals) else 0.0
        if vmax == 0.0 or not math.isfinite(vmax):
            return 3
        if vmax < 1e-3 or vmax >= 1e5:
            return None
        return max(0, min(6, 2 - math.floor(math.log10(vmax))))

    def group_label(self, group: str) -> str:
        """Row label, '(ref)' appended for the reference."""
        return f"{group} (ref)" if group == self.reference else group

    # -- output -------------------------------------------------------------------
    def formatted(self, fmt: str) -> str:
        """The whole comparison as text in ``fmt``: md, latex, csv or html."""
        f = _FORMAT_ALIASES.get(fmt.lower())
        if f is None:
            raise unknown("format", fmt, FORMATS)
        return {"md": self.to_markdown, "latex": self.to_latex, "csv": self.to_csv,
                "html": self.to_html}[f]()  # fmt: skip

    def to_csv(self) -> str:
        """Numeric frame as CSV (means, stds, counts; fractions, not %)."""
        return self.frame.to_csv(index=True, float_format="%.6g")

    def _header_lines(self) -> list[str]:
        by = "+".join(self.by)
        ref = self.reference or "none"
        return [f"Grouped by {by}; reference: {ref}; runs: {len(self.runs)}."]

    def to_markdown(self) -> str:
        """Markdown document: summary table, per-corruption table, tests, notes."""
        out = ["# Comparison", "", *self._header_lines(), ""]
        out += ["## Summary", "", *_md_table(self, self.summary_columns()), ""]
        if self.corruption_columns():
            out += ["## Accuracy per corruption (mean over severities, %)", ""]
            out += [*_md_corruption_table(self), ""]
        out += [MARK_LEGEND.replace("*", "\\*"), ""]
        tests = self.tests_display()
        if not tests.empty:
            out += ["## Paired tests vs the reference (summary columns)", ""]
            out += _md_plain(tests)
            out.append("")
        if self.notes:
            out += ["## Notes", "", *[f"- {n}" for n in self.notes], ""]
        return "\n".join(out)

    def to_latex(self) -> str:
        """LaTeX (booktabs) tables: summary and per-corruption accuracy."""
        out = ["% Comparison tables; needs \\usepackage{booktabs}", f"% {self._header_lines()[0]}"]
        out += _latex_table(self, self.summary_columns(), "Summary (accuracies, mCE in \\%).")
        if self.corruption_columns():
            out.append("")
            out += _latex_corruption_table(self)
        return "\n".join(out) + "\n"

    def to_html(self, *, full: bool = True, notes: bool = True) -> str:
        """HTML tables (a standalone page with ``full``, else a fragment; ``notes`` listed at the end)."""
        parts = [f"<p>{html.escape(self._header_lines()[0])}</p>"]
        parts.append("<h3>Summary</h3>")
        parts.append(_html_table(self, self.summary_columns()))
        if self.corruption_columns():
            parts.append("<h3>Accuracy per corruption (mean over severities, %)</h3>")
            parts.append(_html_corruption_table(self))
        parts.append(f"<p class='legend'>{html.escape(MARK_LEGEND)}</p>")
        tests = self.tests_display()
        if not tests.empty:
            parts.append("<h3>Paired tests vs the reference (summary columns)</h3>")
            parts.append(_html_plain(tests))
        if self.notes and notes:
            parts.append("<h3>Notes</h3><ul>" + "".join(
                f"<li>{html.escape(n)}</li>" for n in self.notes) + "</ul>")  # fmt: skip
        body = "\n".join(parts)
        if not full:
            return body
        return (
            "<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>Comparison</title>"
            f"<style>{TABLE_CSS}</style></head><body>\n<h2>Comparison</h2>\n{body}\n</body></html>\n"
        )

    def tests_display(self) -> pd.DataFrame:
        """Tests of the summary columns, formatted for reading."""
        if self.tests.empty:
            return pd.DataFrame()
        keys = {c.key: c for c in self.summary_columns()}
        t = self.tests[self.tests["column"].isin(keys) & self.tests["t_p"].notna()].copy()
        if t.empty:
            return pd.DataFrame()
        t["column"] = [keys[k].label for k in t["column"]]
        pct = [keys[k].percent for k in self.tests.loc[t.index, "column"]]
        t["mean_diff"] = [
            _fmt_num(v, p, signed=True) for v, p in zip(t["mean_diff"], pct)
        ]
        for c in ("t_p", "t_p_holm", "w_p", "w_p_holm"):
            t[c] = [_fmt_p(v) for v in t[c]]
        t = t[["group", "column", "n_pairs", "mean_diff", "t_p", "t_p_holm", "w_p", "w_p_holm", "mark"]]
        return t.rename(
            columns={"mean_diff": "diff", "t_p": "t p", "t_p_holm": "t p (Holm)", "w_p": "W p",
                     "w_p_holm": "W p (Holm)", "n_pairs": "pairs"}  # fmt: skip
        ).reset_index(drop=True)

    def to_rich(self) -> Any:
        """A rich Table of the summary for the terminal: one row per column, one column per group."""
        from rich.table import Table

        table = Table(title=f"actbench compare (by {'+'.join(self.by)}; reference {self.reference})",
                      caption=MARK_LEGEND, caption_justify="left")  # fmt: skip
        table.add_column("", style="bold", no_wrap=True)
        for g in self.groups:
            table.add_column(_rich_escape(self.group_label(g)), justify="right")
        table.add_row("n", *[str(int(self.frame.at[g, "n"])) for g in self.groups])
        for c in self.summary_columns():
            cells = []
            for g in self.groups:
                text, is_best, mark = self.cell(g, c)
                text = _rich_escape(text + mark)
                cells.append(f"[bold green]{text}[/]" if is_best else text)
            table.add_row(_rich_escape(c.label + (" %" if c.percent else "")), *cells)
        return table


def _rich_escape(s: str) -> str:
    from rich.markup import escape

    return escape(s)


def _fmt_num(v: float, percent: bool, *, signed: bool = False) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    sign = "+" if signed else ""
    if percent:
        return f"{v * 100:{sign}.2f}"
    a = abs(v)
    if a != 0 and (a < 1e-3 or a >= 1e4):
        return f"{v:{sign}.2e}"
    return f"{v:{sign}.3g}" if a < 1 else f"{v:{sign}.4g}"


def _fmt_fixed(v: float, percent: bool, decimals: int | None) -> str:
    if percent:
        v = v * 100
    return f"{v:.2e}" if decimals is None else f"{v:.{decimals}f}"


def _fmt_p(p: float) -> str:
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "–"
    return f"{p:.2e}" if p < 1e-3 else f"{p:.3f}"


# ---- markdown


def _md_escape(s: str) -> str:
    return s.replace("|", "\\|").replace("*", "\\*")


def _md_table(t: ComparisonTable, cols: list[Column]) -> list[str]:
    head = [" + ".join(t.by), "n", *[c.label + (" %" if c.percent else "") for c in cols]]
    lines = ["| " + " | ".join(_md_escape(h) for h in head) + " |",
             "|" + "|".join([":--", "--:", *["--:"] * len(cols)]) + "|"]  # fmt: skip
    for g in t.groups:
        cells = [_md_escape(t.group_label(g)), str(int(t.frame.at[g, "n"]))]
        for c in cols:
            text, is_best, mark = t.cell(g, c)
            text = f"**{text}**" if is_best else text
            cells.append(text + _md_escape(mark))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _md_corruption_table(t: ComparisonTable) -> list[str]:
    groups = t.groups
    head = ["group", "corruption", *[t.group_label(g) for g in groups]]
    lines = ["| " + " | ".join(_md_escape(h) for h in head) + " |",
             "|" + "|".join([":--", ":--", *["--:"] * len(groups)]) + "|"]  # fmt: skip
    for c in t.corruption_columns():
        cells = [corruption_group(c.label), _md_escape(c.label)]
        for g in groups:
            text, is_best, mark = t.cell(g, c)
            cells.append((f"**{text}**" if is_best else text) + _md_escape(mark))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _md_plain(df: pd.DataFrame) -> list[str]:
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(_md_escape(c) for c in cols) + " |", "|" + "|".join(["--"] * len(cols)) + "|"]
    for _, row in df.iterrows():
        lines.append("| " + " | ".join(_md_escape(str(v)) for v in row) + " |")
    return lines


# ---- latex

_TEX_SPECIAL = {"&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
                "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "\\": r"\textbackslash{}",
                "|": r"\textbar{}", "<": r"\textless{}", ">": r"\textgreater{}"}  # fmt: skip


def _tex(s: str) -> str:
    return "".join(_TEX_SPECIAL.get(ch, ch) for ch in s)


def _tex_cell(text: str, is_best: bool, mark: str) -> str:
    body = _tex(text).replace(" ± ", r" $\pm$ ").replace("–", "--")
    if is_best:
        body = rf"\textbf{{{body}}}"
    if mark:
        sup = mark.replace("†", r"\dagger")
        body += rf"$^{{{sup}}}$"
    return body


def _latex_table(t: ComparisonTable, cols: list[Column], caption: str) -> list[str]:
    spec = "l" + "r" * (len(cols) + 1)
    out = [r"\begin{table}[t]", r"\centering", r"\small", rf"\begin{{tabular}}{{{spec}}}", r"\toprule"]
    head = [_tex(" + ".join(t.by)), "$n$", *[_tex(c.label) for c in cols]]
    out.append(" & ".join(head) + r" \\")
    out.append(r"\midrule")
    for g in t.groups:
        cells = [_tex(t.group_label(g)), str(int(t.frame.at[g, "n"]))]
        cells += [_tex_cell(*t.cell(g, c)) for c in cols]
        out.append(" & ".join(cells) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}", rf"\caption{{{caption} {_tex(MARK_LEGEND)}}}".replace(
        "†", r"$\dagger$"), r"\end{table}"]  # fmt: skip
    return out


def _latex_corruption_table(t: ComparisonTable) -> list[str]:
    groups = t.groups
    out = [r"\begin{table}[t]", r"\centering", r"\small",
           rf"\begin{{tabular}}{{ll{'r' * len(groups)}}}", r"\toprule"]  # fmt: skip
    out.append(" & ".join(["group", "corruption", *[_tex(t.group_label(g)) for g in groups]]) + r" \\")
    prev = None
    for c in t.corruption_columns():
        grp = corruption_group(c.label)
        if grp != prev:
            out.append(r"\midrule")
        cells = [grp if grp != prev else "", _tex(c.label)]
        cells += [_tex_cell(*t.cell(g, c)) for g in groups]
        out.append(" & ".join(cells) + r" \\")
        prev = grp
    out += [r"\bottomrule", r"\end{tabular}",
            r"\caption{Top-1 accuracy (\%) per corruption, mean over severities.}", r"\end{table}"]  # fmt: skip
    return out


# ---- html

TABLE_CSS = (
    "body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:1.5em;color:#222}"
    "table{border-collapse:collapse;margin:0.6em 0 1.2em 0;font-size:0.92em}"
    "th,td{padding:0.25em 0.6em;text-align:right;border-bottom:1px solid #ddd;white-space:nowrap}"
    "th{border-bottom:2px solid #444;background:#f4f4f4}"
    "td:first-child,th:first-child{text-align:left}"
    "td.best{font-weight:bold}"
    "p.legend{font-size:0.85em;color:#555;max-width:60em}"
)


def _html_table(t: ComparisonTable, cols: list[Column]) -> str:
    e = html.escape
    head = "".join(f"<th>{e(h)}</th>" for h in [" + ".join(t.by), "n",
                   *[c.label + (" %" if c.percent else "") for c in cols]])  # fmt: skip
    rows = []
    for g in t.groups:
        cells = [f"<td>{e(t.group_label(g))}</td>", f"<td>{int(t.frame.at[g, 'n'])}</td>"]
        for c in cols:
            text, is_best, mark = t.cell(g, c)
            sup = f"<sup>{e(mark)}</sup>" if mark else ""
            cells.append(f"<td class='best'>{e(text)}{sup}</td>" if is_best else f"<td>{e(text)}{sup}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _html_corruption_table(t: ComparisonTable) -> str:
    e = html.escape
    head = "".join(f"<th>{e(h)}</th>" for h in ["group", "corruption", *[t.group_label(g) for g in t.groups]])
    rows = []
    for c in t.corruption_columns():
        cells = [f"<td>{e(corruption_group(c.label))}</td>", f"<td style='text-align:left'>{e(c.label)}</td>"]
        for g in t.groups:
            text, is_best, mark = t.cell(g, c)
            sup = f"<sup>{e(mark)}</sup>" if mark else ""
            cls = " class='best'" if is_best else ""
            cells.append(f"<td{cls}>{e(text)}{sup}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _html_plain(df: pd.DataFrame) -> str:
    e = html.escape
    head = "".join(f"<th>{e(str(c))}</th>" for c in df.columns)
    rows = "".join(
        "<tr>" + "".join(f"<td>{e(str(v))}</td>" for v in row) + "</tr>" for _, row in df.iterrows()
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


# ----------------------------------------------------------------------------- compare


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


def _group_labels(index: pd.MultiIndex | pd.Index, by: tuple[str, ...]) -> list[str]:
    frame = index.to_frame(index=False)
    return ["/".join(str(v) for v in row) for row in frame[list(by)].itertuples(index=False)]


def _columns_for(per_run: pd.DataFrame) -> list[Column]:
    cols = [Column("clean_top1", "clean", "max", True, "summary")]
    if "mca" in per_run:
        cols.append(Column("mca", "mCA", "max", True, "summary"))
    for g in GROUPS:
        if f"mca_{g}" in per_run:
            cols.append(Column(f"mca_{g}", g, "max", True, "summary"))
    if "mce" in per_run:
        cols.append(Column("mce", "mCE", "min", True, "summary"))
        cols.append(Column("rel_mce", "rel. mCE", "min", True, "summary"))
    for cands, label, better in _PROBE_DISPLAY:
        for cand in cands:
            if cand in per_run and per_run[cand].notna().any():
                cols.append(Column(cand, label, better, False, "summary"))
                break
    for c in order_corruptions(c[4:] for c in per_run.columns if c.startswith("acc_")):
        cols.append(Column(f"acc_{c}", c, "max", True, "corruption"))
    return cols


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
    for cand in ("relu",):
        if cand in uniq:
            return cand
        starts = [u for u in uniq if u.split("/")[0] == cand]
        if starts:
            return starts[0]
    return uniq[0]


def _add_ce(per_run: pd.DataFrame, metrics: pd.DataFrame, pair_keys: list[str], ref_mask: np.ndarray,
            ) -> pd.DataFrame:  # fmt: skip
    """Add ce_<c>, rce_<c>, mce, rel_mce against the reference group's mean error."""
    err, clean_err = _cell_errors(metrics)
    err = err.reindex(per_run.index)
    clean_err = clean_err.reindex(per_run.index)
    if err.empty or not ref_mask.any():
        return per_run
    base_keys = [k for k in pair_keys if k != "seed"]
    idx = per_run.index.to_frame(index=False)
    ref_rows = idx[ref_mask]
    ref_err = err[ref_mask]
    ref_clean = clean_err[ref_mask]
    all_base = ref_err.mean(axis=0)
    all_base_clean = float(ref_clean.mean())
    corr_names = order_corruptions({c for c, _ in err.columns})
    ce = {f"ce_{c}": np.full(len(per_run), np.nan) for c in corr_names}
    rce = {f"rce_{c}": np.full(len(per_run), np.nan) for c in corr_names}
    ref_key = _join_keys(ref_rows, base_keys) if base_keys else None
    run_key = _join_keys(idx, base_keys) if base_keys else None
    for i in range(len(per_run)):
        sel = (ref_key == run_key.iloc[i]).to_numpy() if base_keys else np.ones(len(ref_rows), bool)
        if sel.any():
            base = ref_err[sel].mean(axis=0)
            base_clean = float(ref_clean[sel].mean())
        else:
            base, base_clean = all_base, all_base_clean
        row = err.iloc[i]
        for c in corr_names:
            sev = [s for (cc, s) in err.columns if cc == c]
            e = np.array([row[(c, s)] for s in sev], float)
            b = np.array([base[(c, s)] for s in sev], float)
            ok = ~(np.isnan(e) | np.isnan(b))
            if not ok.any():
                continue
            den = b[ok].sum()
            ce[f"ce_{c}"][i] = e[ok].sum() / den if den > 0 else np.nan
            rden = (b[ok] - base_clean).sum()
            rnum = (e[ok] - clean_err.iloc[i]).sum()
            rce[f"rce_{c}"][i] = rnum / rden if rden > 0 else np.nan
    ce_df = pd.DataFrame(ce, index=per_run.index)
    rce_df = pd.DataFrame(rce, index=per_run.index)
    bench = [c for c in corr_names if c in COMMON] or corr_names
    per_run = per_run.copy()
    per_run["mce"] = ce_df[[f"ce_{c}" for c in bench]].mean(axis=1)
    per_run["rel_mce"] = rce_df[[f"rce_{c}" for c in bench]].mean(axis=1)
    return pd.concat([per_run, ce_df, rce_df], axis=1)


def _join_keys(frame: pd.DataFrame, keys: Sequence[str]) -> pd.Series:
    """One string per row joining ``keys`` with '|' (a hashable pairing key)."""
    if not keys:
        return pd.Series("all", index=frame.index)
    out = frame[keys[0]].astype(str)
    for k in keys[1:]:
        out = out + "|" + frame[k].astype(str)
    return out


def _pair_values(values: pd.Series, labels: np.ndarray, pk: np.ndarray, group: str, ref: str,
                 ) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Values of ``group`` and ``ref`` paired by key ``pk`` (duplicates of a key averaged)."""
    df = pd.DataFrame({"pk": pk, "label": labels, "v": values.to_numpy(float)})
    a = df[df["label"] == group].groupby("pk")["v"].mean()
    b = df[df["label"] == ref].groupby("pk")["v"].mean()
    common = a.index.intersection(b.index)
    return a.loc[common].to_numpy(float), b.loc[common].to_numpy(float)


def compare_runs(
    paths_or_runs: Any,
    *,
    by: str | Sequence[str] = "activation",
    reference: str | None = None,
    allow_mismatch: bool = False,
) -> ComparisonTable:
    """Compare runs grouped by ``by`` against ``reference`` (default 'relu' if present, else the first group)."""
    rs = _as_runset(paths_or_runs)
    by_keys = parse_by(by)
    notes: list[str] = list(rs.notes)
    fp = data_fingerprints(rs)
    problems = check_same_data(rs, fp)
    if problems:
        if not allow_mismatch:
            raise UserError(
                "runs did not see the same data: " + "; ".join(problems)
                + " (pass --allow-mismatch to compare anyway)"
            )
        notes.append("compared despite different data: " + "; ".join(problems))
    incomplete = fp.loc[fp["status"].fillna("complete") != "complete", "run"].tolist()
    if incomplete:
        notes.append(f"incomplete run(s): {_names(incomplete, 6)}")

    per_run = summarise_runs(rs.metrics)
    labels = pd.Series(_group_labels(per_run.index, by_keys), index=per_run.index)
    ref = _resolve_reference(labels.tolist(), reference, by_keys)
    pair_keys = [k for k in KEY if k not in by_keys and k != "run"]
    ref_mask = (labels == ref).to_numpy()
    if ref is not None:
        per_run = _add_ce(per_run, rs.metrics, pair_keys, ref_mask)
    columns = _columns_for(per_run)

    # pooled groups: say so when a group mixes models/orders/datasets
    idx = per_run.index.to_frame(index=False)
    for k in ("model", "order", "dataset"):
        if k not in by_keys and idx[k].nunique() > 1:
            notes.append(
                f"each group pools {idx[k].nunique()} {k}s ({', '.join(sorted(idx[k].astype(str).unique())[:5])}); "
                f"tests pair runs by {', '.join(pair_keys)}"
            )

    # aggregate
    order = sorted(set(labels), key=lambda g: (g != ref, g))
    frame = pd.DataFrame(index=pd.Index(order, name="+".join(by_keys)))
    grouped = per_run.groupby(labels.to_numpy())
    frame["n"] = grouped.size().reindex(order).astype(int)
    num_cols = [c for c in per_run.columns if pd.api.types.is_numeric_dtype(per_run[c])]
    means = grouped[num_cols].mean().reindex(order)
    stds = grouped[num_cols].std(ddof=1).reindex(order)
    counts = grouped[num_cols].count().reindex(order)
    parts = [frame]
    for c in num_cols:
        parts.append(pd.DataFrame({c: means[c], f"{c}_std": stds[c], f"{c}_count": counts[c]}))
    frame = pd.concat(parts, axis=1)

    # paired tests
    rows = []
    if ref is not None:
        pk = _join_keys(per_run.index.to_frame(index=False), pair_keys).to_numpy()
        lab = labels.to_numpy()
        for g in order:
            if g == ref:
                continue
            for col in columns:
                a, b = _pair_values(per_run[col.key], lab, pk, g, ref)
                res = paired_tests(a, b)
                rows.append({"group": g, "reference": ref, "column": col.key, "family": col.section,
                             **res})  # fmt: skip
    tests = pd.DataFrame(rows, columns=["group", "reference", "column", "family", "n_pairs",
                                        "mean_diff", "t_stat", "t_p", "w_stat", "w_p"])  # fmt: skip
    if not tests.empty:
        for name in ("t_p", "w_p"):
            adj = pd.Series(np.nan, index=tests.index)
            for _, fam in tests.groupby("family"):
                adj[fam.index] = holm(fam[name].to_numpy(float))
            tests[f"{name}_holm"] = adj
        tests["mark"] = [significance_mark(t, w) for t, w in zip(tests["t_p_holm"], tests["w_p_holm"])]
        better = {c.key: c.better for c in columns}
        tests["better"] = [
            (d > 0 if better[c] == "max" else d < 0) if better[c] and not math.isnan(d) else None
            for c, d in zip(tests["column"], tests["mean_diff"])
        ]
        if tests["n_pairs"].max() < 2:
            notes.append("no paired tests: fewer than 2 paired runs (seeds) per group")
    per_run = per_run.copy()
    per_run["group"] = labels
    return ComparisonTable(
        frame=frame, columns=columns, tests=tests, by=by_keys, reference=ref, runs=per_run,
        notes=notes, data=fp,
    )  # fmt: skip


def write_comparison(table: ComparisonTable, out_dir: str | Path, formats: Iterable[str] = FORMATS,
                     *, stem: str = "comparison") -> list[Path]:  # fmt: skip
    """Write ``comparison.<suffix>`` per format (and ``comparison_tests.csv`` with csv) atomically."""
    from robustbench_act.fileio import atomic_write_text

    out = Path(out_dir)
    written = []
    for fmt in formats:
        f = _FORMAT_ALIASES.get(fmt.lower())
        if f is None:
            raise unknown("format", fmt, FORMATS)
        written.append(atomic_write_text(out / f"{stem}{FORMAT_SUFFIX[f]}", table.formatted(f)))
        if f == "csv" and not table.tests.empty:
            written.append(atomic_write_text(out / f"{stem}_tests.csv",
                                             table.tests.to_csv(index=False, float_format="%.6g")))  # fmt: skip
    return written
