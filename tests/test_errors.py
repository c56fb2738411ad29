"""The one-line 'unknown name' errors every command uses."""

from __future__ import annotations

from robustbench_act.errors import SHORT_LIST, unknown


def test_short_lists_are_printed_whole() -> None:
    msg = str(unknown("gates mode", "maybe", ["keep", "swap"]))
    assert msg == "unknown gates mode 'maybe' (valid: keep, swap)"
    msg = str(unknown("order", "swaped", ["conventional", "swapped", "swapped"]))
    assert msg == "unknown order 'swaped'; closest: swapped (valid: conventional, swapped)"


def test_long_lists_give_count_closest_and_where_to_look() -> None:
    names = [f"act{i}" for i in range(SHORT_LIST + 1)] + ["relu"]
    msg = str(unknown("activation", "rleu", names, listed_by="actbench activations"))
    assert msg == (f"unknown activation 'rleu'; closest: relu ({len(names)} valid names; "
                   "see actbench activations)")  # fmt: skip
    assert "see" not in str(unknown("thing", "x", names))
