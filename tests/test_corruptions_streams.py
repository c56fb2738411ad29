"""Random-stream versions: version 1 reproduces the old outputs bit for bit, version 2 draws the
same distributions faster (float32 erfinv normals, per-level Poisson tables), and every
output that depends on the version records it."""

from __future__ import annotations

import hashlib
import json
import math

import numpy as np
import pytest
import torch
from scipy import stats

import corruptions
from corruptions.rng import SampleRNG
from corruptions.streams import invert_levels, level_tables

CPU = torch.device("cpu")


def _batch() -> torch.Tensor:
    g = torch.Generator().manual_seed(3)
    return torch.randint(0, 256, (6, 3, 16, 16), dtype=torch.uint8, generator=g)


def _digest(name: str, streams: int) -> str:
    y = corruptions.apply(_batch(), name, 5, seed=11, indices=range(40, 46), streams=streams)
    return hashlib.sha256(y.numpy().tobytes()).hexdigest()[:16]


# digests of the code before stream versions existed (commit 36d7523): version 1 must keep them
V1_DIGESTS = {"gaussian_noise": "ff54b95ed3e1a9a4", "shot_noise": "56046903755c7004",
              "speckle_noise": "3f0c2afc6d353594", "impulse_noise": "e3d6012706375673"}  # fmt: skip


@pytest.mark.parametrize("name", sorted(V1_DIGESTS))
def test_version_1_reproduces_the_outputs_from_before_versioning(name: str) -> None:
    assert _digest(name, 1) == V1_DIGESTS[name]
    with corruptions.using_streams(1):
        y = corruptions.apply(_batch(), name, 5, seed=11, indices=range(40, 46))
    assert hashlib.sha256(y.numpy().tobytes()).hexdigest()[:16] == V1_DIGESTS[name]


def test_version_4_is_the_default_and_shot_and_impulse_noise_differ_from_version_1() -> None:
    assert corruptions.DEFAULT_STREAMS == 4 == corruptions.stream_version()
    assert _digest("shot_noise", 2) != V1_DIGESTS["shot_noise"]
    assert _digest("impulse_noise", 2) != V1_DIGESTS["impulse_noise"]
    a = corruptions.apply(_batch(), "shot_noise", 5, seed=11, indices=range(40, 46))
    assert torch.equal(a, corruptions.apply(_batch(), "shot_noise", 5, seed=11, indices=range(40, 46), streams=2))


def test_version_2_normals_are_erfinv_of_the_same_uniforms_within_float32_rounding() -> None:
    z1 = SampleRNG(0, 123, torch.arange(4), CPU, streams=1).normal_icdf(60000).double()
    z2 = SampleRNG(0, 123, torch.arange(4), CPU, streams=2).normal_icdf(60000)
    assert z2.dtype == torch.float32
    z2 = z2.double()
    assert (z2 - z1).abs().max().item() <= 4 * 2.0**-23 * max(1.0, z1.abs().max().item())
    assert z2.abs().max().item() < 5.4
    flat = z2.flatten().numpy()
    assert stats.kstest(flat, "norm").pvalue > 1e-3
    assert abs(flat.mean()) < 0.02 and abs(flat.std() - 1) < 0.02


@pytest.mark.parametrize("scale", [0.7, 3.0, 60.0, 500.0])
def test_level_tables_are_the_poisson_cdf_and_the_guided_search_inverts_them_exactly(scale: float) -> None:
    cdf, _, size, _ = level_tables(scale, CPU)
    table = cdf.view(256, size)
    rates = (torch.arange(256, dtype=torch.float32) / 255).double() * scale
    for v in (0, 1, 77, 200, 255):
        want = stats.poisson.cdf(np.arange(size), float(rates[v]))
        assert np.abs(table[v].numpy() - want).max() < 1e-11
    g = torch.Generator().manual_seed(int(scale * 10))
    bits = torch.randint(-(2**31), 2**31, (20000,), dtype=torch.int64, generator=g)
    bits[:4] = torch.tensor([-(2**31), 2**31 - 1, 0, -1])  # the extreme uniforms
    bits = bits.to(torch.int32)
    level = torch.randint(0, 256, (20000,), dtype=torch.int32, generator=g)
    u = (bits.to(torch.int64) & 0xFFFFFFFF).double().add(0.5).div(2.0**32)
    brute = (table.index_select(0, level.long()) < u.view(-1, 1)).sum(1)
    assert torch.equal(invert_levels(bits, level, scale), brute)


@pytest.mark.parametrize("scale", [3.0, 12.0, 500.0])
def test_version_2_poisson_counts_follow_the_poisson_law(scale: float) -> None:
    x = torch.full((4, 50000), 200 / 255.0)
    k = SampleRNG(1, 7, torch.arange(4), CPU, streams=2).poisson_scaled(x, scale).flatten().numpy()
    rate = float(torch.tensor(200 / 255.0, dtype=torch.float32).double() * scale)
    top = k.max() + 1
    observed = np.bincount(k, minlength=top)
    expected = stats.poisson.pmf(np.arange(top), rate) * k.size
    keep = expected > 5
    chi2 = (((observed - expected) ** 2)[keep] / expected[keep]).sum()
    assert stats.chi2.sf(chi2, keep.sum() - 1) > 1e-4
    assert abs(k.mean() - rate) < 4 * math.sqrt(rate / k.size)


def test_version_2_intensities_that_are_no_8bit_level_draw_as_in_version_1() -> None:
    x = torch.rand(3, 500, generator=torch.Generator().manual_seed(5))
    x[:, ::2] = torch.round(x[:, ::2] * 255) / 255  # levels at even positions
    v1 = SampleRNG(2, 9, torch.arange(3), CPU, streams=1).poisson_scaled(x, 40.0)
    v2 = SampleRNG(2, 9, torch.arange(3), CPU, streams=2).poisson_scaled(x, 40.0)
    assert torch.equal(v1[:, 1::2], v2[:, 1::2])
    assert not torch.equal(v1[:, ::2], v2[:, ::2])
    with pytest.raises(ValueError, match="finite and >= 0"):
        SampleRNG(2, 9, torch.arange(1), CPU, streams=2).poisson_scaled(torch.tensor([[0.5, float("nan")]]), 4.0)


def test_version_2_shot_noise_is_batch_independent_and_the_same_for_uint8_and_float_input() -> None:
    x = torch.randint(0, 256, (40, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    whole = corruptions.apply(x, "shot_noise", 2, seed=4, streams=2)  # several CPU chunks
    part = corruptions.apply(x[7:9], "shot_noise", 2, seed=4, indices=[7, 8], streams=2)
    assert torch.equal(whole[7:9], part)
    as_float = corruptions.apply(x.float() / 255, "shot_noise", 2, seed=4, streams=2)
    assert torch.equal(as_float, whole.float() / 255)


def test_the_version_is_chosen_per_call_per_block_or_per_process_and_validated() -> None:
    assert corruptions.check_streams("v1") == 1 == corruptions.check_streams(1)
    with corruptions.using_streams(1) as v:
        assert v == 1 == corruptions.stream_version()
        with corruptions.using_streams(None):
            assert corruptions.stream_version() == 1
    assert corruptions.stream_version() == 4
    for bad in (5, "0", "x", None, 1.5):
        with pytest.raises(corruptions.CorruptionError, match=r"unknown random-stream version .*valid: 1, 2, 3, 4"):
            corruptions.check_streams(bad)
    with pytest.raises(corruptions.CorruptionError, match="random-stream"):
        corruptions.apply(_batch(), "gaussian_noise", 1, streams=7)


def test_exported_datasets_record_the_version(tmp_path) -> None:
    from corruptions.datasets import export_c_dataset
    from robustbench_act.data import ImageDataset

    ds = ImageDataset(name="t", classes=["a", "b"], mean=(0.5,) * 3, std=(0.2,) * 3,
                      images=_batch()[:4], labels=[0, 1, 0, 1])  # fmt: skip
    for version in (1, 2):
        out = export_c_dataset(ds, tmp_path / f"v{version}", corruptions="shot_noise", severities=[5], streams=version)
        assert json.loads((out / "manifest.json").read_text())["streams"] == version
    one, two = (np.load(tmp_path / f"v{v}" / "shot_noise.npy") for v in (1, 2))
    assert not np.array_equal(one, two)
    assert corruptions.stream_version() == corruptions.DEFAULT_STREAMS


def test_impulse_hits_and_coins_come_from_one_draw_in_version_2() -> None:
    one = SampleRNG(3, 21, torch.arange(5), CPU, streams=1)
    hit1, coin1 = one.bernoulli_coin(0.3, 3, 400)
    ref_hit, ref_coin = SampleRNG(3, 21, torch.arange(5), CPU, streams=1).bernoulli((0.3, 0.5), 3, 400)
    assert torch.equal(hit1, ref_hit) and torch.equal(coin1, ref_coin)
    hit2, coin2 = SampleRNG(3, 21, torch.arange(5), CPU, streams=2).bernoulli_coin(0.3, 3, 400)
    assert torch.equal(hit2, hit1)  # the same top 24 bits of the first stream decide the hits
    assert not torch.equal(coin2, coin1)
    assert abs(coin2.float().mean().item() - 0.5) < 0.02
    assert abs(coin2[hit2].float().mean().item() - 0.5) < 0.04  # the coin does not lean on the hit
    all_hit, _ = SampleRNG(3, 21, torch.arange(2), CPU, streams=2).bernoulli_coin(1.0, 10)
    none_hit, _ = SampleRNG(3, 21, torch.arange(2), CPU, streams=2).bernoulli_coin(0.0, 10)
    assert bool(all_hit.all()) and not bool(none_hit.any())


def test_version_2_poisson_beyond_the_table_scale_draws_as_version_1() -> None:
    from corruptions.streams import MAX_TABLE_SCALE

    x = torch.full((2, 300), 128 / 255.0)
    big = 4 * MAX_TABLE_SCALE
    v1 = SampleRNG(4, 5, torch.arange(2), CPU, streams=1).poisson_scaled(x, big)
    v2 = SampleRNG(4, 5, torch.arange(2), CPU, streams=2).poisson_scaled(x, big)
    assert torch.equal(v1, v2)
    rate = float(torch.tensor(128 / 255.0).double() * big)
    assert abs(v2.double().mean().item() - rate) < 5 * math.sqrt(rate / v2.numel())


@pytest.mark.parametrize("preset, size", [("cifar", 32), ("imagenet", 64)])
def test_version_4_changes_defocus_blur_only_by_float_rounding(preset: str, size: int) -> None:
    """Version 4's grouped tap sums vs version 3's convolution: the same blur, floats within
    2e-6, at most one 8-bit level apart; every other corruption is version 3's."""
    x = torch.rand(4, 3, size, size, generator=torch.Generator().manual_seed(5))
    for severity in range(1, 6):
        f3, f4 = (corruptions.apply(x, "defocus_blur", severity, preset=preset, quantize=False, streams=v)
                  for v in (3, 4))  # fmt: skip
        assert (f3 - f4).abs().max().item() <= 2e-6
        q3, q4 = (corruptions.apply(x, "defocus_blur", severity, preset=preset, streams=v) for v in (3, 4))
        assert (q3 - q4).abs().max().item() <= 1 / 255 + 1e-7
    for name in ("zoom_blur", "gaussian_noise", "motion_blur"):
        assert torch.equal(corruptions.apply(x, name, 3, preset=preset, streams=3),
                           corruptions.apply(x, name, 3, preset=preset, streams=4))  # fmt: skip
