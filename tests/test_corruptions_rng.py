"""The counter-based streams keep their values: the int32 kernels against a plain int64 chain."""

from __future__ import annotations

import shutil

import pytest
import torch

import corruptions
from corruptions.rng import SampleRNG, randint_from_bits24, set_compiled_hash, uniform_from_bits24

M32 = 0xFFFFFFFF
C1, C2, GOLDEN = 0x21F0AAAD, 0x735A2D97, 0x9E3779B9


def _mix(x: torch.Tensor) -> torch.Tensor:
    """Wellons' two-round hash written out in int64 (every product below 2**63)."""
    x = x ^ (x >> 16)
    x = (x * C1) & M32
    x = x ^ (x >> 15)
    x = (x * C2) & M32
    return x ^ (x >> 15)


def _reference_bits(rng: SampleRNG, count: int, stream: int) -> torch.Tensor:
    """The documented chain mix(mix(mix(i ^ k0) ^ k1) + k0), k1 = mix(keys1 ^ mix(stream code))."""
    code = _mix(torch.tensor((stream * GOLDEN + 0x632BE5AB) & M32))
    k0 = rng.keys0.view(-1, 1)
    k1 = _mix(rng.keys1 ^ code).view(-1, 1)
    i = torch.arange(count).view(1, -1)
    return _mix((_mix(_mix(i ^ k0) ^ k1) + k0) & M32)


def _rng(n: int = 5, first: int = 2**31 - 2) -> SampleRNG:
    # indices around 2**31 and 2**32: keys with the top bit set, both key words in use
    idx = torch.tensor([first + 7**k for k in range(n)], dtype=torch.int64)
    return SampleRNG(12345, 0xDEADBEEF, idx, torch.device("cpu"))


def test_bits_equal_the_int64_chain_at_every_size():
    # odd sizes reach the scalar tails of the vectorised int32 loops
    for count, stream in ((1, 0), (7, 3), (33, 9), (1000, 2**20 + 1), (4099, 5)):
        rng = _rng()
        got = rng.bits((count,), stream=stream)
        assert got.dtype == torch.int64
        assert torch.equal(got, _reference_bits(rng, count, stream)), (count, stream)


def test_uniform_float32_holds_the_float64_values_cast():
    a, b = _rng(3), _rng(3)
    u32 = a.uniform(4, 100_000)
    u64 = b.uniform(4, 100_000, dtype=torch.float64)
    assert u32.dtype == torch.float32 and u64.dtype == torch.float64
    assert torch.equal(u32, u64.to(torch.float32))
    k = _reference_bits(_rng(3), 400_000, 0) >> 8
    assert torch.equal(u64.view(3, -1), (k.to(torch.float64) + 0.5) / 2**24)


def test_poisson_rounds_draw_the_documented_stream():
    rng = _rng(4)
    rows = torch.tensor([0, 3, 3, 1, 2, 0])
    cols = torch.tensor([0, 5, 999, 17, 1, 998])
    got = rng._uniform_at(rows, cols, 0x40010002)
    want = (_reference_bits(rng, 1000, 0x40010002)[rows, cols].double() + 0.5) / 2**32
    assert torch.equal(got, want)


def test_bernoulli_is_the_uniform_compared_with_p():
    on_grid = (12345 + 0.5) / 2**24  # a uniform value itself: <= keeps it
    for p in (0.0, 1.0, 0.5, 0.03, on_grid, on_grid - 1e-12, 1e-9, 1 - 1e-9, 0.999999):
        a, b = _rng(4), _rng(4)
        got = a.bernoulli(p, 3, 1000)
        assert got.dtype == torch.bool and got.shape == (4, 3, 1000)
        assert torch.equal(got, b.uniform(3, 1000, dtype=torch.float64) <= p), p
    r = _rng(1)
    u = r.uniform(300_000, dtype=torch.float64)
    k = int(((u.view(-1)[77] * 2**24) - 0.5).round())
    for p in ((k + 0.5) / 2**24, (k + 0.49) / 2**24):
        assert torch.equal(_rng(1).bernoulli(p, 300_000), u <= p)


def test_several_streams_at_once_equal_one_by_one():
    a, b = _rng(3), _rng(3)
    k = a.bits24(3, 2, 5)
    assert k.shape == (3, 3, 2, 5)
    assert torch.equal(uniform_from_bits24(k[0]), b.uniform(2, 5))
    assert torch.equal(randint_from_bits24(k[1], -4, 9), b.randint(-4, 9, 2, 5))
    assert torch.equal(uniform_from_bits24(k[2], torch.float64), b.uniform(2, 5, dtype=torch.float64))
    both = _rng(3).bernoulli((0.3, 0.5), 7)
    one = _rng(3)
    assert torch.equal(both[0], one.bernoulli(0.3, 7)) and torch.equal(both[1], one.bernoulli(0.5, 7))
    assert not torch.equal(_rng(3).uniform(4), one.uniform(4))  # the streams moved on


@pytest.mark.skipif(
    not any(shutil.which(c) for c in ("c++", "g++", "clang++")), reason="torch.compile needs a C++ compiler"
)
def test_compiled_hash_gives_the_eager_bits():
    """The opt-in torch.compile'd kernel draws exactly the eager values."""
    cases = [(5, (3, 7, 5), 1), (1, (1,), 1), (4, (13,), 3), (2, (1,), 2), (3, (4099,), 1)]
    eager = []
    for n, shape, count in cases:
        eager.append((_rng(n).bits24(count, *shape), _rng(n).bits(shape)))
    set_compiled_hash(True)
    try:
        for (n, shape, count), (k_eager, b_eager) in zip(cases, eager):
            assert torch.equal(_rng(n).bits24(count, *shape), k_eager), (n, shape, count)
            assert torch.equal(_rng(n).bits(shape), b_eager), (n, shape)
        x = torch.randint(0, 256, (3, 3, 9, 9), dtype=torch.uint8)
        noisy = corruptions.apply(x, "impulse_noise", 5)
    finally:
        set_compiled_hash(False)
    assert torch.equal(noisy, corruptions.apply(x, "impulse_noise", 5))
