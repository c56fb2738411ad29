"""Pillow image I/O of the corruptions package (the JPEG codec, image files, PNG export)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from corruptions import CorruptionError, imageio, native


def _pil_jpeg(arr: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG", quality=quality)
    return np.array(Image.open(buf))


@pytest.mark.parametrize("shape", [(40, 3, 37, 23), (3, 1, 33, 48), (1, 3, 8, 8)])
def test_jpeg_roundtrip_is_pil_whatever_the_threads(shape) -> None:
    x = torch.randint(0, 256, shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    one = imageio.jpeg_roundtrip(x, 30, workers=1)
    assert torch.equal(one, imageio.jpeg_roundtrip(x, 30, workers=4)) and one.shape == x.shape
    for i in range(0, shape[0], 13):
        arr = x[i].permute(1, 2, 0).numpy()
        ref = _pil_jpeg(arr[..., 0] if shape[1] == 1 else arr, 30)
        assert np.array_equal(one[i].permute(1, 2, 0).numpy().reshape(ref.shape), ref)


def _photo_like(n: int, c: int, h: int, w: int) -> torch.Tensor:
    """Smooth gradients plus noise: blocks of every kind for the codec."""
    g = torch.Generator().manual_seed(1)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    base = (yy * 180 + xx * 60).expand(n, c, h, w)
    return (base + torch.randn(n, c, h, w, generator=g) * 25).clamp(0, 255).to(torch.uint8)


@pytest.mark.parametrize("quality", [1, 7, 25, 58, 80, 95, 100])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("path", ["native", "torchvision", "direct"])
def test_the_fast_codec_paths_are_pillows_save_and_open(
    quality: int, channels: int, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The native kernel, torchvision's codec and Pillow's without save/open give save/open's pixels."""
    if path != "native":
        monkeypatch.setattr(imageio, "_native_exact", lambda channels, quality: False)
    if path == "direct":
        monkeypatch.setattr(imageio, "_torchvision_exact", lambda channels, quality: False)
    assert imageio.jpeg_codec_path(channels, quality) == path
    for h, w in ((32, 32), (45, 61), (224, 224)):
        x = _photo_like(3 if h < 100 else 1, channels, h, w)
        out = imageio.jpeg_roundtrip(x, quality, workers=1)
        for i in range(x.shape[0]):
            arr = x[i].permute(1, 2, 0).numpy()
            ref = _pil_jpeg(arr[..., 0] if channels == 1 else arr, quality)
            assert np.array_equal(out[i].permute(1, 2, 0).numpy().reshape(ref.shape), ref), (h, w, i)


@pytest.mark.parametrize("path", ["native", "torchvision"])
def test_the_fast_paths_match_pillow_on_varied_images(path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """40 images of random sizes and contents at 3 qualities: Pillow's pixels (in threads too)."""
    if path != "native":
        monkeypatch.setattr(imageio, "_native_exact", lambda channels, quality: False)
    assert imageio.jpeg_codec_path(3, 58) == path
    g = torch.Generator().manual_seed(7)
    for _ in range(40):
        h, w = (int(v) for v in torch.randint(8, 90, (2,), generator=g))
        x = (torch.rand(2, 3, h, w, generator=g) * torch.rand(1, generator=g) * 255).to(torch.uint8)
        x[1] = _photo_like(1, 3, h, w)[0]
        for quality in (23, 58, 88):
            out = imageio.jpeg_roundtrip(x, quality, workers=1)
            for i in range(2):
                ref = _pil_jpeg(x[i].permute(1, 2, 0).numpy(), quality)
                assert np.array_equal(out[i].permute(1, 2, 0).numpy(), ref), (h, w, quality, i)
    batch = _photo_like(40, 3, 32, 32)  # 40 images: two threads of 20
    assert torch.equal(imageio.jpeg_roundtrip(batch, 58, workers=2), imageio.jpeg_roundtrip(batch, 58, workers=1))


def _varied_image(rng: np.random.Generator, kind: int, c: int, h: int, w: int) -> np.ndarray:
    """(H, W, C) uint8 content of one kind: uniform noise, wrapping ramps, a tinted plane
    with noise, or black and white (DCT values at their extremes)."""
    if kind == 0:
        return rng.integers(0, 256, (h, w, c)).astype(np.uint8)
    if kind == 1:
        yy, xx = np.mgrid[0:h, 0:w]
        return np.stack([(yy * 7 + xx * 3 + 50 * k) % 256 for k in range(c)], axis=-1).astype(np.uint8)
    if kind == 2:
        return np.clip(rng.normal(128, 60, (1, 1, c)) + rng.normal(0, 20, (h, w, c)), 0, 255).astype(np.uint8)
    return (rng.integers(0, 2, (h, w, c)) * 255).astype(np.uint8)


@pytest.mark.skipif(native.cpp_compiler() is None, reason="no C++ compiler: no native kernels")
def test_the_native_kernel_is_pillows_codec_at_every_size_and_quality() -> None:
    """300 images from 1x1 to 69x69 (every block and colour-block remainder, the replicated
    upsampling below three colour columns), grey and RGB, qualities 1..100: Pillow's pixels."""
    rng = np.random.default_rng(0)
    for trial in range(300):
        c, kind = (1 if trial % 3 == 0 else 3), trial % 4
        h, w = (int(v) for v in rng.integers(1, 70, 2))
        quality = int(rng.integers(1, 101))
        arr = _varied_image(rng, kind, c, h, w)
        got = native.jpeg_roundtrip(torch.from_numpy(arr).permute(2, 0, 1)[None], quality)[0]
        ref = _pil_jpeg(arr[..., 0] if c == 1 else arr, quality)
        assert np.array_equal(got.permute(1, 2, 0).numpy().reshape(ref.shape), ref), (c, h, w, quality, kind)


def test_eager_kernels_leave_the_jpeg_round_trip_to_the_codec(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(native._STATE, "choice", native._STATE["choice"])  # restored afterwards
    x = _photo_like(2, 3, 20, 20)
    fast = imageio.jpeg_roundtrip(x, 40)
    native.set_kernels("eager")
    assert imageio.jpeg_codec_path(3, 40) != "native"
    assert torch.equal(imageio.jpeg_roundtrip(x, 40), fast)


@pytest.mark.skipif(native.cpp_compiler() is None, reason="no C++ compiler: no native kernels")
def test_a_native_kernel_that_misses_pillows_pixels_is_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    """A kernel that differs from the installed codec on the probe images leaves the codec to run."""
    imageio._native_probe.cache_clear()
    monkeypatch.setattr(native, "jpeg_roundtrip", lambda levels, quality, threads=None: levels.clone())
    try:
        assert imageio.jpeg_codec_path(3, 41) != "native"
        x = _photo_like(2, 3, 20, 20)
        assert not torch.equal(imageio.jpeg_roundtrip(x, 41), x)  # the codec ran
    finally:
        imageio._native_probe.cache_clear()


def test_png_and_image_files(tmp_path: Path) -> None:
    rgb = torch.randint(0, 256, (3, 9, 14), dtype=torch.uint8)
    grey = rgb[:1].clone()
    imageio.write_png(tmp_path / "rgb.png", rgb)
    imageio.write_png(tmp_path / "grey.png", grey)
    assert torch.equal(imageio.read_image(tmp_path / "rgb.png"), rgb)  # lossless
    assert torch.equal(imageio.read_image(tmp_path / "grey.png", 1), grey)
    assert torch.equal(imageio.read_image(tmp_path / "grey.png", 3), grey.expand(3, -1, -1))
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    with pytest.raises(CorruptionError, match="cannot decode image .*bad.jpg") as err:
        imageio.read_image(tmp_path / "bad.jpg")
    assert "\n" not in str(err.value)
    with pytest.raises(CorruptionError, match="expected a uint8"):
        imageio.encode_png(rgb.float())
