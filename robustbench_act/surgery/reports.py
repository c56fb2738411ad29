"""What a swap did: the report of :func:`swap_activations`."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

# --------------------------------------------------------------------------- reports


@dataclass
class SwapReport:
    """What ``swap_activations`` did: counts by original type, call sites, gates, leftovers."""

    spec: str
    replaced: Counter[str] = field(default_factory=Counter)
    functional: list[tuple[str, str]] = field(default_factory=list)
    split: list[str] = field(default_factory=list)
    gates_kept: list[str] = field(default_factory=list)
    excluded: list[str] = field(default_factory=list)
    remaining: list[tuple[str, str]] = field(default_factory=list)
    untraced: list[tuple[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no activation was left unreplaced."""
        return not self.remaining

    @property
    def total(self) -> int:
        """Number of activation call sites now running the new activation."""
        return sum(self.replaced.values()) + len(self.functional) + len(self.split)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        fn_counts = Counter(f"F.{fn}" for _, fn in self.functional)
        return {
            "spec": self.spec,
            "ok": self.ok,
            "total": self.total,
            "replaced": dict(self.replaced),
            "functional": dict(fn_counts),
            "functional_sites": [name for name, _ in self.functional],
            "split_call_sites": list(self.split),
            "gates_kept": list(self.gates_kept),
            "excluded": list(self.excluded),
            "remaining": [{"name": n, "type": t} for n, t in self.remaining],
            "untraced": [{"name": n, "reason": r} for n, r in self.untraced],
        }

    def to_table(self) -> Any:
        """Rich table: original type, count, replaced by."""
        from rich.table import Table

        table = Table(title=f"activation surgery -> {self.spec}")
        table.add_column("original")
        table.add_column("count", justify="right")
        table.add_column("replaced by")
        for name, count in sorted(self.replaced.items()):
            table.add_row(name, str(count), self.spec)
        for fn, count in sorted(Counter(f"F.{fn} (call)" for _, fn in self.functional).items()):
            table.add_row(fn, str(count), self.spec)
        if self.split:
            table.add_row("extra call sites of shared modules", str(len(self.split)), self.spec)
        if self.gates_kept:
            table.add_row("gates (kept)", str(len(self.gates_kept)), "-")
        if self.excluded:
            table.add_row("excluded by pattern", str(len(self.excluded)), "-")
        if self.remaining:
            table.add_row("[red]remaining[/]", str(len(self.remaining)), "[red]not replaced[/]")
        return table

    def __rich__(self) -> Any:
        from rich.console import Group
        from rich.text import Text

        parts: list[Any] = [self.to_table()]
        if self.gates_kept:
            parts.append(Text(f"gates kept: {_short(self.gates_kept)}"))
        if self.remaining:
            parts.append(Text(f"remaining: {_short([f'{n} ({t})' for n, t in self.remaining])}",
                              style="red"))
        if self.untraced:
            parts.append(Text("not traced (functional calls there unseen): "
                              + _short([f"{n} ({r})" for n, r in self.untraced])))
        return Group(*parts)


def _short(items: list[str], n: int = 5) -> str:
    more = f", ... ({len(items) - n} more)" if len(items) > n else ""
    return ", ".join(items[:n]) + more


