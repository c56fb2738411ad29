"""Results store: one folder per evaluation run, written cell by cell, consolidated at the end.

Layout of a finished run folder::

    metrics.parquet, metrics.csv  run, model, activation, order, seed, dataset,
                                  corruption ("clean" for clean), severity (0 for clean),
                                  metric, value, n
    layers.parquet                ... corruption, severity, layer, layer_index, stat, value, n
    samples.parquet               ... corruption, severity, sample, stat, value
    units.parquet                 run, model, activation, order, seed, dataset, layer, unit, stat, value
    summary.csv                   metrics.summarise() of metrics.parquet
    manifest.json                 command, config, versions, git commit, device, seed,
                                  started/finished, status "complete"

While a run is going, each finished (corruption, severity) cell is flushed atomically
as a folder ``cells/<corruption>__s<severity>/`` (written under a temporary name, then
renamed), and ``manifest.json`` says ``"status": "incomplete"``; there is no
``metrics.parquet`` until :meth:`RunStore.finalize`, which writes ``metrics.parquet`` last.
So an interrupted run keeps every finished cell, is recognisable as incomplete, and
``--resume`` completes it without recomputing those cells; the consolidated tables are
built from the parquet parts in the canonical cell order either way, so a resumed run
ends with exactly the tables of an uninterrupted one.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from robustbench_act.errors import UserError
from robustbench_act.fileio import (
    PARQUET_OPTIONS,
    atomic_write,
    atomic_write_frame,
    atomic_write_json,
    check_fields,
    folder_mode,
    lock_folder,
    make_folder,
    read_json,
    reading,
    remove_if_empty,
    unlock_folder,
)

KEYS = ("run", "model", "activation", "order", "seed", "dataset")
#: Column order of each table (exact schema; the compare/report code reads these).
SCHEMAS: dict[str, tuple[str, ...]] = {
    "metrics": (*KEYS, "corruption", "severity", "metric", "value", "n"),
    "layers": (*KEYS, "corruption", "severity", "layer", "layer_index", "stat", "value", "n"),
    "samples": (*KEYS, "corruption", "severity", "sample", "stat", "value"),
    "units": (*KEYS, "layer", "unit", "stat", "value"),
}
INT_COLUMNS = {"seed", "severity", "n", "layer_index", "sample", "unit"}
FLOAT_COLUMNS = {"value"}
TABLES = tuple(SCHEMAS)
MANIFEST = "manifest.json"
CELLS_DIR = "cells"
STATUS_COMPLETE = "complete"
STATUS_INCOMPLETE = "incomplete"
#: Config keys that must agree for ``--resume`` to continue a run.
RESUME_KEYS = ("dataset", "corruptions", "severities", "corruption_seed", "limit", "batch_size",
               "probes", "models", "preset", "frost", "streams", "spec")  # fmt: skip
#: The random-stream version of runs recorded before manifests named it.
LEGACY_STREAMS = 1
#: The frost source of runs recorded before manifests named it (the default then).
LEGACY_FROST = {"source": "procedural", "path": None, "package": None}


def _same(key: str, old: Any, new: Any) -> bool:
    """Whether a resume key agrees (the frost source by what it draws from, not where it lies;
    a spec on the fields both versions have: a field added later has its own key)."""
    if key == "frost":
        from corruptions.frost import same_frost

        return same_frost(old, new)
    if key == "spec" and isinstance(old, dict) and isinstance(new, dict):
        return all(old[k] == new[k] for k in old.keys() & new.keys())
    return old == new


def arrow_schema(table: str) -> Any:
    """The pyarrow schema of a table (ints int64, value float64, the rest strings)."""
    import pyarrow as pa

    def typ(c: str) -> Any:
        return pa.int64() if c in INT_COLUMNS else pa.float64() if c in FLOAT_COLUMNS else pa.string()

    return pa.schema([(c, typ(c)) for c in SCHEMAS[table]])


def empty_frame(table: str) -> pd.DataFrame:
    """An empty table with the schema's columns and dtypes."""
    return conform(pd.DataFrame({c: [] for c in SCHEMAS[table]}), table)


def conform(frame: pd.DataFrame | None, table: str) -> pd.DataFrame:
    """Order columns as the schema says and fix dtypes (ints int64, value float64, the rest pandas str)."""
    cols = SCHEMAS[table]
    if frame is None:
        frame = pd.DataFrame({c: [] for c in cols})
    missing = [c for c in cols if c not in frame.columns]
    if missing:
        raise ValueError(f"{table} table lacks column(s) {', '.join(missing)}")
    if tuple(frame.columns) == cols and all(_dtype_ok(c, frame[c].dtype) for c in cols):
        return frame if isinstance(frame.index, pd.RangeIndex) and frame.index.start == 0 \
            else frame.reset_index(drop=True)
    out = frame.loc[:, list(cols)].copy()
    for c in cols:
        s = out[c]
        if c in INT_COLUMNS:
            if s.dtype != "int64":
                out[c] = pd.to_numeric(s).astype("int64")
        elif c in FLOAT_COLUMNS:
            if s.dtype != "float64":
                out[c] = pd.to_numeric(s).astype("float64")
        elif not isinstance(s.dtype, pd.StringDtype):
            out[c] = s.astype("str")
    return out.reset_index(drop=True)


def _dtype_ok(col: str, dtype: Any) -> bool:
    if col in INT_COLUMNS:
        return dtype == "int64"
    if col in FLOAT_COLUMNS:
        return dtype == "float64"
    return isinstance(dtype, pd.StringDtype)


@dataclass
class CellResult:
    """Everything one finished (corruption, severity) cell produced, for all models."""

    corruption: str
    severity: int
    metrics: pd.DataFrame
    layers: pd.DataFrame | None = None
    samples: pd.DataFrame | None = None
    units: pd.DataFrame | None = None

    @property
    def key(self) -> tuple[str, int]:
        """(corruption, severity); ("clean", 0) for the clean cell."""
        return (self.corruption, int(self.severity))


def cell_dirname(corruption: str, severity: int) -> str:
    """Folder name of a cell part under ``cells/``."""
    return f"{corruption}__s{int(severity)}"


def _parse_cell_dirname(name: str) -> tuple[str, int] | None:
    base, sep, sev = name.rpartition("__s")
    if not sep or not base or not sev.isdigit():
        return None
    return base, int(sev)


def cell_order(corruptions: Sequence[str], severities: Sequence[int], clean: bool = True) -> list[tuple[str, int]]:
    """The canonical cell order: clean first, then corruptions in order, severities ascending."""
    head = [("clean", 0)] if clean else []
    return head + [(c, int(s)) for c in corruptions for s in sorted(int(x) for x in severities)]


_NONE = type(None)
#: JSON types of the manifest fields this package reads (any other field is free-form).
MANIFEST_FIELDS: dict[str, Any] = {
    "kind": str, "status": str, "run": str, "command": str, "started": str, "finished": str,
    "device": str, "git_commit": (str, _NONE), "seed": (int, _NONE), "config": dict,
    "versions": dict, "resumed": list,
}  # fmt: skip
CONFIG_FIELDS: dict[str, Any] = {
    "mode": str, "dataset": str, "dataset_name": str, "corruptions": list, "severities": list,
    "corruption_seed": (int, _NONE), "seed": (int, _NONE), "n_images": (int, _NONE),
    "limit": (int, _NONE), "preset": (str, _NONE), "probes": str, "batch_size": int, "clean": bool,
    "models": list, "activations": list, "amp": (str, _NONE), "world_size": int, "streams": int,
}  # fmt: skip


def read_manifest(path: str | Path) -> dict[str, Any] | None:
    """The manifest of a run folder, or None when there is none; a damaged one is a UserError.

    Damaged means unreadable, not JSON, or JSON of the wrong shape (the fields in
    :data:`MANIFEST_FIELDS` and :data:`CONFIG_FIELDS` must have their types).
    """
    p = Path(path) / MANIFEST
    if not p.is_file():
        return None
    manifest = read_json(p, "manifest")
    check_fields(manifest, MANIFEST_FIELDS, f"manifest {p}")
    check_fields(manifest.get("config", {}), CONFIG_FIELDS, f"manifest {p} config")
    return manifest


def is_complete(path: str | Path) -> bool:
    """True for a finished run folder: manifest status complete and metrics.parquet present."""
    m = read_manifest(path)
    return bool(m) and m.get("status") == STATUS_COMPLETE and (Path(path) / "metrics.parquet").is_file()


class RunStore:
    """Writer of one run folder: ``begin`` -> ``write_cell`` per finished cell -> ``finalize``."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.cells_dir = self.path / CELLS_DIR
        # the small tables of cells written by this process (identical to their parquet parts)
        self._cache: dict[tuple[str, int], dict[str, pd.DataFrame]] = {}

    # ------------------------------------------------------------------ lifecycle
    def begin(self, manifest: dict[str, Any], *, resume: bool = False) -> str:
        """Open the folder for writing; returns "new", "resume" or "complete" (nothing to do).

        Without ``resume`` an existing run folder is refused (one line, exit 2), so results
        are never mixed; with it, the stored config must match ``manifest["config"]``.
        The folder is locked for this process (another writer is refused) until
        :meth:`release` (or :meth:`finalize`, or the end of :meth:`guard`).
        """
        from robustbench_act.inputs import check_out_folder

        check_out_folder(self.path)
        created = not self.path.exists()
        make_folder(self.path)
        lock_folder(self.path)
        try:
            return self._open(manifest, resume)
        except BaseException:
            self.release()
            if created:
                remove_if_empty(self.path)
            raise

    def release(self) -> None:
        """Give up this process's lock on the folder (removes the lock file)."""
        unlock_folder(self.path)

    @contextmanager
    def guard(self, active: bool = True) -> Iterator[None]:
        """While a run is written: the lock is released at the end, and a run that failed before
        finishing any cell is removed again (:meth:`abandon`). ``active=False``: a no-op."""
        if not active:
            yield
            return
        try:
            yield
        except BaseException:
            self.abandon()
            raise
        finally:
            self.release()

    def abandon(self) -> None:
        """Remove an unfinished run that holds nothing yet: no finished cell, no other file."""
        if self.done_cells() or not self.path.is_dir():
            return
        ours = {MANIFEST, CELLS_DIR}
        if any(p.name not in ours and not p.name.startswith(".") for p in self.path.iterdir()):
            return
        try:
            m = read_manifest(self.path)
        except UserError:  # not ours to remove
            return
        if m is None or m.get("status") != STATUS_INCOMPLETE:
            return
        shutil.rmtree(self.cells_dir, ignore_errors=True)
        (self.path / MANIFEST).unlink(missing_ok=True)
        self.release()
        remove_if_empty(self.path)

    def _open(self, manifest: dict[str, Any], resume: bool) -> str:
        existing = read_manifest(self.path)
        if existing is None:
            if any(p for p in self.path.iterdir() if not p.name.startswith(".")):
                raise UserError(f"--out {self.path} exists and is not an actbench results folder; "
                                "choose an empty or new folder")
            self._write_manifest({**manifest, "status": STATUS_INCOMPLETE})
            return "new"
        if existing.get("kind", "evaluation") != "evaluation":
            raise UserError(f"--out {self.path} holds a {existing.get('kind')} output, not an evaluation run")
        complete = is_complete(self.path)
        if not resume:
            what = "a complete run" if complete else "an unfinished run (continue it with --resume)"
            raise UserError(f"--out {self.path} already holds {what}; choose another --out")
        old_cfg, new_cfg = existing.get("config", {}), manifest.get("config", {})
        if not complete and new_cfg.get("frost") and "frost" not in old_cfg:
            old_cfg = {**old_cfg, "frost": LEGACY_FROST}  # started before manifests named it
        if "streams" in new_cfg and "streams" not in old_cfg:
            old_cfg = {**old_cfg, "streams": LEGACY_STREAMS}
        diff = [k for k in RESUME_KEYS if k in old_cfg and k in new_cfg and not _same(k, old_cfg[k], new_cfg[k])]
        if diff:
            k = diff[0]
            hint = {"frost": " (ACTBENCH_FROST_DIR=procedural or a folder picks the frost source)",
                    "streams": " (--streams picks the random-stream version)"}.get(k, "")  # fmt: skip
            raise UserError(f"--resume: {self.path} was run with {k}={old_cfg[k]!r}, not {new_cfg[k]!r}; "
                            f"use the same options or another --out{hint}")
        if complete:
            return "complete"
        kept = {k: existing[k] for k in ("started", "run") if k in existing}
        self._write_manifest({**manifest, **kept, "status": STATUS_INCOMPLETE,
                              "resumed": [*existing.get("resumed", []), manifest.get("started")]})
        return "resume"

    def _write_manifest(self, manifest: dict[str, Any]) -> None:
        atomic_write_json(self.path / MANIFEST, {"kind": "evaluation", **manifest})

    def write_cell(self, cell: CellResult) -> Path:
        """Flush one finished cell atomically (a temporary folder renamed onto ``cells/<cell>``)."""
        make_folder(self.cells_dir)
        final = self.cells_dir / cell_dirname(cell.corruption, cell.severity)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=self.cells_dir))
        os.chmod(tmp, folder_mode())  # mkdtemp makes it private; a cell is an ordinary folder
        kept: dict[str, pd.DataFrame] = {}
        try:
            for table in TABLES:
                frame = getattr(cell, table)
                if frame is None or len(frame) == 0:
                    continue
                frame = conform(frame, table)
                frame.to_parquet(tmp / f"{table}.parquet", index=False, **PARQUET_OPTIONS)
                if table != "samples":
                    kept[table] = frame
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self._cache[cell.key] = kept
        return final

    def done_cells(self) -> set[tuple[str, int]]:
        """Cells already flushed (complete parts only; temporary folders are ignored)."""
        if not self.cells_dir.is_dir():
            return set()
        out = set()
        for p in self.cells_dir.iterdir():
            if p.is_dir() and not p.name.startswith("."):
                key = _parse_cell_dirname(p.name)
                if key is not None:
                    out.add(key)
        return out

    def read_cells(self, order: Sequence[tuple[str, int]] | None = None,
                   tables: Sequence[str] = TABLES) -> dict[str, pd.DataFrame]:
        """Concatenate the flushed parts per table, in ``order`` (else clean first, then by name)."""
        done = self.done_cells()
        if order is None:
            order = sorted(done, key=lambda k: (k[0] != "clean", k[0], k[1]))
        frames: dict[str, list[pd.DataFrame]] = {t: [] for t in tables}
        for key in order:
            if key not in done:
                continue
            d = self.cells_dir / cell_dirname(*key)
            cached = self._cache.get(key)
            for table in tables:
                if cached is not None and table != "samples":
                    if table in cached:
                        frames[table].append(cached[table])
                    continue
                p = d / f"{table}.parquet"
                if p.is_file():
                    with reading(p, "cell table"):
                        frames[table].append(pd.read_parquet(p))
        return {t: conform(pd.concat(f, ignore_index=True), t) if f else empty_frame(t)
                for t, f in frames.items()}

    def finalize(self, manifest: dict[str, Any], *, order: Sequence[tuple[str, int]] | None = None,
                 summarise_fn: Any = None) -> pd.DataFrame:
        """Consolidate the cell parts into the final tables; manifest "complete"; metrics.parquet last.

        ``summarise_fn(metrics)`` makes summary.csv (default: ``metrics.summarise``, no baseline).
        Returns the consolidated metrics table.
        """
        from robustbench_act.manifest import now_iso
        from robustbench_act.metrics import summarise

        if order is None:
            cfg = manifest.get("config", {})
            if "corruptions" in cfg and "severities" in cfg:
                order = cell_order(cfg["corruptions"], cfg["severities"])
        missing = [k for k in (order or []) if k not in self.done_cells()]
        if order is not None and ("clean", 0) in missing and not manifest.get("config", {}).get("clean", True):
            missing.remove(("clean", 0))
        if missing:
            raise RuntimeError(f"cannot finalise {self.path}: {len(missing)} cell(s) missing, e.g. {missing[0]}")
        tables = self.read_cells(order, tables=("metrics", "layers", "units"))
        self._write_samples(order)
        for table in ("layers", "units"):
            atomic_write_frame(self.path / f"{table}.parquet", tables[table])
        summ = (summarise_fn or summarise)(tables["metrics"])
        atomic_write_frame(self.path / "summary.csv", summ)
        atomic_write_frame(self.path / "metrics.csv", tables["metrics"])
        done = {**manifest, "status": STATUS_COMPLETE, "finished": now_iso()}
        self._write_manifest(done)
        atomic_write_frame(self.path / "metrics.parquet", tables["metrics"])
        shutil.rmtree(self.cells_dir, ignore_errors=True)
        self.release()
        return tables["metrics"]

    def _write_samples(self, order: Sequence[tuple[str, int]] | None) -> None:
        """Stream the per-sample parts into samples.parquet one row group per cell (low memory)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        done = self.done_cells()
        keys = order if order is not None else sorted(done, key=lambda k: (k[0] != "clean", k[0], k[1]))
        schema = arrow_schema("samples")

        def write(tmp: Path) -> None:
            with pq.ParquetWriter(tmp, schema, **PARQUET_OPTIONS) as writer:
                for key in keys:
                    p = self.cells_dir / cell_dirname(*key) / "samples.parquet"
                    if key in done and p.is_file():
                        with reading(p, "cell table"):
                            part = conform(pd.read_parquet(p), "samples")
                        writer.write_table(pa.Table.from_pandas(part, schema=schema, preserve_index=False))

        atomic_write(self.path / "samples.parquet", write)


# ----------------------------------------------------------------------------- reading


@dataclass
class Run:
    """One or several runs' tables (concatenated) and manifests."""

    metrics: pd.DataFrame
    layers: pd.DataFrame
    samples: pd.DataFrame
    units: pd.DataFrame
    manifest: dict[str, Any]
    manifests: list[dict[str, Any]] = field(default_factory=list)
    paths: list[Path] = field(default_factory=list)

    def summary(self, *, baseline: str | pd.DataFrame | None = None, alexnet: bool = False) -> pd.DataFrame:
        """``metrics.summarise`` of this run's metrics."""
        from robustbench_act.metrics import summarise

        return summarise(self.metrics, baseline=baseline, alexnet=alexnet)


def _read_table(path: Path, table: str) -> pd.DataFrame:
    p = path / f"{table}.parquet"
    if not p.is_file():
        return empty_frame(table)
    with reading(p, "results table"):  # a damaged file is the user's to fix: one line
        return conform(pd.read_parquet(p), table)


def load_run(path: str | Path, *, allow_incomplete: bool = False, samples: bool = True) -> Run:
    """Read one run folder; an unfinished one is refused unless ``allow_incomplete`` (cell parts)."""
    p = Path(path).expanduser()
    if p.is_file() and p.name in (MANIFEST, "metrics.parquet"):
        p = p.parent
    if not p.is_dir():
        raise UserError(f"results folder not found: {p}")
    manifest = read_manifest(p)
    if manifest is None:
        raise UserError(f"{p} is not a results folder (no {MANIFEST})")
    if manifest.get("kind", "evaluation") != "evaluation":
        raise UserError(f"{p} is not a results folder: its {MANIFEST} describes a {manifest['kind']} output")
    if not is_complete(p):
        if not allow_incomplete:
            raise UserError(f"{p} holds an incomplete run ({len(RunStore(p).done_cells())} cells "
                            "finished); finish it with `actbench run --resume --out` and the same options")
        tables = RunStore(p).read_cells()
        if not samples:
            tables["samples"] = empty_frame("samples")
    else:
        tables = {t: (_read_table(p, t) if (t != "samples" or samples) else empty_frame(t)) for t in TABLES}
        if not samples and (p / "samples.parquet").is_file():  # not read now: at least readable later
            import pyarrow.parquet as pq

            with reading(p / "samples.parquet", "results table"):
                pq.ParquetFile(p / "samples.parquet").close()
    return Run(manifest=manifest, manifests=[manifest], paths=[p], **tables)


def _is_run_folder(d: Path) -> bool:
    man = read_manifest(d)
    return bool(man) and (man.get("kind") == "evaluation" or (d / "metrics.parquet").is_file())


def find_runs(root: str | Path) -> list[Path]:
    """Run folders at or below ``root`` (an evaluation manifest, or a manifest + metrics.parquet)."""
    r = Path(root).expanduser()
    if _is_run_folder(r):
        return [r]
    return [m.parent for m in sorted(r.rglob(MANIFEST)) if _is_run_folder(m.parent)]


def load_runs(paths: str | Path | Iterable[str | Path], *, samples: bool = True) -> Run:
    """Concatenate several runs; a sweep folder is searched recursively (unfinished runs skipped)."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    runs: list[Run] = []
    for raw in paths:
        p = Path(raw).expanduser()
        if not p.exists():
            raise UserError(f"results folder not found: {p}")
        if read_manifest(p) is not None:
            runs.append(load_run(p, samples=samples))
            continue
        found = find_runs(p)
        if not found:
            raise UserError(f"no results under {p} (no run folder with {MANIFEST} found)")
        for d in found:
            if not is_complete(d):
                warnings.warn(f"skipping incomplete run {d}", stacklevel=2)
                continue
            runs.append(load_run(d, samples=samples))
    if not runs:
        raise UserError("no complete run among the given folders")
    tables = {t: pd.concat([getattr(r, t) for r in runs], ignore_index=True) for t in TABLES}
    manifests = [m for r in runs for m in r.manifests]
    manifest = manifests[0] if len(manifests) == 1 else {"runs": manifests}
    return Run(manifest=manifest, manifests=manifests, paths=[q for r in runs for q in r.paths], **tables)
