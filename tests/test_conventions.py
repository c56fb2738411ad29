"""CLI and plug-in conventions: --version, shell completion, entry-point plug-ins that fail,
corruptions without a severity table, Slurm array shards."""

from __future__ import annotations

import os
import subprocess
import sys
import types

import pytest
import torch

import corruptions
from corruptions import registry
from robustbench_act.errors import UserError
from robustbench_act.sweep import shard_from_slurm


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "robustbench_act", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=300)  # fmt: skip


def test_version_and_shell_completion() -> None:
    import robustbench_act

    res = _cli("--version")
    assert res.returncode == 0 and res.stdout.strip() == f"actbench {robustbench_act.__version__}"
    # Typer detects the shell from the process tree (shellingham): start it from bash so the
    # answer does not depend on what launched the tests
    script = subprocess.run(["bash", "-c", f"'{sys.executable}' -m robustbench_act --show-completion; exit $?"],
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert script.returncode == 0 and "_ACTBENCH_COMPLETE" in script.stdout, script.stderr
    words = _cli(env={"_ACTBENCH_COMPLETE": "complete_bash", "COMP_WORDS": "actbench swe", "COMP_CWORD": "1"})
    assert words.returncode == 0 and words.stdout.split() == ["sweep"]


def _entry_points(monkeypatch, *eps) -> None:
    monkeypatch.setattr(registry, "entry_points", lambda group: list(eps))
    monkeypatch.setattr(registry, "_ENTRY_POINTS_LOADED", False)
    monkeypatch.setattr(registry, "_ENTRY_POINT_ERROR", None)


def test_a_failing_entry_point_fails_every_call(monkeypatch) -> None:
    def bad_load():
        raise ImportError("no module named nowhere")

    good = lambda images, params, rng: images  # noqa: E731
    good._corruption_table = {"group": "extra", "presets": [1, 2, 3, 4, 5], "random": False}
    _entry_points(monkeypatch, types.SimpleNamespace(name="ep_ok", value="ok:fn", load=lambda: good),
                  types.SimpleNamespace(name="ep_bad", value="nowhere:fn", load=bad_load))
    for call in (corruptions.names, lambda: corruptions.get("fog"), lambda: corruptions.names("plugins")):
        with pytest.raises(corruptions.CorruptionError, match="'ep_bad' .nowhere:fn. failed to load") as err:
            call()
        assert "\n" not in str(err.value) and "fix or uninstall" in str(err.value)


@pytest.mark.parametrize(("name", "obj", "message"), [
    ("fog", "table", "already registered"),  # a clash with a built-in
    ("ep_silent", "nothing", "registered no corruption 'ep_silent'"),
])  # fmt: skip
def test_entry_point_contract_violations(monkeypatch, name: str, obj: str, message: str) -> None:
    fn = lambda images, params, rng: images  # noqa: E731
    if obj == "table":
        fn._corruption_table = {"group": "extra", "presets": [1, 2, 3, 4, 5]}
    _entry_points(monkeypatch, types.SimpleNamespace(name=name, value="pkg:fn", load=lambda: fn))
    for _ in range(2):
        with pytest.raises(corruptions.CorruptionError, match=message):
            corruptions.names()


def test_entry_point_module_that_registers_on_import(monkeypatch) -> None:
    def load():
        @corruptions.register("ep_module_invert", group="digital", presets=[1, 1, 1, 1, 1], random=False)
        def invert(images, params, rng):
            return 1.0 - images

        return types.ModuleType("pkg.corruption_mod")

    _entry_points(monkeypatch, types.SimpleNamespace(name="ep_module_invert", value="pkg.corruption_mod", load=load))
    assert "ep_module_invert" in corruptions.names("plugins")
    assert corruptions.get("ep_module_invert").source == "entry point pkg.corruption_mod"


def test_register_without_a_severity_table() -> None:
    seen = []

    @corruptions.register("tmp_self_mapped", group="extra")
    def self_mapped(images, params, rng):
        seen.append(dict(params))
        return (images * (1.0 - 0.1 * params["severity"]) + 0.01 * rng.uniform(*images.shape[1:])).clamp(0, 1)

    c = corruptions.get("tmp_self_mapped")
    assert c.param_names == ("severity", "preset") and c.params(3, "cifar") == {"severity": 3, "preset": "cifar"}
    x = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8)
    a = corruptions.apply(x, "tmp_self_mapped", 3, seed=1)
    assert seen[-1] == {"severity": 3, "preset": "cifar"}
    assert torch.equal(a, corruptions.apply(x, "tmp_self_mapped", 3, seed=1))
    assert not torch.equal(a, corruptions.apply(x, "tmp_self_mapped", 4, seed=1))
    corruptions.apply(x, "tmp_self_mapped", params={"severity": 2}, preset="imagenet")
    assert seen[-1] == {"severity": 2, "preset": "imagenet"}
    with pytest.raises(corruptions.CorruptionError, match="severity must be an integer 1..5"):
        corruptions.apply(x, "tmp_self_mapped", 6)
    with pytest.raises(corruptions.CorruptionError, match="need a severity table"):
        corruptions.register("tmp_bad", group="extra", param_names=("k",))


def test_shard_from_slurm_array_variables() -> None:
    assert shard_from_slurm({}) is None
    assert shard_from_slurm({"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "8"})[0] == (3, 8)
    one_based = shard_from_slurm({"SLURM_ARRAY_TASK_ID": "5", "SLURM_ARRAY_TASK_MIN": "1",
                                  "SLURM_ARRAY_TASK_MAX": "8"})  # fmt: skip
    assert one_based == ((4, 8), "SLURM_ARRAY_TASK_ID=5, SLURM_ARRAY_TASK_MIN=1, SLURM_ARRAY_TASK_MAX=8")
    stepped = {"SLURM_ARRAY_TASK_ID": "4", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_MAX": "10",
               "SLURM_ARRAY_TASK_STEP": "2"}  # fmt: skip
    assert shard_from_slurm(stepped)[0] == (2, 6)
    for bad in ({"SLURM_ARRAY_TASK_ID": "3"}, {"SLURM_ARRAY_TASK_ID": "9", "SLURM_ARRAY_TASK_COUNT": "8"},
                {"SLURM_ARRAY_TASK_ID": "x", "SLURM_ARRAY_TASK_COUNT": "8"}):  # fmt: skip
        with pytest.raises(UserError, match="Slurm"):
            shard_from_slurm(bad)


def test_sweep_takes_its_shard_from_slurm(tmp_path) -> None:
    env = {"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "2"}
    res = _cli("sweep", "--models", "cnn_small", "--activations", "relu,silu,tanh", "--seeds", "0",
               "--dataset", "digits", "--out", str(tmp_path / "sw"), "--dry-run", "--json", env=env)
    assert res.returncode == 0, res.stderr
    assert "shard 1/2 from the Slurm array (SLURM_ARRAY_TASK_ID=1, SLURM_ARRAY_TASK_COUNT=2)" in res.stderr
    import json

    rows = json.loads(res.stdout)
    assert {r["shard"] for r in rows} == {1} and len(rows) == 1
    explicit = _cli("sweep", "--models", "cnn_small", "--activations", "relu,silu,tanh", "--seeds", "0",
                    "--dataset", "digits", "--out", str(tmp_path / "sw"), "--dry-run", "--json",
                    "--shard", "0/1", env=env)  # fmt: skip
    assert explicit.returncode == 0 and "Slurm" not in explicit.stderr and len(json.loads(explicit.stdout)) == 3
