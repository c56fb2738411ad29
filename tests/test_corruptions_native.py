"""The native CPU stream kernels give the eager kernels' bits, and fail loudly when they cannot."""

from __future__ import annotations

import functools

import pytest
import torch

import corruptions
from corruptions import native
from corruptions.digital import pil_box_resize
from corruptions.ops import (
    disk_kernel,
    filter2d,
    gaussian_kernel1d,
    grouped_filter2d,
    sample_bilinear,
    shift_filter,
    shift_gaussian,
)
from corruptions.rng import SampleRNG
from corruptions.streams import invert_levels, level_mask, level_tables
from corruptions.weather import _water_mask

needs_compiler = pytest.mark.skipif(native.cpp_compiler() is None, reason="no C++ compiler")


@pytest.fixture
def kernels_restored():
    """Put the process's kernel choice back after the test."""
    saved = native._STATE["choice"]
    yield
    native._STATE["choice"] = saved


def _images(n: int = 5, size: int = 9, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, size, size), generator=g).to(torch.float32).div_(255.0)


def _both(fn):
    out = {}
    for choice in ("eager", "native"):
        native.set_kernels(choice)
        out[choice] = fn()
    return out["eager"], out["native"]


@needs_compiler
@pytest.mark.parametrize("name", ["gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise",
                                  "spatter", "glass_blur", "snow", "frost", "pixelate",
                                  "elastic_transform", "defocus_blur", "jpeg_compression"])  # fmt: skip
@pytest.mark.parametrize("streams", [1, 2, 3, 4])
def test_native_kernels_give_the_eager_bits(name: str, streams: int, kernels_restored) -> None:
    """Whole corruptions (float and uint8 inputs, every stream version) agree bit for bit."""
    x = _images()
    x[0, 0, 0, :3] = torch.tensor([0.3, 0.5001, 1.0])  # non-level intensities take the v1 path
    eager, nat = _both(lambda: corruptions.apply(x, name, 4, seed=3, streams=streams))
    assert torch.equal(eager, nat)
    u8 = x.mul(255).round().to(torch.uint8)
    eager, nat = _both(lambda: corruptions.apply(u8, name, 2, seed=1, indices=torch.arange(7, 12)))
    assert torch.equal(eager, nat)


@needs_compiler
def test_native_draws_match_for_every_draw_kind(kernels_restored) -> None:
    """bits, several streams at once, subsets, uniforms, normals and Poisson counts."""

    def draws() -> list[torch.Tensor]:
        rng = SampleRNG(11, 5, torch.tensor([0, 7, 2**40, 3]), torch.device("cpu"))
        part = rng.subset(1, 3)
        rates = torch.tensor([[0.0, 1.0, 1 / 255, 0.25]]).repeat(4, 1)
        return [rng.bits((3, 5)), rng.bernoulli((0.2, 0.5, 0.9), 6), rng.uniform(4), rng.normal(2, 3),
                part.bits((17,)), rng.poisson_scaled(rates, 60.0), rng.poisson_scaled(rates, 3000.0)]

    for e, n in zip(*_both(draws)):
        assert torch.equal(e, n)


@needs_compiler
def test_poisson_levels_detects_exactly_the_levels_level_mask_does(kernels_restored) -> None:
    """Specials, values next to every level, and counts equal to invert_levels' on the levels."""
    native.set_kernels("native")
    levels = torch.arange(256, dtype=torch.float32).div_(255.0)
    near = torch.cat([levels, torch.nextafter(levels, torch.tensor(2.0)), torch.nextafter(levels, torch.tensor(-1.0))])
    x = torch.cat([near, torch.tensor([-0.0, -1e-30, float("nan"), float("inf"), -float("inf"), 2.0, 1.5e-3])])
    bits = torch.arange(x.numel(), dtype=torch.int32).mul_(747796405)
    for scale in (0.5, 60.0, 500.0):
        tables = level_tables(scale, torch.device("cpu"))
        counts, is_level = native.poisson_levels(x, bits, tables)
        ok, level = level_mask(x)
        assert torch.equal(is_level, ok)
        idx = ok.nonzero().view(-1)
        assert torch.equal(counts[idx], invert_levels(bits[idx], level[idx], scale))
        assert bool((counts[~ok] == 0).all())


def test_bad_kernel_choice_is_one_line_error(kernels_restored) -> None:
    with pytest.raises(corruptions.CorruptionError, match=r"CORRUPTIONS_KERNELS='fast' .*valid: auto, native, eager"):
        native.set_kernels("fast")
    native.set_kernels(" Eager ")
    assert native.kernels() == "eager"
    assert not native.active(torch.device("cpu"))


def test_native_without_a_compiler_says_so(monkeypatch: pytest.MonkeyPatch, kernels_restored) -> None:
    """auto means eager without a compiler; an explicit native is an error, not a silent switch."""
    monkeypatch.setattr(native, "cpp_compiler", lambda: None)
    native.set_kernels("auto")
    assert native.kernels() == "eager"
    native.set_kernels("native")
    with pytest.raises(corruptions.CorruptionError, match="needs a C\\+\\+ compiler"):
        native.kernels()


@needs_compiler
def test_a_failed_build_leaves_nothing_and_names_the_way_out(tmp_path) -> None:
    with pytest.raises(native.NativeBuildError, match=r"building kernel X with .* failed .*; use Y"):
        native.build("this is not C++", "broken", tmp_path, str(native.cpp_compiler()), label="kernel X", hint="use Y")
    assert not list(tmp_path.rglob("*.so"))
    (tmp_path / "file").write_text("")
    with pytest.raises(native.NativeBuildError, match=r"cannot build kernel X in .*XDG_CACHE_HOME.*or use Y"):
        native.build(native.SOURCE, "streams", tmp_path / "file", str(native.cpp_compiler()),
                     label="kernel X", hint="use Y")  # fmt: skip


@needs_compiler
def test_native_quantize_gives_the_eager_levels(kernels_restored) -> None:
    """apply's one-pass truncation: the eager ops' levels on values next to every level and specials."""
    native.set_kernels("native")
    levels = torch.arange(256, dtype=torch.float32).div_(255.0)
    x = torch.cat([levels, torch.nextafter(levels, torch.tensor(2.0)), torch.nextafter(levels, torch.tensor(-1.0)),
                   torch.rand(5000, generator=torch.Generator().manual_seed(0)) * 1.2 - 0.1,
                   torch.tensor([float("nan"), float("inf"), -float("inf"), -0.0, 1e-4, (1 - 1e-4) / 255])])
    eager = x.clamp(0.0, 1.0).mul_(255.0).add_(1e-4).floor_()
    assert torch.equal(native.quantize(x, torch.uint8), eager.to(torch.int16).to(torch.uint8))
    got = native.quantize(x, torch.float32)
    assert torch.equal(got.isnan(), eager.isnan())
    assert torch.equal(got.nan_to_num(), eager.div(255.0).nan_to_num())


@needs_compiler
@pytest.mark.parametrize("mode", ["nearest", "mirror", "reflect", "wrap", "constant"])
def test_native_shift_filter_gives_the_eager_bits(mode: str, kernels_restored) -> None:
    """Box, Sobel and Gaussian taps (pads longer than the axis too), one-tap passes, odd shapes."""
    g = torch.Generator().manual_seed(1)
    taps = [[1 / 3] * 3, [-1.0, 0.0, 1.0], gaussian_kernel1d(1.3).tolist(), gaussian_kernel1d(2.0).tolist(), [1.0]]
    for h, w in [(1, 1), (2, 3), (7, 9), (40, 17)]:
        x = torch.randn(3, 2, h, w, generator=g)
        for across in taps:
            for down in (across, [1.0], [1 / 3] * 3):
                eager, nat = _both(functools.partial(shift_filter, x, down, across, mode))
                assert torch.equal(eager, nat), (h, w, len(across), len(down))


def test_shift_filter_without_a_nonzero_tap_is_an_error() -> None:
    with pytest.raises(ValueError, match="nonzero tap"):
        shift_filter(torch.ones(1, 1, 4, 4), [0.0, 0.0, 0.0], [1.0], "nearest")


@needs_compiler
def test_native_water_mask_gives_the_eager_bits(kernels_restored) -> None:
    """spatter's Canny, distance transform, equalisation and filters in one loop: the eager values,
    on blurred thresholded liquid of several sizes (1 px to 96 x 80) and on a single grey level."""
    g = torch.Generator().manual_seed(2)
    for (h, w), sigma in [((1, 1), 0.0), ((2, 3), 0.0), ((32, 32), 1.0), ((96, 80), 2.0)]:
        liquid = torch.randn(4, 1, h, w, generator=g) * 0.3 + 0.65
        if sigma:
            liquid = shift_gaussian(liquid, sigma, "nearest")
        liquid = torch.where(liquid < 0.68, torch.zeros_like(liquid), liquid)
        eager, nat = _both(functools.partial(_water_mask, liquid))
        assert torch.equal(eager, nat), (h, w)
        assert (h < 32) or bool((nat > 0).any())  # the larger ones draw drops
    flat = torch.full((2, 1, 8, 8), 0.7)
    eager, nat = _both(lambda: _water_mask(flat))
    assert torch.equal(eager, nat)


@needs_compiler
def test_native_pil_box_resize_gives_the_eager_levels(kernels_restored) -> None:
    """Down, up, one axis only, to one pixel and unchanged: the eager integer levels and dtype."""
    g = torch.Generator().manual_seed(3)
    for h, w in [(1, 1), (2, 3), (33, 20), (64, 64)]:
        x = torch.randint(0, 256, (2, 3, h, w), generator=g, dtype=torch.int32)
        for size in [(1, 1), (h, w), (max(1, h // 2), max(1, w // 3)), (2 * h, w), (h, 3 * w + 1),
                     (max(1, int(h * 0.6)), max(1, int(w * 0.6)))]:  # fmt: skip
            eager, nat = _both(functools.partial(pil_box_resize, x, *size))
            assert torch.equal(eager, nat) and eager.dtype == nat.dtype, (h, w, size)


@needs_compiler
@pytest.mark.parametrize("name", ["spatter", "pixelate", "frost", "gaussian_noise", "defocus_blur"])
def test_native_kernels_give_the_same_bits_at_any_thread_count(name: str, kernels_restored) -> None:
    """The native loops split work over planes or elements, never inside a sum."""
    native.set_kernels("native")
    u8 = _images(n=6, size=24).mul(255).round().to(torch.uint8)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = corruptions.apply(u8, name, 3, seed=4)
        torch.set_num_threads(2)
        two = corruptions.apply(u8, name, 3, seed=4)
    finally:
        torch.set_num_threads(before)
    assert torch.equal(one, two)


@needs_compiler
@pytest.mark.parametrize("mode", ["nearest", "wrap", "constant", "reflect", "mirror"])
def test_native_sample_bilinear_gives_the_eager_bits(mode: str, kernels_restored) -> None:
    """Coordinates far outside the image, -0, float64 coordinates, an inf pixel (NaN where it
    meets a zero weight) and 1-px axes: the eager values, NaN where eager has NaN."""
    g = torch.Generator().manual_seed(4)
    for (h, w), out_size in [((1, 1), (3, 2)), ((1, 4), (1, 4)), ((7, 9), (5, 6)), ((32, 32), (32, 32))]:
        x = torch.randn(2, 3, h, w, generator=g)
        x[0, 0, 0, 0] = float("inf")
        ys = torch.randn(2, *out_size, generator=g) * h * 1.5 + h / 2
        xs = torch.randn(2, *out_size, generator=g) * w * 1.5 + w / 2
        ys[0, 0, 0], xs[1, 0, 0] = -0.0, 1e-9
        for coords in ((ys, xs), (ys.double(), xs.double())):
            eager, nat = _both(functools.partial(sample_bilinear, x, *coords, mode))
            assert torch.equal(eager.isnan(), nat.isnan()), (h, w)
            assert torch.equal(eager.nan_to_num(), nat.nan_to_num()), (h, w)


@needs_compiler
@pytest.mark.parametrize("mode", ["nearest", "mirror", "reflect", "wrap", "constant"])
def test_native_grouped_filter_gives_the_eager_bits(mode: str, kernels_restored) -> None:
    """Disks of every preset size and a kernel without symmetry, rows narrower than one vector,
    between the block widths and wider than the widest block, pads longer than the axis."""
    g = torch.Generator().manual_seed(2)
    odd = torch.rand(5, 7, dtype=torch.float64, generator=g)
    odd[1, 2], odd[0, 0] = odd[3, 2], 0.0  # one mirrored pair, one zero tap
    kernels = [disk_kernel(0.3, 0.4), disk_kernel(1.5, 0.1), disk_kernel(6, 0.5), disk_kernel(10, 0.5), odd]
    for h, w in [(1, 1), (3, 5), (3, 12), (9, 17), (12, 33), (5, 70), (4, 131), (2, 230)]:
        x = torch.rand(2, 3, h, w, generator=g)
        for k in kernels:
            eager, nat = _both(functools.partial(grouped_filter2d, x, k, mode))
            assert torch.equal(eager, nat), (h, w, tuple(k.shape))
            assert (nat - filter2d(x, k, mode)).abs().max().item() < 1e-5  # the same correlation


@needs_compiler
def test_native_grouped_filter_of_uint8_gives_the_float_paths_levels(kernels_restored) -> None:
    """uint8 in, apply's 8-bit levels out: the levels of the float path (division, filter, truncation)."""
    native.set_kernels("native")
    g = torch.Generator().manual_seed(3)
    u8 = torch.randint(0, 256, (3, 3, 21, 150), dtype=torch.uint8, generator=g)
    u8[0, 0] = 255  # a flat white plane sums to >= 1: the truncation's clamp
    for k in (disk_kernel(1, 0.2), disk_kernel(8, 0.5)):
        want = native.quantize(grouped_filter2d(torch.div(u8, 255.0), k).contiguous(), torch.uint8)
        assert torch.equal(grouped_filter2d(u8, k), want)
    native.set_kernels("eager")
    with pytest.raises(ValueError, match="uint8 levels"):
        grouped_filter2d(u8, disk_kernel(1, 0.2))
    with pytest.raises(ValueError, match="nonzero tap"):
        grouped_filter2d(u8.float(), torch.zeros(3, 3))


@needs_compiler
def test_native_layout_loops_round_trip_every_channel_count() -> None:
    """(C, H, W) -> (H, W, C) -> (C, H, W), against torch's permutes; refuses other memory."""
    g = torch.Generator().manual_seed(4)
    for c, h, w in [(3, 5, 7), (1, 4, 4), (4, 3, 9), (3, 224, 224)]:
        x = torch.randint(0, 256, (c, h, w), dtype=torch.uint8, generator=g)
        hwc = native.to_interleaved(x, torch.empty((h, w, c), dtype=torch.uint8))
        assert torch.equal(hwc, x.permute(1, 2, 0))
        back = native.to_planar(hwc.permute(2, 0, 1), torch.empty_like(x))
        assert torch.equal(back, x)
    with pytest.raises(ValueError, match="interleaved"):
        native.to_planar(torch.zeros(3, 4, 5, dtype=torch.uint8), torch.empty(3, 4, 5, dtype=torch.uint8))
