"""Shared test fixtures: every test starts from the built-in registries, whatever others added."""

from __future__ import annotations

import os

import pytest

# Tests never read the user's dataset cache; each test that needs one sets its own.
os.environ.setdefault("ACTBENCH_CACHE", "off")
# Nor frost photographs an installed package happens to ship (imagecorruptions): the tests of
# that lookup point it at their own fake package.
os.environ.setdefault("ACTBENCH_FROST_DIR", "procedural")
# LayerAct's compiled CPU kernel (the default outside the tests) costs seconds per new
# tensor shape to compile; the suite runs the eager kernel except where a test asks for
# inductor (tests/test_activations.py runs the kernel tests on both).
os.environ.setdefault("ACTBENCH_LAYERACT_KERNEL", "eager")


@pytest.fixture(autouse=True)
def _isolated_registries():
    """Snapshot the corruption and activation registries and restore them after the test."""
    import robustbench_act.activations as activations
    from corruptions import registry as corruption_registry

    corruption_registry._ensure_builtins()
    saved_corruptions = dict(corruption_registry._REGISTRY)
    saved_ep = (corruption_registry._ENTRY_POINTS_LOADED, corruption_registry._ENTRY_POINT_ERROR)
    saved_activations = dict(activations._REGISTRY)
    saved_aliases = dict(activations._ALIASES)
    yield
    corruption_registry._REGISTRY.clear()
    corruption_registry._REGISTRY.update(saved_corruptions)
    corruption_registry._ENTRY_POINTS_LOADED, corruption_registry._ENTRY_POINT_ERROR = saved_ep
    activations._REGISTRY.clear()
    activations._REGISTRY.update(saved_activations)
    activations._ALIASES.clear()
    activations._ALIASES.update(saved_aliases)
