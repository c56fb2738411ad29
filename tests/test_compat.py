"""The imagecorruptions drop-in: corruptions.corrupt / get_corruption_names.

Compared value by value with the installed imagecorruptions package on real photographs
(scikit-learn's sample images) for the deterministic corruptions.
"""

from __future__ import annotations

import os
import sys
import types
import warnings
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_sample_images

import corruptions

DETERMINISTIC = ("defocus_blur", "zoom_blur", "brightness", "contrast", "pixelate",
                 "jpeg_compression", "saturate", "gaussian_blur")  # fmt: skip
#: imagecorruptions 1.1.2 calls skimage's removed `multichannel=` / numpy's removed np.float_
BROKEN_UPSTREAM = {"gaussian_blur", "glass_blur", "fog"}


@pytest.fixture(scope="module")
def photos() -> list[np.ndarray]:
    """A 224 px RGB crop, a non-square 64x96 RGB crop and a 40x40 grey crop (uint8)."""
    china, flower = load_sample_images().images
    grey = flower[200:240, 200:240].mean(-1).astype(np.uint8)
    return [china[100:324, 200:424].copy(), flower[50:114, 30:126].copy(), grey]


@pytest.fixture(scope="module")
def imagecorruptions() -> Iterator[types.ModuleType]:
    """The installed imagecorruptions package (its pkg_resources import shimmed if setuptools lacks it)."""
    pytest.importorskip("cv2")
    pytest.importorskip("skimage")
    shimmed = False
    try:
        import pkg_resources  # noqa: F401
    except ImportError:  # setuptools >= 81 dropped it; imagecorruptions only needs resource_filename
        shim = types.ModuleType("pkg_resources")
        shim.resource_filename = lambda pkg, path: os.path.join(  # type: ignore[attr-defined]
            os.path.dirname(sys.modules[pkg].__file__), path)
        sys.modules["pkg_resources"] = shim
        shimmed = True
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield pytest.importorskip("imagecorruptions")
    finally:
        if shimmed:
            sys.modules.pop("pkg_resources", None)


def test_names_and_numbering_are_imagecorruptions() -> None:
    common = corruptions.get_corruption_names()
    assert common == list(corruptions.COMMON) and len(common) == 15
    assert corruptions.get_corruption_names("validation") == [
        "speckle_noise", "gaussian_blur", "spatter", "saturate"]  # fmt: skip
    every = corruptions.get_corruption_names("all")
    assert every == common + corruptions.get_corruption_names("validation")
    assert corruptions.get_corruption_names("noise") == ["gaussian_noise", "shot_noise", "impulse_noise"]
    assert corruptions.get_corruption_names("blur") == every[3:7]
    assert corruptions.get_corruption_names("weather") == ["snow", "frost", "fog", "brightness"]
    assert corruptions.get_corruption_names("digital") == every[11:15]
    with pytest.raises(corruptions.CorruptionError, match="closest: validation"):
        corruptions.get_corruption_names("validaton")


def test_names_match_the_installed_package(imagecorruptions) -> None:
    for subset in ("common", "validation", "all", "noise", "blur", "weather", "digital"):
        assert corruptions.get_corruption_names(subset) == imagecorruptions.get_corruption_names(subset)


def test_corrupt_kinds_shapes_and_numbers(photos) -> None:
    rgb, _, grey = photos
    out = corruptions.corrupt(rgb, 3, "contrast")
    assert isinstance(out, np.ndarray) and out.dtype == np.uint8 and out.shape == rgb.shape
    by_number = corruptions.corrupt(rgb, 3, corruption_number=11)  # contrast
    assert np.array_equal(out, by_number)
    assert corruptions.corrupt(grey, 2, "pixelate").shape == (40, 40, 3)  # as imagecorruptions
    assert corruptions.corrupt(grey[..., None], 2, "pixelate").shape == (40, 40, 3)
    pil = corruptions.corrupt(Image.fromarray(rgb), 3, "contrast")
    assert isinstance(pil, Image.Image) and pil.mode == "RGB" and np.array_equal(np.asarray(pil), out)
    pil_grey = corruptions.corrupt(Image.fromarray(grey), 1, "jpeg_compression", seed=0)
    assert isinstance(pil_grey, Image.Image) and pil_grey.mode == "L" and pil_grey.size == (40, 40)


def test_seed_makes_random_corruptions_reproducible(photos) -> None:
    img = photos[1]
    a = corruptions.corrupt(img, 4, "gaussian_noise", seed=7)
    assert np.array_equal(a, corruptions.corrupt(img, 4, "gaussian_noise", seed=7))
    assert not np.array_equal(a, corruptions.corrupt(img, 4, "gaussian_noise", seed=8))
    # no seed: a fresh one per call, like imagecorruptions
    assert not np.array_equal(corruptions.corrupt(img, 4, "gaussian_noise"),
                              corruptions.corrupt(img, 4, "gaussian_noise"))  # fmt: skip
    # seed + index give the batched API's result for that sample
    batch = torch.from_numpy(np.stack([img, img])).permute(0, 3, 1, 2).contiguous()
    ref = corruptions.apply(batch, "shot_noise", 2, seed=3, indices=[5, 6], preset="imagenet")
    one = corruptions.corrupt(img, 2, "shot_noise", seed=3, index=6)
    assert np.array_equal(one, ref[1].permute(1, 2, 0).numpy())


def test_presets(photos) -> None:
    small = photos[2]
    auto = corruptions.corrupt(small, 1, "contrast", preset="auto")  # 40 px: cifar table
    assert np.array_equal(auto, corruptions.corrupt(small, 1, "contrast", preset="cifar"))
    assert not np.array_equal(auto, corruptions.corrupt(small, 1, "contrast"))  # imagenet table
    with pytest.raises(corruptions.CorruptionError, match="unknown preset 'imagenett'"):
        corruptions.corrupt(small, 1, "contrast", preset="imagenett")


def test_bad_input_is_one_line(photos) -> None:
    img = photos[0]
    bad = [
        ((img.astype(np.float32), 1, "fog"), "uint8"),
        ((img[..., :2], 1, "fog"), "C = 1 or 3"),
        ((img.tolist(), 1, "fog"), "numpy array or a PIL image"),
        ((img, 6, "fog"), "severity must be an integer 1..5"),
        ((img, 1, "foggy"), "closest: fog"),
        ((img, 1), "give corruption_name or corruption_number"),
    ]
    for args, msg in bad:
        with pytest.raises(corruptions.CorruptionError, match=msg) as err:
            corruptions.corrupt(*args)
        assert "\n" not in str(err.value)
    with pytest.raises(corruptions.CorruptionError, match="0..18"):
        corruptions.corrupt(img, 1, corruption_number=19)


@pytest.mark.parametrize("name", DETERMINISTIC)
def test_deterministic_corruptions_match_imagecorruptions(name, photos, imagecorruptions) -> None:
    if name in BROKEN_UPSTREAM:
        try:
            imagecorruptions.corrupt(photos[0], 1, name)
        except (TypeError, AttributeError) as exc:
            pytest.skip(f"imagecorruptions crashes in {name} under numpy 2 / scikit-image >= 0.19 "
                        f"({type(exc).__name__}: {str(exc)[:60]}); nothing to compare with")
    rows = []
    for img in photos:
        for sev in range(1, 6):
            ref = imagecorruptions.corrupt(img, sev, name).astype(np.int64)
            ours = corruptions.corrupt(img, sev, name, seed=0).astype(np.int64)
            assert ours.shape == ref.shape
            diff = np.abs(ours - ref)
            rows.append((img.shape, sev, float(diff.mean()), int(diff.max())))
    print(f"\n{name}: " + "  ".join(f"{s[:2]} s{v}: {m:.4f}/{x}" for s, v, m, x in rows))
    for shape, sev, mean, _ in rows:
        assert mean <= 0.5, (shape, sev, mean)
