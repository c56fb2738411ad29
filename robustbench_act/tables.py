"""The comparison table and its renderings: markdown, LaTeX (booktabs), CSV, HTML, rich.

A :class:`ComparisonTable` holds the numbers (group means, stds, counts), the columns with
their definitions (:mod:`robustbench_act.definitions`) and the paired tests;
this module only turns them into text.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from robustbench_act.errors import unknown
from robustbench_act.runset import corruption_group

FORMATS = ("md", "latex", "csv", "html")
_FORMAT_ALIASES = {"md": "md", "markdown": "md", "latex": "latex", "tex": "latex", "csv": "csv",
                   "html": "html"}  # fmt: skip
FORMAT_SUFFIX = {"md": ".md", "latex": ".tex", "csv": ".csv", "html": ".html"}
_LEGEND_TESTS = {
    "seeds": "paired across seeds: * paired t-test (exact sign-flip test when the differences do not "
             "vary) p < 0.05, ** p < 0.01, † Wilcoxon signed-rank p < 0.05",
    "images": "one seed: * paired bootstrap over the test images p < 0.05, ** p < 0.01",
    "none": "no tests",
}


def mark_legend(uncertainty: str = "seeds") -> str:
    """What the marks and bold cells of a table mean, for its kind of uncertainty."""
    tests = _LEGEND_TESTS.get(uncertainty, _LEGEND_TESTS["none"])
    spread = ("± (shown with 2 or more seeds) is the std over seeds; the 95% intervals over the test "
              "images are in the tests table" if uncertainty == "images" else "± is the std over seeds")
    return (f"Marks vs the reference ({tests}; Holm-corrected within each table over its groups and "
            f"columns). {spread}. Bold: best mean per column (higher accuracy; lower "
            "mCE, fluctuation, |unit mean|).")


MARK_LEGEND = mark_legend("seeds")


def formats_of(formats: Iterable[str]) -> list[str]:
    """Canonical format names of a list of format names or aliases (md, tex, latex, csv, html)."""
    out = []
    for fmt in formats:
        f = _FORMAT_ALIASES.get(str(fmt).lower())
        if f is None:
            raise unknown("format", str(fmt), FORMATS)
        out.append(f)
    return out



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
    uncertainty: str = "seeds"  # what the tests resample: "seeds", "images" or "none"
    written: list[Any] = field(default_factory=list)  # files written for it (actbench compare)

    @property
    def legend(self) -> str:
        """The legend of this table's marks."""
        return mark_legend(self.uncertainty)

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
        """Numeric frame as CSV (means, stds, counts; fractions, not %), then each group's data."""
        extra = pd.DataFrame(self._group_data(), index=self.frame.index)
        return pd.concat([self.frame, extra], axis=1).to_csv(index=True, float_format="%.6g")

    def _group_data(self) -> dict[str, list[str]]:
        """Per group (frame order): its runs' datasets and test-image counts, ' / '-joined."""
        if self.data.empty or "dataset" not in self.data or "group" not in self.runs:
            return {}
        runs = self.runs.reset_index()[["run", "group"]].merge(self.data, on="run", how="left")
        out: dict[str, list[str]] = {}
        for col in ("dataset", "n_images"):
            if col in runs:
                by_group = runs.groupby("group")[col].agg(lambda v: " / ".join(sorted({str(x) for x in v.dropna()})))
                out[col] = [by_group.get(g, "") for g in self.frame.index]
        return out

    def _header_lines(self) -> list[str]:
        by = "+".join(self.by)
        ref = self.reference or "none"
        what = {"seeds": "seeds (paired tests across seeds)",
                "images": "test images (paired bootstrap; fewer than 3 seeds)",
                "none": "none (fewer than 3 seeds, no per-image results)"}.get(self.uncertainty, self.uncertainty)
        lines = [f"Grouped by {by}; reference: {ref}; runs: {len(self.runs)}; uncertainty from {what}."]
        return lines + ([self.data_line()] if self.data_line() else [])

    def data_line(self) -> str:
        """What the runs were evaluated on: dataset(s), test images per run, corruption seed."""
        d = self.data
        if d.empty or "dataset" not in d:
            return ""

        def values(col: str) -> str:
            v = sorted({str(x) for x in d[col].dropna()}) if col in d else []
            return " / ".join(v)

        parts = [f"Data: {values('dataset')}"]
        if values("n_images"):
            parts.append(f"{values('n_images')} test images per run")
        if "corruptions" in d and any(len(c) for c in d["corruptions"]) and values("corruption_seed"):
            parts.append(f"corruption seed {values('corruption_seed')}")
        return "; ".join(parts) + "."

    def to_markdown(self) -> str:
        """Markdown document: summary table, per-corruption table, tests, notes."""
        out = ["# Comparison", ""] + [x for h in self._header_lines() for x in (h, "")]
        out += ["## Summary", "", *_md_table(self, self.summary_columns()), ""]
        if self.corruption_columns():
            out += ["## Accuracy per corruption (mean over severities, %)", ""]
            out += [*_md_corruption_table(self), ""]
        out += [self.legend.replace("*", "\\*"), ""]
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
        out = ["% Comparison tables; needs \\usepackage{booktabs}", *(f"% {h}" for h in self._header_lines())]
        out += _latex_table(self, self.summary_columns(), "Summary (accuracies, mCE in \\%).")
        if self.corruption_columns():
            out.append("")
            out += _latex_corruption_table(self)
        return "\n".join(out) + "\n"

    def to_html(self, *, full: bool = True, notes: bool = True) -> str:
        """HTML tables (a standalone page with ``full``, else a fragment; ``notes`` listed at the end)."""
        parts = [f"<p>{html.escape(h)}</p>" for h in self._header_lines()]
        parts.append("<h3>Summary</h3>")
        parts.append(_html_table(self, self.summary_columns()))
        if self.corruption_columns():
            parts.append("<h3>Accuracy per corruption (mean over severities, %)</h3>")
            parts.append(_html_corruption_table(self))
        parts.append(f"<p class='legend'>{html.escape(self.legend)}</p>")
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
        """Tests of the summary columns, formatted for reading: difference, 95 % interval, p."""
        if self.tests.empty:
            return pd.DataFrame()
        keys = {c.key: c for c in self.summary_columns()}
        t = self.tests[self.tests["column"].isin(keys)].copy()
        if t.empty:
            return pd.DataFrame()
        pct = [keys[k].percent for k in t["column"]]
        out = pd.DataFrame({
            "group": t["group"].to_numpy(), "column": [keys[k].label for k in t["column"]],
            "pairs": t["n_pairs"].to_numpy(),
            "diff": [_fmt_num(v, p, signed=True) for v, p in zip(t["mean_diff"], pct)],
            "95% CI": [_fmt_ci(lo, hi, p) for lo, hi, p in zip(t["ci_low"], t["ci_high"], pct)],
        })  # fmt: skip
        if self.uncertainty == "seeds":
            out["d_z"] = [_fmt_num(v, False) for v in t["effect_dz"]]
        out["test"] = t["test"].to_numpy()
        out["p"] = [_fmt_p(v) for v in t["p"]]
        out["p (Holm)"] = [_fmt_p(v) for v in t["p_holm"]]
        if self.uncertainty == "seeds":
            out["W p (Holm)"] = [_fmt_p(v) for v in t["w_p_holm"]]
        out["mark"] = t["mark"].to_numpy()
        return out.reset_index(drop=True)

    def to_rich(self) -> Any:
        """A rich Table of the summary for the terminal: one row per column, one column per group."""
        from rich.table import Table

        table = Table(title=f"actbench compare (by {'+'.join(self.by)}; reference {self.reference})",
                      caption=self.legend, caption_justify="left")  # fmt: skip
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


def _fmt_ci(lo: float, hi: float, percent: bool) -> str:
    if lo is None or hi is None or math.isnan(lo) or math.isnan(hi):
        return "–"
    return f"[{_fmt_num(lo, percent, signed=True)}, {_fmt_num(hi, percent, signed=True)}]"


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
    out += [r"\bottomrule", r"\end{tabular}", rf"\caption{{{caption} {_tex(t.legend)}}}".replace(
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


