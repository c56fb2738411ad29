"""actbench: does this activation function make a CNN more robust to noise and corruptions?

``robustbench_act.run(spec)`` does what ``actbench <command>`` does, for a ``RunSpec``,
``TrainSpec``, ``SweepSpec``, ``CompareSpec`` or ``ReportSpec`` (:mod:`robustbench_act.api`).

``robustbench_act.benchmark`` is a drop-in for RobustBench's corruption benchmark (see
:mod:`robustbench_act.robustbench_compat`); it is imported on first use so that the CLI
starts without torch.
"""

from typing import Any

__version__ = "0.1.0"


_API = {"run": "api", "RunSpec": "specs", "TrainSpec": "specs", "SweepSpec": "specs", "CompareSpec": "specs",
        "ReportSpec": "specs", "benchmark": "robustbench_compat"}


def __getattr__(name: str) -> Any:
    if name in _API:
        import importlib

        return getattr(importlib.import_module(f"robustbench_act.{_API[name]}"), name)
    raise AttributeError(f"module 'robustbench_act' has no attribute {name!r}")
