"""One parser per option vocabulary, shared by the CLI and the Python API.

Integer sets (severities, seeds) are written ``1-5``, ``0,2,7`` or one number; every
parser returns sorted unique values or raises a one-line :class:`UserError` naming the
option, the bad part and the accepted form.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from robustbench_act.errors import UserError
from robustbench_act.inputs import MAX_SEED

MAX_SEEDS = 10_000  # a range naming more seeds than this is a typo (0-99999999 would plan billions)


def parse_int_set(spec: str | int | Sequence[int], option: str, *, low: int, high: int,
                  example: str, max_count: int | None = None) -> list[int]:  # fmt: skip
    """'a-b', 'a,b,c', 'a' or a list -> sorted unique ints in [low, high]."""
    if isinstance(spec, bool):
        raise UserError(f"{option} must be numbers like {example}, got {spec!r}")
    if isinstance(spec, int):
        vals = [spec]
    elif isinstance(spec, str):
        vals = _parse_text(spec, option, example, max_count, low, high)
    else:
        try:
            vals = [int(v) for v in spec]
        except (TypeError, ValueError):
            raise UserError(f"{option} must be numbers like {example}, got {spec!r}") from None
    if not vals:
        raise UserError(f"{option} is empty; give e.g. {example}")
    bad = [v for v in vals if not low <= v <= high]
    if bad:
        raise UserError(f"{option} must be in {low}..{high}, got {bad[0]}")
    out = sorted(set(vals))
    if max_count is not None and len(out) > max_count:
        raise UserError(f"{option} names {len(out)} values; at most {max_count}")
    return out


def _parse_text(spec: str, option: str, example: str, max_count: int | None, low: int, high: int) -> list[int]:
    text = spec.strip()
    if not text:
        raise UserError(f"{option} is empty; give e.g. {example}")
    vals: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        m = re.fullmatch(r"(\d+)\s*-\s*(\d+)", part)
        if m:
            lo, hi = int(m.group(1)), int(m.group(2))
            if lo > hi:
                raise UserError(f"bad {option} range {part!r} (low > high)")
            if lo < low or hi > high:  # before expanding: 1-99999999999 must not allocate
                raise UserError(f"{option} must be in {low}..{high}, got {part}")
            if max_count is not None and hi - lo >= max_count:
                raise UserError(f"{option} range {part!r} names {hi - lo + 1} values; at most {max_count}")
            vals.extend(range(lo, hi + 1))
        elif re.fullmatch(r"\d+", part):
            vals.append(int(part))
        else:
            raise UserError(f"bad {option} {spec!r}: use {example}")
    return vals


def parse_severities(spec: str | int | Sequence[int]) -> list[int]:
    """'1-5', '1,3,5', '3' or a list -> sorted unique severities in 1..5."""
    return parse_int_set(spec, "--severities", low=1, high=5, example="1-5, 1,3,5 or 3")


def parse_seeds(spec: str | int | Sequence[int]) -> list[int]:
    """'0-4', '0,2,7', '3' or a list -> sorted unique training seeds in 0..2^63-1."""
    return parse_int_set(spec, "--seeds", low=0, high=MAX_SEED, example="0-2, 0,2,7 or 3",
                         max_count=MAX_SEEDS)  # fmt: skip


def parse_names(spec: str | Sequence[str] | None, option: str) -> list[str]:
    """'a,b' or a list -> names; None -> []; an empty item ('a,,b', ',') is refused."""
    if spec is None:
        return []
    if isinstance(spec, str):
        from robustbench_act.inputs import name_list

        return name_list(option, spec) or []
    names = [str(s).strip() for s in spec]
    if any(not n for n in names):
        raise UserError(f"{option} has an empty name")
    return names


def parse_corruptions(spec: str | Sequence[str]) -> list[str]:
    """'all', 'common', a group, 'name,name' or a list -> corruption names; 'none' -> [] (clean
    data only). Plug-ins must be loaded first."""
    import corruptions

    text = spec if isinstance(spec, str) else ",".join(str(s) for s in spec)
    if text.strip().lower() == "none":
        return []
    if not text.strip():
        raise UserError("--corruptions is empty; give all, common, a group, names, or none (clean only)")
    try:
        return corruptions.names(",".join(parse_names(text, "--corruptions")))
    except corruptions.CorruptionError as exc:
        raise UserError(str(exc)) from None


AMP_MODES = ("bf16", "fp16", "auto", "none")
_AMP_ALIASES = {"bf16": "bf16", "bfloat16": "bf16", "fp16": "fp16", "float16": "fp16", "half": "fp16",
                "auto": "auto", "none": None, "off": None, "no": None, "fp32": None, "float32": None}  # fmt: skip


def parse_amp(value: str | None, *, auto: bool = True) -> str | None:
    """Mixed-precision mode: bf16, fp16, auto (bf16 on CUDA, off on CPU; training only) or None."""
    if value is None:
        return None
    key = str(value).strip().lower()
    if key not in _AMP_ALIASES or (key == "auto" and not auto):
        from robustbench_act.errors import unknown

        raise unknown("--amp mode", str(value), [m for m in AMP_MODES if auto or m != "auto"])
    return _AMP_ALIASES[key]


PROBE_LEVELS = ("none", "fluctuation", "all")


def parse_probes(level: str) -> str:
    """Probe level: none, fluctuation or all (case-insensitive)."""
    lv = str(level).strip().lower()
    if lv not in PROBE_LEVELS:
        from robustbench_act.errors import unknown

        raise unknown("--probes level", str(level), PROBE_LEVELS)
    return lv


def resolve_device(device: Any) -> Any:
    """'auto'/None -> this process's CUDA device when there is one, else CPU; an unavailable
    device is a UserError. Under torchrun a bare 'cuda' means this rank's GPU."""
    import torch

    from robustbench_act import distributed as dist

    if device is None or str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", dist.local_rank() if dist.is_distributed() else torch.cuda.current_device())
        return torch.device("cpu")
    try:
        dev = torch.device(str(device))
    except (RuntimeError, ValueError):
        from robustbench_act.errors import unknown

        raise unknown("device", str(device), ["auto", "cpu", "cuda", "cuda:0", "mps"]) from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {device}: CUDA is not available here (use --device cpu)")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise UserError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) here")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise UserError(f"--device {device}: MPS is not available here (use --device cpu)")
    if dev.type == "cuda" and dev.index is None and dist.is_distributed():
        dev = torch.device("cuda", dist.local_rank())
    return dev
