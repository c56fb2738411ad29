"""Training settings: :class:`TrainConfig`, the recipes, config files (TOML/YAML) and their checks."""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from robustbench_act.errors import UserError, unknown

SCHEDULES = ("multistep", "cosine", "onecycle", "constant")
AMPS = ("bf16", "fp16", "auto")
AUGMENTS = ("crop_flip", "flip", "crop", "none")
SELECTS = ("best", "last")
LOG_COLUMNS = ("epoch", "iteration", "loss", "train_acc", "val_acc", "lr", "images_per_s", "time")
STATE_NAME = "state.pt"
LOG_NAME = "train_log.csv"
MANIFEST_NAME = "manifest.json"
# fields whose change makes a saved state.pt unusable for --resume
_RESUME_KEYS = (
    "epochs", "iterations", "batch_size", "lr", "momentum", "weight_decay", "nesterov",
    "schedule", "milestones", "gamma", "warmup", "label_smoothing", "augment", "crop_padding",
    "val_fraction", "seed", "limit",
)  # fmt: skip


@dataclass
class TrainConfig:
    """Everything that decides a training run (recipe defaults, then file, then CLI)."""

    recipe: str = "paper"
    epochs: int | None = None  # give epochs or iterations
    iterations: int | None = 64000
    batch_size: int = 128  # global batch (all DDP ranks together)
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    nesterov: bool = False
    schedule: str = "multistep"  # multistep | cosine | onecycle | constant
    milestones: tuple[float, ...] = (0.5, 0.75)  # fractions of the run (<=1) or iterations
    gamma: float = 0.1
    warmup: float = 0.0  # epochs of linear warm-up (one-cycle: the rising part)
    label_smoothing: float = 0.0
    amp: str | None = None  # None | bf16 | fp16 | auto (bf16 on CUDA, off on CPU)
    channels_last: bool | None = False  # None: on CUDA only
    augment: str = "crop_flip"  # crop_flip | flip | crop | none
    crop_padding: int = 4
    val_fraction: float = 0.1  # split off the training set when no val_set is given
    select: str = "best"  # checkpoint: best validation accuracy, or the last weights
    seed: int = 0
    device: str = "auto"
    limit: int | None = None  # keep the first N training images
    eval_every: int = 1  # epochs between validation passes (always after the last)
    data_on_device: bool | None = None  # None: when the dataset fits in one tensor
    num_workers: int = 0  # loader processes for datasets decoded per item
    grad_clip: float | None = None
    checkpoint: str | None = None  # finetune: the starting checkpoint
    bn_recalibration_batches: int = 50  # finetune: batches for BN re-estimation
    sync_bn: bool = False  # DDP: convert BatchNorm to SyncBatchNorm (CUDA only)
    compile: bool = False  # run the training forward/backward through torch.compile (inductor)
    check_every: int = 50  # iterations between non-finite-loss checks / progress updates
    extra: dict[str, Any] = field(default_factory=dict)  # free-form notes kept in the manifest

    def validate(self) -> TrainConfig:
        """Raise a one-line UserError for impossible settings; returns self."""
        if self.schedule not in SCHEDULES:
            raise unknown("schedule", self.schedule, SCHEDULES)
        if self.amp is not None and self.amp not in AMPS:
            raise unknown("amp mode", str(self.amp), AMPS)
        if self.augment not in AUGMENTS:
            raise unknown("augmentation", self.augment, AUGMENTS)
        if self.select not in SELECTS:
            raise unknown("checkpoint selection", self.select, SELECTS)
        if (self.epochs is None) == (self.iterations is None):
            raise UserError("give exactly one of epochs and iterations")
        from robustbench_act.inputs import check_numbers

        check_numbers({f.name: getattr(self, f.name) for f in dataclasses.fields(self)})  # ranges
        if any(not math.isfinite(m) or m < 0 for m in self.milestones):
            raise UserError(f"milestones must be finite numbers >= 0, got {list(self.milestones)}")
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (tuples as lists)."""
        d = dataclasses.asdict(self)
        d["milestones"] = list(self.milestones)
        return d


RECIPES: dict[str, dict[str, Any]] = {
    "paper": dict(
        epochs=None, iterations=64000, batch_size=128, lr=0.1, momentum=0.9, weight_decay=1e-4,
        nesterov=False, schedule="multistep", milestones=(0.5, 0.75), gamma=0.1, warmup=0.0,
        label_smoothing=0.0, amp=None, channels_last=False, augment="crop_flip",
        val_fraction=0.1, select="best",
    ),
    "fast": dict(
        epochs=35, iterations=None, batch_size=512, lr=0.4, momentum=0.9, weight_decay=5e-4,
        nesterov=True, schedule="onecycle", warmup=5.0, label_smoothing=0.1, amp="auto",
        channels_last=None, augment="crop_flip", val_fraction=0.0, select="last",
        data_on_device=True, eval_every=5,
    ),
    "finetune": dict(
        epochs=10, iterations=None, batch_size=128, lr=0.01, momentum=0.9, weight_decay=1e-4,
        nesterov=False, schedule="cosine", warmup=0.0, label_smoothing=0.0, amp=None,
        augment="crop_flip", val_fraction=0.1, select="best", bn_recalibration_batches=50,
    ),
    "digits": dict(
        epochs=5, iterations=None, batch_size=64, lr=0.05, momentum=0.9, weight_decay=5e-4,
        nesterov=True, schedule="onecycle", warmup=1.0, label_smoothing=0.0, amp=None,
        channels_last=False, augment="none", val_fraction=0.1, select="best", check_every=20,
    ),
}  # fmt: skip


def config_fields() -> list[str]:
    """Names of the TrainConfig fields (valid keys of config files)."""
    return [f.name for f in dataclasses.fields(TrainConfig)]


def load_config(path: str | Path) -> dict[str, Any]:
    """Read training settings from a TOML or YAML file (top level or a [train] table)."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"config file not found: {p}")
    try:
        if p.suffix == ".toml":
            try:
                import tomllib
            except ImportError:  # Python 3.10: the tomli backport, if installed
                try:
                    import tomli as tomllib
                except ImportError:
                    raise UserError("TOML config files need Python >= 3.11 or `pip install tomli`; "
                                    "use a .yaml file instead") from None
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        elif p.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        else:
            raise UserError(f"config file {p} must be .toml, .yaml or .yml")
    except UserError:
        raise
    except Exception as exc:  # parse errors of either format
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise UserError(f"cannot parse config file {p}: {first}") from exc
    if not isinstance(data, dict):
        raise UserError(f"config file {p} must hold a table of settings")
    if isinstance(data.get("train"), dict):
        data = data["train"]
    valid = config_fields()
    for key in data:
        if key.replace("-", "_") not in valid:
            raise unknown("training setting", key, valid)
    values = {k.replace("-", "_"): v for k, v in data.items()}
    for key, value in values.items():
        problem = _type_problem(key, value)
        if problem:
            raise UserError(f"config file {p}: {key} must be {problem}, got {value!r}")
    return values


def _type_problem(key: str, value: Any) -> str | None:
    """What ``value`` should be for the TrainConfig field ``key`` (None when it fits).

    Config files are untyped (TOML/YAML scalars); the CLI's options are typed by Typer.
    """
    if key == "milestones":
        ok = isinstance(value, list | tuple) and all(_is_number(v) for v in value)
        return None if ok else "a list of numbers"
    if key == "extra":
        return None if isinstance(value, dict) else "a table"
    hint = typing.get_type_hints(TrainConfig)[key]
    args = typing.get_args(hint) or (hint,)
    if value is None:
        return None if type(None) in args else "set (null is not allowed here)"
    kind = next(a for a in args if a is not type(None))
    if kind is bool:
        return None if isinstance(value, bool) else "true or false"
    if kind is int:
        return None if isinstance(value, int) and not isinstance(value, bool) else "an integer"
    if kind is float:
        return None if _is_number(value) else "a number"
    return None if isinstance(value, kind) else ("a string" if kind is str else f"a {kind.__name__}")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def default_recipe(dataset: str, checkpoint: str | None = None) -> str:
    """Recipe when none is named: finetune with a checkpoint, digits for digits, else paper."""
    if checkpoint:
        return "finetune"
    return "digits" if dataset.split(":")[0].lower() == "digits" else "paper"


def make_config(
    recipe: str | None = None, *, config_file: str | Path | None = None, **overrides: Any
) -> TrainConfig:
    """Recipe defaults, then a config file, then explicit overrides (None means 'not given')."""
    from_file = load_config(config_file) if config_file else {}
    name = recipe or from_file.get("recipe") or "paper"
    if name not in RECIPES:
        raise unknown("recipe", name, RECIPES)
    values: dict[str, Any] = {"recipe": name, **RECIPES[name]}
    for layer in (from_file, {k: v for k, v in overrides.items() if v is not None}):
        layer = dict(layer)
        layer.pop("recipe", None)
        if "epochs" in layer and "iterations" not in layer:
            values["iterations"] = None
        if "iterations" in layer and "epochs" not in layer:
            values["epochs"] = None
        values.update(layer)
    valid = set(config_fields())
    bad = [k for k in values if k not in valid]
    if bad:
        raise unknown("training setting", bad[0], valid)
    if values.get("milestones") is not None:
        values["milestones"] = tuple(float(m) for m in values["milestones"])
    return TrainConfig(**values).validate()


