"""Pillow image I/O of the corruptions package (the JPEG codec, image files, PNG export)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from corruptions import CorruptionError, imageio


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
@pytest.mark.parametrize("path", ["torchvision", "direct"])
def test_the_fast_codec_paths_are_pillows_save_and_open(
    quality: int, channels: int, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """torchvision's codec, and Pillow's without save/open, give save/open's pixels."""
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


def test_the_torchvision_path_matches_pillow_on_varied_images() -> None:
    """40 images of random sizes and contents at 3 qualities: Pillow's pixels (in threads too)."""
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
