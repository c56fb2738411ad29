"""Loading results stores for analysis: every complete run folder under some paths, with checks
that the runs saw the same data (dataset, corruption seed, images, corruptions, severities).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from robustbench_act.errors import UserError
from robustbench_act.metrics import GROUP_ORDER, KEY_COLUMNS, group_of
from robustbench_act.metrics import GROUPS as GROUP_MEMBERS
from robustbench_act.results import LEGACY_STREAMS

KEY = KEY_COLUMNS
GROUPS = GROUP_ORDER


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
            if _whole_set_clean(d, read_manifest):
                continue  # a sweep cell's clean/ beside its eval/: name it to compare it
            (found if is_complete(d) else skipped)[d.resolve()] = None
    return list(found), [d for d in skipped if d not in found]


def _whole_set_clean(folder: Path, read_manifest: Any) -> bool:
    """A sweep cell's whole-test-set clean evaluation (``--eval-limit``), found by searching."""
    cfg = (read_manifest(folder) or {}).get("config") or {}
    return isinstance(cfg, dict) and cfg.get("mode") == "sweep-cell-clean"


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
                # the random-stream version matters only where corrupted images were drawn
                "streams": cfg.get("streams", LEGACY_STREAMS) if cfg and len(cor) else None,
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
        "streams": "random-stream version",
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

