"""Evaluation engine: several models, clean + every (corruption, severity) cell, paired, streamed.

Loop order (the choice the design asks to state): **corruption -> batch -> severity**.
One pass over the data per corruption; for each batch the clean forward of every model
runs once (it is the clean cell's forward in the first pass, and the reference the probes
compare with), then each severity's corrupted batch is produced once, on the models'
device, from the raw uint8 batch with the samples' *global* indices, and every model sees
exactly those images (paired comparison). So each cell is a single pass over the data,
nothing larger than a batch is held, and the probes cost one clean forward per batch per
corruption, shared by its severities (with ``probes="none"`` the clean forward only runs
in the clean cell's pass). The cells of one corruption finish together at the end of its
pass and are handed to ``on_cell_done`` one by one (the results store flushes each).

Normalisation ((x/255 - mean) / std of the dataset) is applied after corruption by
:class:`Normalize`. Precomputed ``*-C`` datasets (a :class:`~robustbench_act.data.CDatasetFamily`)
are evaluated on their files; a ``clean=`` dataset aligned with them (same order) gives
the clean cell and the probes' reference.

Distributed (``torchrun``): the test set is split into contiguous shards without
padding; counts and the probes' streaming sums are all-reduced and per-sample rows
gathered, so the tables are the ones a single process writes (up to float summation order).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from robustbench_act import distributed as dist
from robustbench_act.cell_tables import _cell_frames
from robustbench_act.cpu import warn_if_emulated_bf16
from robustbench_act.errors import UserError
from robustbench_act.metrics import ClassificationSums
from robustbench_act.probes import SAMPLE_IDX, ModelProbe, check_level
from robustbench_act.results import (
    KEYS,
    CellResult,
    conform,
    empty_frame,
)

AMP_DTYPES = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16,
              "float16": torch.float16}  # fmt: skip
CLEAN = ("clean", 0)


class Normalize(nn.Module):
    """uint8 (or [0,1] float) images -> (x - mean) / std, per channel."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.register_buffer("mean", torch.tensor([float(m) for m in mean]).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor([float(s) for s in std]).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised float32 batch."""
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
        return (x - self.mean) / self.std


def _input_module(spec: Any) -> nn.Module:
    """A model's preprocessing: a module as given, or (mean, std) as :class:`Normalize`."""
    return spec if isinstance(spec, nn.Module) else Normalize(*spec)


@dataclass
class EvalTables:
    """The four tidy tables of an evaluation (see :mod:`robustbench_act.results`)."""

    metrics: pd.DataFrame
    layers: pd.DataFrame
    samples: pd.DataFrame
    units: pd.DataFrame


# ----------------------------------------------------------------------------- distributed


def _dist_info() -> tuple[int, int]:
    """(rank, world size); (0, 1) outside an initialised process group."""
    return dist.rank(), dist.world_size()


def is_main_process() -> bool:
    """True on rank 0 (or without distributed)."""
    return dist.is_main_process()


def init_distributed() -> tuple[int, int]:
    """Initialise torch.distributed from torchrun's environment (gloo on CPU, nccl on CUDA)."""
    dist.init_distributed()
    return _dist_info()


shard_range = dist.shard_range
_all_reduce_sum = dist.all_reduce_sum_many
_all_gather = dist.all_gather_object


# ----------------------------------------------------------------------------- data


def _is_family(ds: Any) -> bool:
    return hasattr(ds, "get") and callable(ds.get) and not hasattr(ds, "__getitem__")


def _dataset_attr(ds: Any, name: str, default: Any = None) -> Any:
    base = ds
    while not hasattr(base, name) and hasattr(base, "dataset"):
        base = base.dataset
    return getattr(base, name, default)


def _batches(ds: Any, start: int, stop: int, batch_size: int, num_workers: int = 0
             ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(uint8 images, labels, positions) batches of samples start..stop-1 of ``ds``."""
    images = getattr(ds, "images", None)
    labels = getattr(ds, "labels", None)
    if isinstance(images, torch.Tensor) and isinstance(labels, torch.Tensor):
        for b in range(start, stop, batch_size):
            e = min(b + batch_size, stop)
            yield images[b:e], labels[b:e], torch.arange(b, e, dtype=torch.int64)
        return
    sub = torch.utils.data.Subset(ds, list(range(start, stop)))
    loader = torch.utils.data.DataLoader(sub, batch_size=batch_size, shuffle=False,
                                         num_workers=num_workers)
    pos = start
    for x, y in loader:
        k = len(y)
        yield torch.as_tensor(x), torch.as_tensor(y), torch.arange(pos, pos + k, dtype=torch.int64)
        pos += k


# ----------------------------------------------------------------------------- engine


def _as_models(models: nn.Module | Mapping[Any, nn.Module]) -> dict[Any, nn.Module]:
    if isinstance(models, nn.Module):
        return {getattr(models, "actbench_key", "model"): models}
    if not isinstance(models, Mapping) or not models:
        raise UserError("evaluate needs a model or a non-empty mapping key -> model")
    return dict(models)


def _model_info(key: Any, model: nn.Module, info: Mapping[Any, Mapping[str, Any]] | None,
                run: str, seed: int, dataset_name: str) -> dict[str, Any]:
    meta = dict(getattr(model, "actbench_meta", {}) or {})
    row = {
        "run": run,
        "model": meta.get("model") or type(model).__name__,
        "activation": meta.get("activation") or str(key),
        "order": meta.get("order") or "conventional",
        "seed": meta.get("seed", seed),
        "dataset": dataset_name,
    }
    if info and key in info:
        row.update({k: v for k, v in info[key].items() if k in KEYS})
    row["seed"] = int(row["seed"]) if row["seed"] is not None else -1
    return row


def _autocast(device: torch.device, amp: str | None) -> contextlib.AbstractContextManager[Any]:
    if not amp or amp in ("none", "off", "fp32"):
        return contextlib.nullcontext()
    if amp not in AMP_DTYPES:
        from robustbench_act.errors import unknown

        raise unknown("--amp mode", str(amp), ["bf16", "fp16", "none"])
    if AMP_DTYPES[amp] == torch.bfloat16:
        warn_if_emulated_bf16(device.type)
    return torch.autocast(device_type=device.type, dtype=AMP_DTYPES[amp])


def _plan(corruptions: Sequence[str], severities: Sequence[int], skip: set[tuple[str, int]],
          clean: bool) -> list[tuple[str | None, list[int], bool]]:
    """Passes: (corruption or None, severities to do, whether the clean cell is recorded)."""
    passes: list[tuple[str | None, list[int], bool]] = []
    for c in corruptions:
        sevs = [s for s in severities if (c, s) not in skip]
        if sevs:
            passes.append((c, sevs, False))
    if clean and CLEAN not in skip:
        if passes:
            c, sevs, _ = passes[0]
            passes[0] = (c, sevs, True)
        else:
            passes.append((None, [], True))
    return passes


def evaluate(models: nn.Module | Mapping[Any, nn.Module], dataset: Any, *,
             corruptions: Sequence[str], severities: Sequence[int], probes: str = "all",
             seed: int = 0, batch_size: int = 256, device: str | torch.device | None = None,
             amp: str | None = None, limit: int | None = None, indices_offset: int = 0,
             progress: Callable[[dict[str, Any]], None] | None = None,
             on_cell_done: Callable[[CellResult], None] | None = None,
             skip_cells: Iterable[tuple[str, int]] = (), **kwargs: Any) -> pd.DataFrame:
    """Evaluate models on clean data and every (corruption, severity) cell; the metrics table.

    See :func:`evaluate_tables` (same arguments) for the per-layer, per-sample and
    per-unit tables too.
    """
    return evaluate_tables(models, dataset, corruptions=corruptions, severities=severities,
                           probes=probes, seed=seed, batch_size=batch_size, device=device, amp=amp,
                           limit=limit, indices_offset=indices_offset, progress=progress,
                           on_cell_done=on_cell_done, skip_cells=skip_cells, **kwargs).metrics


def evaluate_tables(models: nn.Module | Mapping[Any, nn.Module], dataset: Any, *,
                    corruptions: Sequence[str], severities: Sequence[int], probes: str = "all",
                    seed: int = 0, batch_size: int = 256, device: str | torch.device | None = None,
                    amp: str | None = None, limit: int | None = None, indices_offset: int = 0,
                    progress: Callable[[dict[str, Any]], None] | None = None,
                    on_cell_done: Callable[[CellResult], None] | None = None,
                    skip_cells: Iterable[tuple[str, int]] = (), run: str = "",
                    info: Mapping[Any, Mapping[str, Any]] | None = None, preset: str | None = None,
                    clean: Any = None, num_workers: int = 0, keep_tables: bool = True,
                    normalization: Mapping[Any, Any] | None = None,
                    ) -> EvalTables:
    """Evaluate ``models`` (one module or key -> module) in one pass per corruption; four tables.

    ``dataset``: (uint8 CHW image, label) items with ``name``, ``num_classes``, ``mean``,
    ``std`` attributes, a plain ``TensorDataset`` or ``(x, y)`` tensor pair (fed as [0, 1]
    images without normalisation, see :class:`~robustbench_act.data.TensorImages`), or a
    precomputed ``*-C`` family (``.get(corruption, severity)``), then ``clean`` is the
    aligned clean dataset (optional). ``seed`` keys the corruptions'
    random numbers; ``indices_offset`` is added to dataset positions to form the global
    sample indices. ``info[key]`` overrides the model-key columns (run, model, activation,
    order, seed, dataset). ``skip_cells`` are not computed (resume); ``on_cell_done`` gets
    each finished :class:`~robustbench_act.results.CellResult` on the main process;
    ``progress`` gets event dicts (``plan``, ``batch``, ``cell``). ``keep_tables=False``
    returns empty tables (everything went to ``on_cell_done``). ``normalization[key]`` is a
    model's own input preprocessing: (mean, std), or a module such as
    :class:`robustbench_act.preprocess.Preprocess` (resize, crop, normalise); models without
    an entry are normalised with the dataset's constants.
    """
    from robustbench_act.data import as_dataset

    check_level(probes)
    dataset = as_dataset(dataset)
    clean = as_dataset(clean) if clean is not None else None
    if batch_size < 1:
        raise UserError(f"--batch-size must be >= 1, got {batch_size}")
    if num_workers < 0:
        raise UserError(f"--workers must be >= 0, got {num_workers}")
    st = _setup(models, dataset, clean, list(corruptions), [int(v) for v in severities], probes=probes,
                device=device, amp=amp, info=info, run=run, seed=seed, normalization=normalization)  # fmt: skip
    skip = {(str(c), int(v)) for c, v in skip_cells}
    passes = _plan(st.corruptions, st.severities, skip, st.clean_ds is not None)
    cells_total = sum(len(v) + (1 if c else 0) for _, v, c in passes)
    out: dict[str, list[pd.DataFrame]] = {t: [] for t in ("metrics", "layers", "samples", "units")}
    emit = _Emitter(st, cells_total, out if keep_tables else None, on_cell_done, progress)
    if progress:
        progress({"event": "plan", "cells": cells_total, "passes": len(passes), "rank": st.rank,
                  "world": st.world})  # fmt: skip
    loop = _Loop(batch_size=batch_size, num_workers=num_workers, limit=limit, seed=seed,
                 indices_offset=indices_offset, preset=preset, progress=progress)  # fmt: skip
    try:
        with torch.inference_mode():
            for corr, sevs, rec_clean in passes:
                emit.cells(_run_pass(st, loop, corr, sevs, rec_clean), corr)
    finally:
        for pr in st.probe.values():
            pr.detach()
    tables = {t: (conform(pd.concat(f, ignore_index=True), t) if f else empty_frame(t))
              for t, f in out.items()}  # fmt: skip
    return EvalTables(**tables)


@dataclass
class _Setup:
    """Everything resolved once for an evaluation: models, inputs, dataset facts, probes."""

    mods: dict[Any, nn.Module]
    norms: dict[Any, nn.Module]
    dev: torch.device
    amp: str | None
    dataset: Any
    clean_ds: Any
    family: bool
    ds_name: str
    num_classes: int
    rows: dict[Any, dict[str, Any]]
    probes: str
    level: str
    probe: dict[Any, ModelProbe]
    corruptions: list[str]
    severities: list[int]
    rank: int
    world: int


@dataclass(frozen=True)
class _Loop:
    """Per-pass loop settings."""

    batch_size: int
    num_workers: int
    limit: int | None
    seed: int
    indices_offset: int
    preset: str | None
    progress: Callable[[dict[str, Any]], None] | None


@dataclass
class _Pass:
    """What one pass over the data accumulated (before the cross-process reduction)."""

    cell_keys: list[tuple[str, int]]
    rec_clean: bool
    sums: dict[tuple[Any, tuple[str, int]], ClassificationSums]
    samples: dict[tuple[Any, tuple[str, int]], list[torch.Tensor]]
    positions: list[torch.Tensor]


def _setup(models: Any, dataset: Any, clean: Any, corrs: list[str], sev: list[int], *, probes: str,
           device: Any, amp: str | None, info: Any, run: str, seed: int, normalization: Any) -> _Setup:  # fmt: skip
    mods = _as_models(models)
    for v in sev:
        if v < 1 or v > 5:
            raise UserError(f"severity must be 1..5, got {v}")
    first = next(iter(mods.values()))
    if device is None:
        p = next(first.parameters(), None)
        device = p.device if p is not None else torch.device("cpu")
    dev = torch.device(device)
    _autocast(dev, amp)  # validates the mode before any work
    family = _is_family(dataset)
    clean_ds = clean if family else dataset
    meta_ds = clean_ds if clean_ds is not None else dataset
    ds_name = str(_dataset_attr(meta_ds, "name", None) or _dataset_attr(dataset, "name", "dataset"))
    num_classes = int(_dataset_attr(meta_ds, "num_classes", 0) or 0)
    mean, std = _dataset_attr(meta_ds, "mean", None), _dataset_attr(meta_ds, "std", None)
    if family and clean_ds is None:
        ref = dataset.get(corrs[0], sev[0]) if corrs and sev else None
        if ref is not None:
            num_classes = num_classes or int(ref.num_classes)
            mean, std = ref.mean, ref.std
    if mean is None or std is None:
        raise UserError(f"dataset {ds_name!r} has no mean/std for input normalisation")
    norm = Normalize(mean, std).to(dev)
    norms = {k: _input_module(normalization[k]).to(dev) if normalization and k in normalization else norm
             for k in mods}  # fmt: skip
    if num_classes <= 0:
        raise UserError(f"dataset {ds_name!r} does not say how many classes it has")
    rows = {k: _model_info(k, m, info, run, seed, ds_name) for k, m in mods.items()}
    idents = [tuple(r[c] for c in KEYS) for r in rows.values()]
    if len(set(idents)) != len(idents):
        raise UserError("two models have the same (run, model, activation, order, seed, dataset); "
                        "give them distinct info")  # fmt: skip
    for m in mods.values():
        m.to(dev).eval()
    rank, world = _dist_info()
    level = probes if (clean_ds is not None or not family) else "none"
    return _Setup(mods=mods, norms=norms, dev=dev, amp=amp, dataset=dataset, clean_ds=clean_ds, family=family,
                  ds_name=ds_name, num_classes=num_classes, rows=rows, probes=probes, level=level,
                  probe={k: ModelProbe(m, level) for k, m in mods.items()}, corruptions=corrs, severities=sev,
                  rank=rank, world=world)  # fmt: skip


def _run_pass(st: _Setup, loop: _Loop, corr: str | None, sevs: list[int], rec_clean: bool) -> _Pass:
    """One pass over the data: the clean forward per batch, then each severity's corrupted batch."""
    cell_keys = ([CLEAN] if rec_clean else []) + [(corr, v) for v in sevs]
    sources = _sources(st.dataset, st.clean_ds, corr, sevs, st.family, loop.limit)
    n = len(sources[0][1]) if sources else 0
    if n == 0:
        raise UserError(f"dataset {st.ds_name!r} has no samples to evaluate")
    for _, src in sources[1:]:
        if len(src) < n:
            raise UserError(f"{st.ds_name}: {corr} has {len(src)} samples, the clean set {n}")
    if st.world > n:
        raise UserError(f"{n} samples cannot be split over {st.world} processes")
    start, stop = shard_range(n, st.rank, st.world)
    acc = _Pass(cell_keys, rec_clean,
                sums={(k, c): ClassificationSums(st.num_classes, device=st.dev) for k in st.mods for c in cell_keys},
                samples={(k, c): [] for k in st.mods for c in cell_keys}, positions=[])  # fmt: skip
    iters = [_batches(src, start, stop, loop.batch_size, loop.num_workers) for _, src in sources]
    n_batches = math.ceil((stop - start) / loop.batch_size)
    need_clean_fwd = rec_clean or (st.probes != "none" and st.level != "none")
    for b_i, batches in enumerate(zip(*iters)):
        _batch_step(st, loop, acc, corr, sevs, batches, need_clean_fwd)
        if loop.progress:
            loop.progress({"event": "batch", "corruption": corr or "clean", "batch": b_i + 1, "batches": n_batches})
    return acc


def _batch_step(st: _Setup, loop: _Loop, acc: _Pass, corr: str | None, sevs: list[int], batches: Any,
                need_clean_fwd: bool) -> None:  # fmt: skip
    """One batch: clean forward (probe reference, clean cell), then every severity's corrupted batch."""
    import corruptions as _corruptions

    x, y, pos = batches[0]
    x = x.to(st.dev, non_blocking=True)
    y = y.to(st.dev, non_blocking=True)
    gidx = pos + int(loop.indices_offset)
    acc.positions.append(gidx)
    if need_clean_fwd and st.clean_ds is not None:
        for k, m in st.mods.items():
            pr = st.probe[k]
            pr.begin("clean", record_units=acc.rec_clean and st.probes == "all")
            with _autocast(st.dev, st.amp):
                logits = m(st.norms[k](x))
            pr.end()
            if acc.rec_clean:
                correct, nll = acc.sums[(k, CLEAN)].update(logits, y)
                acc.samples[(k, CLEAN)].append(torch.stack([correct, nll]).float())
    for j, sv in enumerate(sevs):
        if st.family:
            xc = batches[j + (1 if st.clean_ds is not None else 0)][0].to(st.dev)
        else:
            xc = _corruptions.apply(x, corr, sv, seed=loop.seed, indices=gidx, preset=loop.preset)
        for k, m in st.mods.items():
            pr = st.probe[k]
            pr.begin("corrupt", cell=(corr, sv))
            with _autocast(st.dev, st.amp):
                logits = m(st.norms[k](xc))
            avg = pr.end()
            correct, nll = acc.sums[(k, (corr, sv))].update(logits, y)
            parts = [correct, nll] + ([avg[i].float() for i in SAMPLE_IDX] if avg is not None else [])
            acc.samples[(k, (corr, sv))].append(torch.stack([p.float() for p in parts]))
    for pr in st.probe.values():
        pr.release_clean()


class _Emitter:
    """Reduces a pass across processes and hands its finished cells on (tables, callback, progress)."""

    def __init__(self, st: _Setup, total: int, out: dict[str, list[pd.DataFrame]] | None,
                 on_cell_done: Callable[[CellResult], None] | None,
                 progress: Callable[[dict[str, Any]], None] | None) -> None:  # fmt: skip
        self.st, self.total, self.out, self.on_cell_done, self.progress = st, total, out, on_cell_done, progress
        self.done = 0

    def cells(self, acc: _Pass, corr: str | None) -> None:
        """Reduce, gather and emit every cell of one pass."""
        st = self.st
        state: list[torch.Tensor] = [acc.sums[key].data for key in acc.sums]
        for k in st.mods:
            state += st.probe[k].state_tensors([c for c in acc.cell_keys if c != CLEAN], units=acc.rec_clean)
        _all_reduce_sum(state)
        pos_all = torch.cat(acc.positions) if acc.positions else torch.zeros(0, dtype=torch.int64)
        local = {key: (torch.cat(v, dim=1).cpu().numpy() if v else np.zeros((2, 0), np.float32))
                 for key, v in acc.samples.items()}  # fmt: skip
        gathered = _all_gather((pos_all.numpy(), local))
        if st.rank == 0:
            positions = np.concatenate([g[0] for g in gathered])
            for c in acc.cell_keys:
                self._one(_cell_frames(c, st.mods, st.rows, acc.sums, st.probe, gathered, positions, st.probes), c)
            if self.progress:
                self.progress({"event": "pass", "corruption": corr or "clean", "done": self.done,
                               "total": self.total})  # fmt: skip
        for pr in st.probe.values():
            pr.reset_cells([c for c in acc.cell_keys if c != CLEAN])

    def _one(self, cell: CellResult, key: tuple[str, int]) -> None:
        if self.out is not None:
            for t in self.out:
                frame = getattr(cell, t)
                if frame is not None and len(frame):
                    self.out[t].append(frame)
        self.done += 1
        if self.on_cell_done is not None:
            self.on_cell_done(cell)
        if self.progress:
            self.progress({"event": "cell", "corruption": key[0], "severity": key[1], "done": self.done,
                           "total": self.total})  # fmt: skip


def _sources(dataset: Any, clean_ds: Any, corr: str | None, sevs: list[int], family: bool,
             limit: int | None) -> list[tuple[str, Any]]:
    """The datasets read in lock-step in one pass: clean (if any), then one per severity (*-C)."""
    out: list[tuple[str, Any]] = []
    if clean_ds is not None:
        out.append(("clean", _limited(clean_ds, limit)))
    if family and corr is not None:
        for s in sevs:
            out.append((f"{corr}/{s}", _limited(dataset.get(corr, s), limit)))
    return out


def _limited(ds: Any, limit: int | None) -> Any:
    if limit is None or len(ds) <= limit:
        return ds
    if hasattr(ds, "subset"):
        return ds.subset(torch.arange(limit))
    return torch.utils.data.Subset(ds, list(range(limit)))
