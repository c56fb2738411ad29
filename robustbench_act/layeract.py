"""LayerAct's kernel: per-group statistics, the scale functions and an exact, memory-lean backward.

``LayerActFn`` saves only the input and the per-group (mu, rstd) (the same memory as an
element-level activation) and recomputes the rest in its backward. On CPU it runs chunk
by chunk along the batch dimension (about :data:`CHUNK_ELEMENTS` values at a time), so
its ~6 forward and ~11 backward elementwise steps run on data that is still in the
caches: the tensors are read and written once from memory, like SiLU's. Groups never
span samples, so chunking changes no value. On other devices, and while torch.compile
traces it (inductor fuses the steps itself), it runs on the whole tensor at once.

Two compiled CPU kernels are faster. The default (``cpp``, :mod:`robustbench_act.layeract_cpp`)
is a small C++ file built once per machine that runs every pass of a group while the group
is in L1/L2. ``inductor`` writes the same forward and backward as whole-tensor functions
(:func:`fused_forward`, :func:`fused_backward`) compiled into vectorised loops over chunks of
samples (each pass streams the chunk from L3). :func:`cpu_kernel` says which runs
(``ACTBENCH_LAYERACT_KERNEL``; manifests record it): they agree to float rounding, not bit
for bit.
"""

from __future__ import annotations

import contextlib
import functools
import math
import types
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from corruptions.native import cpp_compiler as _cpp_compiler
from robustbench_act import layeract_cpp
from robustbench_act.cpu import LAYERACT_KERNEL_ENV, requested_layeract_kernel
from robustbench_act.errors import UserError

#: CPU: elements per chunk (1 MiB of float32; ResNet-20's activations at batch 256 are
#: 1-16 MiB per sample group of 16-256 samples). Forward + backward of LA-SiLU measured at
#: 2**14 .. 2**21 on (128, 16, 32, 32) and (128, 64, 8, 8), 1 thread: 2**18 fastest on both
#: (5-8 % ahead of 2**19).
CHUNK_ELEMENTS = 1 << 18
#: CPU, compiled kernel: elements per call (fewer calls than the eager kernel's chunks,
#: each with ~30 us of call overhead; the passes over a chunk still hit the 1-2 MiB L2).
INDUCTOR_CHUNK_ELEMENTS = 1 << 19

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


def _chunk_rows(x: torch.Tensor, elements: int | None = None) -> int:
    """Batch rows per chunk: about ``elements`` (CHUNK_ELEMENTS) values on CPU, all elsewhere."""
    n = x.shape[0]
    if x.device.type != "cpu" or torch.compiler.is_compiling() or n == 0:
        return max(n, 1)
    return max(1, (elements or CHUNK_ELEMENTS) // max(1, x.numel() // n))


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


def cpu_kernel() -> str:
    """LayerAct's CPU kernel in this process: "cpp" (per sample), "inductor" or "eager".

    Chosen by ``ACTBENCH_LAYERACT_KERNEL`` (auto | cpp | inductor | eager; auto = cpp when
    a C++ compiler is found). They compute the same function up to float rounding, so the
    choice is part of a run's numerics; manifests record it (and recording it builds the cpp
    kernel, so a failed build stops a run before its outputs). The cpp kernel takes float32,
    float64 and bfloat16; a float16 tensor runs the eager kernel.
    """
    value = requested_layeract_kernel()
    compiler = _cpp_compiler()
    if value in ("cpp", "inductor") and compiler is None:
        raise UserError(f"{LAYERACT_KERNEL_ENV}={value} needs a C++ compiler and none was "
                        f"found (set CXX, or {LAYERACT_KERNEL_ENV}=eager)")  # fmt: skip
    if value == "auto":
        value = "cpp" if compiler is not None else "eager"
    if value == "cpp":
        layeract_cpp.library(str(compiler))  # built (once) now, so a failed build stops a run early
    return value


def fused_forward(
    x: torch.Tensor, scale: str, alpha: float, red: tuple[int, ...]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(output, mu, rstd) on the whole tensor, as plain ops for a compiler to fuse.

    Two-pass statistics in the compute dtype (the mean, then the centred sum of squares),
    like the eager kernel; inductor turns this into one reduction and one elementwise loop.
    """
    xc = x.to(compute_dtype(x.dtype))
    count = math.prod([x.shape[d] for d in red])
    mu = xc.mean(dim=red, keepdim=True)
    centred = xc - mu
    var = (centred * centred).sum(dim=red, keepdim=True) / (count - 1)
    rstd = torch.rsqrt(var + alpha)
    return (scale_fn(scale, centred * rstd) * xc).to(x.dtype), mu, rstd


def fused_backward(
    x: torch.Tensor, g: torch.Tensor, mu: torch.Tensor, rstd: torch.Tensor, scale: str,
    red: tuple[int, ...],
) -> torch.Tensor:
    """dL/dx on the whole tensor (the formula of :func:`_backward_chunk`), for a compiler."""
    xc, gc = x.to(mu.dtype), g.to(mu.dtype)
    count = math.prod([x.shape[d] for d in red])
    n = (xc - mu) * rstd
    s, ds = _scale_and_grad(scale, n)
    h = gc * xc * ds
    h_mean = h.mean(dim=red, keepdim=True)
    hn = (h * n).sum(dim=red, keepdim=True) / (count - 1)
    return (gc * s + rstd * (h - h_mean - n * hn)).to(x.dtype)


def _fused_forward_into(
    x: torch.Tensor, out: torch.Tensor, scale: str, alpha: float, red: tuple[int, ...]
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`fused_forward` writing its output into ``out`` (a slice of the whole output)."""
    y, mu, rstd = fused_forward(x, scale, alpha, red)
    out.copy_(y)
    return mu, rstd


def _fused_backward_into(
    x: torch.Tensor, g: torch.Tensor, mu: torch.Tensor, rstd: torch.Tensor, out: torch.Tensor,
    scale: str, red: tuple[int, ...],
) -> None:
    """:func:`fused_backward` writing the gradient into ``out``."""
    out.copy_(fused_backward(x, g, mu, rstd, scale, red))


@functools.cache
def _compiled(fn: Callable[..., Any], key: tuple[Any, ...]) -> Callable[..., Any]:
    """``fn`` compiled by inductor for one (scale, dims, dtype, shape, strides) key.

    Static shapes: with the sizes known, inductor drops the loop tails and cascade-sum
    helpers (its kernels ran 2x faster than the dynamic-shape ones on ResNet-20's tensors). Each key
    gets its own copy of the code object, so no key counts against another's recompile
    limit; fullgraph=True turns any graph break into an error, never a silent eager run.
    """
    code = fn.__code__.replace(co_name=f"{fn.__name__}[{', '.join(map(str, key))}]")
    clone = types.FunctionType(code, fn.__globals__, code.co_name, fn.__defaults__, fn.__closure__)
    return torch.compile(clone, dynamic=False, fullgraph=True)


def _compiled_kernel(x: torch.Tensor) -> str | None:
    """"cpp" or "inductor" when that compiled CPU kernel runs on x (not inside a trace), else None."""
    if x.device.type != "cpu" or torch.compiler.is_compiling():
        return None
    kernel = cpu_kernel()
    if kernel == "cpp":
        return "cpp" if layeract_cpp.supports(x) else None
    return "inductor" if kernel == "inductor" else None


def _key(x: torch.Tensor, scale: str, red: tuple[int, ...]) -> tuple[Any, ...]:
    """The compiled-kernel key of one chunk: scale, dims, dtype, shape, strides."""
    return (scale, red, x.dtype, tuple(x.shape), x.stride())


def _forward_by_chunks(
    x: torch.Tensor, step: int, run: Callable[[torch.Tensor, torch.Tensor], Any]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(output, mu, rstd) over ``step``-sample chunks; ``run(chunk, out)`` -> (mu, rstd) of one."""
    out = torch.empty_like(x)
    stats = [run(x[a : a + step], out[a : a + step])[-2:] for a in range(0, x.shape[0], step)]
    mu, rstd = (torch.cat(t) for t in zip(*stats))
    return out, mu, rstd


def _backward_by_chunks(x: torch.Tensor, step: int, run: Callable[[slice, torch.Tensor], Any]) -> torch.Tensor:
    """dL/dx over ``step``-sample chunks; ``run(rows, out)`` writes one chunk's gradient."""
    grad = torch.empty_like(x)
    for a in range(0, x.shape[0], step):
        run(slice(a, a + step), grad[a : a + step])
    return grad


def _inductor_forward(
    x: torch.Tensor, scale: str, alpha: float, red: tuple[int, ...]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(output, mu, rstd) from the compiled kernel, about INDUCTOR_CHUNK_ELEMENTS per call.

    Chunks keep the kernel's passes over them in the caches; every chunk shape is
    compiled once (static shapes, see :func:`_compiled`).
    """
    def run(xa: torch.Tensor, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return _compiled(_fused_forward_into, _key(xa, scale, red))(xa, out, scale, alpha, red)

    return _forward_by_chunks(x, _chunk_rows(x, INDUCTOR_CHUNK_ELEMENTS), run)


def _inductor_backward(
    x: torch.Tensor, g: torch.Tensor, mu: torch.Tensor, rstd: torch.Tensor, scale: str,
    red: tuple[int, ...],
) -> torch.Tensor:
    """dL/dx from the compiled kernel, chunk by chunk like :func:`_inductor_forward`."""
    def run(b: slice, out: torch.Tensor) -> None:
        _compiled(_fused_backward_into, _key(x[b], scale, red))(x[b], g[b], mu[b], rstd[b], out,
                                                                 scale, red)  # fmt: skip

    return _backward_by_chunks(x, _chunk_rows(x, INDUCTOR_CHUNK_ELEMENTS), run)


class LayerActFn(torch.autograd.Function):
    """LayerAct with a memory-lean exact backward: saves x and per-group (mu, rstd) only."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, scale: str, alpha: float, dims: str) -> torch.Tensor:
        red, count = reduce_dims(x, dims)
        with no_autocast(x):
            if (kernel := _compiled_kernel(x)) == "cpp":
                out, mu, rstd = layeract_cpp.forward(str(_cpp_compiler()), x, scale, alpha, red)
            elif kernel == "inductor":
                out, mu, rstd = _inductor_forward(x, scale, alpha, red)
            elif torch.compiler.is_compiling():
                out, mu, rstd = fused_forward(x, scale, alpha, red)
            elif (step := _chunk_rows(x)) >= x.shape[0]:
                out, mu, rstd = _forward_chunk(x, scale, alpha, red, count)
            else:
                out, mu, rstd = _forward_by_chunks(
                    x, step, lambda xa, o: _forward_chunk(xa, scale, alpha, red, count, out=o))
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
        with no_autocast(x):
            if (kernel := _compiled_kernel(x)) == "cpp":
                grad = layeract_cpp.backward(str(_cpp_compiler()), x, grad_out, mu, rstd, scale, red)
            elif kernel == "inductor":
                grad = _inductor_backward(x, grad_out, mu, rstd, scale, red)
            elif torch.compiler.is_compiling():
                grad = fused_backward(x, grad_out, mu, rstd, scale, red)
            elif (step := _chunk_rows(x)) >= x.shape[0]:
                grad = _backward_chunk(x, grad_out, mu, rstd, scale, red, count)
            else:
                grad = _backward_by_chunks(x, step, lambda b, o: _backward_chunk(
                    x[b], grad_out[b], mu[b], rstd[b], scale, red, count, out=o))
        return grad, None, None, None
