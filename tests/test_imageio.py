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
