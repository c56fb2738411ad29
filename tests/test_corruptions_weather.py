"""motion_blur, snow, frost, fog and spatter: reference algorithms, batch independence, presets."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import ndimage as ndi

import corruptions
from corruptions import frost as frost_mod
from corruptions import motion, weather
from corruptions.ops import filter2d_per_sample
from corruptions.rng import SampleRNG

MINE = ("motion_blur", "snow", "frost", "fog", "spatter")


@pytest.fixture(scope="module")
def photos() -> dict[int, torch.Tensor]:
    """china.jpg and flower.jpg resized to 32, 64 and 224 px, as uint8 (2, 3, S, S)."""
    import importlib.util
    from pathlib import Path

    from PIL import Image

    # the photos of sklearn.datasets.load_sample_images, read without importing sklearn
    folder = Path(importlib.util.find_spec("sklearn").origin).parent / "datasets" / "images"
    arrays = [
        np.array(Image.open(str(folder / n)).convert("RGB")) for n in ("china.jpg", "flower.jpg")
    ]
    imgs = torch.stack([torch.from_numpy(a).permute(2, 0, 1) for a in arrays]).float()
    out = {}
    for s in (32, 64, 224):
        x = F.interpolate(imgs, size=(s, s), mode="bilinear", antialias=True, align_corners=False)
        out[s] = x.round().clamp(0, 255).to(torch.uint8)
    return out


# --------------------------------------------------------------------------- motion blur


def _imagemagick_motion_blur(
    img: np.ndarray, radius: float, sigma: float, angle: float
) -> np.ndarray:
    """MotionBlurImage as written in ImageMagick's effect.c (edge virtual pixels), per image."""
    width = int(2 * math.ceil(radius) + 1)
    i = np.arange(width, dtype=np.float64)
    kernel = np.exp(-(i * i) / (2 * sigma * sigma)) / (math.sqrt(2 * math.pi) * sigma)
    kernel /= kernel.sum()
    px, py = width * math.sin(math.radians(angle)), width * math.cos(math.radians(angle))
    hyp = math.hypot(px, py)
    h, w = img.shape[:2]
    out = np.zeros_like(img, dtype=np.float64)
    yy, xx = np.mgrid[0:h, 0:w]
    for k in range(width):
        ox = int(math.ceil(k * py / hyp - 0.5))
        oy = int(math.ceil(k * px / hyp - 0.5))
        out += kernel[k] * img[np.clip(yy + oy, 0, h - 1), np.clip(xx + ox, 0, w - 1)]
    return out


def test_motion_blur_matches_imagemagick_loop():
    rng = np.random.default_rng(0)
    img = rng.random((2, 3, 13, 17))
    angles = [-45.0, 12.5, 33.0, 45.0, 90.0, -135.0]
    for radius, sigma in ((6, 1.0), (9, 2.5), (3.5, 1.5)):
        for a in angles:
            got = motion.apply_motion_blur(
                torch.from_numpy(img), radius, sigma, torch.tensor([a, a], dtype=torch.float64)
            )
            for n in range(2):
                ref = _imagemagick_motion_blur(
                    img[n].transpose(1, 2, 0), radius, sigma, a
                ).transpose(2, 0, 1)
                np.testing.assert_allclose(got[n].numpy(), ref, atol=1e-12)


def test_motion_kernels_sum_to_one_and_equal_gather_path():
    angles = torch.tensor([-45.0, -10.0, 0.0, 30.0, 44.9, -120.0])
    k = motion.motion_blur_kernels(6, 2.5, angles)
    assert k.shape == (6, 25, 25)
    torch.testing.assert_close(k.sum(dim=(1, 2)), torch.ones(6))
    x = torch.rand(6, 3, 20, 24)
    dense = filter2d_per_sample(x, k, mode="nearest")
    torch.testing.assert_close(
        dense, motion.apply_motion_blur(x, 6, 2.5, angles), atol=1e-6, rtol=0
    )


@pytest.mark.parametrize("angle", [0.0, 30.0, -45.0, 90.0])
def test_point_becomes_one_sided_line_at_angle(angle):
    x = torch.zeros(1, 1, 41, 41)
    x[0, 0, 20, 20] = 1.0
    y = motion.apply_motion_blur(x, 10, 4, torch.tensor([angle]))[0, 0]
    ys, xs = torch.nonzero(y > 1e-9, as_tuple=True)
    assert y.sum().item() == pytest.approx(1.0)
    w = torch.exp(-(torch.arange(21.0) ** 2) / 32)
    assert y[20, 20].item() == pytest.approx(
        float(1 / w.sum())
    )  # the first (heaviest) tap is the point
    # every lit pixel lies on the ray from the point *against* the angle (one-sided)
    dy, dx = (20 - ys).double(), (20 - xs).double()
    t = math.radians(angle)
    along = dx * math.cos(t) + dy * math.sin(t)
    across = -dx * math.sin(t) + dy * math.cos(t)
    assert (along >= -1e-9).all() and along.max() >= 15
    assert across.abs().max() <= 0.75


# --------------------------------------------------------------------------- shared helpers


def test_clipped_zoom_equals_scipy_zoom_order1():
    rng = np.random.default_rng(1)
    for size, zoom in ((32, 1.75), (32, 2.25), (64, 1.25), (31, 4.5), (40, 3.0)):
        a = rng.normal(size=(size, size))
        ch = int(np.ceil(size / zoom))
        top = (size - ch) // 2
        z = ndi.zoom(a[top : top + ch, top : top + ch], zoom, order=1)
        trim = (z.shape[0] - size) // 2
        ref = z[trim : trim + size, trim : trim + size]
        got = weather.clipped_zoom(torch.from_numpy(a).view(1, 1, size, size), zoom)[0, 0]
        np.testing.assert_allclose(got.numpy(), ref, atol=1e-10)


# --------------------------------------------------------------------------- fog


def _numpy_plasma(rng: SampleRNG, mapsize: int, wibbledecay: float) -> np.ndarray:
    """The reference plasma_fractal, drawing its uniforms from ``rng`` (same order)."""
    maparray = np.zeros((rng.n, mapsize, mapsize))
    stepsize = mapsize
    wibble = 100.0

    def wibbledmean(array):
        count = array.shape[1] * array.shape[2]
        bits = rng.bits(((count + 1) // 2,)).numpy()  # 16-bit uniforms: low half, high half
        halves = np.stack([bits & 0xFFFF, bits >> 16], axis=-1).reshape(rng.n, -1)[:, :count]
        u = ((halves + 0.5) / 65536.0).reshape(array.shape)
        return array / 4 + wibble * (u * 2 * wibble - wibble)

    while stepsize >= 2:
        cornerref = maparray[:, 0:mapsize:stepsize, 0:mapsize:stepsize]
        squareaccum = cornerref + np.roll(cornerref, shift=-1, axis=1)
        squareaccum += np.roll(squareaccum, shift=-1, axis=2)
        maparray[:, stepsize // 2 : mapsize : stepsize, stepsize // 2 : mapsize : stepsize] = (
            wibbledmean(squareaccum)
        )
        drgrid = maparray[:, stepsize // 2 : mapsize : stepsize, stepsize // 2 : mapsize : stepsize]
        ulgrid = maparray[:, 0:mapsize:stepsize, 0:mapsize:stepsize]
        ltsum = drgrid + np.roll(drgrid, 1, axis=1) + ulgrid + np.roll(ulgrid, -1, axis=2)
        maparray[:, 0:mapsize:stepsize, stepsize // 2 : mapsize : stepsize] = wibbledmean(ltsum)
        ttsum = drgrid + np.roll(drgrid, 1, axis=2) + ulgrid + np.roll(ulgrid, -1, axis=1)
        maparray[:, stepsize // 2 : mapsize : stepsize, 0:mapsize:stepsize] = wibbledmean(ttsum)
        stepsize //= 2
        wibble /= wibbledecay
    maparray -= maparray.min(axis=(1, 2), keepdims=True)
    return maparray / maparray.max(axis=(1, 2), keepdims=True)


@pytest.mark.parametrize("mapsize,decay", [(32, 3.0), (64, 1.75), (256, 1.4)])
def test_plasma_fractal_matches_reference_algorithm(mapsize, decay):
    idx = torch.tensor([0, 5, 9])
    got = weather.plasma_fractal(
        SampleRNG(3, 77, idx, torch.device("cpu")), mapsize, decay, torch.device("cpu")
    )
    ref = _numpy_plasma(SampleRNG(3, 77, idx, torch.device("cpu")), mapsize, decay)
    assert got.shape == (3, mapsize, mapsize)
    np.testing.assert_allclose(got.numpy(), ref, atol=2e-4)


def test_fog_formula_on_flat_plasma_limits():
    x = torch.rand(3, 3, 32, 32) * 0.8
    y = corruptions.apply(x, "fog", 3, quantize=False)
    # x*max/(max+s) <= y <= (x+s)*max/(max+s)
    m = x.amax(dim=(1, 2, 3), keepdim=True)
    s = 0.75
    assert (y >= x * m / (m + s) - 1e-6).all() and (y <= (x + s) * m / (m + s) + 1e-6).all()


# --------------------------------------------------------------------------- snow


def test_snow_without_flakes_is_the_reference_whitening():
    x = torch.rand(2, 3, 32, 32)
    y = corruptions.apply(x, "snow", 4, params={"threshold": 5.0}, quantize=False)
    gray = 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]
    ref = (0.85 * x + 0.15 * torch.maximum(x, gray * 1.5 + 0.5)).clamp(0, 1)
    torch.testing.assert_close(y, ref)


def test_snow_adds_layer_and_its_180_rotation():
    x = torch.zeros(1, 3, 32, 32)
    y = corruptions.apply(x, "snow", 5, params={"blend": 1.0}, quantize=False)
    torch.testing.assert_close(
        y, torch.flip(y, dims=(-2, -1))
    )  # layer + rot180(layer) is symmetric
    assert torch.equal(y[:, 0], y[:, 1]) and torch.equal(y[:, 1], y[:, 2])
    assert y.max() > 0.2


# --------------------------------------------------------------------------- spatter


def test_spatter_mud_matches_numpy_reference():
    for preset, sev, size in (("cifar", 4, 32), ("cifar", 5, 32), ("imagenet", 5, 48)):
        x = torch.rand(2, 3, size, size, dtype=torch.float32)
        p = corruptions.get("spatter").params(sev, preset)
        got = corruptions.apply(
            x, "spatter", sev, preset=preset, seed=4, indices=[3, 8], quantize=False
        )
        from corruptions.rng import name_code

        rng = SampleRNG(4, name_code(f"spatter|{sev}"), torch.tensor([3, 8]), torch.device("cpu"))
        liquid = rng.normal(size, size).numpy().astype(np.float64) * p["scale"] + p["loc"]
        for n in range(2):
            layer = ndi.gaussian_filter(liquid[n], p["sigma"], mode="nearest", truncate=4.0)
            layer[layer < p["threshold"]] = 0
            m = ndi.gaussian_filter(
                np.where(layer > p["threshold"], 1.0, 0.0), p["intensity"], mode="nearest"
            )
            m[m < 0.8] = 0
            img = x[n].numpy().transpose(1, 2, 0).astype(np.float64)
            color = np.array([63, 42, 20]) / 255.0
            ref = np.clip(img * (1 - m[..., None]) + color * m[..., None], 0, 1)
            np.testing.assert_allclose(got[n].numpy().transpose(1, 2, 0), ref, atol=2e-5)


def test_truncated_distance_is_euclidean():
    rng = np.random.default_rng(2)
    edges = rng.random((2, 1, 40, 50)) < 0.01
    edges[1] = False
    edges[1, 0, 5, 7] = True
    got = weather.truncated_distance(torch.from_numpy(edges), limit=20)
    for n in range(2):
        ref = np.minimum(ndi.distance_transform_edt(~edges[n, 0]), 20)
        np.testing.assert_allclose(got[n, 0].numpy(), ref, atol=1e-5)
    none = weather.truncated_distance(torch.zeros(1, 1, 8, 8, dtype=torch.bool))
    assert (none == 20).all()


def test_equalize_hist_like_opencv():
    rng = np.random.default_rng(3)
    img = rng.integers(3, 21, size=(2, 1, 16, 16)).astype(np.float32)
    got = weather.equalize_hist(torch.from_numpy(img)).numpy()
    for n in range(2):
        v = img[n, 0].astype(np.int64)
        hist = np.bincount(v.ravel(), minlength=256)
        i0 = int(np.nonzero(hist)[0][0])
        scale = np.float32(255.0) / np.float32(v.size - hist[i0])  # OpenCV computes in float
        lut = np.zeros(256)
        acc = 0
        for i in range(i0 + 1, 256):
            acc += hist[i]
            lut[i] = np.clip(np.rint(np.float32(acc) * scale), 0, 255)
        np.testing.assert_array_equal(got[n, 0], lut[v])
    flat = weather.equalize_hist(torch.full((1, 1, 4, 4), 7.0))
    assert (flat == 7).all()


def test_canny_gives_thin_edges_on_a_step():
    img = torch.zeros(1, 1, 16, 16)
    img[..., 8:] = 200.0
    e = weather.canny_edges(img)
    cols = torch.nonzero(e[0, 0].any(dim=0)).view(-1).tolist()
    assert len(cols) == 1 and cols[0] in (7, 8)
    assert e[0, 0, :, cols[0]].all()
    assert not weather.canny_edges(torch.full((1, 1, 8, 8), 100.0)).any()


def test_spatter_water_is_pale_turquoise():
    x = torch.zeros(4, 3, 64, 64)
    y = corruptions.apply(x, "spatter", 3, quantize=False)
    wet = y.sum(dim=1) > 0
    assert wet.any()
    ratio = y[:, 0][wet].sum() / y[:, 1][wet].sum()
    assert ratio == pytest.approx(175 / 238, rel=1e-4)
    torch.testing.assert_close(y[:, 1], y[:, 2])


# --------------------------------------------------------------------------- frost


def test_frost_texture_statistics():
    for s in (32, 64):
        bank = frost_mod.frost_texture_bank(s, s)
        assert bank.shape == (5, 3, 3 * s, 3 * s)
        mean = bank.mean(dim=(0, 2, 3))
        assert 0.38 < float(mean.mean()) < 0.52
        assert mean[2] > mean[1] > mean[0]  # slight blue cast
        assert float(bank.std()) > 0.08  # textured, not a flat veil
        assert torch.equal(bank, frost_mod.frost_texture_bank(s, s))  # cached, deterministic


@pytest.mark.parametrize("source", ["procedural", "photos"])
def test_frost_crops_sliced_or_indexed_are_the_same(tmp_path, monkeypatch, source):
    """Large crops are sliced per sample, small ones indexed: the same values either way."""
    if source == "photos":
        from PIL import Image

        g = np.random.default_rng(0)
        for i in range(2):
            Image.fromarray(g.integers(0, 256, (90, 120, 3), dtype=np.uint8)).save(tmp_path / f"f{i}.png")
    x = torch.rand(6, 3, 40, 48)
    with frost_mod.frost_images(str(tmp_path) if source == "photos" else "procedural"):
        monkeypatch.setattr(frost_mod, "SLICED_CROP_PIXELS", 10**9)
        indexed = corruptions.apply(x, "frost", 4, seed=2)
        monkeypatch.setattr(frost_mod, "SLICED_CROP_PIXELS", 1)
        assert torch.equal(corruptions.apply(x, "frost", 4, seed=2), indexed)


def test_frost_uses_user_photographs(tmp_path, monkeypatch):
    from PIL import Image

    colors = [(200, 220, 255), (10, 20, 30)]
    for i, c in enumerate(colors):
        Image.new("RGB", (90 + 7 * i, 70), c).save(tmp_path / f"f{i}.png")
    x = torch.rand(6, 3, 32, 32)
    try:
        frost_mod.set_frost_images(tmp_path)
        assert frost_mod.frost_source() == str(tmp_path)
        y = corruptions.apply(x, "frost", 5, quantize=False)
    finally:
        frost_mod.set_frost_images(None)
    cands = torch.stack(
        [(0.75 * x + 0.45 * torch.tensor(c).view(1, 3, 1, 1) / 255.0).clamp(0, 1) for c in colors]
    )
    err = (cands - y.unsqueeze(0)).abs().amax(dim=(2, 3, 4))  # (colour, sample)
    assert (err.amin(dim=0) < 1e-6).all()
    monkeypatch.setenv("ACTBENCH_FROST_DIR", str(tmp_path))
    assert frost_mod.frost_source() == str(tmp_path)
    small = corruptions.apply(
        torch.rand(2, 3, 224, 224), "frost", 1, quantize=False
    )  # photos upscaled
    assert torch.isfinite(small).all()
    monkeypatch.delenv("ACTBENCH_FROST_DIR")
    monkeypatch.setattr(frost_mod, "FROST_PACKAGES", ())  # no package's photographs either
    assert frost_mod.frost_source() == "procedural"
    with pytest.raises(corruptions.CorruptionError, match="not found"):
        frost_mod.set_frost_images(tmp_path / "nope")


# --------------------------------------------------------------------------- all five


@pytest.mark.parametrize("name", MINE)
def test_batch_independence_and_determinism(name):
    x = torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8)
    idx = torch.tensor([10, 11, 12, 13, 14])
    full = corruptions.apply(x, name, 3, seed=7, indices=idx)
    parts = torch.cat(
        [
            corruptions.apply(x[i : i + 1], name, 3, seed=7, indices=idx[i : i + 1])
            for i in (4, 0, 2, 1, 3)
        ]
    )
    parts = parts[torch.tensor([1, 3, 2, 4, 0])]
    assert torch.equal(full, parts)
    assert torch.equal(full, corruptions.apply(x, name, 3, seed=7, indices=idx))
    assert not torch.equal(full, corruptions.apply(x, name, 3, seed=8, indices=idx))
    assert full.dtype == torch.uint8 and full.shape == x.shape


@pytest.mark.parametrize("name", MINE)
def test_all_presets_and_sizes(name, photos):
    for preset in corruptions.PRESETS:
        for sev in range(1, 6):
            y = corruptions.apply(photos[32], name, sev, preset=preset)
            assert y.shape == photos[32].shape and y.dtype == torch.uint8
    for size, sevs in ((64, (1, 5)), (224, (5,))):
        x = photos[size][:1].float() / 255
        for sev in sevs:
            y = corruptions.apply(x, name, sev)
            assert torch.isfinite(y).all() and y.min() >= 0 and y.max() <= 1
            assert (y - x).abs().mean() > 1e-3
    grey = corruptions.apply(photos[32][:, :1], name, 2)
    assert grey.shape == (2, 1, 32, 32)


def _decorrelation(x: torch.Tensor, y: torch.Tensor) -> float:
    a = x.float().flatten(1)
    b = y.float().flatten(1)
    a = a - a.mean(1, keepdim=True)
    b = b - b.mean(1, keepdim=True)
    corr = (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))
    return float(1 - corr.mean())


@pytest.mark.parametrize("size", [32, 64])
def test_severity_ordering(size, photos):
    x = photos[size].repeat_interleave(4, dim=0)
    for name in ("fog", "snow"):
        d = [
            (corruptions.apply(x, name, s).float() - x.float()).abs().mean().item()
            for s in range(1, 6)
        ]
        assert all(b > a for a, b in zip(d, d[1:])), (name, d)
    # frost: image_weight falls while frost_weight grows; the image's share falls monotonically
    # (mean |change| need not: severity 3 -> 4 only lowers image_weight)
    d = [_decorrelation(x, corruptions.apply(x, "frost", s)) for s in range(1, 6)]
    assert all(b > a for a, b in zip(d, d[1:])), d
    d = [(corruptions.apply(x, "frost", s).float() - x.float()).abs().mean().item() for s in (1, 5)]
    assert d[1] > d[0]


def test_fft_path_equals_tap_sum(monkeypatch):
    x = torch.rand(3, 2, 40, 36)
    angles = torch.tensor([-40.0, 3.0, 44.0])
    taps = motion.apply_motion_blur(x, 10, 3, angles, version=2)
    monkeypatch.setattr(motion, "FFT_MIN_PIXELS", 1)
    fft = motion.apply_motion_blur(x, 10, 3, angles, version=2)
    assert not torch.equal(fft, taps)  # the FFT path really ran
    torch.testing.assert_close(fft, taps, atol=2e-6, rtol=0)
    # version 3 sums the taps at every size
    assert torch.equal(motion.apply_motion_blur(x, 10, 3, angles, version=3), taps)


@pytest.mark.parametrize("size", [(17, 17), (30, 31), (100, 97)])
def test_tap_sum_equals_dense_kernel_correlation_at_any_size(size):
    """The shifted-window sum is the ImageMagick kernel, small images and large (version 3)."""
    x = torch.rand(3, 2, *size, dtype=torch.float64)
    angles = torch.tensor([-45.0, 12.5, 44.0])
    dense = motion.motion_blur_kernels(15, 8, angles, dtype=torch.float64)
    want = filter2d_per_sample(x, dense, mode="nearest")
    torch.testing.assert_close(motion.apply_motion_blur(x, 15, 8, angles), want, atol=1e-12, rtol=0)


@pytest.mark.parametrize("shape", [(5, 1, 32, 32), (4, 3, 30, 31), (2, 3, 100, 97)])
def test_shifted_windows_and_gathers_give_the_same_bits(monkeypatch, shape):
    x = torch.rand(*shape)
    angles = torch.linspace(-45, 45, shape[0])
    monkeypatch.setattr(motion, "WINDOW_MIN_VALUES", 0)
    windows = motion.apply_motion_blur(x, 9, 2.5, angles)
    monkeypatch.setattr(motion, "WINDOW_MIN_VALUES", 10**9)
    assert torch.equal(motion.apply_motion_blur(x, 9, 2.5, angles), windows)


def test_version_3_changes_only_large_motion_blur_and_by_at_most_one_level():
    big = (torch.rand(2, 3, 100, 100) * 255).round().to(torch.uint8)
    small = big[..., :40, :40].contiguous()
    for name in ("motion_blur", "snow"):
        a, b = (corruptions.apply(small, name, 5, seed=3, streams=v) for v in (2, 3))
        assert torch.equal(a, b), name
        a, b = (corruptions.apply(big, name, 5, seed=3, streams=v) for v in (2, 3))
        assert (a.int() - b.int()).abs().max() <= 1, name
