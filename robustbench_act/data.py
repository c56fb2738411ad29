"""Datasets as uint8 image tensors: digits, CIFAR-10/100, ImageFolder trees and *-C copies.

Every dataset returns ``(image, label)`` with ``image`` a ``uint8`` tensor of shape
``(C, H, W)`` and carries what a model needs to normalise its input (``mean``/``std``
per channel, in [0, 1] units).  Augmentation and normalisation happen later, on batches
(see :mod:`robustbench_act.train`), so the same objects serve training and evaluation.

Specs understood by :func:`load_dataset`:

- ``digits``: scikit-learn's bundled 8x8 handwritten digits (1797 images, values 0..16,
  scaled to 0..255), upsampled bilinearly to 16x16 by default (``image_size``), split
  80/20 train/test (1437/360), stratified with the fixed seed 0 (torch.Generator).  Offline, tiny: the test data set.
- ``cifar10`` / ``cifar100``: torchvision's copies under ``root`` (default
  ``$ACTBENCH_DATA`` or ``./data``); downloaded only with ``download=True``.
- ``imagefolder:PATH``: ``PATH/test`` (or ``PATH/val``) for the test split, ``PATH/train``
  for the train split, or ``PATH`` itself when it holds class folders.  Small images
  (<= 64 px) are decoded once (Pillow) into one in-memory uint8 tensor and optionally
  cached on disk; larger images are decoded per item and resized (shorter side to ``image_size / 0.875``, centre crop ``image_size``,
  default 224).  Samples are ordered round-robin over classes so that ``limit`` stays
  class-balanced.  Normalisation constants: CIFAR-10's for 10-class 32x32 trees, else
  ImageNet's (fixed, so train and test splits agree).
- ``cifar10-c:PATH``, ``cifar100-c:PATH``, ``tinyimagenet-c:PATH``, ``imagenet-c:PATH``:
  precomputed corruption copies; with ``corruption=`` and ``severity=`` one
  :class:`ImageDataset`, without them a :class:`CDatasetFamily` with ``.get(c, s)``.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from robustbench_act.errors import UserError, unknown
from robustbench_act.inputs import check_path

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

DIGITS_SEED = 0
DIGITS_TEST_FRACTION = 0.2
DIGITS_IMAGE_SIZE = 16
SMALL_IMAGE_MAX = 64  # images up to this side are decoded once and held in memory
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff")

BASE_SPECS = ("digits", "cifar10", "cifar100")
PATH_SPECS = ("imagefolder", "cifar10-c", "cifar100-c", "tinyimagenet-c", "imagenet-c")
SPLITS = ("train", "test", "val")


class ImageDataset(Dataset):
    """uint8 images with labels, held in one tensor (small images) or decoded per item."""

    def __init__(
        self,
        *,
        name: str,
        classes: Sequence[str],
        mean: Sequence[float],
        std: Sequence[float],
        images: torch.Tensor | None = None,
        labels: torch.Tensor | Sequence[int],
        files: Sequence[str] | None = None,
        image_size: int | tuple[int, int] | None = None,
        channels: int | None = None,
        corruption: str | None = None,
        severity: int | None = None,
        split: str | None = None,
    ) -> None:
        if (images is None) == (files is None):
            raise ValueError("give exactly one of images= or files=")
        self.name = name
        self.classes = list(classes)
        self.num_classes = len(self.classes)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.labels = torch.as_tensor(labels, dtype=torch.long).reshape(-1)
        self.images = images
        self.files = list(files) if files is not None else None
        self.corruption = corruption
        self.severity = severity
        self.split = split
        if images is not None:
            if images.dtype != torch.uint8 or images.ndim != 4:
                raise ValueError(f"images must be uint8 (N,C,H,W), got {images.dtype} {tuple(images.shape)}")
            if len(images) != len(self.labels):
                raise ValueError("images and labels differ in length")
            self.channels = int(images.shape[1])
            self.image_size = (int(images.shape[2]), int(images.shape[3]))
        else:
            if len(self.files) != len(self.labels):
                raise ValueError("files and labels differ in length")
            size = image_size if image_size is not None else 224
            self.image_size = (size, size) if isinstance(size, int) else tuple(size)
            self.channels = channels or 3
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise ValueError("mean/std need one value per channel")

    @property
    def in_memory(self) -> bool:
        """True when all images live in one uint8 tensor (cheap to move to a device)."""
        return self.images is not None

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        if self.images is not None:
            return self.images[i], int(self.labels[i])
        return _decode_resized(self.files[i], self.image_size), int(self.labels[i])

    def subset(self, indices: Sequence[int] | torch.Tensor) -> ImageDataset:
        """A new dataset with the given samples (same classes and normalisation)."""
        idx = torch.as_tensor(indices, dtype=torch.long).reshape(-1)
        common: dict[str, Any] = dict(
            name=self.name, classes=self.classes, mean=self.mean, std=self.std,
            labels=self.labels[idx], corruption=self.corruption, severity=self.severity,
            split=self.split,
        )  # fmt: skip
        if self.images is not None:
            return ImageDataset(images=self.images[idx], **common)
        files = [self.files[int(i)] for i in idx]
        return ImageDataset(files=files, image_size=self.image_size, channels=self.channels, **common)

    def info(self) -> dict[str, Any]:
        """The metadata a checkpoint or a results table records about this dataset."""
        return {
            "name": self.name, "split": self.split, "num_classes": self.num_classes,
            "classes": self.classes, "channels": self.channels,
            "image_size": list(self.image_size), "mean": list(self.mean), "std": list(self.std),
            "size": len(self), "corruption": self.corruption, "severity": self.severity,
        }  # fmt: skip

    def __repr__(self) -> str:
        extra = f", corruption={self.corruption}, severity={self.severity}" if self.corruption else ""
        return (
            f"ImageDataset({self.name!r}, split={self.split}, n={len(self)}, classes={self.num_classes}, "
            f"{self.channels}x{self.image_size[0]}x{self.image_size[1]}{extra})"
        )


class CDatasetFamily:
    """All (corruption, severity) subsets of a precomputed *-C dataset; ``get`` picks one."""

    def __init__(self, spec: str, kind: str, path: Path, *, limit: int | None, image_size: int | None):
        self.name = spec
        self.kind = kind
        self.path = path
        self.limit = limit
        self.image_size = image_size

    def corruptions(self) -> list[str]:
        """Corruption names present in the folder."""
        return _c_corruptions(self.kind, self.path)

    def get(self, corruption: str, severity: int) -> ImageDataset:
        """The dataset for one corruption at one severity (1..5)."""
        return _load_c(self.name, self.kind, self.path, corruption, severity, self.limit, self.image_size)

    def check(self, corruptions: Sequence[str], severities: Sequence[int]) -> None:
        """Open every (corruption, severity) before any work: file headers and labels, no pixels.

        A damaged .npy or labels file, or a missing severity folder, fails here in one line.
        """
        for c in corruptions:
            for s in severities:
                if self.kind.startswith("cifar"):
                    _open_c(self.kind, self.path, c, int(s))
                elif not (self.path / c / str(int(s))).is_dir():
                    raise UserError(f"no severity folder {self.path / c / str(int(s))}")

    def __repr__(self) -> str:
        return f"CDatasetFamily({self.name!r})"


class TensorImages(Dataset):
    """A plain (images, labels) pair as a dataset the evaluation engine reads.

    ``images`` (N, C, H, W) uint8 (0..255) or float in [0, 1]; the model sees them as
    [0, 1] values without normalisation (mean 0, std 1), RobustBench's convention.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, *, name: str = "tensors",
                 num_classes: int | None = None) -> None:  # fmt: skip
        if not isinstance(images, torch.Tensor) or not isinstance(labels, torch.Tensor):
            raise UserError("give images and labels as torch tensors (x, y)")
        if images.ndim != 4 or images.shape[1] not in (1, 3):
            raise UserError(f"images must be (N, C, H, W) with C = 1 or 3, got {tuple(images.shape)}")
        if images.dtype != torch.uint8 and not images.is_floating_point():
            raise UserError(f"images must be uint8 or float in [0, 1], got {images.dtype}")
        labels = labels.reshape(-1).long()
        if len(labels) != len(images):
            raise UserError(f"{len(images)} images but {len(labels)} labels")
        self.name = name
        self.images = images
        self.labels = labels
        self.channels = int(images.shape[1])
        self.image_size = (int(images.shape[2]), int(images.shape[3]))
        self.num_classes = int(num_classes or (int(labels.max()) + 1 if len(labels) else 0))
        self.classes = [str(i) for i in range(self.num_classes)]
        self.mean = (0.0,) * self.channels
        self.std = (1.0,) * self.channels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.images[i], int(self.labels[i])


def as_dataset(data: Any) -> Any:
    """``data`` as an evaluable dataset: a TensorDataset or an (x, y) tensor pair become TensorImages."""
    if isinstance(data, torch.utils.data.TensorDataset):
        if len(data.tensors) != 2:
            raise UserError(f"a TensorDataset to evaluate needs (images, labels), got {len(data.tensors)} tensors")
        return TensorImages(*data.tensors)
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, torch.Tensor) for t in data):
        return TensorImages(data[0], data[1])
    return data


# ----------------------------------------------------------------------------- public API


def load_dataset(
    spec: str,
    *,
    split: str = "test",
    root: str | os.PathLike | None = None,
    download: bool = False,
    limit: int | None = None,
    image_size: int | None = None,
    corruption: str | None = None,
    severity: int | None = None,
) -> ImageDataset | CDatasetFamily:
    """Load a dataset by spec (see the module docstring); ``limit`` keeps the first N samples."""
    if split not in SPLITS:
        raise unknown("split", split, SPLITS)
    if limit is not None and limit <= 0:
        raise UserError(f"--limit must be positive, got {limit}")
    kind, _, arg = spec.partition(":")
    kind = kind.strip().lower()
    if kind in BASE_SPECS and arg:
        raise UserError(f"dataset spec {spec!r} takes no ':PATH' part")
    if kind == "digits":
        return _load_digits(split, limit, image_size)
    if kind in ("cifar10", "cifar100"):
        return _load_cifar(kind, split, root, download, limit, image_size)
    if kind in PATH_SPECS:
        if not arg:
            raise UserError(f"dataset spec {kind!r} needs a path: {kind}:PATH")
        path = Path(arg).expanduser()
        if not path.exists():
            raise UserError(f"dataset folder not found: {path}")
        check_path("dataset folder", path, "in_dir")
        if kind == "imagefolder":
            return _load_imagefolder(spec, path, split, limit, image_size)
        path = _c_folder(kind, path)
        family = CDatasetFamily(spec, kind, path, limit=limit, image_size=image_size)
        if corruption is None and severity is None:
            return family
        if corruption is None or severity is None:
            raise UserError(f"{kind} needs both a corruption and a severity (or neither for the family)")
        return family.get(corruption, severity)
    raise unknown("dataset", spec, [*BASE_SPECS, *(f"{k}:PATH" for k in PATH_SPECS)])


def split_train_val(
    dataset: Dataset, val_fraction: float, seed: int = 0
) -> tuple[Dataset, Dataset]:
    """Stratified deterministic train/validation split (e.g. CIFAR 45k/5k with 0.1)."""
    if not 0.0 < val_fraction < 1.0:
        raise UserError(f"validation fraction must be in (0, 1), got {val_fraction}")
    labels = _labels_of(dataset)
    tr, va = _stratified_split(labels, val_fraction, seed)
    if len(va) == 0 or len(tr) == 0:
        raise UserError(f"validation fraction {val_fraction} leaves an empty split ({len(labels)} samples)")
    if isinstance(dataset, ImageDataset):
        return dataset.subset(tr), dataset.subset(va)
    return torch.utils.data.Subset(dataset, tr.tolist()), torch.utils.data.Subset(dataset, va.tolist())


def dataset_tensors(ds: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """All images (uint8 N,C,H,W) and labels (int64 N) of a dataset, e.g. to hold on a GPU."""
    if isinstance(ds, ImageDataset):
        if ds.images is not None:
            return ds.images, ds.labels
        return torch.stack([ds[i][0] for i in range(len(ds))]), ds.labels
    if isinstance(ds, torch.utils.data.Subset) and isinstance(ds.dataset, ImageDataset):
        imgs, labs = dataset_tensors(ds.dataset)
        idx = torch.as_tensor(ds.indices, dtype=torch.long)
        return imgs[idx], labs[idx]
    items = [ds[i] for i in range(len(ds))]
    images = torch.stack([torch.as_tensor(x) for x, _ in items])
    labels = torch.as_tensor([int(y) for _, y in items], dtype=torch.long)
    return images, labels


def dataset_info(ds: Dataset) -> dict[str, Any]:
    """Metadata (classes, mean, std, size) of an ImageDataset or a Subset of one."""
    base = ds
    while isinstance(base, torch.utils.data.Subset):
        base = base.dataset
    info = base.info() if isinstance(base, ImageDataset) else {"name": type(base).__name__}
    info["size"] = len(ds)
    return info


def default_root() -> Path:
    """Where torchvision datasets live: $ACTBENCH_DATA or ./data."""
    return Path(os.environ.get("ACTBENCH_DATA") or "data")


# ----------------------------------------------------------------------------- loaders


def _apply_limit(n: int, limit: int | None) -> int:
    return n if limit is None else min(n, limit)


def _resize_batch(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of a uint8 batch (antialiased when shrinking), back to uint8."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    import torch.nn.functional as F

    y = F.interpolate(x.float(), size=size, mode="bilinear", align_corners=False, antialias=True)
    return y.round_().clamp_(0, 255).to(torch.uint8)


@functools.lru_cache(maxsize=1)
def _digits_raw() -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's bundled digits (1797 x 8x8, values 0..16) through its public loader."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return torch.as_tensor(bunch.images, dtype=torch.float32), torch.as_tensor(bunch.target).long()


def _stratified_split(labels: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per class, a seeded random ``fraction`` goes to the second part; both parts sorted."""
    gen = torch.Generator().manual_seed(int(seed))
    first: list[torch.Tensor] = []
    second: list[torch.Tensor] = []
    for c in torch.unique(labels).tolist():
        members = torch.nonzero(labels == c).flatten()
        members = members[torch.randperm(len(members), generator=gen)]
        k = int(round(fraction * len(members)))
        second.append(members[:k])
        first.append(members[k:])
    return torch.sort(torch.cat(first)).values, torch.sort(torch.cat(second)).values


def _load_digits(split: str, limit: int | None, image_size: int | None) -> ImageDataset:
    if split == "val":
        raise UserError("digits has train and test splits; use split_train_val for a validation part")
    raw, y = _digits_raw()
    x = (raw * (255.0 / 16.0)).round().clamp(0, 255).to(torch.uint8)[:, None]
    size = image_size or DIGITS_IMAGE_SIZE
    x = _resize_batch(x, (size, size))
    tr, te = _stratified_split(y, DIGITS_TEST_FRACTION, DIGITS_SEED)
    # normalisation constants from the training split (identical for both splits)
    xf = x[tr].float() / 255.0
    mean, std = (float(xf.mean()),), (float(xf.std()),)
    chosen = tr if split == "train" else te
    chosen = chosen[: _apply_limit(len(chosen), limit)]
    return ImageDataset(
        name="digits", classes=[str(i) for i in range(10)], mean=mean, std=std,
        images=x[chosen].contiguous(), labels=y[chosen], split=split,
    )  # fmt: skip


def _load_cifar(
    kind: str, split: str, root: Any, download: bool, limit: int | None, image_size: int | None
) -> ImageDataset:
    import torchvision

    if split == "val":
        raise UserError(f"{kind} has train and test splits; use split_train_val for a validation part")
    root_path = Path(root) if root is not None else default_root()
    cls = torchvision.datasets.CIFAR10 if kind == "cifar10" else torchvision.datasets.CIFAR100
    folder = "cifar-10-batches-py" if kind == "cifar10" else "cifar-100-python"
    if not download and not (root_path / folder).is_dir():
        raise UserError(
            f"{kind} not found under {root_path}/{folder}; pass --download (torchvision fetches it), "
            f"set $ACTBENCH_DATA / --root to the folder holding {folder}/, or use "
            f"imagefolder:PATH for an ImageFolder copy"
        )
    try:
        tv = cls(str(root_path), train=(split == "train"), download=download)
    except RuntimeError as exc:
        raise UserError(f"{kind} under {root_path} is unreadable ({exc}); re-run with --download") from exc
    except OSError as exc:
        raise UserError(f"could not download {kind} into {root_path}: {exc}") from exc
    n = _apply_limit(len(tv.targets), limit)
    x = torch.from_numpy(tv.data[:n]).permute(0, 3, 1, 2).contiguous()
    if image_size:
        x = _resize_batch(x, (image_size, image_size))
    mean, std = (CIFAR10_MEAN, CIFAR10_STD) if kind == "cifar10" else (CIFAR100_MEAN, CIFAR100_STD)
    return ImageDataset(
        name=kind, classes=list(tv.classes), mean=mean, std=std, images=x,
        labels=torch.as_tensor(tv.targets[:n]), split=split,
    )  # fmt: skip


from robustbench_act.imagefolder import (  # noqa: E402,F401  (re-exported; it uses this module's types)
    _class_root,
    _decode_all,
    _decode_resized,
    _decode_small_cached,
    _load_imagefolder,
    _read_image,
    _scan_imagefolder,
)

# ----------------------------------------------------------------------------- *-C datasets


CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def _c_dataset_class(kind: str) -> Any:
    try:
        from corruptions import datasets as cds
    except ImportError as exc:
        raise UserError(f"{kind} needs corruptions.datasets, which is not available ({exc})") from exc
    return cds.CIFARCDataset if kind.startswith("cifar") else cds.ImageNetCDataset


#: RobustBench's folder names inside its data_dir (``<data_dir>/CIFAR-10-C/<corruption>.npy``).
C_FOLDER_NAMES = {"cifar10-c": "CIFAR-10-C", "cifar100-c": "CIFAR-100-C", "imagenet-c": "ImageNet-C",
                  "tinyimagenet-c": "Tiny-ImageNet-C"}  # fmt: skip


def _c_folder(kind: str, path: Path) -> Path:
    """The folder holding the corruption files: ``path`` itself or RobustBench's ``path/CIFAR-10-C``.

    A folder with neither is a one-line error saying what it should hold.
    """
    if not path.is_dir():
        raise UserError(f"dataset folder not found: {path}")
    if _c_corruptions(kind, path):
        return path
    sub = path / C_FOLDER_NAMES[kind]
    if sub.is_dir() and _c_corruptions(kind, sub):
        return sub
    what = ("<corruption>.npy files and labels.npy" if kind.startswith("cifar")
            else "<corruption>/<severity>/<class>/<image> folders")  # fmt: skip
    raise UserError(f"no corruption files in {path}: a {kind} folder holds {what}, either directly "
                    f"or in {C_FOLDER_NAMES[kind]}/ (RobustBench's data_dir layout)")


def _c_corruptions(kind: str, path: Path) -> list[str]:
    """Corruption names present in a *-C folder (from its manifest when it has one)."""
    from corruptions.datasets import read_manifest

    try:
        manifest = read_manifest(path)
    except Exception as exc:  # a CorruptionError: unreadable manifest
        raise UserError(str(exc)) from exc
    if manifest and manifest.get("corruptions"):
        return [str(c) for c in manifest["corruptions"]]
    if kind.startswith("cifar"):
        return sorted(p.stem for p in path.glob("*.npy") if p.stem != "labels")
    return sorted(p.name for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")
                  and any((p / str(s)).is_dir() for s in range(1, 6)))  # <name>/<severity>/


def _open_c(kind: str, path: Path, corruption: str, severity: int) -> Any:
    """The corruptions.datasets reader of one (corruption, severity) of a *-C folder."""
    from corruptions import CorruptionError

    cls = _c_dataset_class(kind)
    try:
        if kind.startswith("cifar"):
            from corruptions.datasets import read_manifest

            manifest = read_manifest(path)
            classes = None
            if not (manifest and manifest.get("classes")):
                classes = list(CIFAR10_CLASSES) if kind == "cifar10-c" else [str(i) for i in range(100)]
            return cls(path, corruption, severity, classes=classes)
        return cls(path, corruption, severity)
    except CorruptionError as exc:
        raise UserError(str(exc)) from exc


def _load_c(
    spec: str, kind: str, path: Path, corruption: str, severity: int, limit: int | None,
    image_size: int | None,
) -> ImageDataset:  # fmt: skip
    """One (corruption, severity) of a *-C folder, read by corruptions.datasets, as an ImageDataset."""
    cds = _open_c(kind, path, corruption, int(severity))
    if kind.startswith("cifar"):
        mean, std = (CIFAR10_MEAN, CIFAR10_STD) if kind == "cifar10-c" else (CIFAR100_MEAN, CIFAR100_STD)
    else:
        mean, std = IMAGENET_MEAN, IMAGENET_STD
    if cds.channels == 1:
        mean, std = (sum(mean) / 3,), (sum(std) / 3,)
    n = _apply_limit(len(cds), limit)
    common: dict[str, Any] = dict(
        name=spec, classes=list(cds.classes), mean=mean, std=std, labels=cds.labels[:n],
        corruption=corruption, severity=int(severity), split="test",
    )  # fmt: skip
    if kind.startswith("cifar"):
        x = cds.images()[:n]
        if image_size:
            x = _resize_batch(x, (image_size, image_size))
        return ImageDataset(images=x.contiguous(), **common)
    files = [str(f) for f in cds.files[:n]]
    native = tuple(cds.image_size)
    small = max(native) <= SMALL_IMAGE_MAX and (image_size is None or image_size <= SMALL_IMAGE_MAX)
    if small:
        if cds.channels == 3:
            x = _decode_small_cached(files, image_size)
        else:  # grey sets: the reader decodes in the right mode
            x = torch.stack([cds[i][0] for i in range(n)])
            x = _resize_batch(x, (image_size, image_size)) if image_size else x
        return ImageDataset(images=x.contiguous(), **common)
    size = (image_size, image_size) if image_size else native
    common.update(mean=IMAGENET_MEAN, std=IMAGENET_STD)  # decoded as RGB
    return ImageDataset(files=files, image_size=size, channels=3, **common)


def _labels_of(ds: Dataset) -> torch.Tensor:
    if isinstance(ds, ImageDataset):
        return ds.labels
    if isinstance(ds, torch.utils.data.Subset):
        return _labels_of(ds.dataset)[torch.as_tensor(ds.indices, dtype=torch.long)]
    targets = getattr(ds, "targets", None)
    if targets is not None:
        return torch.as_tensor(targets, dtype=torch.long)
    return torch.as_tensor([int(ds[i][1]) for i in range(len(ds))], dtype=torch.long)
