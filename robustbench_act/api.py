"""The Python API under the command line: ``run(spec)`` does what ``actbench <command>`` does.

    from robustbench_act import RunSpec, run
    outcome = run(RunSpec(activations=["relu", "la_silu"], corruptions=["gaussian_noise"],
                          severities=[1, 5], out="results/x"))

One spec class per command (:mod:`robustbench_act.specs`); :func:`run` dispatches on it and
returns what the command shows: a :class:`~robustbench_act.pipeline.RunOutcome` (run), a
:class:`~robustbench_act.train.TrainResult` (train), ``(status table, combined metrics)``
(sweep), a :class:`~robustbench_act.tables.ComparisonTable` (compare, its files written)
or the report's path (report). ``progress`` receives the evaluation's progress events,
``echo`` one-line notes; both are optional.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

from robustbench_act.errors import UserError
from robustbench_act.specs import CompareSpec, ReportSpec, RunSpec, SweepSpec, TrainSpec

Echo = Callable[[str], None]


@functools.singledispatch
def run(spec: Any, *, progress: Any = None, echo: Echo | None = None) -> Any:
    """Execute a spec (RunSpec, TrainSpec, SweepSpec, CompareSpec or ReportSpec)."""
    raise UserError(f"not an actbench spec: {type(spec).__name__} (use RunSpec, TrainSpec, SweepSpec, "
                    "CompareSpec or ReportSpec)")  # fmt: skip


@run.register
def _run_evaluation(spec: RunSpec, *, progress: Any = None, echo: Echo | None = None,
                    on_trained: Callable[[str, Any], None] | None = None) -> Any:  # fmt: skip
    """``actbench run``: the embedded default, or the evaluation of checkpoints."""
    from corruptions.frost import frost_images
    from corruptions.streams import using_streams

    with frost_images(spec.frost_dir), using_streams(spec.streams):
        return _evaluation(spec, progress=progress, echo=echo, on_trained=on_trained)


def _evaluation(spec: RunSpec, *, progress: Any, echo: Echo | None, on_trained: Any) -> Any:
    from robustbench_act import pipeline
    from robustbench_act.checkpoint_eval import load_baseline, run_checkpoints

    dev = pipeline.resolve_device(spec.device)
    base = load_baseline(spec.baseline)
    if spec.checkpoint:
        return run_checkpoints(spec, device=dev, baseline=base, progress=progress, say=echo)
    if spec.dataset != "digits":
        from robustbench_act.data import load_dataset

        load_dataset(spec.dataset, split="test", root=spec.root, download=spec.download, limit=spec.limit)
        raise UserError(f"no --checkpoint given: the built-in training covers --dataset digits only; "
                        f"train a model for {spec.dataset} with `actbench train` and pass --checkpoint")  # fmt: skip
    acts = list(spec.activations) or ([spec.activation] if spec.activation else list(pipeline.DEFAULT_ACTIVATIONS))
    return pipeline.run_default(
        acts, spec.out, list(spec.seeds or pipeline.DEFAULT_SEEDS), model=spec.model or pipeline.DEFAULT_MODEL,
        order=spec.order or "conventional", dataset=spec.dataset, corruptions=list(spec.corruptions),
        severities=list(spec.severities), probes=spec.probes, batch_size=spec.batch_size, device=dev,
        amp=spec.amp, limit=spec.limit, resume=spec.resume, progress=progress, baseline=base,
        preset=spec.preset, on_trained=on_trained, corruption_seed=spec.corruption_seed,
        spec=spec.resume_view())  # fmt: skip


@run.register
def _run_training(spec: TrainSpec, *, progress: Any = None, echo: Echo | None = None) -> Any:
    """``actbench train``: one model under a recipe; returns the TrainResult."""
    from robustbench_act.train import train_model

    return train_model(spec.model_name(), dataset=spec.dataset, out_dir=spec.out, config=spec.config(),
                       activation=spec.activation, order=spec.order, root=spec.root, download=spec.download,
                       resume=spec.resume, progress=spec.progress, image_size=spec.image_size)  # fmt: skip


@run.register
def _run_sweep(spec: SweepSpec, *, progress: Any = None, echo: Echo | None = None) -> Any:
    """``actbench sweep``: returns (status table, combined metrics of the finished cells)."""
    from robustbench_act.sweep import (
        SweepOptions,
        parse_shard,
        plan_cells,
        run_sweep,
        shard_from_slurm,
    )

    cells = plan_cells(list(spec.models), list(spec.activations), list(spec.orders), list(spec.seeds))
    _check_sweep_data(spec)
    shard = parse_shard(spec.shard)
    if spec.shard is None and (slurm := shard_from_slurm()) is not None:
        shard = slurm[0]
        (echo or print)(f"sweep: shard {shard[0]}/{shard[1]} from the Slurm array ({slurm[1]})")
    opts = SweepOptions(
        out=spec.out, dataset=spec.dataset, recipe=spec.recipe, train_overrides=spec.train_overrides(),
        config_file=spec.config_file, corruptions=list(spec.corruptions), severities=list(spec.severities),
        corruption_seed=spec.corruption_seed, probes=spec.probes, limit=spec.limit, eval_limit=spec.eval_limit,
        eval_batch_size=spec.batch_size, device=spec.device, amp=spec.amp, root=spec.root, download=spec.download,
        frost_dir=spec.frost_dir, streams=spec.streams,
    )  # fmt: skip
    from corruptions.frost import frost_images

    with frost_images(spec.frost_dir):  # the sweep's checks see it; each cell process sets it too
        table, combined = run_sweep(cells, opts, shard=shard, parallel=spec.parallel, dry_run=spec.dry_run,
                                    progress=spec.progress, echo=echo)  # fmt: skip
    if spec.dry_run and shard != (0, 1):
        table = table[table["shard"] == shard[0]]
    return table, combined


def _check_sweep_data(spec: SweepSpec) -> None:
    """Device and dataset checked before any cell runs (with --download the first cell fetches it)."""
    from robustbench_act.data import load_dataset
    from robustbench_act.parsing import resolve_device

    resolve_device(spec.device)
    if not spec.download:
        load_dataset(spec.dataset, split="test", root=spec.root, limit=1)


@run.register
def _run_compare(spec: CompareSpec, *, progress: Any = None, echo: Echo | None = None) -> Any:
    """``actbench compare``: the comparison table, its files written into ``spec.out``."""
    from robustbench_act.compare import compare_runs, write_comparison
    from robustbench_act.fileio import writing_folder

    table = compare_runs(list(spec.runs), by=spec.by, reference=spec.reference,
                         allow_mismatch=spec.allow_mismatch, uncertainty=spec.uncertainty)  # fmt: skip
    with writing_folder(spec.out):  # one writer at a time
        table.written = write_comparison(table, spec.out, spec.formats)
    return table


@run.register
def _run_report(spec: ReportSpec, *, progress: Any = None, echo: Echo | None = None) -> Path:
    """``actbench report``: writes tables, figures and report.html; returns the report's path."""
    from robustbench_act.fileio import writing_folder
    from robustbench_act.report import write_report

    with writing_folder(spec.out):  # one writer at a time; a new folder is removed again on error
        return write_report(list(spec.runs), spec.out, by=spec.by, reference=spec.reference,
                            allow_mismatch=spec.allow_mismatch, uncertainty=spec.uncertainty,
                            figures=list(spec.figures), command=spec.command)  # fmt: skip
