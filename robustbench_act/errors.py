"""User-facing errors: one line, exit code 2 in the CLI, never a traceback."""

from __future__ import annotations

import difflib
import sys
from collections.abc import Iterable


class UserError(ValueError):
    """Bad input from the user (unknown name, bad file, bad option); shown as one line."""


def is_user_error(exc: BaseException) -> bool:
    """Whether ``exc`` is a bad-input error: ours, or the standalone corruptions package's.

    ``corruptions`` is only consulted when something already imported it: a CorruptionError
    cannot have been raised otherwise, and importing it here would load torch.
    """
    if isinstance(exc, UserError):
        return True
    error_type = getattr(sys.modules.get("corruptions"), "CorruptionError", None)
    return error_type is not None and isinstance(exc, error_type)


def closest(name: str, candidates: Iterable[str], n: int = 3) -> list[str]:
    """Return up to ``n`` candidates closest to ``name`` (for 'did you mean' hints)."""
    cands = sorted(set(candidates))
    hits = difflib.get_close_matches(name, cands, n=n, cutoff=0.5)
    if not hits:
        hits = [c for c in cands if name.lower() in c.lower() or c.lower() in name.lower()][:n]
    return hits


SHORT_LIST = 8  # candidate lists up to this long are printed whole


def unknown(kind: str, name: str, candidates: Iterable[str], *, listed_by: str | None = None) -> UserError:
    """Build the standard 'unknown <kind> NAME; closest: a, b, c (valid: ...)' error.

    Short candidate lists are given in full; long ones (models, activations) by count and
    ``listed_by``, where the user can read them.
    """
    cands = list(dict.fromkeys(candidates))
    hints = closest(name, cands)
    hint = f"; closest: {', '.join(hints)}" if hints else ""
    if len(cands) <= SHORT_LIST:
        return UserError(f"unknown {kind} {name!r}{hint} (valid: {', '.join(cands)})")
    where = f"; see {listed_by}" if listed_by else ""
    return UserError(f"unknown {kind} {name!r}{hint} ({len(cands)} valid names{where})")
