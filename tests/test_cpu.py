"""CPU thread defaults: thread pools sized by the CPUs of the affinity mask (not the moment's load), set by the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import pytest

from robustbench_act import cpu


def test_threads_follow_the_affinity_mask_and_the_load(monkeypatch: pytest.MonkeyPatch) -> None:
    want = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert cpu.allowed_cpus() == want
    monkeypatch.setattr(cpu, "allowed_cpus", lambda: 16)
    for load, free in ((0.2, 16), (3.6, 12), (15.4, 1), (40.0, 1)):
        monkeypatch.setattr(os, "getloadavg", lambda load=load: (load, load, load))
        assert cpu.free_cpus() == free
    # the default does not follow the load: the same command gives the same thread count
    monkeypatch.setattr(os, "getloadavg", lambda: (4.0, 4.0, 4.0))
    assert cpu.default_threads() == 16 and cpu.default_threads(5) == 3 and cpu.default_threads(99) == 1


def test_omp_num_threads_is_a_default_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cpu, "default_threads", lambda processes=1: 3)
    env: dict[str, str] = {}
    assert cpu.set_thread_defaults(env) == 3 and env == {"OMP_NUM_THREADS": "3"}
    env = {"OMP_NUM_THREADS": "7"}
    assert cpu.set_thread_defaults(env) is None and env == {"OMP_NUM_THREADS": "7"}


@pytest.mark.parametrize("preset", [None, "1"])
def test_cli_sizes_torch_threads_before_torch_loads(preset: str | None) -> None:
    """A command's torch gets the thread count the CLI set (or the user's OMP_NUM_THREADS)."""
    code = (
        "import os, sys\n"
        "from robustbench_act import cli\n"
        "sys.argv = ['actbench', 'activations']\n"
        "try:\n    cli.main()\nexcept SystemExit:\n    pass\n"
        "import torch\n"
        "print('THREADS', torch.get_num_threads(), os.environ.get('OMP_NUM_THREADS'))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    if preset:
        env["OMP_NUM_THREADS"] = preset
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout
    _, got, env_value = next(ln for ln in out.splitlines() if ln.startswith("THREADS")).split()
    assert got == env_value and 1 <= int(got) <= cpu.allowed_cpus()
    if preset:
        assert got == preset


def _cli_stderr_lines(tmp_path, variable: str, value: str, command: str) -> list[str]:
    """Run ``actbench <command> --out o`` with ``variable=value`` in tmp_path: exit 2, no files;
    the stderr lines (no traceback)."""
    env = {**os.environ, variable: value}
    code = f"import sys\nfrom robustbench_act import cli\nsys.argv = ['actbench', '{command}', '--out', 'o']\ncli.main()\n"
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         cwd=tmp_path)  # fmt: skip
    assert res.returncode == 2 and list(tmp_path.iterdir()) == []
    assert "Traceback" not in res.stderr
    return res.stderr.strip().splitlines()


def test_bad_layeract_kernel_env_is_one_line_exit_2_before_any_output(tmp_path) -> None:
    """ACTBENCH_LAYERACT_KERNEL is checked before a command starts (no torch, no files)."""
    lines = _cli_stderr_lines(tmp_path, "ACTBENCH_LAYERACT_KERNEL", "fast", "train")
    assert len(lines) == 1 and "ACTBENCH_LAYERACT_KERNEL='fast' is not a LayerAct kernel" in lines[0]
    assert "valid: auto, cpp, inductor, eager" in lines[0]
    assert cpu.requested_layeract_kernel({"ACTBENCH_LAYERACT_KERNEL": " Eager "}) == "eager"
    assert cpu.requested_layeract_kernel({}) == "auto"


def test_bad_corruption_kernels_env_is_one_line_exit_2_before_any_output(tmp_path) -> None:
    """CORRUPTIONS_KERNELS is checked before a command starts; its choices are the package's."""
    from corruptions.native import KERNEL_CHOICES

    lines = _cli_stderr_lines(tmp_path, "CORRUPTIONS_KERNELS", "nativ", "run")
    assert len(lines) == 1 and "CORRUPTIONS_KERNELS='nativ' is not a corruption kernel choice" in lines[0]
    assert "closest: native" in lines[0]
    assert cpu.CORRUPTION_KERNELS == KERNEL_CHOICES
    assert cpu.requested_corruption_kernels({"CORRUPTIONS_KERNELS": "EAGER"}) == "eager"


def test_manifest_records_the_corruption_kernels(monkeypatch: pytest.MonkeyPatch) -> None:
    """numerics() names the stream kernels in use (eager here) and the variable that chose them."""
    from corruptions import native
    from robustbench_act.manifest import numerics

    monkeypatch.setenv("CORRUPTIONS_KERNELS", "eager")
    monkeypatch.setitem(native._STATE, "choice", "eager")
    out = numerics()
    assert out["corruption_kernels"] == "eager"
    assert out["environment"]["CORRUPTIONS_KERNELS"] == "eager"


def test_unbuildable_cpp_kernel_stops_a_run_before_any_output(tmp_path) -> None:
    """The cpp LayerAct kernel is built when a run records its numerics: a failure leaves no files."""
    blocker = tmp_path / "cache-is-a-file"
    blocker.write_text("")
    env = {**os.environ, "ACTBENCH_LAYERACT_KERNEL": "cpp", "XDG_CACHE_HOME": str(blocker)}
    code = "import sys\nfrom robustbench_act import cli\nsys.argv = ['actbench', 'run', '--out', 'o']\ncli.main()\n"
    work = tmp_path / "work"
    work.mkdir()
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=work)
    if "needs a C++ compiler" in res.stderr:
        pytest.skip("no C++ compiler")
    assert res.returncode == 2 and list(work.iterdir()) == [], res.stderr
    lines = [ln for ln in (res.stdout + res.stderr).strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "cannot build LayerAct's C++ CPU kernel" in lines[0], lines
    assert "Traceback" not in res.stderr


def test_native_bf16_reads_the_cpu_flags() -> None:
    assert cpu.native_bf16("flags\t: fpu sse2 avx2 fma\n") is False
    assert cpu.native_bf16("flags\t: fpu avx2 avx512f avx512_bf16\n") is True
    assert cpu.native_bf16("flags\t: fpu avx2 amx_bf16 amx_tile\n") is True
    assert cpu.native_bf16("Features\t: fp asimd bf16 i8mm\n") is True  # Arm


def test_emulated_bf16_autocast_is_warned_about_once_on_the_cpu_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cpu, "_WARNED", set())
    monkeypatch.setattr(cpu, "native_bf16", lambda cpuinfo=None: True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cpu.warn_if_emulated_bf16("cpu")  # bf16 hardware: nothing to say
        monkeypatch.setattr(cpu, "native_bf16", lambda cpuinfo=None: False)
        cpu.warn_if_emulated_bf16("cuda")
    with pytest.warns(UserWarning, match="no native bf16 arithmetic"):
        cpu.warn_if_emulated_bf16("cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cpu.warn_if_emulated_bf16("cpu")  # once per process
