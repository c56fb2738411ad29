"""Counter-based, per-sample random numbers on any device.

Every random value a corruption draws is a pure function of
``(seed, corruption name, severity or params, global sample index, stream, element)``:
a keyed integer hash evaluated with vectorised tensor ops. So a sample's corruption
never depends on the batch it sits in or on the order of calls, needs no per-image
Python loop, and is bit-identical on CPU and CUDA for the integer part (the float
transforms after it, log/cos, agree to float32 rounding).

The hash is Chris Wellons' two-round 32-bit integer hash applied in a keyed chain. All
arithmetic stays below 2**63 in int64 (32-bit lanes times multipliers below 2**31), so
there is no reliance on signed overflow.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence

import torch

_M32 = 0xFFFFFFFF
# Chris Wellons' best two-round 32-bit hash (bias ~0.107, lower than lowbias32's 0.174).
# Both multipliers are below 2**31, so x * c < 2**63 for 32-bit x: exact in int64.
_C1 = 0x21F0AAAD
_C2 = 0x735A2D97
_GOLDEN = 0x9E3779B9


def mix32(x: torch.Tensor) -> torch.Tensor:
    """Bijective 32-bit avalanche hash on int64 tensors holding 32-bit values.

    The first step allocates the result; the rest works in place on it (the caller's
    tensor is never modified), which saves a fifth of the time of this memory-bound hash.
    """
    return _mix32_rounds_(x ^ (x >> 16))


def _mix32_(x: torch.Tensor) -> torch.Tensor:
    """:func:`mix32` entirely in place (for int64 scratch tensors this module owns)."""
    x ^= x >> 16
    return _mix32_rounds_(x)


def _mix32_rounds_(x: torch.Tensor) -> torch.Tensor:
    """The steps of :func:`mix32` after its first xor-shift, in place."""
    x.mul_(_C1).bitwise_and_(_M32)
    x ^= x >> 15
    x.mul_(_C2).bitwise_and_(_M32)
    x ^= x >> 15
    return x


def _mix_int(*values: int) -> int:
    """Hash Python ints into one 32-bit int with the same function (for keys)."""
    acc = torch.tensor(0x12345678, dtype=torch.int64)
    for v in values:
        acc = mix32(acc ^ torch.tensor(v & _M32, dtype=torch.int64))
        acc = mix32((acc + _GOLDEN) & _M32)
    return int(acc)


def name_code(text: str) -> int:
    """Stable 32-bit code of a string (CRC32), used to key a corruption name or params."""
    return zlib.crc32(text.encode("utf-8")) & _M32


def _take(values: torch.Tensor, positions: torch.Tensor | None) -> torch.Tensor:
    """``values[positions]`` along dim 0; all of ``values`` when ``positions`` is None."""
    return values if positions is None else values.index_select(0, positions)


class SampleRNG:
    """Per-sample random streams for one ``apply`` call.

    ``keys0``/``keys1`` (int64, shape (N,)) identify each sample; every call of a
    drawing method consumes one new stream id, so a corruption function that draws in
    a fixed order gets the same numbers for the same sample whatever the batch.
    """

    def __init__(self, seed: int, call_code: int, indices: torch.Tensor, device: torch.device):
        idx = indices.to(device=device, dtype=torch.int64)
        base0 = _mix_int(seed & _M32, (seed >> 32) & _M32, call_code)
        base1 = _mix_int(call_code, base0, 0xA5A5A5A5)
        self.indices = idx
        self.keys0 = mix32((idx & _M32) ^ base0)
        self.keys1 = mix32((((idx >> 32) & _M32) ^ base1 ^ self.keys0) & _M32)
        self.device = device
        self.seed = seed
        self._stream = 0

    @property
    def n(self) -> int:
        """Number of samples."""
        return int(self.indices.shape[0])

    def _next_stream(self) -> int:
        s = self._stream
        self._stream += 1
        return s

    def bits(self, shape: Sequence[int], stream: int | None = None) -> torch.Tensor:
        """Random 32-bit integers (int64 tensor) of shape (N, *shape)."""
        shape = tuple(int(s) for s in shape)
        if stream is None:
            stream = self._next_stream()
        count = math.prod(shape)
        counter = torch.arange(count, device=self.device, dtype=torch.int64)
        s_key = mix32(torch.tensor((stream * _GOLDEN + 0x632BE5AB) & _M32, device=self.device))
        k0 = self.keys0.view(-1, 1)
        k1 = mix32(self.keys1 ^ s_key).view(-1, 1)
        x = _mix32_(counter.view(1, -1) ^ k0)  # the one (N, count) allocation
        x ^= k1
        _mix32_(x)
        x += k0
        x &= _M32
        return _mix32_(x).view(self.n, *shape)

    def uniform(self, *shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Uniform values in the open interval (0, 1), shape (N, *shape)."""
        b = self.bits(shape)
        # 24 bits of mantissa, offset by half a step: never exactly 0 or 1.
        u = b.bitwise_right_shift_(8).to(torch.float64)
        return u.add_(0.5).mul_(1.0 / 16777216.0).to(dtype)

    def normal(self, *shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Standard normal values, shape (N, *shape) (Box-Muller on two uniform streams)."""
        u1 = self.uniform(*shape, dtype=torch.float64)
        u2 = self.uniform(*shape, dtype=torch.float64)
        return (torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(2.0 * math.pi * u2)).to(dtype)

    def randint(self, low: int, high: int, *shape: int) -> torch.Tensor:
        """Integers uniform in [low, high), shape (N, *shape), int64."""
        if high <= low:
            raise ValueError(f"randint needs high > low, got [{low}, {high})")
        u = self.uniform(*shape, dtype=torch.float64)
        return (low + torch.floor(u * (high - low))).to(torch.int64).clamp_(low, high - 1)

    def sample_uniform(self, low: float = 0.0, high: float = 1.0) -> torch.Tensor:
        """One uniform value per sample in (low, high), shape (N,), float64."""
        return low + (high - low) * self.uniform(1, dtype=torch.float64).view(-1)

    def generator(self, i: int, device: torch.device | str | None = None) -> torch.Generator:
        """A classic ``torch.Generator`` seeded from sample ``i``'s key.

        For plug-ins that prefer torch's own samplers; it still depends only on the
        sample's identity, not on the batch, but it costs a Python loop over samples.
        """
        g = torch.Generator(device=device or "cpu")
        g.manual_seed((int(self.keys0[i]) << 32) | int(self.keys1[i]))
        return g

    def normal_icdf(self, *shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Standard normal values, shape (N, *shape), by inverse CDF of one uniform stream.

        Half the hashing of :meth:`normal` (one stream instead of two); |z| <= 5.4.
        """
        u = self.uniform(*shape, dtype=torch.float64)
        return torch.special.ndtri(u).to(dtype)

    # ------------------------------------------------------------------ Poisson
    def _uniform_at(self, rows: torch.Tensor, cols: torch.Tensor, stream: int) -> torch.Tensor:
        """Float64 uniforms in (0, 1) (32-bit resolution) for chosen (sample, element) pairs.

        Element ``cols[i]`` of sample ``rows[i]`` in stream ``stream``: the same hash as
        :meth:`bits`, evaluated only where needed (rejection rounds touch few elements).
        """
        s_key = mix32(torch.tensor((stream * _GOLDEN + 0x632BE5AB) & _M32, device=self.device))
        k0 = self.keys0.index_select(0, rows)
        k1 = mix32(self.keys1 ^ s_key).index_select(0, rows)
        x = _mix32_(cols ^ k0)
        x ^= k1
        _mix32_(x)
        x += k0
        x &= _M32
        return _mix32_(x).to(torch.float64).add_(0.5).mul_(1.0 / 4294967296.0)

    def poisson(self, rate: torch.Tensor) -> torch.Tensor:
        """Poisson(rate) counts (int64, same shape as ``rate``, shape (N, ...)).

        Exact samplers as numpy uses them, vectorised: inversion of the CDF for rates
        < 10 and Hörmann's PTRS transformed rejection for rates >= 10. Loops run over CDF
        steps / rejection rounds (each round on fresh sub-streams, only for the elements
        still pending), never over elements. Consumes one stream id of the call sequence,
        however many rounds it needs, so later draws do not depend on the batch.
        """
        if rate.shape[:1] != (self.n,):
            raise ValueError(f"poisson: rate must have shape (N={self.n}, ...), got {tuple(rate.shape)}")
        lam = rate.detach().to(device=self.device, dtype=torch.float64).reshape(self.n, -1)
        if not bool(torch.isfinite(lam).all()) or bool((lam < 0).any()):
            raise ValueError("poisson: rates must be finite and >= 0")
        sub = 0x40000000 | ((self._next_stream() & 0x3FFF) << 16)  # private sub-stream block
        per_sample = lam.shape[1]
        lam = lam.view(-1)
        out = torch.zeros(lam.shape, dtype=torch.int64, device=self.device)

        def where(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            """Flat positions of ``mask`` and their (sample, element) coordinates."""
            flat = mask.nonzero().view(-1)
            return flat, torch.div(flat, per_sample, rounding_mode="floor"), flat % per_sample

        # --- inversion (sequential CDF search) for small rates
        flat, rows, cols = where(lam < 10.0)
        if flat.numel():
            lam_s = lam.index_select(0, flat)
            u = self._uniform_at(rows, cols, sub)
            # dense sweep over k (no per-element indexing): k = #{j : CDF(j) < u}
            p = torch.exp(-lam_s)
            cdf = p.clone()
            k = torch.zeros_like(flat)
            j = 0
            while j < 10_000:
                above = u > cdf
                if not bool(above.any()):
                    break
                k += above
                j += 1
                p = p * (lam_s / j)
                cdf = cdf + p
            out.index_copy_(0, flat, k)

        # --- PTRS (Hörmann 1993) for large rates
        flat, rows, cols = where(lam >= 10.0)
        if flat.numel():
            lam_l = lam.index_select(0, flat)
            slam = torch.sqrt(lam_l)
            loglam = torch.log(lam_l)
            b = 0.931 + 2.53 * slam
            a = -0.059 + 0.02483 * b
            log_invalpha = torch.log(1.1239 + 1.1328 / (b - 3.4))
            vr = 0.9277 - 3.6224 / (b - 2.0)
            result = torch.zeros_like(flat)
            pending: torch.Tensor | None = None  # None: every element (round 0, no gathers)
            rnd = 0
            while pending is None or pending.numel():
                if rnd >= 0x7FFF:
                    raise RuntimeError("poisson: PTRS did not converge")  # pragma: no cover
                r, c = _take(rows, pending), _take(cols, pending)
                uu = self._uniform_at(r, c, sub + 1 + 2 * rnd) - 0.5
                vv = self._uniform_at(r, c, sub + 2 + 2 * rnd)
                rnd += 1
                la, aa, bb = _take(lam_l, pending), _take(a, pending), _take(b, pending)
                us = 0.5 - uu.abs()
                kk = torch.floor((2.0 * aa / us + bb) * uu + la + 0.43)
                fast = (us >= 0.07) & (vv <= _take(vr, pending))
                reject = (kk < 0) | ((us < 0.013) & (vv > us))
                lhs = torch.log(vv) + _take(log_invalpha, pending) - torch.log(aa / (us * us) + bb)
                rhs = -la + kk * _take(loglam, pending) - torch.lgamma(kk.clamp(min=0.0) + 1.0)
                accept = fast | (~reject & (lhs <= rhs))
                positions = torch.arange(flat.numel(), device=self.device) if pending is None else pending
                result[positions[accept]] = kk[accept].to(torch.int64)
                pending = positions[~accept]
            out.index_copy_(0, flat, result)
        return out.view(rate.shape)
