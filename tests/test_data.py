"""Datasets: digits, ImageFolder trees, splits, errors (no downloads, tiny data)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from corruptions.imageio import to_pil
from robustbench_act.data import (
    ImageDataset,
    dataset_info,
    dataset_tensors,
    load_dataset,
    split_train_val,
)
from robustbench_act.errors import UserError


def test_digits_splits_are_stratified_deterministic_and_disjoint() -> None:
    tr = load_dataset("digits", split="train")
    te = load_dataset("digits", split="test")
    assert isinstance(tr, ImageDataset)
    assert len(tr) + len(te) == 1797 and abs(len(te) - 360) <= 2
    img, lab = te[0]
    assert img.dtype == torch.uint8 and img.shape == (1, 16, 16) and isinstance(lab, int)
    assert te.num_classes == 10 and te.classes[3] == "3" and te.channels == 1
    assert te.image_size == (16, 16) and len(te.mean) == 1 and 0 < te.std[0] < 1
    assert tr.mean == te.mean  # normalisation from the training split for both
    counts = te.labels.bincount()
    assert counts.min() >= 35 and counts.max() <= 37
    again = load_dataset("digits", split="test")
    assert torch.equal(again.images, te.images) and torch.equal(again.labels, te.labels)
    # no test image appears among the training images
    flat_tr = {bytes(x.flatten().tolist()) for x in tr.images}
    overlap = sum(bytes(x.flatten().tolist()) in flat_tr for x in te.images)
    assert overlap < 5  # (a few digits are pixel-identical duplicates in the source data)
    assert te.corruption is None and te.severity is None


def test_digits_limit_and_image_size() -> None:
    te = load_dataset("digits", limit=50, image_size=8)
    assert len(te) == 50 and te.image_size == (8, 8)
    full = load_dataset("digits", image_size=8)
    assert torch.equal(te.images, full.images[:50])
    assert int(full.images.max()) == 255  # 0..16 scaled to 0..255


def test_unknown_spec_and_split_give_one_line_hints(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="closest: cifar10"):
        load_dataset("cifar01")
    with pytest.raises(UserError, match="unknown split"):
        load_dataset("digits", split="tset")
    with pytest.raises(UserError, match="needs a path"):
        load_dataset("imagefolder")
    with pytest.raises(UserError, match="not found"):
        load_dataset(f"imagefolder:{tmp_path / 'nope'}")


def test_cifar_missing_root_says_how_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="--download") as err:
        load_dataset("cifar10", root=tmp_path)
    assert "cifar-10-batches-py" in str(err.value) and "\n" not in str(err.value)


def _write_tree(root: Path, *, n_per_class: int = 3, size: int = 12, fmt: str = "jpg") -> None:
    gen = torch.Generator().manual_seed(0)
    for c in ("cat", "dog"):
        (root / c).mkdir(parents=True)
        for i in range(n_per_class):
            img = torch.randint(0, 256, (3, size, size), dtype=torch.uint8, generator=gen)
            extra = {"quality": 95} if fmt == "jpg" else {}
            to_pil(img).save(root / c / f"{i:03d}.{fmt}", **extra)


def test_imagefolder_layouts_cache_and_balanced_limit(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("ACTBENCH_CACHE", str(tmp_path / "cache"))
    _write_tree(tmp_path / "tree" / "train", n_per_class=4)
    _write_tree(tmp_path / "tree" / "test", n_per_class=3, fmt="png")
    te = load_dataset(f"imagefolder:{tmp_path / 'tree'}", split="test")
    assert te.in_memory and te.classes == ["cat", "dog"] and len(te) == 6
    assert te.images.shape == (6, 3, 12, 12) and te.labels.tolist() == [0, 1, 0, 1, 0, 1]
    tr = load_dataset(f"imagefolder:{tmp_path / 'tree'}", split="train", limit=2)
    assert tr.labels.tolist() == [0, 1]  # round-robin order keeps a limit balanced
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 2
    again = load_dataset(f"imagefolder:{tmp_path / 'tree'}", split="test")  # from the cache
    assert torch.equal(again.images, te.images)
    # PNG is lossless: the decoded pixels are the written ones
    direct = load_dataset(f"imagefolder:{tmp_path / 'tree' / 'test'}", image_size=8)
    assert direct.image_size == (8, 8) and len(direct) == 6
    with pytest.raises(UserError, match="no 'val' split"):
        load_dataset(f"imagefolder:{tmp_path / 'tree'}", split="val")


def test_imagefolder_large_images_are_decoded_lazily(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("ACTBENCH_CACHE", "off")
    _write_tree(tmp_path / "big", n_per_class=2, size=80)
    ds = load_dataset(f"imagefolder:{tmp_path / 'big'}", image_size=32)
    assert not ds.in_memory and ds.image_size == (32, 32)
    img, lab = ds[1]
    assert img.shape == (3, 32, 32) and img.dtype == torch.uint8 and lab == 1
    imgs, labs = dataset_tensors(ds)
    assert imgs.shape == (4, 3, 32, 32) and labs.tolist() == [0, 1, 0, 1]


def test_split_train_val_stratified_and_deterministic() -> None:
    tr = load_dataset("digits", split="train")
    a, b = split_train_val(tr, 0.1, seed=0)
    a2, b2 = split_train_val(tr, 0.1, seed=0)
    _, b3 = split_train_val(tr, 0.1, seed=1)
    assert torch.equal(b.labels, b2.labels) and torch.equal(b.images, b2.images)
    assert not torch.equal(b.images, b3.images)
    assert len(a) + len(b) == len(tr)
    counts = b.labels.bincount()
    assert counts.min() >= 13 and counts.max() <= 15  # ~10% of each class
    assert isinstance(a, ImageDataset) and a.mean == tr.mean
    assert dataset_info(b)["size"] == len(b)
    with pytest.raises(UserError):
        split_train_val(tr, 1.5, seed=0)


def test_split_and_tensors_on_plain_datasets() -> None:
    x = torch.randint(0, 256, (48, 1, 4, 4), dtype=torch.uint8)
    y = torch.arange(48) % 4
    plain = torch.utils.data.TensorDataset(x, y)
    a, b = split_train_val(plain, 0.25, seed=3)
    assert len(b) == 12 and len(a) == 36 and sorted(int(plain[i][1]) for i in b.indices).count(0) == 3
    imgs, labs = dataset_tensors(b)
    assert imgs.shape == (12, 1, 4, 4) and torch.equal(labs, y[torch.as_tensor(b.indices)])


def test_c_datasets_family_and_single_cells(tmp_path: Path) -> None:
    from corruptions.datasets import export_c_dataset

    te = load_dataset("digits", limit=12)
    export_c_dataset(te, tmp_path / "npy", corruptions=["gaussian_noise", "contrast"], severities=[1, 3])
    export_c_dataset(te, tmp_path / "tree", corruptions=["contrast"], severities=[2], format="imagefolder")
    fam = load_dataset(f"cifar10-c:{tmp_path / 'npy'}")
    assert sorted(fam.corruptions()) == ["contrast", "gaussian_noise"]
    cell = fam.get("contrast", 3)
    assert isinstance(cell, ImageDataset) and cell.in_memory
    assert (cell.corruption, cell.severity, len(cell)) == ("contrast", 3, 12)
    assert torch.equal(cell.labels, te.labels) and cell.images.shape == (12, 1, 16, 16)
    assert not torch.equal(cell.images, te.images)
    one = load_dataset(f"cifar10-c:{tmp_path / 'npy'}", corruption="gaussian_noise", severity=1, limit=5)
    assert len(one) == 5 and one.severity == 1
    tree = load_dataset(f"tinyimagenet-c:{tmp_path / 'tree'}", corruption="contrast", severity=2)
    assert len(tree) == 12 and tree.images.shape == (12, 1, 16, 16)
    with pytest.raises(UserError, match="closest: gaussian_noise"):
        fam.get("gausian_noise", 1)
    with pytest.raises(UserError, match="severity 2 is not in this dataset"):
        fam.get("contrast", 2)
    with pytest.raises(UserError, match="both a corruption and a severity"):
        load_dataset(f"cifar10-c:{tmp_path / 'npy'}", corruption="contrast")
