"""The input layer: every number, list and path a command takes, checked before any work.

Numbers are checked by name against :data:`RULES` (``--seed`` means the same range in
run, train, sweep and the corruption commands, and a training config file's ``seed`` too:
``TrainConfig.validate`` uses the same table), paths by kind and permission
(:func:`check_path`), comma-separated lists for empty items (:func:`name_list`).
The CLI applies all of them to a command's options before calling it
(``robustbench_act.cli.common.command``). Torch-free, so the CLI starts fast.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from robustbench_act.errors import UserError

MAX_SEED = 2**63 - 1  # seeds are stored as int64 (manifests, parquet tables, torch generators)
MAX_IMAGES = 10**9
MAX_BATCH = 2**20
MAX_SIDE = 1024  # image sides: 1024 px is 3 MB per RGB image, 20x an ImageNet crop
MAX_CLASSES = 100_000
MAX_PROCESSES = 256


@dataclass(frozen=True)
class Range:
    """An allowed range of numbers: ``lo``..``hi`` (open ends where said), integers or finite floats."""

    lo: float
    hi: float
    integer: bool = True
    lo_open: bool = False
    hi_open: bool = False
    interval: bool = False  # say "in [lo, hi)" rather than ">= lo" / "<= hi"

    def check(self, label: str, value: Any) -> None:
        """Raise a one-line UserError naming ``label`` when ``value`` (not None) is out of range."""
        if value is None:
            return
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (
                self.integer and not isinstance(value, int)):  # fmt: skip
            raise UserError(f"{label} must be {'an integer' if self.integer else 'a number'}, got {value!r}")
        if not self.integer and not math.isfinite(value):
            raise UserError(f"{label} must be a finite number, got {value}")
        low = value < self.lo or (self.lo_open and value == self.lo)
        high = value > self.hi or (self.hi_open and value == self.hi)
        if low or high:
            raise UserError(f"{label} must be {self._bound(low)}, got {value}")

    def _bound(self, low: bool) -> str:
        if self.interval:
            return f"in {'(' if self.lo_open else '['}{_num(self.lo)}, {_num(self.hi)}{')' if self.hi_open else ']'}"
        if low:
            positive = (self.lo == 0 and self.lo_open) or (self.integer and self.lo == 1)
            return "positive" if positive else f">= {_num(self.lo)}"
        return f"< {_num(self.hi)}" if self.hi_open else f"<= {_num(self.hi)}"


def _num(v: float) -> str:
    return str(v) if isinstance(v, int) else str(int(v)) if v.is_integer() and abs(v) < 1e15 else f"{v:g}"


def _count(lo: int, hi: int) -> Range:
    return Range(lo, hi)


def _real(lo: float, hi: float, **kw: Any) -> Range:
    return Range(lo, hi, integer=False, **kw)


#: Option (CLI parameter or TrainConfig field) name -> allowed range.
RULES: dict[str, Range] = {
    "seed": _count(0, MAX_SEED), "corruption_seed": _count(0, MAX_SEED),
    "limit": _count(1, MAX_IMAGES), "eval_limit": _count(1, MAX_IMAGES), "index": _count(0, MAX_IMAGES),
    "batch_size": _count(1, MAX_BATCH), "train_batch_size": _count(1, MAX_BATCH),
    "epochs": _count(1, 10**6), "iterations": _count(1, 10**9),
    "workers": _count(0, MAX_PROCESSES), "num_workers": _count(0, MAX_PROCESSES),
    "parallel": _count(1, MAX_PROCESSES),
    "image_size": _count(8, MAX_SIDE), "size": _count(8, MAX_SIDE), "num_classes": _count(1, MAX_CLASSES),
    "eval_every": _count(1, 10**9), "check_every": _count(1, 10**9),
    "crop_padding": _count(0, MAX_SIDE), "bn_recalibration_batches": _count(0, 10**9),
    "lr": _real(0.0, 1e3, lo_open=True), "weight_decay": _real(0.0, 1.0), "momentum": _real(0.0, 1.0),
    "gamma": _real(0.0, 10.0, lo_open=True), "warmup": _real(0.0, 1e6),
    "label_smoothing": _real(0.0, 1.0, hi_open=True, interval=True),
    "val_fraction": _real(0.0, 1.0, hi_open=True, interval=True),
    "grad_clip": _real(0.0, 1e9, lo_open=True),
}  # fmt: skip


def check_numbers(values: Mapping[str, Any], labels: Mapping[str, str] | None = None) -> None:
    """Range-check every value whose name has a rule; ``labels`` name them (default: the bare name)."""
    for name, value in values.items():
        rule = RULES.get(name)
        if rule is not None:
            rule.check((labels or {}).get(name, name), value)


def name_list(option: str, text: str | None) -> list[str] | None:
    """'a,b' -> ['a', 'b']; None stays None; an empty list or an empty item is refused."""
    if text is None:
        return None
    items = [s.strip() for s in text.split(",")]
    if not any(items):
        raise UserError(f"{option} is empty; give one or more names separated by commas")
    if not all(items):
        raise UserError(f"{option} {text!r} has an empty item (two commas, or one at an end)")
    return items


# ----------------------------------------------------------------------------- paths

#: Checkpoint locations that are not plain paths: scheme -> the path kind after it (None: no path).
CHECKPOINT_SCHEMES: dict[str, str | None] = {"hf-hub": None, "local-dir": "in_dir"}
#: Kinds of path options: what must be true before a command starts.
PATH_KINDS = ("in_file", "in_dir", "in_any", "dir_if_exists", "out_dir", "out_file", "new_dir")


def _ancestor(path: Path) -> Path:
    """The nearest existing folder-or-file at or above ``path``."""
    for p in (path, *path.parents):
        if p.exists():
            return p
    return Path(".")


def _writable(folder: Path) -> bool:
    return os.access(folder, os.W_OK | os.X_OK)


def check_path(label: str, path: str | os.PathLike | None, kind: str) -> None:
    """Check one path option up front (exists / kind / readable / writable); one-line UserError."""
    if path is None:
        return
    if str(path) == "procedural" and kind == "in_dir":  # --frost-dir procedural
        return
    scheme, sep, rest = str(path).partition(":")
    if sep and scheme in CHECKPOINT_SCHEMES and kind == "in_any":  # hf-hub:org/name, local-dir:PATH
        if CHECKPOINT_SCHEMES[scheme] is None:
            return  # not a path: the loader resolves it (local Hugging Face cache)
        path, kind = rest, CHECKPOINT_SCHEMES[scheme]
    p = Path(path).expanduser()
    if kind in ("in_file", "in_dir", "in_any"):
        _check_input(label, p, kind)
    elif kind == "dir_if_exists":
        if p.exists():
            _check_input(label, p, "in_dir")
    elif kind in ("out_dir", "new_dir"):
        check_out_folder(p, label, parent=kind == "new_dir")
    elif kind == "out_file":
        check_out_file(p, label)
    else:
        raise ValueError(f"unknown path kind {kind!r} (kinds: {', '.join(PATH_KINDS)})")


def _check_input(label: str, p: Path, kind: str) -> None:
    if not p.exists():
        raise UserError(f"{label} not found: {p}")
    if kind == "in_file" and p.is_dir():
        raise UserError(f"{label} {p} is a folder, not a file")
    if kind == "in_dir" and not p.is_dir():
        raise UserError(f"{label} {p} is a file, not a folder")
    need = os.R_OK | (os.X_OK if p.is_dir() else 0)
    if not os.access(p, need):
        raise UserError(f"{label} {p}: permission denied (not readable)")


def check_out_folder(path: str | os.PathLike, label: str = "--out", *, parent: bool = False) -> None:
    """A folder we will write into: a folder or creatable, and writable (``parent``: its parent too)."""
    p = Path(path).expanduser()
    top = _ancestor(p)
    if not top.is_dir():
        raise UserError(f"cannot create folder {p}: {top} is a file")
    if not _writable(top):
        what = "is not writable" if top == p else f"cannot be created ({top} is not writable)"
        raise UserError(f"{label} {p} {what}: permission denied")
    if parent and top == p and not _writable(_ancestor(p.parent)):
        raise UserError(f"{label} {p}: its folder {p.parent} is not writable (permission denied)")


def check_out_file(path: str | os.PathLike, label: str = "--out") -> None:
    """A file we will write: not a folder, and its folder creatable and writable."""
    p = Path(path).expanduser()
    if p.is_dir():
        raise UserError(f"{label} {p} is a folder; give a file name (e.g. {p / 'grid.png'})")
    check_out_folder(p.parent, label)


def check_paths(values: Mapping[str, Any], kinds: Mapping[str, str],
                labels: Mapping[str, str] | None = None) -> None:  # fmt: skip
    """Check every path parameter named in ``kinds`` (lists: each element)."""
    for name, kind in kinds.items():
        value = values.get(name)
        items: Iterable[Any] = value if isinstance(value, (list, tuple)) else [value]
        for v in items:
            check_path((labels or {}).get(name, name), v, kind)

#: Default kind of a path parameter by name (a command may override, e.g. preview's --out is a file).
PATH_RULES: dict[str, str] = {
    "out": "out_dir", "checkpoint": "in_any", "plugin": "in_file", "config_file": "in_file",
    "root": "dir_if_exists", "frost_dir": "in_dir", "run_dirs": "in_any", "image": "in_file",
}  # fmt: skip
#: How positional path arguments are named in messages.
ARGUMENT_LABELS = {"run_dirs": "results folder", "image": "image file"}
