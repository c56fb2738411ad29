"""LayerAct's per-sample C++ CPU kernel: all passes over a group while it is in the L1/L2 cache.

The compiled (inductor) kernel runs its three forward passes (sum, centred sum of squares,
output) over whole chunks of samples, each streaming the chunk from L3; this kernel runs
them group by group (one sample, or one row for ``dims='last'``), so the second and third
pass read from L1/L2. It is a small C++ file built once per machine with the C++ compiler
inductor would use (``-O3 -march=native -fopenmp``; ~1 s), cached under
``$XDG_CACHE_HOME/actbench`` (default ``~/.cache/actbench``), and called through ctypes on raw
pointers, so no torch headers are compiled and a call costs microseconds.

Numerics: float32 and bfloat16 inputs are computed in float32 (bfloat16 read and written
with round-to-nearest-even, like torch), float64 in float64 with the C library's functions.
SiLU and Mish use a polynomial ``exp`` (Cephes' expf: <= 2 ulp) that the compiler
vectorises, GELU Abramowitz & Stegun's ``erf`` (7.1.26, |error| <= 1.5e-7) on top of it;
float64 uses the C library's ``exp`` and ``erf``. It agrees with the other kernels to float
rounding, not bit for bit.
"""

from __future__ import annotations

import ctypes
import functools
from pathlib import Path

import torch

from corruptions.native import FLAGS, NativeBuildError, build, cache_dir
from robustbench_act.errors import UserError

#: scale name -> the kernel's integer code
SCALE_CODES = {"silu": 0, "hardsilu": 1, "gelu": 2, "mish": 3}
#: dtype -> the suffix of the kernel's entry points
_DTYPE_SUFFIX = {torch.float32: "f32", torch.float64: "f64", torch.bfloat16: "bf16"}

SOURCE = r"""
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

namespace {

inline float bf16_to_f32(uint16_t v) { uint32_t u = uint32_t(v) << 16; float f; std::memcpy(&f, &u, 4); return f; }
inline uint16_t f32_to_bf16(float f) {  // round to nearest even, NaN kept quiet (as c10::BFloat16)
  uint32_t u; std::memcpy(&u, &f, 4);
  uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
  uint32_t quiet_nan = (u >> 16) | 0x40u;
  return uint16_t((u & 0x7fffffffu) > 0x7f800000u ? quiet_nan : rounded);  // a blend, not a branch
}
inline float load(const float* p, int64_t i) { return p[i]; }
inline double load(const double* p, int64_t i) { return p[i]; }
inline float load(const uint16_t* p, int64_t i) { return bf16_to_f32(p[i]); }
inline void store(float* p, int64_t i, float v) { p[i] = v; }
inline void store(double* p, int64_t i, double v) { p[i] = v; }
inline void store(uint16_t* p, int64_t i, float v) { p[i] = f32_to_bf16(v); }

// Cephes expf: range reduction by ln 2, degree-5 polynomial; written so that loops vectorise
inline float exp_approx(float x) {
  x = x < -87.3f ? -87.3f : (x > 88.3f ? 88.3f : x);  // 2^k stays a normal float
  // k = round(x / ln 2) by the 1.5 * 2^23 trick (std::floor and std::fmin keep GCC from vectorising)
  float k = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  float r = x - k * 0.693359375f + k * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  int32_t bits = (int32_t(k) + 127) << 23;
  float scale; std::memcpy(&scale, &bits, 4);
  return p * scale;
}
inline double exp_approx(double x) { return std::exp(x); }
// Abramowitz & Stegun 7.1.26 (|error| <= 1.5e-7, about one float ulp of Phi near 1/2), with
// the vectorisable exp above: std::erf keeps the loop scalar (LA-GELU's step at 0.5x SiLU's)
// erf(x) given e = exp(-x^2) (GELU's derivative needs that same exp, so it is computed once)
inline float erf_given_exp(float x, float e) {
  float ax = x < 0.0f ? -x : x;
  float t = 1.0f / (1.0f + 0.3275911f * ax);
  float p = 1.061405429f;
  p = p * t - 1.453152027f;
  p = p * t + 1.421413741f;
  p = p * t - 0.284496736f;
  p = p * t + 0.254829592f;
  float y = 1.0f - p * t * e;
  return x < 0.0f ? -y : y;
}
inline double erf_given_exp(double x, double) { return std::erf(x); }
template <class A> inline A erf_fn(A x) { return erf_given_exp(x, exp_approx(-x * x)); }

// sigmoid(n) from e^n: e / (1 + e) below 0, 1 - 1 / (1 + e) above (both exact to float
// rounding); this form runs 1.5x faster than 1 / (1 + e^-n) on AVX2 (the same for Mish's)
template <class A> inline A sigmoid(A n) {
  A e = exp_approx(n), d = A(1) / (A(1) + e);
  return n < A(0) ? e * d : A(1) - d;
}

// s(n) and s'(n) of the four scales (the formulas of layeract._scale_and_grad)
template <class A> inline void scale_and_grad(int scale, A n, A& s, A& ds) {
  if (scale == 0) {  // silu: sigmoid
    s = sigmoid(n);
    ds = s * (A(1) - s);
  } else if (scale == 1) {  // hardsilu
    A t = n / A(6) + A(0.5);
    s = t < A(0) ? A(0) : (t > A(1) ? A(1) : t);
    ds = (n > A(-3) && n < A(3)) ? A(1) / A(6) : A(0);
  } else if (scale == 2) {  // gelu: Phi(n), Phi'(n) = exp(-n^2 / 2) / sqrt(2 pi)
    A e = exp_approx(A(-0.5) * n * n);
    s = A(0.5) * (A(1) + erf_given_exp(n * A(0.70710678118654752440), e));
    ds = e * A(0.39894228040143267794);
  } else {  // mish: tanh(softplus(n)) = t (t + 2) / (t (t + 2) + 2), t = e^n
    A t = exp_approx(n < A(20) ? n : A(20));
    A u = t * (t + A(2));
    A r = A(1) / ((u + A(2)) * (t + A(1)));  // one division for s and sigmoid(n) = t / (t + 1)
    s = n < A(0) ? u * (t + A(1)) * r : A(1) - A(2) * (t + A(1)) * r;
    ds = A(2) * t * (A(1) + s) * r;  // (1 - s^2) sigmoid(n), 1 - s = 2 / (u + 2) without cancelling
  }
}

template <class A> inline A scale_only(int scale, A n) {
  if (scale == 0) return sigmoid(n);
  if (scale == 1) { A t = n / A(6) + A(0.5); return t < A(0) ? A(0) : (t > A(1) ? A(1) : t); }
  if (scale == 2) return A(0.5) * (A(1) + erf_fn(n * A(0.70710678118654752440)));
  A t = exp_approx(n < A(20) ? n : A(20));
  A u = t * (t + A(2)), r = A(1) / (u + A(2));
  return n < A(0) ? u * r : A(1) - A(2) * r;
}

template <class T, class A>
void forward(const T* x, T* out, A* mu, A* rstd, int64_t rows, int64_t n, A alpha, int scale, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const T* a = x + r * n;
    T* o = out + r * n;
    A sum = 0;
#pragma omp simd reduction(+ : sum)
    for (int64_t i = 0; i < n; ++i) sum += load(a, i);
    const A m = sum / A(n);
    A sq = 0;
#pragma omp simd reduction(+ : sq)
    for (int64_t i = 0; i < n; ++i) { A c = load(a, i) - m; sq += c * c; }
    const A rs = A(1) / std::sqrt(sq / A(n - 1) + alpha);
    switch (scale) {  // one loop per scale, so each vectorises without a branch inside
      case 0:
#pragma omp simd
        for (int64_t i = 0; i < n; ++i) { A v = load(a, i); store(o, i, v * scale_only(0, (v - m) * rs)); }
        break;
      case 1:
#pragma omp simd
        for (int64_t i = 0; i < n; ++i) { A v = load(a, i); store(o, i, v * scale_only(1, (v - m) * rs)); }
        break;
      case 2:
#pragma omp simd
        for (int64_t i = 0; i < n; ++i) { A v = load(a, i); store(o, i, v * scale_only(2, (v - m) * rs)); }
        break;
      default:
#pragma omp simd
        for (int64_t i = 0; i < n; ++i) { A v = load(a, i); store(o, i, v * scale_only(3, (v - m) * rs)); }
    }
    mu[r] = m;
    rstd[r] = rs;
  }
}

// two passes over one group: the sums of h = g x s'(n) and h n (keeping g s(n) and h in a
// per-thread scratch of 2 n values, still in L1/L2), then the gradient without a second
// transcendental s(n)
// hardsilu: s(n) is cheaper to recompute than to keep, so the second pass recomputes it
template <class T, class A>
inline void backward_row_recompute(const T* a, const T* g, T* o, A m, A rs, int64_t n) {
  A sh = 0, shn = 0;
#pragma omp simd reduction(+ : sh, shn)
  for (int64_t i = 0; i < n; ++i) {
    A v = load(a, i), nn = (v - m) * rs, s, ds;
    scale_and_grad(1, nn, s, ds);
    A h = load(g, i) * v * ds;
    sh += h;
    shn += h * nn;
  }
  const A hm = sh / A(n), hn = shn / A(n - 1);
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    A v = load(a, i), gv = load(g, i), nn = (v - m) * rs, s, ds;
    scale_and_grad(1, nn, s, ds);
    store(o, i, gv * s + rs * (gv * v * ds - hm - nn * hn));
  }
}

template <int S, class T, class A>
inline void backward_row(const T* a, const T* g, T* o, A m, A rs, int64_t n) {
  if constexpr (S == 1) {
    backward_row_recompute(a, g, o, m, rs, n);
    return;
  }
  thread_local std::vector<A> scratch;
  if (int64_t(scratch.size()) < 2 * n) scratch.resize(2 * n);
  A* gs = scratch.data();
  A* hs = gs + n;
  A sh = 0, shn = 0;
#pragma omp simd reduction(+ : sh, shn)
  for (int64_t i = 0; i < n; ++i) {
    A v = load(a, i), gv = load(g, i), nn = (v - m) * rs, s, ds;
    scale_and_grad(S, nn, s, ds);
    A h = gv * v * ds;
    gs[i] = gv * s;
    hs[i] = h;
    sh += h;
    shn += h * nn;
  }
  const A hm = sh / A(n), hn = shn / A(n - 1);
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    A nn = (load(a, i) - m) * rs;
    store(o, i, gs[i] + rs * (hs[i] - hm - nn * hn));
  }
}

template <class T, class A>
void backward(const T* x, const T* g, const A* mu, const A* rstd, T* out, int64_t rows, int64_t n, int scale,
              int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const T* a = x + r * n;
    const T* gr = g + r * n;
    T* o = out + r * n;
    switch (scale) {
      case 0: backward_row<0>(a, gr, o, mu[r], rstd[r], n); break;
      case 1: backward_row<1>(a, gr, o, mu[r], rstd[r], n); break;
      case 2: backward_row<2>(a, gr, o, mu[r], rstd[r], n); break;
      default: backward_row<3>(a, gr, o, mu[r], rstd[r], n);
    }
  }
}

}  // namespace

extern "C" {
void la_forward_f32(const float* x, float* o, float* mu, float* rs, int64_t rows, int64_t n, double alpha, int s, int t) {
  forward<float, float>(x, o, mu, rs, rows, n, float(alpha), s, t);
}
void la_forward_f64(const double* x, double* o, double* mu, double* rs, int64_t rows, int64_t n, double alpha, int s, int t) {
  forward<double, double>(x, o, mu, rs, rows, n, alpha, s, t);
}
void la_forward_bf16(const uint16_t* x, uint16_t* o, float* mu, float* rs, int64_t rows, int64_t n, double alpha, int s, int t) {
  forward<uint16_t, float>(x, o, mu, rs, rows, n, float(alpha), s, t);
}
void la_backward_f32(const float* x, const float* g, const float* mu, const float* rs, float* o, int64_t rows, int64_t n, int s, int t) {
  backward<float, float>(x, g, mu, rs, o, rows, n, s, t);
}
void la_backward_f64(const double* x, const double* g, const double* mu, const double* rs, double* o, int64_t rows, int64_t n, int s, int t) {
  backward<double, double>(x, g, mu, rs, o, rows, n, s, t);
}
void la_backward_bf16(const uint16_t* x, const uint16_t* g, const float* mu, const float* rs, uint16_t* o, int64_t rows, int64_t n, int s, int t) {
  backward<uint16_t, float>(x, g, mu, rs, o, rows, n, s, t);
}
}
"""


def _build(compiler: str) -> Path:
    """Compile SOURCE (once per source, flags, compiler and CPU); return the shared library."""
    try:
        # without -fno-trapping-math GCC keeps the exp's clamp as branches on AVX2 (no AVX-512
        # masks), leaving the loops scalar: 2.8x slower; it changes no value, only FP traps
        return build(SOURCE, "layeract", cache_dir("actbench"), compiler, label="LayerAct's C++ CPU kernel",
                     hint="set ACTBENCH_LAYERACT_KERNEL=eager", flags=(*FLAGS, "-fno-trapping-math"))
    except NativeBuildError as e:
        raise UserError(str(e)) from None


@functools.cache
def library(compiler: str) -> ctypes.CDLL:
    """The built kernel library, loaded, with its entry points' argument types declared."""
    lib = ctypes.CDLL(str(_build(compiler)))
    p, i64, c_int, dbl = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int, ctypes.c_double
    for suffix in _DTYPE_SUFFIX.values():
        getattr(lib, f"la_forward_{suffix}").argtypes = [p, p, p, p, i64, i64, dbl, c_int, c_int]
        getattr(lib, f"la_backward_{suffix}").argtypes = [p, p, p, p, p, i64, i64, c_int, c_int]
    return lib


def supports(x: torch.Tensor) -> bool:
    """Whether the kernel takes x's dtype (float32, float64, bfloat16) on the CPU."""
    return x.device.type == "cpu" and x.dtype in _DTYPE_SUFFIX


def _groups(x: torch.Tensor, red: tuple[int, ...]) -> tuple[torch.Tensor, int, int]:
    """(x laid out so every group is one dense run of memory, rows, group size).

    ``dims='sample'``: each sample is dense in the contiguous and the channels-last layouts
    (kept as they are, so the output has x's strides); ``dims='last'``: x made contiguous.
    """
    rows = x.shape[0] if red != (x.dim() - 1,) else x.numel() // max(1, x.shape[-1])
    n = x.numel() // max(1, rows)
    if red == (x.dim() - 1,) or not _dense_samples(x):
        x = x.contiguous()
    return x, rows, n


def _dense_samples(x: torch.Tensor) -> bool:
    """True when every sample of x is one dense block and the blocks follow each other."""
    if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last):
        return x.stride(0) == x[0].numel()
    if x.dim() == 5 and x.is_contiguous(memory_format=torch.channels_last_3d):
        return x.stride(0) == x[0].numel()
    return x.is_contiguous()


def forward(compiler: str, x: torch.Tensor, scale: str, alpha: float, red: tuple[int, ...]
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
    """(output, mu, rstd) of LayerAct; mu and rstd shaped for broadcasting against x."""
    xs, rows, n = _groups(x, red)
    stat_dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    out = torch.empty_like(xs)
    mu = torch.empty(rows, dtype=stat_dtype)
    rstd = torch.empty(rows, dtype=stat_dtype)
    fn = getattr(library(compiler), f"la_forward_{_DTYPE_SUFFIX[x.dtype]}")
    fn(xs.data_ptr(), out.data_ptr(), mu.data_ptr(), rstd.data_ptr(), rows, n, float(alpha),
       SCALE_CODES[scale], torch.get_num_threads())  # fmt: skip
    shape = [x.shape[d] if d not in red else 1 for d in range(x.dim())]
    return out, mu.view(shape), rstd.view(shape)


def backward(compiler: str, x: torch.Tensor, g: torch.Tensor, mu: torch.Tensor, rstd: torch.Tensor,
             scale: str, red: tuple[int, ...]) -> torch.Tensor:  # fmt: skip
    """dL/dx of LayerAct from the saved x, (mu, rstd) and the output gradient g."""
    xs, rows, n = _groups(x, red)
    if g.dtype != xs.dtype or g.stride() != xs.stride() or g.shape != xs.shape:
        g = torch.empty_like(xs).copy_(g)  # the kernel walks g's memory in x's order
    out = torch.empty_like(xs)
    mu_c, rstd_c = mu.reshape(-1).contiguous(), rstd.reshape(-1).contiguous()
    fn = getattr(library(compiler), f"la_backward_{_DTYPE_SUFFIX[x.dtype]}")
    fn(xs.data_ptr(), g.data_ptr(), mu_c.data_ptr(), rstd_c.data_ptr(), out.data_ptr(), rows, n,
       SCALE_CODES[scale], torch.get_num_threads())  # fmt: skip
    return out
