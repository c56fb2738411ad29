"""Activation surgery: swap every activation of a model in place, and reorder BN/activation pairs.

Where activations hide (see docs and ``shared/reference/surgery.md``): activation modules
(torch's, timm's own non-subclass GELU/Sigmoid/Tanh..., ours), the ``.act`` child of timm
norm+act layers, one module shared by several call sites (torchvision ResNet ``self.relu``),
and plain function calls in ``forward`` (``F.relu`` in torchvision GoogLeNet/Inception,
``F.gelu`` in timm NFNet ``GammaAct``). Module sites are replaced with ``setattr``; call
sites inside a block's ``forward`` are handled by tracing ONLY that block with torch.fx
(every child a leaf), editing the graph, and giving the existing instance a subclass whose
``forward`` is the edited graph - so its other methods, hooks and state_dict keys stay.
A forward that depends on ``self.training`` is traced in both modes and dispatches at run
time. Only ``forward`` is rewritten: other methods of a rewritten block that call activation
functions themselves keep the old functions.
"""

from robustbench_act.surgery.reorder import ReorderReport, reorder_bn_act
from robustbench_act.surgery.reports import SwapReport
from robustbench_act.surgery.sites import (
    ActivationSite,
    FunctionActivation,
    find_activations,
    is_activation,
)
from robustbench_act.surgery.swap import swap_activations

__all__ = [
    "ActivationSite",
    "FunctionActivation",
    "ReorderReport",
    "SwapReport",
    "find_activations",
    "is_activation",
    "reorder_bn_act",
    "swap_activations",
]
