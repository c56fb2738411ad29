"""One frozen, validated spec per command: what ``actbench <command>`` was asked to do.

Fields are named after the command's options (``--corruption-seed`` -> ``corruption_seed``);
lists may be given as comma-separated strings or sequences and are stored as tuples of
canonical values. A spec validates itself when built (a bad value is a one-line
:class:`~robustbench_act.errors.UserError` naming the option), is what :func:`robustbench_act.run`
executes, and is what a run's manifest stores (``spec``) and ``--resume`` compares.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from robustbench_act.errors import UserError
from robustbench_act.inputs import check_numbers
from robustbench_act.parsing import (
    parse_amp,
    parse_corruptions,
    parse_names,
    parse_probes,
    parse_seeds,
    parse_severities,
)

#: Fields that do not change what a run computes (left out of what --resume compares).
_NOT_COMPARED = ("resume", "out", "workers", "root", "download", "plugin", "quiet")


def _set(spec: Any, **values: Any) -> None:
    for k, v in values.items():
        object.__setattr__(spec, k, v)


def _labels(spec: Any) -> dict[str, str]:
    return {f.name: "--" + f.name.replace("_", "-") for f in dataclasses.fields(spec)}


def _paths(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, (str, Path)):
        return (str(value),)
    return tuple(str(v) for v in value)


def _opt_path(value: Any) -> str | None:
    return None if value is None else str(value)


def _streams(value: Any) -> int:
    """The random-stream version of the corruptions (None: the process default, 2 unless set)."""
    from corruptions.registry import CorruptionError
    from corruptions.streams import check_streams, stream_version

    try:
        return stream_version() if value is None else check_streams(value)
    except CorruptionError as exc:
        raise UserError(f"--streams: {exc}") from None


def _frost_dir(value: Any) -> str | None:
    """A frost photograph folder (checked now: a bad one is a one-line error) or "procedural"."""
    if value is None or str(value) == "procedural":
        return None if value is None else "procedural"
    from corruptions.frost import _frost_files

    try:
        _frost_files(Path(value))
    except Exception as exc:  # CorruptionError: the package's one-line message
        raise UserError(f"--frost-dir: {exc}") from None
    return str(value)


def _floats(value: Any, option: str) -> tuple[float, ...] | None:
    from robustbench_act.preprocess import parse_floats

    if value is None:
        return None
    vals = parse_floats(value, option) if isinstance(value, str) else [float(v) for v in value]
    return tuple(vals or ())


class _Spec:
    """Shared behaviour: JSON-able view, the part --resume compares, a replaced copy."""

    def as_dict(self) -> dict[str, Any]:
        """The spec as plain JSON values (tuples as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}  # type: ignore[call-overload]

    def resume_view(self) -> dict[str, Any]:
        """The fields that decide what a run computes (compared by --resume)."""
        return {k: v for k, v in self.as_dict().items() if k not in _NOT_COMPARED}

    def replace(self, **changes: Any) -> Any:
        """A validated copy with some fields changed."""
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]


@dataclass(frozen=True)
class RunSpec(_Spec):
    """``actbench run``: the embedded default (no checkpoint) or an evaluation of checkpoints."""

    checkpoint: tuple[str, ...] = ()
    model: str | None = None
    activation: str | None = None
    activations: tuple[str, ...] = ()  # the default run's activations (empty: the six defaults)
    order: str | None = None
    dataset: str = "digits"
    root: str | None = None
    download: bool = False
    corruptions: tuple[str, ...] = ("all",)
    severities: tuple[int, ...] = (1, 2, 3, 4, 5)
    seeds: tuple[int, ...] | None = None  # the default run's training seeds (None: 0-2)
    corruption_seed: int = 0
    limit: int | None = None
    batch_size: int = 512
    device: str = "auto"
    amp: str | None = None
    plugin: tuple[str, ...] = ()
    probes: str = "all"
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    normalize: bool = True
    baseline: str | None = None
    preset: str | None = None
    frost_dir: str | None = None  # frost photographs (or "procedural"); None: the default order
    streams: int | None = None  # random-stream version of the corruptions; None: the default (4)
    workers: int = 0
    resume: bool = False
    out: str | None = None

    def __post_init__(self) -> None:
        import corruptions as corr_pkg

        _set(self, checkpoint=_paths(self.checkpoint), plugin=_paths(self.plugin), root=_opt_path(self.root),
             out=_opt_path(self.out), frost_dir=_frost_dir(self.frost_dir), streams=_streams(self.streams))  # fmt: skip
        check_numbers({"corruption_seed": self.corruption_seed, "limit": self.limit,
                       "batch_size": self.batch_size, "workers": self.workers}, _labels(self))  # fmt: skip
        for p in self.plugin:  # plug-ins first: they add corruption names
            corr_pkg.load_plugin(p)
        _set(self, activations=tuple(parse_names(self.activations if self.activations != () else None,
                                                 "--activations")),
             corruptions=tuple(parse_corruptions(self.corruptions)),
             severities=tuple(parse_severities(self.severities)),
             seeds=None if self.seeds is None else tuple(parse_seeds(self.seeds)),
             amp=parse_amp(self.amp, auto=False), probes=parse_probes(self.probes),
             mean=_floats(self.mean, "--mean"), std=_floats(self.std, "--std"))  # fmt: skip
        if self.preset is not None and self.preset not in corr_pkg.PRESETS:
            from robustbench_act.errors import unknown

            raise unknown("preset", self.preset, corr_pkg.PRESETS)
        self._check_combination()

    def _check_combination(self) -> None:
        if self.checkpoint:
            if self.activations:
                raise UserError("--activations chooses the default run's activations; with --checkpoint use --activation")
            if self.seeds is not None:
                raise UserError("--seeds are the default run's training seeds; a checkpoint has its own "
                                "(the corruptions follow --corruption-seed)")  # fmt: skip
            return
        if self.mean is not None or self.std is not None or not self.normalize:
            raise UserError("--mean/--std/--no-normalize describe checkpoints trained elsewhere; "
                            "the default run trains its own models")  # fmt: skip
        if self.activations and self.activation:
            raise UserError("give --activations (several) or --activation (one), not both")


@dataclass(frozen=True)
class TrainSpec(_Spec):
    """``actbench train``: one model, activation, order and seed under a recipe."""

    out: str = ""
    model: str | None = None
    activation: str | None = None
    order: str = "conventional"
    dataset: str = "cifar10"
    seed: int = 0
    recipe: str | None = None
    epochs: int | None = None
    iterations: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    weight_decay: float | None = None
    schedule: str | None = None
    val_fraction: float | None = None
    limit: int | None = None
    device: str | None = None
    amp: str | None = None
    config_file: str | None = None
    resume: bool = False
    checkpoint: str | None = None
    download: bool = False
    root: str | None = None
    image_size: int | None = None
    workers: int | None = None
    sync_bn: bool = False
    channels_last: bool | None = None
    compile: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        if not self.out:
            raise UserError("--out is required: the folder for the checkpoint, log and state")
        _set(self, out=str(self.out), config_file=_opt_path(self.config_file), root=_opt_path(self.root),
             amp=None if self.amp is None else (parse_amp(self.amp) or "none"))  # fmt: skip
        check_numbers({k: getattr(self, k) for k in ("seed", "epochs", "iterations", "batch_size", "lr",
                                                     "weight_decay", "val_fraction", "limit", "image_size",
                                                     "workers")}, _labels(self))  # fmt: skip

    def config(self) -> Any:
        """The TrainConfig: recipe defaults, then the config file, then the options given."""
        from robustbench_act.train import default_recipe, load_config, make_config

        recipe = self.recipe
        if recipe is None:
            file_recipe = load_config(self.config_file).get("recipe") if self.config_file else None
            recipe = file_recipe or default_recipe(self.dataset, self.checkpoint)
        overrides = dict(epochs=self.epochs, iterations=self.iterations, batch_size=self.batch_size, lr=self.lr,
                         weight_decay=self.weight_decay, schedule=self.schedule, val_fraction=self.val_fraction,
                         limit=self.limit, device=self.device, seed=self.seed, checkpoint=self.checkpoint,
                         num_workers=self.workers, sync_bn=self.sync_bn or None, channels_last=self.channels_last,
                         compile=self.compile or None)  # fmt: skip
        cfg = make_config(str(recipe), config_file=self.config_file, **overrides)
        if self.amp is not None:
            cfg.amp = None if self.amp == "none" else self.amp
            cfg.validate()
        return cfg

    def model_name(self) -> str:
        """The model to train: --model, else cnn_small for digits and resnet20 otherwise."""
        return self.model or ("cnn_small" if self.dataset.split(":")[0].lower() == "digits" else "resnet20")


@dataclass(frozen=True)
class SweepSpec(_Spec):
    """``actbench sweep``: train and evaluate a grid of models x activations x orders x seeds."""

    out: str = ""
    models: tuple[str, ...] = ("resnet20",)
    activations: tuple[str, ...] = ("relu", "silu", "la_silu")
    orders: tuple[str, ...] = ("conventional",)
    seeds: tuple[int, ...] = (0,)
    dataset: str = "cifar10"
    recipe: str | None = None
    config_file: str | None = None
    epochs: int | None = None
    iterations: int | None = None
    train_batch_size: int | None = None
    lr: float | None = None
    corruptions: tuple[str, ...] = ("all",)
    severities: tuple[int, ...] = (1, 2, 3, 4, 5)
    corruption_seed: int = 0
    probes: str = "none"
    shard: str | None = None
    dry_run: bool = False
    parallel: int = 1
    limit: int | None = None
    eval_limit: int | None = None
    batch_size: int = 512
    device: str = "auto"
    amp: str | None = None
    root: str | None = None
    download: bool = False
    frost_dir: str | None = None  # frost photographs (or "procedural"); None: the default order
    streams: int | None = None  # random-stream version of the corruptions; None: the default (4)
    progress: bool = True

    def __post_init__(self) -> None:
        if not self.out:
            raise UserError("--out is required: the sweep folder")
        _set(self, out=str(self.out), config_file=_opt_path(self.config_file), root=_opt_path(self.root),
             frost_dir=_frost_dir(self.frost_dir), streams=_streams(self.streams))  # fmt: skip
        check_numbers({k: getattr(self, k) for k in ("epochs", "iterations", "train_batch_size", "lr",
                                                     "corruption_seed", "parallel", "limit", "eval_limit",
                                                     "batch_size")}, _labels(self))  # fmt: skip
        _set(self, models=tuple(parse_names(self.models, "--models")),
             activations=tuple(parse_names(self.activations, "--activations")),
             orders=tuple(parse_names(self.orders, "--orders")), seeds=tuple(parse_seeds(self.seeds)),
             corruptions=tuple(parse_corruptions(self.corruptions)),
             severities=tuple(parse_severities(self.severities)), probes=parse_probes(self.probes),
             amp=parse_amp(self.amp, auto=False))  # fmt: skip
        if self.recipe is not None or self.config_file is not None or self.train_overrides():
            from robustbench_act.train import make_config

            make_config(self.recipe, config_file=self.config_file, **self.train_overrides())  # early errors

    def train_overrides(self) -> dict[str, Any]:
        """The training settings this sweep overrides (epochs, iterations, batch size, lr)."""
        pairs = (("epochs", self.epochs), ("iterations", self.iterations), ("batch_size", self.train_batch_size),
                 ("lr", self.lr))  # fmt: skip
        return {k: v for k, v in pairs if v is not None}


@dataclass(frozen=True)
class CompareSpec(_Spec):
    """``actbench compare``: comparison tables of runs (mean +- sd, paired tests), written as files."""

    runs: tuple[str, ...] = ()
    by: str = "activation"
    reference: str | None = None
    formats: tuple[str, ...] = ("md", "latex", "csv", "html")
    out: str = "."
    allow_mismatch: bool = False
    uncertainty: str = "auto"

    def __post_init__(self) -> None:
        from robustbench_act.compare import UNCERTAINTIES, parse_by
        from robustbench_act.tables import formats_of

        _set(self, runs=_paths(self.runs), out=str(self.out),
             formats=tuple(dict.fromkeys(formats_of(parse_names(self.formats, "--format") or ["md"]))))  # fmt: skip
        if not self.runs:
            raise UserError("give at least one results folder")
        parse_by(self.by)
        if self.uncertainty not in UNCERTAINTIES:
            from robustbench_act.errors import unknown

            raise unknown("uncertainty", self.uncertainty, UNCERTAINTIES)


@dataclass(frozen=True)
class ReportSpec(_Spec):
    """``actbench report``: tables, figures and one self-contained report.html."""

    runs: tuple[str, ...] = ()
    out: str = ""
    by: str = "activation"
    reference: str | None = None
    allow_mismatch: bool = False
    uncertainty: str = "auto"
    figures: tuple[str, ...] = ("all",)
    command: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        from robustbench_act.compare import UNCERTAINTIES, parse_by
        from robustbench_act.figures import parse_figures

        if not self.out:
            raise UserError("--out is required: the report folder")
        _set(self, runs=_paths(self.runs), out=str(self.out),
             figures=tuple(parse_figures(parse_names(self.figures, "--figures"))))  # fmt: skip
        if not self.runs:
            raise UserError("give at least one results folder")
        parse_by(self.by)
        if self.uncertainty not in UNCERTAINTIES:
            from robustbench_act.errors import unknown

            raise unknown("uncertainty", self.uncertainty, UNCERTAINTIES)


def as_tuple(value: str | Sequence[Any] | None) -> tuple[Any, ...]:
    """A CLI repeatable option (None or a list) as a tuple."""
    return () if value is None else tuple(value)
