"""Sweeps: train then evaluate every (model, activation, order, seed) cell, resumably.

Layout::

    DIR/sweep.json                      the sweep's options, versions, last status table
    DIR/<model>-<activation>-<order>-s<seed>/train/   checkpoint, train_log.csv, state.pt
    DIR/<model>-<activation>-<order>-s<seed>/eval/    a results-store run (metrics.parquet ...)
    DIR/<model>-<activation>-<order>-s<seed>/clean/   with ``eval_limit``: clean accuracy on the
                                                      whole test set (eval/ holds the subset)
    DIR/metrics.parquet, DIR/metrics.csv              every finished cell's metrics, concatenated
                                                      (the ``run`` column names the cell)
    DIR/summary.csv                                   metrics.summarise() of the combined table

Cells are listed sorted by (model, activation, order, seed); with ``--shard i/n`` cell k
belongs to shard ``k % n``, so n independent jobs (any machines sharing DIR) split the work
without talking to each other.  A shard runs its cells seed by seed (every activation at
the lowest seed first), so an interrupted sweep leaves complete seeds, not complete rows.  A finished cell (complete evaluation) is skipped, a cell
with a finished checkpoint is only evaluated, and a cell with ``train/state.pt`` resumes
training where it stopped.  ``parallel=K`` runs K cells at once in separate processes on
the same device.  The combined table covers every finished cell found in DIR when the
sweep ends (run the sweep once more, everything skipped, to refresh it after sharded jobs).

Evaluation uses the same corruption seed for every cell (``corruption_seed``), so every
model sees the same corrupted images and cells compare pairwise.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from robustbench_act.errors import UserError
from robustbench_act.parsing import parse_seeds  # noqa: F401  (part of this API)

TRAIN_DIR = "train"
EVAL_DIR = "eval"
CLEAN_DIR = "clean"
SWEEP_MANIFEST = "sweep.json"
STATUSES = ("done", "trained", "training", "diverged", "pending")


@dataclass(frozen=True, order=True)
class Cell:
    """One sweep cell: a model with one activation, order and seed."""

    model: str
    activation: str
    order: str
    seed: int

    @property
    def name(self) -> str:
        """Folder name ``<model>-<activation>-<order>-s<seed>`` (unsafe characters replaced)."""
        return f"{slug(self.model)}-{slug(self.activation)}-{slug(self.order)}-s{self.seed}"


@dataclass
class SweepOptions:
    """Everything a sweep cell needs (picklable: sent to worker processes as is)."""

    out: str
    dataset: str = "cifar10"
    recipe: str | None = None
    train_overrides: dict[str, Any] = dataclasses.field(default_factory=dict)
    config_file: str | None = None
    corruptions: list[str] = dataclasses.field(default_factory=list)
    severities: list[int] = dataclasses.field(default_factory=lambda: [1, 2, 3, 4, 5])
    corruption_seed: int = 0
    probes: str = "none"
    limit: int | None = None  # first N training images and first N test images
    # first N test images for the corrupted cells and probes (class-balanced prefix); the
    # clean accuracy of every cell is then also measured on the whole test set (clean/)
    eval_limit: int | None = None
    eval_batch_size: int = 512
    device: str = "auto"
    amp: str | None = None  # evaluation autocast
    root: str | None = None
    download: bool = False
    preset: str | None = None
    threads: int | None = None  # torch threads per cell process (parallel runs)
    frost_dir: str | None = None  # frost photographs (or "procedural"); None: the default order
    streams: int | None = None  # random-stream version of the corruptions; None: the default


def slug(text: str) -> str:
    """A folder-safe form of a name or spec: 'la_silu(alpha=0.1)' -> 'la_silu_alpha_0.1'."""
    s = re.sub(r"[^A-Za-z0-9_.]+", "_", str(text)).strip("_.")
    return s or "x"


def parse_shard(spec: str | None) -> tuple[int, int]:
    """'i/n' -> (i, n) with 0 <= i < n; None -> (0, 1)."""
    if spec is None:
        return 0, 1
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", spec)
    if not m:
        raise UserError(f"bad shard {spec!r}: use i/n, e.g. 0/4")
    i, n = int(m.group(1)), int(m.group(2))
    if n < 1 or not 0 <= i < n:
        raise UserError(f"bad shard {spec!r}: need 0 <= i < n")
    return i, n


SLURM_VARS = ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_MIN",
              "SLURM_ARRAY_TASK_MAX", "SLURM_ARRAY_TASK_STEP")  # fmt: skip


def shard_from_slurm(env: Mapping[str, str] | None = None) -> tuple[tuple[int, int], str] | None:
    """(shard, where it came from) of a Slurm array task, or None outside one.

    Task k of an array ``--array=MIN-MAX:STEP`` is shard ``(k - MIN) / STEP`` of
    ``SLURM_ARRAY_TASK_COUNT`` (else ``(MAX - MIN) / STEP + 1``), so ``sbatch --array=0-7``
    (or ``1-8``) runs the 8 shards without a --shard in the job script.
    """
    env = os.environ if env is None else env
    if not env.get("SLURM_ARRAY_TASK_ID"):
        return None
    try:
        vals = {k: int(env[k]) for k in SLURM_VARS if env.get(k)}
    except ValueError:
        raise UserError(f"unreadable Slurm array variables: "
                        f"{', '.join(f'{k}={env[k]}' for k in SLURM_VARS if env.get(k))}") from None
    task, low = vals["SLURM_ARRAY_TASK_ID"], vals.get("SLURM_ARRAY_TASK_MIN", 0)
    step = vals.get("SLURM_ARRAY_TASK_STEP", 1)
    count = vals.get("SLURM_ARRAY_TASK_COUNT")
    if count is None and "SLURM_ARRAY_TASK_MAX" in vals:
        count = (vals["SLURM_ARRAY_TASK_MAX"] - low) // step + 1
    used = ", ".join(f"{k}={vals[k]}" for k in SLURM_VARS if k in vals)
    if count is None or step < 1 or (task - low) % step or not 0 <= (task - low) // step < count:
        raise UserError(f"cannot derive --shard from the Slurm array ({used}); give --shard i/n")
    return ((task - low) // step, count), used


def plan_cells(models: Sequence[str], activations: Sequence[str], orders: Sequence[str],
               seeds: Sequence[int]) -> list[Cell]:  # fmt: skip
    """Every combination, sorted (the order shards are cut from); duplicates and bad names refused.

    An activation written ``ACT@ORDER`` (e.g. ``tanh@swapped``) is trained in that order
    only, instead of every order of ``orders``: one sweep holds e.g. six activations in
    the conventional order plus tanh in the swapped one.
    """
    from robustbench_act.activations import canonical_spec
    from robustbench_act.models import check_model_name, check_order

    if not models or not activations or not orders or not seeds:
        raise UserError("a sweep needs at least one model, activation, order and seed")
    for m in models:
        check_model_name(m)
    for o in orders:
        check_order(o)
    pairs = []
    for a in activations:
        act, _, order = a.rpartition("@") if "@" in a else (a, "", "")
        if order:
            check_order(order.strip())
        pairs += [(canonical_spec(act.strip()), o) for o in ([order.strip()] if order else orders)]
    cells = sorted({Cell(m, a, o, int(s)) for m in models for a, o in pairs for s in seeds})
    names = [c.name for c in cells]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise UserError(f"two sweep cells map to the same folder {dup!r}; rename an activation spec")
    return cells


def shard_cells(cells: Sequence[Cell], index: int, count: int) -> list[Cell]:
    """Cell k of the sorted list goes to shard k % count."""
    return [c for k, c in enumerate(cells) if k % count == index]


def cell_status(out: str | Path, cell: Cell) -> str:
    """done (evaluated) | trained (checkpoint, no complete evaluation) | diverged (training loss
    became NaN/inf: a result, not retried) | training (state.pt) | pending."""
    from robustbench_act.checkpoint import is_checkpoint
    from robustbench_act.results import is_complete

    d = Path(out) / cell.name
    if is_complete(d / EVAL_DIR):  # with eval_limit, clean/ is written before eval/
        return "done"
    if _trained(d / TRAIN_DIR) and is_checkpoint(d / TRAIN_DIR):
        return "trained"
    if _train_status(d / TRAIN_DIR) == "diverged":
        return "diverged"
    if (d / TRAIN_DIR / "state.pt").is_file():
        return "training"
    return "pending"


def _train_status(train_dir: Path) -> str | None:
    import json

    p = train_dir / "manifest.json"
    try:
        return json.loads(p.read_text(encoding="utf-8")).get("status") if p.is_file() else None
    except (OSError, ValueError):
        return None


def _trained(train_dir: Path) -> bool:
    return _train_status(train_dir) == "finished"


def status_table(out: str | Path, cells: Sequence[Cell], shard: tuple[int, int] = (0, 1)) -> pd.DataFrame:
    """One row per cell: name, model, activation, order, seed, shard, status."""
    rows = []
    for k, c in enumerate(cells):
        rows.append({"cell": c.name, "model": c.model, "activation": c.activation, "order": c.order,
                     "seed": c.seed, "shard": k % shard[1], "status": cell_status(out, c)})  # fmt: skip
    return pd.DataFrame(rows, columns=["cell", "model", "activation", "order", "seed", "shard", "status"])


# ----------------------------------------------------------------------------- one cell


def run_cell(cell: Cell, opts: SweepOptions, *, progress: bool = False) -> dict[str, Any]:
    """Train (or resume, or skip) and evaluate (or resume, or skip) one cell; returns a row.

    The cell's folder is locked while this process works on it: a cell another process is
    working on is skipped with status "busy" (two sweeps on one folder share the work).
    """
    from robustbench_act.fileio import FolderLock, make_folder

    d = make_folder(Path(opts.out) / cell.name)
    lock = FolderLock(d)
    try:
        lock.acquire()
    except UserError as exc:
        return {"cell": cell.name, "status": "busy", "action": f"skipped: {exc}".split(";")[0]}
    try:
        return _run_cell(cell, opts, progress=progress)
    finally:
        lock.release()


def _run_cell(cell: Cell, opts: SweepOptions, *, progress: bool = False) -> dict[str, Any]:
    import torch

    from corruptions.frost import frost_images
    from corruptions.streams import using_streams

    if opts.threads:
        torch.set_num_threads(opts.threads)
    with frost_images(opts.frost_dir), using_streams(opts.streams):
        return _cell_work(cell, opts, progress=progress)


def _cell_work(cell: Cell, opts: SweepOptions, *, progress: bool) -> dict[str, Any]:
    from robustbench_act.checkpoint import is_checkpoint, load_checkpoint
    from robustbench_act.data import load_dataset
    from robustbench_act.pipeline import run_models
    from robustbench_act.train import make_config, train_model

    t0 = time.perf_counter()
    d = Path(opts.out) / cell.name
    tdir, edir = d / TRAIN_DIR, d / EVAL_DIR
    row: dict[str, Any] = {"cell": cell.name, "status": cell_status(opts.out, cell)}
    if row["status"] == "done":
        row["action"] = "skipped"
        return row
    from robustbench_act.train import default_recipe

    recipe = opts.recipe or default_recipe(opts.dataset, None)
    overrides = {**opts.train_overrides, "seed": cell.seed, "limit": opts.limit}
    if opts.device != "auto":
        overrides["device"] = opts.device
    cfg = make_config(recipe, config_file=opts.config_file, **overrides)
    actions = []
    if not (_trained(tdir) and is_checkpoint(tdir)):
        actions.append("resumed training" if (tdir / "state.pt").is_file() else "trained")
        train_model(cell.model, dataset=opts.dataset, out_dir=tdir, config=cfg, activation=cell.activation,
                    order=cell.order, root=opts.root, download=opts.download, resume=True,
                    progress=progress, distributed=False)  # fmt: skip
    net, meta = load_checkpoint(tdir, device=_device(opts.device))
    size = (meta.get("input_size") or [None])[-1]  # evaluate at the size the model was trained at
    test = load_dataset(opts.dataset, split="test", root=opts.root, download=opts.download,
                        limit=_eval_limit(opts), image_size=int(size) if size else None)  # fmt: skip
    info = {cell.name: {"model": cell.model, "activation": cell.activation, "order": cell.order,
                        "seed": cell.seed}}  # fmt: skip
    config = {
        "mode": "sweep-cell", "dataset": opts.dataset, "dataset_name": getattr(test, "name", opts.dataset),
        "corruptions": list(opts.corruptions), "severities": list(opts.severities),
        "corruption_seed": opts.corruption_seed, "preset": opts.preset, "limit": opts.limit,
        "n_images": len(test), "batch_size": opts.eval_batch_size, "probes": opts.probes, "amp": opts.amp,
        "models": [{**info[cell.name]}], "clean": True, "checkpoint": str(tdir), "cell": cell.name,
        "train": meta.get("train_config"),
    }  # fmt: skip
    full_clean = _full_clean(cell, opts, net, info, meta, config, size) if opts.eval_limit else None
    actions.append("evaluated" if not (edir / "manifest.json").is_file() else "resumed evaluation")
    outcome = run_models({cell.name: net}, info, test, out=edir, config=config,
                         corruptions=opts.corruptions, severities=opts.severities, probes=opts.probes,
                         seed=opts.corruption_seed, batch_size=opts.eval_batch_size,
                         device=_device(opts.device), amp=opts.amp, resume=True, preset=opts.preset,
                         normalization=_preprocessing(cell.name, net, meta, test, config))  # fmt: skip
    row.update(status="done", action=" + ".join(actions), seconds=time.perf_counter() - t0)
    if full_clean is not None:
        row["clean_acc_full"] = full_clean
    clean = outcome.metrics
    if len(clean):
        acc = clean[(clean.corruption == "clean") & (clean.metric == "top1")]
        if len(acc):
            row["clean_acc"] = float(acc.value.iloc[0])
    return row


def _preprocessing(name: str, net: Any, meta: dict[str, Any], test: Any, config: dict[str, Any]) -> dict[str, Any]:
    """The cell model's input preprocessing (recorded in ``config``) as run_models' normalization."""
    from robustbench_act.checkpoint_eval import checkpoint_normalization

    cfg = checkpoint_normalization({name: net}, [meta], test)
    config["preprocessing"] = {k: c.as_dict() for k, c in cfg.items()}
    return {k: c.module() for k, c in cfg.items()}


def _eval_limit(opts: SweepOptions) -> int | None:
    limits = [v for v in (opts.limit, opts.eval_limit) if v is not None]
    return min(limits) if limits else None


def _full_clean(cell: Cell, opts: SweepOptions, net: Any, info: dict[str, Any], meta: dict[str, Any],
                config: dict[str, Any], size: Any) -> float | None:  # fmt: skip
    """Clean accuracy of the cell on the whole test set (``limit`` aside), into ``clean/``."""
    from robustbench_act.data import load_dataset
    from robustbench_act.pipeline import run_models

    test = load_dataset(opts.dataset, split="test", root=opts.root, download=opts.download,
                        limit=opts.limit, image_size=int(size) if size else None)  # fmt: skip
    cfg = {**config, "mode": "sweep-cell-clean", "corruptions": [], "probes": "none",
           "limit": opts.limit, "n_images": len(test)}  # fmt: skip
    outcome = run_models({cell.name: net}, info, test, out=Path(opts.out) / cell.name / CLEAN_DIR,
                         config=cfg, corruptions=[], severities=list(opts.severities), probes="none",
                         seed=opts.corruption_seed, batch_size=opts.eval_batch_size,
                         device=_device(opts.device), amp=opts.amp, resume=True,
                         normalization=_preprocessing(cell.name, net, meta, test, config))  # fmt: skip
    m = outcome.metrics
    acc = m[(m.corruption == "clean") & (m.metric == "top1")] if len(m) else m
    return float(acc.value.iloc[0]) if len(acc) else None


def _device(device: str) -> Any:
    from robustbench_act.train import resolve_device

    return resolve_device(device)


def _cell_worker(cell: Cell, opts: SweepOptions) -> dict[str, Any]:
    """Process-pool entry: one cell, errors returned as a row (the sweep goes on)."""
    try:
        return run_cell(cell, opts, progress=False)
    except UserError as exc:
        return {"cell": cell.name, "status": "failed", "action": "failed", "error": str(exc)}


# ----------------------------------------------------------------------------- the sweep


def combine(out: str | Path, cells: Sequence[Cell]) -> pd.DataFrame:
    """Concatenate the metrics of every finished cell (``run`` = cell name); write DIR/metrics.*."""
    from robustbench_act.fileio import atomic_write_frame
    from robustbench_act.results import conform, empty_frame, is_complete

    frames = []
    for c in cells:
        edir = Path(out) / c.name / EVAL_DIR
        if is_complete(edir):
            from robustbench_act.fileio import reading

            with reading(edir / "metrics.parquet", "results table"):
                f = pd.read_parquet(edir / "metrics.parquet")
            f["run"] = c.name
            frames.append(f)
    table = conform(pd.concat(frames, ignore_index=True), "metrics") if frames else empty_frame("metrics")
    if frames:
        from robustbench_act.metrics import summarise

        atomic_write_frame(Path(out) / "metrics.csv", table)
        atomic_write_frame(Path(out) / "summary.csv", summarise(table))
        atomic_write_frame(Path(out) / "metrics.parquet", table)
    return table


def check_frost_source(out: Path, cells: Sequence[Cell], corruptions: Sequence[str]) -> None:
    """Refuse to go on with a sweep whose evaluated cells used another frost source than now.

    Cells evaluated before manifests named it count as procedural (the default then).
    Without this, installing imagecorruptions mid-sweep would mix frost photographs and
    the procedural texture across the cells of one comparison.
    """
    from corruptions.frost import same_frost
    from robustbench_act.pipeline import frost_provenance
    from robustbench_act.results import LEGACY_FROST, read_manifest

    now = frost_provenance(corruptions)
    if now is None:
        return
    for c in cells:
        man = read_manifest(out / c.name / EVAL_DIR)
        cfg = (man or {}).get("config") or {}
        if man is None or "frost" not in (cfg.get("corruptions") or []):
            continue
        before = cfg.get("frost") or LEGACY_FROST
        if not same_frost(before, now):
            raise UserError(f"sweep {out}: cell {c.name} was evaluated with frost from "
                            f"{before.get('path') or before['source']}, now it would be "
                            f"{now.get('path') or now['source']}; set ACTBENCH_FROST_DIR (a folder, or "
                            "procedural) to the source the sweep started with")


def check_stream_version(out: Path, cells: Sequence[Cell], streams: int | None) -> None:
    """Refuse to go on with a sweep whose evaluated cells used another random-stream version.

    Cells evaluated before manifests named it count as version 1. A study started with
    version 1 goes on with ``--streams 1``; mixing versions would compare cells that saw
    different noise draws.
    """
    from robustbench_act.results import LEGACY_STREAMS, read_manifest
    from robustbench_act.specs import _streams

    now = _streams(streams)
    for c in cells:
        man = read_manifest(out / c.name / EVAL_DIR)
        if man is None:
            continue
        before = ((man.get("config") or {}).get("streams")) or LEGACY_STREAMS
        if before != now:
            raise UserError(f"sweep {out}: cell {c.name} was evaluated with random-stream version {before}, "
                            f"now it would be {now}; add --streams {before} to go on with this sweep")


def check_sweep_folder(out: str | Path) -> None:
    """A sweep folder is new, empty or a sweep: one holding a run or a training output is refused."""
    p = Path(out)
    if (p / "manifest.json").is_file():
        raise UserError(f"--out {p} holds a run or training output (manifest.json), not a sweep; "
                        "choose another --out")


def run_sweep(
    cells: Sequence[Cell],
    opts: SweepOptions,
    *,
    shard: tuple[int, int] = (0, 1),
    parallel: int = 1,
    dry_run: bool = False,
    progress: bool = True,
    echo: Callable[[str], None] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Run this shard's cells (``parallel`` at a time); returns (status table, combined metrics)."""
    from robustbench_act.fileio import atomic_write_json, make_folder
    from robustbench_act.manifest import base_manifest

    say = echo or (lambda s: print(s, file=sys.stderr, flush=True))
    check_sweep_folder(opts.out)
    table = status_table(opts.out, cells, shard)
    mine = shard_cells(cells, *shard)
    if dry_run:
        return table, pd.DataFrame()
    if parallel < 1:
        raise UserError(f"--parallel must be at least 1, got {parallel}")
    out = Path(opts.out)
    check_frost_source(out, cells, opts.corruptions)
    check_stream_version(out, cells, opts.streams)
    make_folder(out)
    manifest = {
        **base_manifest(seed=None, config=dataclasses.asdict(opts), device=None), "kind": "sweep",
        "cells": [c.name for c in cells], "shard": list(shard), "parallel": parallel,
    }  # fmt: skip
    atomic_write_json(out / SWEEP_MANIFEST, manifest)
    todo = sorted((c for c in mine if cell_status(opts.out, c) not in ("done", "diverged")),
                  key=lambda c: (c.seed, c.model, c.activation, c.order))
    diverged = [c.name for c in mine if cell_status(opts.out, c) == "diverged"]
    say(f"sweep: {len(cells)} cells, {len(mine)} in shard {shard[0]}/{shard[1]}, "
        f"{len(mine) - len(todo) - len(diverged)} already done, {len(diverged)} diverged (not retried; "
        f"delete their train/ to retry), {len(todo)} to run")  # fmt: skip
    rows: list[dict[str, Any]] = []
    if parallel == 1 or len(todo) <= 1:
        for k, c in enumerate(todo, 1):
            say(f"[{k}/{len(todo)}] {c.name}: {cell_status(opts.out, c)}")
            try:
                r = run_cell(c, opts, progress=progress)
            except UserError as exc:
                r = {"cell": c.name, "status": "failed", "action": "failed", "error": str(exc)}
            rows.append(r)
            say(_row_line(r))
    else:
        import concurrent.futures as cf
        import multiprocessing

        from robustbench_act.cpu import default_threads

        threads = opts.threads or default_threads(parallel)
        wopts = dataclasses.replace(opts, threads=threads)
        ctx = multiprocessing.get_context(_start_method())
        with cf.ProcessPoolExecutor(max_workers=parallel, mp_context=ctx) as pool:
            futs = {pool.submit(_cell_worker, c, wopts): c for c in todo}
            for fut in cf.as_completed(futs):
                r = fut.result()
                rows.append(r)
                say(_row_line(r))
    combined = combine(opts.out, cells)
    table = status_table(opts.out, cells, shard)
    manifest["status_counts"] = table.status.value_counts().to_dict()
    manifest["failed"] = [r for r in rows if r.get("status") == "failed"]
    atomic_write_json(out / SWEEP_MANIFEST, manifest)
    failed = manifest["failed"]
    if failed:
        first = failed[0]
        raise UserError(f"{len(failed)} sweep cell(s) failed, e.g. {first['cell']}: {first.get('error')}; "
                        f"finished cells are kept, re-run to retry")  # fmt: skip
    return table, combined


def _start_method() -> str:
    """fork on Linux while this process has not touched CUDA (workers start in milliseconds
    instead of re-importing torch), spawn otherwise (CUDA cannot be forked)."""
    import torch

    if sys.platform.startswith("linux") and not torch.cuda.is_initialized():
        return "fork"
    return "spawn"


def _row_line(r: dict[str, Any]) -> str:
    if r.get("status") == "failed":
        return f"  {r['cell']}: FAILED: {r.get('error')}"
    acc = f", clean accuracy {r['clean_acc']:.4g}" if "clean_acc" in r else ""
    if "clean_acc_full" in r and r["clean_acc_full"] is not None:
        acc += f" ({r['clean_acc_full']:.4g} on the whole test set)"
    secs = f" in {r['seconds']:.0f} s" if "seconds" in r else ""
    return f"  {r['cell']}: {r.get('action', r.get('status'))}{secs}{acc}"
