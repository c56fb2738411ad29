"""LayerAct and ANAct as activation modules, registered in the activation registry.

Imported by :mod:`robustbench_act.activations` once its registry exists (so the names
``la_*`` and ``an_*`` are there for every user of the registry).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from robustbench_act.activations import (
    _LAYERACT_DIMS,
    LAYERACT_SCALES,
    ActivationInfo,
    _add_entry,
    _Entry,
    _format_spec,
    get_activation,
    register_activation,
)
from robustbench_act.errors import UserError, unknown
from robustbench_act.layeract import (
    LayerActFn,
    compute_dtype,
    no_autocast,
    reduce_dims,
    scale_fn,
)

# ----------------------------------------------------------------------------- LayerAct
# (the autograd kernel, statistics and scale functions live in robustbench_act.layeract)


def layer_act_reference(
    x: torch.Tensor, scale: str = "silu", alpha: float = 1e-5, dims: str = "sample"
) -> torch.Tensor:
    """LayerAct written as plain autograd ops (slow, memory-hungry; for tests and benchmarks)."""
    red, _ = reduce_dims(x, dims)
    mu = x.mean(dim=red, keepdim=True)
    var = x.var(dim=red, keepdim=True, unbiased=True)
    return x * scale_fn(scale, (x - mu) / torch.sqrt(var + alpha))


class LayerAct(nn.Module):
    """LayerAct (Yoon & Lim): a = y * s(n), n = (y - mu) / sqrt(var + alpha) per sample.

    Statistics: mean and unbiased variance over all non-batch dims (``dims="sample"``) or
    over the last dim only (``dims="last"``, for (N, L, D) token inputs). No affine
    parameters, no running statistics, so train and eval compute the same function.
    Statistics are computed in at least float32 (also under autocast); the output keeps
    the input dtype. The backward is the exact gradient of this forward.
    """

    def __init__(self, scale: str = "silu", alpha: float = 1e-5, dims: str = "sample") -> None:
        super().__init__()
        if scale not in LAYERACT_SCALES:
            raise unknown("LayerAct scale", str(scale), LAYERACT_SCALES)
        if dims not in _LAYERACT_DIMS:
            raise UserError(
                f"LayerAct dims must be one of {', '.join(_LAYERACT_DIMS)}, got {dims!r}"
            )
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)):
            raise UserError(f"LayerAct alpha must be a number, got {alpha!r}")
        if not (math.isfinite(alpha) and alpha > 0):
            raise UserError(f"LayerAct alpha must be a finite number > 0, got {alpha!r}")
        self.scale, self.alpha, self.dims = scale, float(alpha), dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply LayerAct to a batched tensor (N, ...)."""
        return LayerActFn.apply(x, self.scale, self.alpha, self.dims)

    def extra_repr(self) -> str:
        """Short description for print(model)."""
        return f"scale={self.scale}, alpha={self.alpha:g}, dims={self.dims}"


def _layeract(scale: str, label: str) -> Callable[..., nn.Module]:
    def factory(alpha: float = 1e-5, dims: str = "sample") -> nn.Module:
        return LayerAct(scale, alpha=alpha, dims=dims)

    factory.__doc__ = f"LayerAct with scale {label}."
    return factory


for _scale, _label, _desc, _aliases in (
    ("silu", "silu", "y * sigmoid(n), n = per-sample normalised y", ("la_swish",)),
    ("hardsilu", "hardsilu", "y * hardsigmoid(n), n = per-sample normalised y", ("la_hardswish",)),
    ("gelu", "gelu", "y * Phi(n) (normal CDF), n = per-sample normalised y", ()),
    ("mish", "mish", "y * tanh(softplus(n)), n = per-sample normalised y", ()),
):
    register_activation(f"la_{_scale}", kind="layeract", description=_desc, aliases=_aliases)(
        _layeract(_scale, _label)
    )


# ----------------------------------------------------------------------------- ANAct


class ANAct(nn.Module):
    """ANAct, as operationally defined by this project: output = lambda * f(x).

    The paper's exact update rule is not public; this project uses: in training, on the
    current mini-batch and without gradient through the statistics,
    rho = E[f(x)^2] / E[x^2] (forward gain), rho' = E[f'(x)^2] (backward gain, f' by
    autograd on a detached copy), lambda = (rho * rho')^(-1/4). Training uses the batch
    lambda and updates the buffer ``factor`` (init 1, EMA with ``momentum`` like
    BatchNorm); evaluation uses ``factor`` frozen. A degenerate batch (rho * rho' == 0)
    keeps the running factor. ``f`` must be element-wise.
    """

    def __init__(self, base: nn.Module | str = "silu", momentum: float = 0.1) -> None:
        super().__init__()
        if isinstance(base, str):
            base = get_activation(base)
        if not isinstance(base, nn.Module):
            raise UserError(f"ANAct base must be a module or a spec, got {type(base).__name__}")
        if isinstance(momentum, bool) or not isinstance(momentum, (int, float)):
            raise UserError(f"ANAct momentum must be a number, got {momentum!r}")
        if not 0.0 <= momentum <= 1.0:
            raise UserError(f"ANAct momentum must be in [0, 1], got {momentum!r}")
        self.base = base
        self.momentum = float(momentum)
        self.register_buffer("factor", torch.tensor(1.0))

    @torch.no_grad()
    def batch_factor(self, x: torch.Tensor) -> torch.Tensor:
        """lambda = (rho * rho')^(-1/4) on this batch (0-dim float32; running factor if degenerate)."""
        with no_autocast(x):
            xd = x.detach().to(compute_dtype(x.dtype))
            y, dy = _value_and_derivative(self.base, xd)
        ex2 = xd.pow(2).mean()
        rho = y.pow(2).mean() / ex2
        rho_p = dy.pow(2).mean()
        prod = (rho * rho_p).float()
        ok = torch.isfinite(prod) & (prod > 0) & (ex2 > 0)
        safe = torch.where(ok, prod, torch.ones_like(prod))
        return torch.where(ok, safe.pow(-0.25), self.factor.float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply lambda * f(x): batch lambda (and EMA update) in training, frozen factor in eval."""
        out = self.base(x)
        if self.training:
            lam = self.batch_factor(x)
            with torch.no_grad():
                self.factor.lerp_(lam.to(self.factor.dtype), self.momentum)
        else:
            lam = self.factor
        return out * lam.to(out.dtype)

    def extra_repr(self) -> str:
        """Short description for print(model)."""
        return f"momentum={self.momentum:g}, factor={float(self.factor):.4g}"


def _value_and_derivative(f: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """f(x) and f'(x) element-wise: closed forms for SiLU and ReLU (traceable by
    torch.compile, same formulas as their autograd backward), autograd otherwise."""
    if type(f) is nn.SiLU:
        s = torch.sigmoid(x)
        return x * s, s * (1.0 + x * (1.0 - s))
    if type(f) is nn.ReLU:
        return torch.relu(x), (x > 0).to(x.dtype)
    with torch.enable_grad():
        xd = x.detach().requires_grad_(True)
        y = f(xd)
        (dy,) = torch.autograd.grad(y, xd, torch.ones_like(y))
    return y.detach(), dy


def _anact_factory(base_name: str) -> Callable[..., nn.Module]:
    def factory(momentum: float = 0.1, **base_kwargs: Any) -> nn.Module:
        return ANAct(_format_spec(base_name, base_kwargs), momentum=momentum)

    factory.__doc__ = f"ANAct-normalised {base_name}."
    return factory


for _base, _aliases in (("silu", ("an_swish",)), ("relu", ()), ("gelu", ()), ("mish", ())):
    _e = _Entry(
        ActivationInfo(
            name=f"an_{_base}",
            kind="anact",
            description=f"lambda * {_base}(x), lambda from batch forward/backward gains (EMA)",
            aliases=_aliases,
        ),
        _anact_factory(_base),
        base=_base,
    )
    _add_entry(_e)
