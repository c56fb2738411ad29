"""actbench: does this activation function make a CNN more robust to noise and corruptions?

``robustbench_act.benchmark`` is a drop-in for RobustBench's corruption benchmark (see
:mod:`robustbench_act.robustbench_compat`); it is imported on first use so that the CLI
starts without torch.
"""

from typing import Any

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name == "benchmark":
        from robustbench_act.robustbench_compat import benchmark

        return benchmark
    raise AttributeError(f"module 'robustbench_act' has no attribute {name!r}")
