"""CIFAR-10-C / ImageNet-C readers and the atomic exporter (round trips through corruptions.apply)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

import corruptions
from corruptions import CorruptionError
from corruptions.datasets import CIFARCDataset, ImageNetCDataset, export_c_dataset


class TinySet(Dataset):
    """A few random uint8 images with labels and class names (like robustbench_act's datasets)."""

    def __init__(self, n: int = 7, size: int = 16, channels: int = 3, fail_at: int | None = None):
        g = torch.Generator().manual_seed(0)
        self.pixels = torch.randint(
            0, 256, (n, channels, size, size), generator=g, dtype=torch.uint8
        )
        # in-memory sets expose .images (the exporter's fast path); failing ones go item by item
        self.images = self.pixels if fail_at is None else None
        self.labels = torch.arange(n) % 3
        self.classes = ["zebra", "apple", "n01/odd"]  # deliberately unsorted, one needs escaping
        self.name = "tiny"
        self.fail_at = fail_at

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        if self.fail_at is not None and i >= self.fail_at:
            raise RuntimeError("disk on fire")
        return self.pixels[i], int(self.labels[i])


def _leftovers(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_cifar_c_round_trip(tmp_path):
    ds = TinySet()
    names = ["gaussian_noise", "fog", "motion_blur"]
    calls = []
    out = export_c_dataset(ds, tmp_path / "c", corruptions=names, seed=5, batch_size=3,
                           progress=lambda d, t: calls.append((d, t)))  # fmt: skip
    assert out == tmp_path / "c" and _leftovers(tmp_path) == ["c"]
    assert calls[-1] == (7 * 3 * 5, 7 * 3 * 5) and all(
        a[0] < b[0] for a, b in zip(calls, calls[1:])
    )
    arr = np.load(out / "fog.npy")
    assert arr.shape == (5 * 7, 16, 16, 3) and arr.dtype == np.uint8
    labels = np.load(out / "labels.npy")
    assert labels.shape == (35,) and (labels == np.tile(ds.labels.numpy(), 5)).all()
    man = json.loads((out / "manifest.json").read_text())
    assert man["seed"] == 5 and man["corruptions"] == names and man["severities"] == [1, 2, 3, 4, 5]
    assert man["preset"] == "cifar" and man["image_count"] == 7 and man["classes"] == ds.classes
    assert man["params"]["motion_blur"]["5"] == {"radius": 9, "sigma": 2.5}
    assert "torch" in man["versions"]
    for name in names:
        for s in (1, 4):
            r = CIFARCDataset(out, name, s)
            assert (
                len(r) == 7 and r.corruption == name and r.severity == s and r.classes == ds.classes
            )
            want = corruptions.apply(ds.images, name, s, seed=5, indices=torch.arange(7))
            got = torch.stack([r[i][0] for i in range(7)])
            assert torch.equal(got, want)
            assert torch.equal(r.images(), want)
            assert [r[i][1] for i in range(7)] == ds.labels.tolist()
    # a subset recomputed with its global indices gives the same images
    sub = corruptions.apply(ds.images[4:6], "fog", 2, seed=5, indices=[4, 5])
    assert torch.equal(CIFARCDataset(out, "fog", 2).images()[4:6], sub)


def test_imagefolder_round_trip_and_grey(tmp_path):
    ds = TinySet(n=5, size=12, channels=1)
    out = export_c_dataset(ds, tmp_path / "inc", corruptions="snow,pixelate", severities=[2, 5],
                           format="imagefolder", seed=1, batch_size=2)  # fmt: skip
    assert sorted(p.name for p in (out / "snow").iterdir()) == ["2", "5"]
    assert sorted(p.name for p in (out / "snow" / "2").iterdir()) == ["apple", "n01_odd", "zebra"]
    r = ImageNetCDataset(out, "snow", 5)
    assert r.classes == ds.classes and len(r) == 5
    want = corruptions.apply(ds.images, "snow", 5, seed=1, indices=torch.arange(5))
    for i in range(len(r)):
        img, label = r[i]
        k = int(r.files[i].stem)
        assert img.shape == (1, 12, 12) and torch.equal(img, want[k])
        assert label == int(ds.labels[k])
    with pytest.raises(CorruptionError, match="severity folder"):
        ImageNetCDataset(out, "snow", 3)


def test_published_cifar_layout_without_manifest(tmp_path):
    data = np.arange(5 * 4 * 2 * 2 * 3, dtype=np.uint8).reshape(20, 2, 2, 3)
    np.save(tmp_path / "fog.npy", data)
    np.save(tmp_path / "labels.npy", np.tile(np.array([3, 1, 4, 1], dtype=np.uint8), 5))
    r = CIFARCDataset(tmp_path, "fog", 3, transform=lambda t: t.float())
    img, label = r[1]
    assert img.dtype == torch.float32 and torch.equal(
        img, torch.from_numpy(data[9]).permute(2, 0, 1).float()
    )
    assert label == 1 and len(r) == 4 and r.classes == ["0", "1", "2", "3", "4"]
    with pytest.raises(CorruptionError, match="closest: fog"):
        CIFARCDataset(tmp_path, "fgo", 1)
    with pytest.raises(CorruptionError, match="severity"):
        CIFARCDataset(tmp_path, "fog", 6)


def test_export_is_atomic_on_error(tmp_path):
    with pytest.raises(RuntimeError, match="disk on fire"):
        export_c_dataset(TinySet(fail_at=4), tmp_path / "x", corruptions=["contrast"], batch_size=2)
    assert _leftovers(tmp_path) == []
    with pytest.raises(RuntimeError):
        export_c_dataset(TinySet(fail_at=4), tmp_path / "y", corruptions=["contrast"], format="imagefolder",
                         batch_size=2)  # fmt: skip
    assert _leftovers(tmp_path) == []


def test_export_refuses_bad_input(tmp_path):
    ds = TinySet(n=2)
    with pytest.raises(CorruptionError, match="closest: snow"):
        export_c_dataset(ds, tmp_path / "a", corruptions=["snwo"])
    with pytest.raises(CorruptionError, match="severity"):
        export_c_dataset(ds, tmp_path / "a", corruptions=["snow"], severities=[0])
    with pytest.raises(CorruptionError, match="format"):
        export_c_dataset(ds, tmp_path / "a", corruptions=["snow"], format="hdf5")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("x")
    with pytest.raises(CorruptionError, match="not empty"):
        export_c_dataset(ds, tmp_path / "full", corruptions=["snow"])
    export_c_dataset(ds, tmp_path / "full", corruptions=["snow"], severities=[1], overwrite=True)
    assert sorted(p.name for p in (tmp_path / "full").iterdir()) == [
        "labels.npy",
        "manifest.json",
        "snow.npy",
    ]
    assert _leftovers(tmp_path) == ["full"]
