"""One parser per option vocabulary, shared by the CLI and the Python API.

Integer sets (severities, seeds) are written ``1-5``, ``0,2,7`` or one number; every
parser returns sorted unique values or raises a one-line :class:`UserError` naming the
option, the bad part and the accepted form.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

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
