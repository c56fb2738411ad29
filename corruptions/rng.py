"""Counter-based, per-sample random numbers on any device.

Every random value a corruption draws is a pure function of
``(seed, corruption name, severity or params, global sample index, stream, element)``:
a keyed integer hash evaluated with vectorised tensor ops. So a sample's corruption
never depends on the batch it sits in or on the order of calls, needs no per-image
Python loop, and is bit-identical on CPU and CUDA for the integer part (the float
transforms after it, log/cos, agree to float32 rounding).

The hash is Chris Wellons' two-round 32-bit integer hash applied in a keyed chain. The
bulk kernels run on int32 bits: multiplication and addition wrap modulo 2**32 (what
torch's vectorised and CUDA integer kernels do), logical right shifts mask off the sign
copies, so every value equals the int64 definition (:func:`mix32`, products below 2**63);
tests/test_corruptions_rng.py checks them against it.
"""

from __future__ import annotations

import math
import os
import zlib
from collections.abc import Sequence
from fractions import Fraction

import torch

from corruptions import native

_M32 = 0xFFFFFFFF
# Chris Wellons' best two-round 32-bit hash (bias ~0.107, lower than lowbias32's 0.174).
# Both multipliers are below 2**31: x * c < 2**63 for 32-bit x (exact in int64), and they
# fit an int32 scalar for the wrapping int32 kernels.
_C1 = 0x21F0AAAD
_C2 = 0x735A2D97
_GOLDEN = 0x9E3779B9


def mix32(x: torch.Tensor) -> torch.Tensor:
    """Bijective 32-bit avalanche hash on int64 tensors holding 32-bit values (a new tensor)."""
    x = x ^ (x >> 16)
    x.mul_(_C1).bitwise_and_(_M32)
    x ^= x >> 15
    x.mul_(_C2).bitwise_and_(_M32)
    x ^= x >> 15
    return x


#: Dense hash draws through torch.compile: opt in with :func:`set_compiled_hash` or
#: ``CORRUPTIONS_COMPILE=1``. One fused loop instead of ~35 tensor operations per draw (~8x
#: faster on CPU) with the same bits: integer arithmetic, the int64 definition itself
#: (tests compare it with the eager kernels). The first draw compiles (~5-20 s; inductor
#: caches on disk, later processes take a few seconds), so it pays off in long runs only.
_COMPILED: dict[str, object] = {"enabled": os.environ.get("CORRUPTIONS_COMPILE", "") == "1"}


def set_compiled_hash(enabled: bool) -> None:
    """Draw dense random bits with a torch.compile'd kernel (same values, faster) or eagerly."""
    _COMPILED["enabled"] = bool(enabled)


def compiled_hash_enabled() -> bool:
    """Whether dense draws use the compiled hash kernel."""
    return bool(_COMPILED["enabled"])


def _chain_int64(count: int, k0: torch.Tensor, k1: torch.Tensor) -> torch.Tensor:
    """The keyed chain on int64 (the definition) for rows keyed (k0, k1), as int32 bits (R, count)."""
    i = torch.arange(count, device=k0.device, dtype=torch.int64).view(1, -1)
    a = k0.view(-1, 1)
    x = mix32((mix32(mix32(i ^ a) ^ k1.view(-1, 1)) + a) & _M32)
    return x.to(torch.int32)


def _compiled_chain(count: int, k0: torch.Tensor, k1: torch.Tensor) -> torch.Tensor:
    """:func:`_chain_int64` through torch.compile (compiled once, dynamic shapes)."""
    fn = _COMPILED.get("fn")
    if fn is None:
        fn = _COMPILED["fn"] = torch.compile(_chain_int64, dynamic=True, fullgraph=True)
    rows = k0.numel()
    if rows == 1:  # size-1 dims would get a graph of their own: pad to two rows / columns
        k0, k1 = k0.repeat(2), k1.repeat(2)
    try:
        return fn(max(count, 2), k0, k1)[:rows, :count]  # type: ignore[operator]
    except Exception as exc:
        raise RuntimeError(
            f"compiled hash kernel failed ({type(exc).__name__}: {exc}); it needs torch.compile "
            "with a working C++ compiler: call corruptions.rng.set_compiled_hash(False)"
        ) from exc


def _to_i32(x: torch.Tensor) -> torch.Tensor:
    """32-bit values held in int64 (0 .. 2**32-1) as the int32 with the same bits."""
    return (x & _M32).to(torch.int32)


def _to_u32(x: torch.Tensor) -> torch.Tensor:
    """int32 bits as their unsigned value in int64 (the inverse of :func:`_to_i32`)."""
    return x.to(torch.int64) & _M32


def _xorshift32_(x: torch.Tensor, shift: int, tmp: torch.Tensor) -> None:
    """``x ^= x >>> shift`` (logical shift) on int32 ``x``, using ``tmp`` as scratch."""
    torch.bitwise_right_shift(x, shift, out=tmp)
    tmp &= (1 << (32 - shift)) - 1  # int32 shifts are arithmetic: drop the sign copies
    x ^= tmp


def _mix32_i32_(x: torch.Tensor, tmp: torch.Tensor) -> torch.Tensor:
    """:func:`mix32` in place on int32 bits (multiplications wrap modulo 2**32).

    Same values as the int64 version (a product's low 32 bits do not depend on the
    width), at half the memory traffic and a sixth of the time on CPU, where int64
    multiplies are not vectorised as well as int32 ones.
    """
    _xorshift32_(x, 16, tmp)
    x.mul_(_C1)
    _xorshift32_(x, 15, tmp)
    x.mul_(_C2)
    _xorshift32_(x, 15, tmp)
    return x


def _mix_py(v: int) -> int:
    """:func:`mix32` of one Python int (no tensor: for keys and stream codes)."""
    v &= _M32
    v ^= v >> 16
    v = (v * _C1) & _M32
    v ^= v >> 15
    v = (v * _C2) & _M32
    return v ^ (v >> 15)


def _mix_int(*values: int) -> int:
    """Hash Python ints into one 32-bit int with the same function (for keys)."""
    acc = 0x12345678
    for v in values:
        acc = _mix_py(acc ^ (v & _M32))
        acc = _mix_py((acc + _GOLDEN) & _M32)
    return acc


def uniform_from_bits24(k: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Uniforms ``(k + 0.5) / 2**24`` in (0, 1) from 24-bit integers (see :meth:`SampleRNG.uniform`)."""
    u = k.to(torch.float64 if dtype == torch.float64 else torch.float32)
    return u.add_(0.5).mul_(1.0 / 16777216.0).to(dtype)


def randint_from_bits24(k: torch.Tensor, low: int, high: int) -> torch.Tensor:
    """Integers in [low, high) (int64) from 24-bit integers (see :meth:`SampleRNG.randint`)."""
    if high <= low:
        raise ValueError(f"randint needs high > low, got [{low}, {high})")
    u = uniform_from_bits24(k, torch.float64)
    return u.mul_(high - low).floor_().add_(low).to(torch.int64).clamp_(low, high - 1)


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

    def __init__(self, seed: int, call_code: int, indices: torch.Tensor, device: torch.device,
                 streams: int | None = None):  # fmt: skip
        from corruptions.streams import check_streams, stream_version

        idx = indices.to(device=device, dtype=torch.int64)
        self.version = stream_version() if streams is None else check_streams(streams)
        base0 = _mix_int(seed & _M32, (seed >> 32) & _M32, call_code)
        base1 = _mix_int(call_code, base0, 0xA5A5A5A5)
        self.indices = idx
        self.keys0 = mix32((idx & _M32) ^ base0)
        self.keys1 = mix32((((idx >> 32) & _M32) ^ base1 ^ self.keys0) & _M32)
        self._k0 = _to_i32(self.keys0)  # int32 bits of the keys, for the hash kernels
        self.device = device
        self.seed = seed
        self._stream = 0

    def subset(self, start: int, stop: int) -> SampleRNG:
        """The streams of samples ``start:stop`` as a fresh generator (stream counter at 0).

        Draws from it equal the same rows of the draws from a fresh generator over the
        whole batch: what lets ``apply`` run a corruption chunk by chunk.
        """
        part = object.__new__(SampleRNG)
        part.indices = self.indices[start:stop]
        part.keys0, part.keys1 = self.keys0[start:stop], self.keys1[start:stop]
        part._k0 = self._k0[start:stop]
        part.device, part.seed, part._stream = self.device, self.seed, 0
        part.version = self.version
        return part

    @property
    def n(self) -> int:
        """Number of samples."""
        return int(self.indices.shape[0])

    def _next_stream(self) -> int:
        s = self._stream
        self._stream += 1
        return s

    def _stream_keys64(self, streams: Sequence[int]) -> torch.Tensor:
        """Per-sample keys ``mix32(keys1 ^ mix32(stream code))`` (int64), shape (len(streams), N)."""
        codes = [_mix_py(s * _GOLDEN + 0x632BE5AB) for s in streams]
        codes_t = torch.tensor(codes, dtype=torch.int64, device=self.device).view(-1, 1)
        return mix32(self.keys1.view(1, -1) ^ codes_t)

    def _stream_keys(self, streams: Sequence[int]) -> torch.Tensor:
        """:meth:`_stream_keys64` as int32 bits."""
        return _to_i32(self._stream_keys64(streams))

    def _hash32(self, cols: torch.Tensor, k0: torch.Tensor, k1: torch.Tensor) -> torch.Tensor:
        """The keyed chain ``mix(mix(mix(col ^ k0) ^ k1) + k0)`` on int32 bits (broadcasting).

        The first mix does not depend on the stream, so several streams (a leading dim of
        ``k1`` that ``cols ^ k0`` lacks) share it; they are then finished one by one in the
        rows of the result, with one scratch tensor (no stream-sized temporaries).
        """
        x = torch.bitwise_xor(cols, k0)
        tmp = torch.empty_like(x)
        _mix32_i32_(x, tmp)
        if k1.dim() == x.dim():
            outs = [x.bitwise_xor_(k1)]
        else:
            out = torch.empty((k1.shape[0], *x.shape), dtype=x.dtype, device=x.device)
            outs = [torch.bitwise_xor(x, k1[i], out=out[i]) for i in range(k1.shape[0])]
        for y in outs:
            _mix32_i32_(y, tmp)
            y += k0  # int32 addition wraps: the same bits as (x + k0) & 0xFFFFFFFF
            _mix32_i32_(y, tmp)
        return outs[0] if k1.dim() == x.dim() else out

    def _bits32(self, shape: Sequence[int], stream: int | None = None, count: int = 1) -> torch.Tensor:
        """:meth:`bits` as int32 bits (values >= 2**31 read as negative).

        Shape (N, prod(shape)) for one stream; with ``count`` > 1, the next ``count``
        streams at once, shape (count, N, prod(shape)).
        """
        if stream is None:
            streams = [self._next_stream() for _ in range(count)]
        else:
            streams = list(range(stream, stream + count))
        size = math.prod(shape)
        if native.active(self.device):
            k1 = self._stream_keys(streams).view(-1)  # (count * N,)
            x = native.hash_chain(self._k0.repeat(count), k1, size)
            return x.view(count, self.n, size) if count > 1 else x
        if _COMPILED["enabled"]:
            k1_64 = self._stream_keys64(streams).view(-1)  # (count * N,)
            x = _compiled_chain(size, self.keys0.repeat(count), k1_64)
            return x.view(count, self.n, size) if count > 1 else x
        counter = torch.arange(size, device=self.device, dtype=torch.int32)
        k1 = self._stream_keys(streams).unsqueeze(-1)  # (count, N, 1)
        return self._hash32(counter.view(1, -1), self._k0.view(-1, 1), k1 if count > 1 else k1[0])

    def bits(self, shape: Sequence[int], stream: int | None = None) -> torch.Tensor:
        """Random 32-bit integers (int64 tensor) of shape (N, *shape)."""
        shape = tuple(int(s) for s in shape)
        return _to_u32(self._bits32(shape, stream)).view(self.n, *shape)

    def bits24(self, count: int, *shape: int) -> torch.Tensor:
        """The top 24 bits (int32, 0 .. 2**24-1) of the next ``count`` streams, (count, N, *shape).

        For kernels that draw several streams at once: ``uniform_from_bits24(k[i], dtype)``
        and ``randint_from_bits24(k[i], low, high)`` equal the ``uniform`` / ``randint``
        draws of those streams, at the cost of one hash call.
        """
        shape = tuple(int(s) for s in shape)
        x = self._bits32(shape, count=count)
        x.bitwise_right_shift_(8).bitwise_and_(0xFFFFFF)
        return x.view(count, self.n, *shape)

    def _uniform24(self, shape: Sequence[int]) -> torch.Tensor:
        """The top 24 bits of the next stream (int32, 0 .. 2**24-1), shape (N, *shape)."""
        return self.bits24(1, *shape)[0]

    def uniform(self, *shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Uniform values in the open interval (0, 1), shape (N, *shape).

        ``(k + 0.5) / 2**24`` for the top 24 bits ``k`` of a draw: never exactly 0 or 1.
        In float32 the sum k + 0.5 rounds to even where it needs 25 bits, exactly as the
        float64 value rounds when cast, so both dtypes hold the same numbers.
        """
        return uniform_from_bits24(self._uniform24(shape), dtype)

    def bernoulli(self, p: float | Sequence[float], *shape: int) -> torch.Tensor:
        """``uniform(*shape) <= p`` as a bool tensor (N, *shape), decided on the integer bits.

        The same values as comparing the float64 uniforms of the next stream with ``p``,
        without making them: ``(k + 0.5) / 2**24 <= p`` for the top 24 bits ``k`` holds
        exactly when the 32-bit draw is below ``m * 256``, ``m = floor(p * 2**24 + 0.5)``.
        A sequence of probabilities draws that many streams at once: (len(p), N, *shape).
        """
        shape = tuple(int(s) for s in shape)
        ps = [p] if isinstance(p, (int, float)) else list(p)
        x = self._bits32(shape, count=len(ps)).view(len(ps), self.n, -1)
        x ^= -(1 << 31)  # unsigned order as signed order
        out = torch.empty(x.shape, dtype=torch.bool, device=self.device)
        for i, pi in enumerate(ps):
            m = min(max(math.floor(Fraction(pi) * 2**24 + Fraction(1, 2)), 0), 2**24)
            if m == 2**24:
                out[i].fill_(True)
            else:
                torch.lt(x[i], m * 256 - 2**31, out=out[i])
        return out.view(len(ps), self.n, *shape)[0 if isinstance(p, (int, float)) else slice(None)]

    def bernoulli_coin(self, p: float, *shape: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(hit, coin) bool tensors (N, *shape): hit w.p. ``p``, coin a fair coin per element.

        Stream version 1: ``bernoulli((p, 0.5))``, two streams. Version 2: one stream, the
        top 24 bits of each draw decide ``hit`` exactly as :meth:`bernoulli` does, its
        lowest bit (which the 24-bit uniforms never use) is the coin: half the hashing.
        """
        if self.version < 2:
            hit, coin = self.bernoulli((p, 0.5), *shape)
            return hit, coin
        shape = tuple(int(s) for s in shape)
        x = self._bits32(shape)
        coin = torch.bitwise_and(x, 1).bool()
        x ^= -(1 << 31)  # unsigned order as signed order
        m = min(max(math.floor(Fraction(p) * 2**24 + Fraction(1, 2)), 0), 2**24)
        hit = torch.ones(x.shape, dtype=torch.bool, device=self.device) if m == 2**24 else x < m * 256 - 2**31
        return hit.view(self.n, *shape), coin.view(self.n, *shape)

    def normal(self, *shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Standard normal values, shape (N, *shape) (Box-Muller on two uniform streams)."""
        k = self.bits24(2, *shape)
        u1, u2 = (uniform_from_bits24(t, torch.float64) for t in k)
        r = u1.log_().mul_(-2.0).sqrt_()
        return r.mul_(u2.mul_(2.0 * math.pi).cos_()).to(dtype)

    def randint(self, low: int, high: int, *shape: int) -> torch.Tensor:
        """Integers uniform in [low, high), shape (N, *shape), int64."""
        if high <= low:
            raise ValueError(f"randint needs high > low, got [{low}, {high})")
        return randint_from_bits24(self._uniform24(shape), low, high)

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

        Half the hashing of :meth:`normal` (one stream instead of two); |z| <= 5.4. Stream
        version 1: float64 ndtri; versions 2 on: float32 erfinv (:mod:`corruptions.streams`).
        """
        if self.version >= 2:
            from corruptions.streams import normal_from_bits24

            return normal_from_bits24(self._uniform24(shape), dtype)
        u = self.uniform(*shape, dtype=torch.float64)
        return torch.special.ndtri(u, out=u).to(dtype)

    # ------------------------------------------------------------------ Poisson
    def _uniform_at(
        self, rows: torch.Tensor, cols: torch.Tensor, stream: int, count: int = 1
    ) -> torch.Tensor:
        """Float64 uniforms in (0, 1) (32-bit resolution) for chosen (sample, element) pairs.

        Element ``cols[i]`` of sample ``rows[i]`` in stream ``stream`` (and the next
        ``count - 1`` streams: shape (count, M)): the same hash as :meth:`bits`,
        evaluated only where needed (rejection rounds touch few elements).
        """
        k0 = self._k0.index_select(0, rows)
        k1 = self._stream_keys(range(stream, stream + count)).index_select(1, rows)
        x = self._hash32(cols.to(torch.int32), k0, k1 if count > 1 else k1[0])
        # unsigned value v = (x ^ 2**31) + 2**31 as a signed int; v + 0.5 is exact in float64
        x ^= -(1 << 31)
        return x.to(torch.float64).add_(2147483648.5).mul_(1.0 / 4294967296.0)

    def poisson(self, rate: torch.Tensor) -> torch.Tensor:
        """Poisson(rate) counts (int64, same shape as ``rate``, shape (N, ...)).

        Exact samplers as numpy uses them, vectorised: inversion of the CDF for rates
        < 10 and Hörmann's PTRS transformed rejection for rates >= 10. Loops run over CDF
        steps / rejection rounds (each round on fresh sub-streams, only for the elements
        still pending), never over elements. Consumes one stream id of the call sequence,
        however many rounds it needs, so later draws do not depend on the batch.
        """
        lam = self._checked_rates(rate)
        out = self._poisson_flat(lam.view(-1), None, lam.shape[1], self._poisson_block())
        return out.view(rate.shape)

    def poisson_scaled(self, x: torch.Tensor, scale: float) -> torch.Tensor:
        """Poisson(float64(x) * scale) counts for intensities ``x`` (float32, (N, ...)).

        Stream version 1: :meth:`poisson`. Version 2: elements that are exact 8-bit levels
        invert one 32-bit uniform against their level's CDF table
        (:func:`corruptions.streams.invert_levels`); the others draw as :meth:`poisson`.
        """
        from corruptions.streams import MAX_TABLE_SCALE, invert_levels, level_mask, level_tables

        if self.version < 2 or not 0 <= scale <= MAX_TABLE_SCALE:
            return self.poisson(x.to(torch.float64) * scale)

        if x.shape[:1] != (self.n,):
            raise ValueError(f"poisson: rate must have shape (N={self.n}, ...), got {tuple(x.shape)}")
        flat_x = x.detach().to(device=self.device, dtype=torch.float32).reshape(-1)
        per_sample, sub = flat_x.numel() // max(self.n, 1), self._poisson_block()
        bits = self._bits32((per_sample,), sub).view(-1)
        if native.active(self.device):
            out, is_level = native.poisson_levels(flat_x, bits, level_tables(float(scale), self.device))
        else:
            is_level, level = level_mask(flat_x)
            out = invert_levels(bits, level, float(scale))
        if not bool(is_level.all()):  # NaN, negative and non-level values: checked and drawn as in v1
            flat = is_level.logical_not_().nonzero().view(-1)
            lam = self._checked_rates(flat_x.index_select(0, flat).to(torch.float64).mul_(scale).view(1, -1), 1)
            out.index_copy_(0, flat, self._poisson_flat(lam.view(-1), flat, per_sample, sub))
        return out.view(x.shape)

    def _checked_rates(self, rate: torch.Tensor, rows: int | None = None) -> torch.Tensor:
        """Rates as float64 (rows or N, -1); shape, finiteness and sign checked."""
        rows = self.n if rows is None else rows
        if rate.shape[:1] != (rows,):
            raise ValueError(f"poisson: rate must have shape (N={rows}, ...), got {tuple(rate.shape)}")
        lam = rate.detach().to(device=self.device, dtype=torch.float64).reshape(rows, -1)
        if not bool(torch.isfinite(lam).all()) or bool((lam < 0).any()):
            raise ValueError("poisson: rates must be finite and >= 0")
        return lam

    def _poisson_block(self) -> int:
        """The private sub-stream block of the next stream id (consumes it)."""
        return 0x40000000 | ((self._next_stream() & 0x3FFF) << 16)

    def _poisson_flat(self, lam: torch.Tensor, where: torch.Tensor | None, per_sample: int, sub: int) -> torch.Tensor:
        """Counts for flat rates ``lam`` at flat batch positions ``where`` (None: all)."""
        out = torch.zeros(lam.shape, dtype=torch.int64, device=self.device)
        small = lam < 10.0
        for mask, sampler in ((small, self._poisson_inversion), (~small, self._poisson_ptrs)):
            count = int(mask.sum())  # inversion for rates < 10, PTRS for the others
            if count == lam.numel():
                return sampler(lam, where, per_sample, sub)
            if count:
                sel = mask.nonzero().view(-1)
                at = sel if where is None else where.index_select(0, sel)
                out.index_copy_(0, sel, sampler(lam.index_select(0, sel), at, per_sample, sub))
        return out

    def _uniforms_of(
        self, flat: torch.Tensor | None, per_sample: int, stream: int, count: int = 1
    ) -> torch.Tensor:
        """Float64 uniforms (32-bit resolution) of ``stream`` at flat positions ``flat``.

        For many positions (or all: ``flat`` None) the whole (N, per_sample) stream is
        hashed, then gathered; for a few, only those elements (:meth:`_uniform_at`).
        With ``count`` > 1 the next streams too, shape (count, M).
        """
        if flat is not None and 8 * flat.numel() < self.n * per_sample:
            rows = torch.div(flat, per_sample, rounding_mode="floor")
            return self._uniform_at(rows, flat - rows * per_sample, stream, count)
        x = self._bits32((per_sample,), stream, count)
        x ^= -(1 << 31)  # unsigned value - 2**31, see _uniform_at
        u = x.view(count, -1).to(torch.float64).add_(2147483648.5).mul_(1.0 / 4294967296.0)
        u = u if flat is None else u.index_select(1, flat)
        return u if count > 1 else u[0]

    def _poisson_inversion(
        self, lam: torch.Tensor, flat: torch.Tensor | None, per_sample: int, sub: int
    ) -> torch.Tensor:
        """k = #{j : CDF(j) < u} for one uniform u per element (sequential CDF search).

        All elements step through j together (p_j = p_{j-1} * (lam / j), CDF += p_j);
        finished ones (u <= CDF, which stays true as the CDF only grows) leave the working
        set whenever they are half of it, so the sweep costs about E[k] + 1 passes.
        """
        u = self._uniforms_of(flat, per_sample, sub)
        p = torch.exp(-lam)
        cdf = p.clone()
        k = torch.zeros(lam.shape, dtype=torch.int64, device=lam.device)
        pos: torch.Tensor | None = None  # positions of the working set (None: all)
        step = torch.empty_like(lam)
        j = 0
        while j < 10_000:
            above = u > cdf
            left = int(above.sum())
            if left == 0:
                break
            if 2 * left <= above.numel():  # compact: keep the elements still searching
                keep = above.nonzero().view(-1)
                pos = keep if pos is None else pos.index_select(0, keep)
                u, cdf, p, lam = (t.index_select(0, keep) for t in (u, cdf, p, lam))
                step = step[: keep.numel()]
                above = torch.ones_like(u, dtype=torch.bool)
            if pos is None:
                k += above
            else:
                k.index_add_(0, pos, above.to(torch.int64))
            j += 1
            torch.div(lam, j, out=step)
            p.mul_(step)
            cdf.add_(p)
        return k

    def _poisson_ptrs(
        self, lam: torch.Tensor, flat: torch.Tensor | None, per_sample: int, sub: int
    ) -> torch.Tensor:
        """Hörmann's PTRS transformed rejection (rates >= 10), round by round.

        Round r draws streams sub + 1 + 2r and sub + 2 + 2r for the elements still
        pending. Elements accepted by the cheap test (us >= 0.07 and v <= v_r) skip the
        log / lgamma test, and lgamma(k + 1) comes from a table of integer arguments.
        """
        slam = torch.sqrt(lam)
        loglam = torch.log(lam)
        b = 0.931 + 2.53 * slam
        a = -0.059 + 0.02483 * b
        log_invalpha = torch.log(1.1239 + 1.1328 / (b - 3.4))
        vr = 0.9277 - 3.6224 / (b - 2.0)
        result = torch.zeros(lam.shape, dtype=torch.int64, device=lam.device)
        pending: torch.Tensor | None = None  # None: every element (round 0, no gathers)
        rnd = 0
        while pending is None or pending.numel():
            if rnd >= 0x7FFF:
                raise RuntimeError("poisson: PTRS did not converge")  # pragma: no cover
            where = pending if flat is None else _take(flat, pending)  # positions in the batch
            uu, vv = self._uniforms_of(where, per_sample, sub + 1 + 2 * rnd, 2)
            uu = uu.sub_(0.5)
            rnd += 1
            la, aa, bb = _take(lam, pending), _take(a, pending), _take(b, pending)
            us = uu.abs().neg_().add_(0.5)  # 0.5 - |u|
            kk = torch.mul(aa, 2.0).div_(us).add_(bb).mul_(uu).add_(la).add_(0.43).floor_()
            accept = (us >= 0.07) & (vv <= _take(vr, pending))
            # the full test where the cheap one fails and the element is not rejected outright
            idx = (~accept & (kk >= 0) & ((us >= 0.013) | (vv <= us))).nonzero().view(-1)
            if idx.numel():
                sel = idx if pending is None else pending.index_select(0, idx)
                u_s, v_s, k_s, a_s = (t.index_select(0, idx) for t in (us, vv, kk, aa))
                lhs = torch.log(v_s).add_(log_invalpha.index_select(0, sel))
                lhs -= torch.log(a_s.div_(u_s.mul_(u_s)).add_(bb.index_select(0, idx)))
                rhs = torch.mul(k_s, loglam.index_select(0, sel)).sub_(lam.index_select(0, sel))
                rhs -= _lgamma_int(k_s)
                accept.index_fill_(0, idx.masked_select(lhs <= rhs), True)
            if pending is None:
                result = torch.where(accept, kk.to(torch.int64), result)
                pending = (~accept).nonzero().view(-1)
            else:
                result[pending[accept]] = kk[accept].to(torch.int64)
                pending = pending[~accept]
        return result


#: lgamma(j + 1) for j = 0 .. 2**14 - 1, per device: torch.lgamma is elementwise and does
#: not depend on an element's position, so the lookup gives the same bits as the call
_LGAMMA_TABLE: dict[torch.device, torch.Tensor] = {}
_LGAMMA_SIZE = 1 << 14


def _lgamma_int(k: torch.Tensor) -> torch.Tensor:
    """``torch.lgamma(k + 1.0)`` for a float64 tensor of integers >= 0, mostly by table lookup."""
    table = _LGAMMA_TABLE.get(k.device)
    if table is None:
        table = torch.lgamma(torch.arange(_LGAMMA_SIZE, dtype=torch.float64, device=k.device) + 1.0)
        _LGAMMA_TABLE[k.device] = table
    out = table.index_select(0, k.clamp(max=_LGAMMA_SIZE - 1).to(torch.int64))
    big = k >= _LGAMMA_SIZE
    if bool(big.any()):
        out[big] = torch.lgamma(k[big] + 1.0)
    return out
