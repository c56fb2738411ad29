"""Output versions: how the hashed bits become normals and Poisson counts, and which kernels.

The hash (:mod:`corruptions.rng`) is the same in every version; a version fixes the
transforms after it (and the few kernels whose float rounding changed), so a (seed, index,
version) triple names one corrupted image for good. Manifests and exported datasets record the version; an old result is reproduced
by selecting its version (``corruptions.using_streams(1)``, ``apply(..., streams=1)``,
``actbench run --streams 1``).

- **1** (until robustbench-act 0.1): normals ``float32(ndtri(u))`` with float64 ndtri,
  Poisson counts by numpy's exact samplers (CDF inversion below rate 10, PTRS above).
- **2**: normals ``sqrt(2) * erfinv(2u - 1)`` in float32 from the same
  24-bit uniforms (``2u - 1`` is exact in float32, so only erfinv rounds); Poisson counts
  of intensities that are exact 8-bit levels (``v / 255`` in float32, what any 8-bit
  image gives) by inverting one 32-bit uniform against the exact CDF of their rate
  (one table per 8-bit level, binary search inside a guide-table bin); any other
  intensity, and every intensity when the scale exceeds :data:`MAX_TABLE_SCALE`, draws
  as in version 1; impulse noise takes its hit and its salt-or-pepper coin
  from one draw (top 24 bits, lowest bit) instead of two streams. Same distributions,
  2-9x cheaper on a CPU.
- **3**: the streams of version 2; motion blur (motion_blur, and snow's
  layer) is the exact tap sum at every image size, where versions 1 and 2 switch to an
  FFT convolution from 96x96 px (equal up to float rounding, ~1e-6, so a few 8-bit levels
  differ). Outputs below 96x96 px are the same bits as version 2.
- **4** (the default): version 3, but defocus_blur sums the taps of equal weight before one
  multiply per weight, in a fixed order (:func:`corruptions.ops.grouped_filter2d`), where
  versions 1-3 run one oneDNN/cuDNN convolution, whose summation order is the library's.
  Equal up to float rounding (<= 2e-6), so a few 8-bit levels differ; the same bits on
  every machine, and with the native CPU kernels 1.6-3.6x faster at 224 px (uint8 in and out
  in one pass); the eager kernels (no C++ compiler) are 1.3-1.8x slower than version 3 there.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator

import torch

STREAM_VERSIONS = (1, 2, 3, 4)
DEFAULT_STREAMS = 4
_STATE: dict[str, object] = {"version": os.environ.get("CORRUPTIONS_STREAMS") or DEFAULT_STREAMS}
_SQRT2 = math.sqrt(2.0)
_U_MIN = 2.0**-33  # the smallest 32-bit uniform, (0 + 0.5) / 2**32
_TABLES: dict[tuple[float, str], tuple[torch.Tensor, torch.Tensor, int, int]] = {}
_MAX_TABLES = 32
#: Rate scales up to this use the per-level tables (256 x ~scale entries); above it every
#: element draws as in version 1 (a rule on the parameter, so still per-element).
MAX_TABLE_SCALE = 4096.0


def check_streams(version: object) -> int:
    """The stream version as an int; anything else is a one-line CorruptionError."""
    from corruptions.registry import CorruptionError

    text = str(version).strip().lower().removeprefix("v")
    if not text.isdigit() or int(text) not in STREAM_VERSIONS:
        valid = ", ".join(str(v) for v in STREAM_VERSIONS)
        raise CorruptionError(f"unknown random-stream version {version!r}; valid: {valid} "
                              f"(default {DEFAULT_STREAMS})")  # fmt: skip
    return int(text)


def stream_version() -> int:
    """The version ``apply`` uses when a call names none (``CORRUPTIONS_STREAMS`` or 4)."""
    return check_streams(_STATE["version"])


def set_stream_version(version: int) -> None:
    """Make ``version`` the process default (validated)."""
    _STATE["version"] = check_streams(version)


@contextlib.contextmanager
def using_streams(version: int | None) -> Iterator[int]:
    """Use stream ``version`` inside the block (None: keep the current one); yields it."""
    saved = _STATE["version"]
    if version is not None:
        set_stream_version(version)
    try:
        yield stream_version()
    finally:
        _STATE["version"] = saved


def normal_from_bits24(k: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Version-2 normals from top-24-bit draws ``k`` (int32): ``sqrt(2) erfinv(2u - 1)``.

    ``2u - 1 = (2k + 1 - 2**24) / 2**24`` is an odd integer below 2**24 in magnitude over
    2**24, exact in float32; |z| <= 5.3. ``k`` is consumed (the result reuses it when
    possible).
    """
    x = k.mul_(2).add_(1 - (1 << 24)).to(torch.float32).mul_(2.0**-24)
    return x.erfinv_().mul_(_SQRT2).to(dtype)


def level_mask(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(is_level, level): which float32 intensities are exactly ``float32(v / 255)`` for v in
    0..255, and v (int32, clamped into 0..255 where the intensity is no level)."""
    level = torch.mul(x, 255.0).round_().clamp_(0.0, 255.0)
    is_level = torch.eq(torch.div(level, 255.0), x)
    return is_level, level.to(torch.int32)


def level_tables(scale: float, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, int, int]:
    """(cdf, bounds, J, log2 B) for Poisson(float64(float32(v / 255)) * scale), v = 0..255.

    ``cdf`` (256 * J float64): cumulative sums of the pmf over j = 0..J-1, J large enough
    that every 32-bit uniform falls below the last entry of its row. ``bounds``
    (256 * B int64, each two int32): for a uniform in bin b of B (a power of two), the
    count ``#{j: cdf_v(j) < u}`` lies in ``[guide(b), guide(b + 1)]``, where
    ``guide(b) = #{j: cdf_v(j) < b / B}``. Cached per (scale, device).
    """
    key = (float(scale), str(device))
    hit = _TABLES.get(key)
    if hit is not None:
        return hit
    rates = (torch.arange(256, dtype=torch.float32, device=device) / 255.0).to(torch.float64) * scale
    size = int(scale + 10.0 * math.sqrt(scale) + 40.0)
    j = torch.arange(size, dtype=torch.float64, device=device)
    log_pmf = torch.xlogy(j.view(1, -1), rates.view(-1, 1)) - rates.view(-1, 1) - torch.lgamma(j + 1.0)
    cdf = torch.exp(log_pmf).cumsum_(dim=1)
    if bool((cdf[:, -1] < 1.0 - _U_MIN).any()):
        raise RuntimeError(f"poisson tables: {size} terms do not cover rate {scale}")  # pragma: no cover
    log_bins = max(1, (2 * size - 1).bit_length())
    bins = 1 << log_bins
    first_bin = cdf.mul(bins).floor_().add_(1).clamp_(max=bins + 1).to(torch.int64)  # b > cdf * B from here
    hist = torch.zeros(256, bins + 2, dtype=torch.int64, device=device)
    hist.scatter_add_(1, first_bin, torch.ones_like(first_bin))
    guide = hist.cumsum_(dim=1)[:, : bins + 1].to(torch.int32)
    bounds = torch.stack([guide[:, :-1], guide[:, 1:]], dim=-1).contiguous().view(torch.int64).reshape(-1)
    out = (cdf.reshape(-1).contiguous(), bounds, size, log_bins)
    if len(_TABLES) >= _MAX_TABLES:
        _TABLES.pop(next(iter(_TABLES)))
    _TABLES[key] = out
    return out


def invert_levels(bits: torch.Tensor, level: torch.Tensor, scale: float) -> torch.Tensor:
    """Poisson counts ``#{j: cdf_level(j) < u}`` (int64) of 32-bit draws ``bits`` (int32).

    ``u = (unsigned(bits) + 0.5) / 2**32`` as everywhere in :mod:`corruptions.rng`; its
    guide bin is the draw's top log2(B) bits, exactly. The bin bounds the count; a binary
    search over the elements whose bin holds CDF points (a few percent) finishes it, the
    working set shrinking every round.
    """
    cdf, bounds, size, log_bins = level_tables(scale, bits.device)
    shift = 32 - log_bins
    g = bits.bitwise_right_shift(shift).bitwise_and_((1 << log_bins) - 1)
    g = g.add_(level * (1 << log_bins)).to(torch.int64)
    pair = bounds.index_select(0, g).view(torch.int32).view(-1, 2)  # 3x faster than take on a CPU
    lo, hi = pair[:, 0], pair[:, 1]
    out = lo.to(torch.int64)
    pos = (lo < hi).nonzero().view(-1)
    if not pos.numel():
        return out
    a, b = out.index_select(0, pos), hi.index_select(0, pos).to(torch.int64)
    base = level.index_select(0, pos).to(torch.int64).mul_(size)
    u = (bits.index_select(0, pos) ^ -(1 << 31)).to(torch.float64).add_(2147483648.5).mul_(2.0**-32)
    while pos.numel():
        mid = (a + b).bitwise_right_shift_(1)
        right = torch.lt(cdf.index_select(0, base + mid), u)
        a = torch.where(right, mid + 1, a)
        b = torch.where(right, b, mid)
        done = a >= b
        out.index_copy_(0, pos.masked_select(done), a.masked_select(done))
        keep = (~done).nonzero().view(-1)
        pos, a, b, u, base = (t.index_select(0, keep) for t in (pos, a, b, u, base))
    return out.clamp_(max=size - 1)
