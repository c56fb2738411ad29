"""LayerAct's kernel: per-group statistics, the scale functions and an exact, memory-lean backward.

``LayerActFn`` saves only the input and the per-group (mu, rstd) (the same memory as an
element-level activation) and recomputes the rest in its backward. On CPU it runs chunk
by chunk along the batch dimension (about :data:`CHUNK_ELEMENTS` values at a time), so
its ~6 forward and ~11 backward elementwise steps run on data that is still in the
caches: the tensors are read and written once from memory, like SiLU's. Groups never
span samples, so chunking changes no value. On other devices, and while torch.compile
traces it (inductor fuses the steps itself), it runs on the whole tensor at once.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

#: CPU: elements per chunk (1 MiB of float32; ResNet-20's activations at batch 256 are
#: 1-16 MiB per sample group of 16-256 samples). Forward + backward of LA-SiLU measured at
#: 2**14 .. 2**21 on (128, 16, 32, 32) and (128, 64, 8, 8), 1 thread: 2**18 fastest on both
#: (5-8 % ahead of 2**19).
CHUNK_ELEMENTS = 1 << 18

_SQRT_HALF = math.sqrt(0.5)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def scale_fn(scale: str, n: torch.Tensor) -> torch.Tensor:
    """Activation scale function s(n) of LayerAct."""
    if scale == "silu":
        return torch.sigmoid(n)
    if scale == "hardsilu":
        return (n / 6.0 + 0.5).clamp(0.0, 1.0)
    if scale == "gelu":
        return 0.5 * (1.0 + torch.erf(n * _SQRT_HALF))
    if scale == "mish":
        return torch.tanh(F.softplus(n))
    raise ValueError(f"unknown LayerAct scale {scale!r}")


def _mish_parts(n: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(tanh(softplus(n)), t = e^n) from one exp: tanh(log1p(t)) = t (t + 2) / (t (t + 2) + 2).

    3x faster than tanh(softplus(n)) on CPU (softplus alone costs 5 exps' time). n is
    clamped at 20 first (tanh(softplus(20)) = 1 - 8e-18, i.e. 1 in float64), which keeps
    t^2 finite in float32.
    """
    t = n.clamp(max=20.0).exp_()
    u = (t + 2.0).mul_(t)
    return u.div_(u + 2.0), t


def _scale_and_grad(scale: str, n: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """s(n) and its derivative s'(n), in closed form (one transcendental call each)."""
    if scale == "silu":
        s = torch.sigmoid(n)
        return s, torch.rsub(s, 1.0).mul_(s)
    if scale == "hardsilu":
        s = (n / 6.0 + 0.5).clamp(0.0, 1.0)
        return s, ((n > -3.0) & (n < 3.0)).to(n.dtype) / 6.0
    if scale == "gelu":
        s = torch.mul(n, _SQRT_HALF).erf_().add_(1.0).mul_(0.5)
        return s, torch.square(n).mul_(-0.5).exp_().mul_(_INV_SQRT_2PI)
    if scale == "mish":
        s, t = _mish_parts(n)
        # d/dn tanh(softplus(n)) = (1 - s^2) * sigmoid(n), sigmoid(n) = t / (1 + t)
        return s, torch.square(s).neg_().add_(1.0).mul_(t).div_(t.add_(1.0))
    raise ValueError(f"unknown LayerAct scale {scale!r}")


def _scale_inplace(scale: str, n: torch.Tensor) -> torch.Tensor:
    """s(n) as :func:`scale_fn`, computed in the scratch tensor ``n`` where the ops allow."""
    if scale == "silu":
        return n.sigmoid_()
    if scale == "hardsilu":
        return n.div_(6.0).add_(0.5).clamp_(0.0, 1.0)
    if scale == "gelu":
        return n.mul_(_SQRT_HALF).erf_().add_(1.0).mul_(0.5)
    if scale == "mish":
        return _mish_parts(n)[0]
    return scale_fn(scale, n)


def reduce_dims(x: torch.Tensor, dims: str) -> tuple[tuple[int, ...], int]:
    """The dims LayerAct normalises over ("sample": all but the batch dim; "last") and their size."""
    if x.dim() < 2:
        raise ValueError(f"LayerAct needs a batched input (N, ...), got shape {tuple(x.shape)}")
    red = tuple(range(1, x.dim())) if dims == "sample" else (x.dim() - 1,)
    count = math.prod([x.shape[d] for d in red])
    if count < 2:
        raise ValueError(
            f"LayerAct needs >= 2 elements per normalised group, got shape {tuple(x.shape)}"
        )
    return red, count


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype of LayerAct's statistics and intermediate steps: at least float32."""
    return torch.promote_types(dtype, torch.float32)


def no_autocast(x: torch.Tensor) -> contextlib.AbstractContextManager[Any]:
    """Disable autocast on x's device (statistics must stay in float32 or wider)."""
    dev = x.device.type
    if torch.amp.is_autocast_available(dev) and torch.is_autocast_enabled(dev):
        return torch.autocast(device_type=dev, enabled=False)
    return contextlib.nullcontext()  # nothing to switch off (the usual case in backward)


def _chunk_rows(x: torch.Tensor) -> int:
    """Batch rows per chunk: about CHUNK_ELEMENTS values on CPU, everything elsewhere."""
    n = x.shape[0]
    if x.device.type != "cpu" or torch.compiler.is_compiling() or n == 0:
        return max(n, 1)
    return max(1, CHUNK_ELEMENTS // max(1, x.numel() // n))


def _forward_chunk(
    x: torch.Tensor, scale: str, alpha: float, red: tuple[int, ...], count: int,
    out: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(output in x's dtype, mu, rstd) of one chunk; two-pass statistics in the compute dtype.

    The mean, then the norm of the centred values (needed anyway): ``torch.var_mean``'s
    Welford reduction is ~30x slower than a mean on CPU. ``out`` (x's shape and dtype)
    receives the output when x is already in the compute dtype (no copy).
    """
    xc = x.to(compute_dtype(x.dtype))
    mu = xc.mean(dim=red, keepdim=True)
    n = xc - mu
    var = torch.linalg.vector_norm(n, dim=red, keepdim=True).square_().div_(count - 1)
    rstd = torch.rsqrt(var.add_(alpha))
    s = _scale_inplace(scale, n.mul_(rstd))
    if out is not None and xc is x:
        return torch.mul(s, xc, out=out), mu, rstd
    y = s.mul_(xc).to(x.dtype)
    if out is not None:
        out.copy_(y)
    return y, mu, rstd


def _backward_chunk(
    x: torch.Tensor, g: torch.Tensor, mu: torch.Tensor, rstd: torch.Tensor, scale: str,
    red: tuple[int, ...], count: int, out: torch.Tensor | None = None,
) -> torch.Tensor:
    """dL/dx of one chunk: g * s(n) + rstd * (h - mean(h) - n * sum(h * n) / (count - 1)).

    h = dL/dn = g * x * s'(n); the last step is three fused multiply-adds with per-group
    coefficients (rstd, -rstd * mean(h), -rstd * sum(h n) / (count - 1)). ``out`` (x's
    shape and dtype) receives the gradient.
    """
    xc = x.to(mu.dtype)
    g = g.to(mu.dtype)
    n = (xc - mu).mul_(rstd)
    if scale == "silu":  # h = g x s (1 - s) in one step
        s = torch.sigmoid(n)
        h = torch.ops.aten.sigmoid_backward(g * xc, s)
    else:
        s, ds = _scale_and_grad(scale, n)
        h = (g * xc).mul_(ds)
    h_mean = h.mean(dim=red, keepdim=True)
    hn = torch.mul(h, n).sum(dim=red, keepdim=True).div_(count - 1)
    into = out if out is not None and out.dtype == h.dtype else None  # write in place: no copy
    grad = torch.addcmul(h_mean.mul_(rstd).neg_(), h, rstd, out=into) if into is not None else \
        torch.addcmul(h_mean.mul_(rstd).neg_(), h, rstd)
    grad = grad.addcmul_(n, hn.mul_(rstd).neg_()).addcmul_(g, s)
    if out is None:
        return grad.to(x.dtype)
    return out if into is not None else out.copy_(grad)


class LayerActFn(torch.autograd.Function):
    """LayerAct with a memory-lean exact backward: saves x and per-group (mu, rstd) only."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, scale: str, alpha: float, dims: str) -> torch.Tensor:
        red, count = reduce_dims(x, dims)
        step = _chunk_rows(x)
        with no_autocast(x):
            if step >= x.shape[0]:
                out, mu, rstd = _forward_chunk(x, scale, alpha, red, count)
            else:
                out = torch.empty_like(x)
                parts = []
                for a in range(0, x.shape[0], step):
                    _, mu_c, rstd_c = _forward_chunk(x[a : a + step], scale, alpha, red, count,
                                                     out=out[a : a + step])  # fmt: skip
                    parts.append((mu_c, rstd_c))
                mu, rstd = (torch.cat(t) for t in zip(*parts))
        ctx.save_for_backward(x, mu, rstd)
        ctx.scale, ctx.red, ctx.count = scale, red, count
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, None, None, None]:
        x, mu, rstd = ctx.saved_tensors
        if not ctx.needs_input_grad[0]:
            return None, None, None, None
        scale, red, count = ctx.scale, ctx.red, ctx.count
        step = _chunk_rows(x)
        with no_autocast(x):
            if step >= x.shape[0]:
                return _backward_chunk(x, grad_out, mu, rstd, scale, red, count), None, None, None
            grad = torch.empty_like(x)
            for a in range(0, x.shape[0], step):
                b = slice(a, a + step)
                _backward_chunk(x[b], grad_out[b], mu[b], rstd[b], scale, red, count, out=grad[b])
        return grad, None, None, None
