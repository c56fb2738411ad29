"""ImageFolder trees: class folders of image files, read whole (small images, cached) or per item."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch

from robustbench_act import (
    data as _data,  # ImageDataset and the shared constants (read at call time)
)
from robustbench_act.errors import UserError
from robustbench_act.fileio import reading


def _class_root(path: Path, split: str) -> Path:
    """The folder holding class sub-folders for a split of an ImageFolder tree."""
    candidates = {"train": ["train"], "test": ["test", "val"], "val": ["val"]}[split]
    for sub in candidates:
        if (path / sub).is_dir():
            return path / sub
    subdirs = [path / n for n in _list_folder(path) if (path / n).is_dir() and not n.startswith(".")]
    if subdirs and not any(p.name in ("train", "test", "val") for p in subdirs):
        return path  # PATH itself holds the class folders
    raise UserError(
        f"no {split!r} split in {path}: expected {'/'.join(candidates)}/<class>/<image> "
        f"or class folders directly under {path}"
    )


def _list_folder(folder: Path) -> list[str]:
    """Names in a folder; an unreadable folder is a one-line error naming it."""
    with reading(folder, "folder"):
        return sorted(os.listdir(folder))


def _class_images(folder: Path) -> list[str]:
    """Every image file under one class folder (sorted); unreadable folders or files are errors."""
    def fail(exc: OSError) -> None:
        raise exc

    files = []
    with reading(folder, "class folder"):
        for dirpath, dirnames, names in os.walk(folder, onerror=fail):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            files += [os.path.join(dirpath, n) for n in names if Path(n).suffix.lower() in _data.IMAGE_EXTENSIONS]
    for f in files:
        if not os.access(f, os.R_OK):
            raise UserError(f"cannot read image {f}: permission denied")
    if not files:
        raise UserError(f"class folder {folder} holds no images ({', '.join(_data.IMAGE_EXTENSIONS)}); "
                        "remove it or add its images")
    return sorted(files)


def _scan_imagefolder(croot: Path) -> tuple[list[str], list[str], list[int]]:
    """Class names (sorted) and files in round-robin class order (balanced prefixes).

    Nothing is skipped: an unreadable or empty class folder, or an unreadable file, is an
    error naming it (a class the model never sees would silently change the task).
    """
    classes = [n for n in _list_folder(croot) if (croot / n).is_dir() and not n.startswith(".")]
    if not classes:
        raise UserError(f"no class folders in {croot}")
    per_class = [_class_images(croot / c) for c in classes]
    files_out: list[str] = []
    labels: list[int] = []
    longest = max(len(f) for f in per_class)
    for k in range(longest):
        for ci, files in enumerate(per_class):
            if k < len(files):
                files_out.append(files[k])
                labels.append(ci)
    return classes, files_out, labels


def _read_image(path: str) -> torch.Tensor:
    """Decode one image file to uint8 RGB (C,H,W) with Pillow."""
    from corruptions import CorruptionError
    from corruptions.imageio import read_image

    try:
        return read_image(path, 3)
    except CorruptionError as exc:
        raise UserError(str(exc)) from exc


def _decode_resized(path: str, size: tuple[int, int]) -> torch.Tensor:
    """Decode one image; resize shorter side to size/0.875 and centre-crop (ImageNet style)."""
    img = _read_image(path)
    h, w = img.shape[-2:]
    if (h, w) == tuple(size):
        return img
    import torchvision.transforms.v2.functional as TF

    short = int(round(min(size) / 0.875))
    img = TF.resize(img, short, antialias=True)
    return TF.center_crop(img, list(size))


def _decode_all(files: list[str]) -> list[torch.Tensor]:
    """Decode many small images (Pillow, one by one)."""
    return [_read_image(f) for f in files]


def _cache_dir() -> Path | None:
    """Disk cache for decoded small ImageFolder datasets ($ACTBENCH_CACHE; 'off' disables)."""
    env = os.environ.get("ACTBENCH_CACHE")
    if env is not None and env.strip().lower() in ("", "0", "off", "no", "false"):
        return None
    return Path(env).expanduser() if env else Path.home() / ".cache" / "actbench"


def _cache_key(files: list[str], size: int | None) -> str:
    h = hashlib.sha256()
    h.update(f"v1|{size}|".encode())
    for f in files:
        st = os.stat(f)
        h.update(f"{os.path.abspath(f)}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:24]


def _decode_small_cached(files: list[str], image_size: int | None) -> torch.Tensor:
    """Decode once to an (N,C,H,W) uint8 tensor; reuse a disk copy keyed by files and mtimes."""
    cdir = _cache_dir()
    key = _cache_key(files, image_size) if cdir else ""
    cpath = cdir / f"imagefolder-{key}.pt" if cdir else None
    if cpath is not None and cpath.is_file():
        try:
            cached = torch.load(cpath, weights_only=True)
            if isinstance(cached, torch.Tensor) and len(cached) == len(files):
                return cached
        except Exception:  # a damaged cache is rebuilt
            pass
    imgs = _decode_all(files)
    first = imgs[0].shape[-2:]
    size = (image_size, image_size) if image_size else tuple(first)
    same = all(tuple(im.shape[-2:]) == tuple(size) for im in imgs)
    x = torch.stack(imgs) if same else torch.cat([_data._resize_batch(im[None], size) for im in imgs])
    if cpath is not None:
        try:
            from robustbench_act.fileio import atomic_write

            atomic_write(cpath, lambda p: torch.save(x, p))
        except OSError:  # a read-only home is not an error, only slower next time
            pass
    return x


def _load_imagefolder(
    spec: str, path: Path, split: str, limit: int | None, image_size: int | None
) -> _data.ImageDataset:
    croot = _class_root(path, split)
    classes, files, labels = _scan_imagefolder(croot)
    n = _data._apply_limit(len(files), limit)
    files, labels = files[:n], labels[:n]
    probe = _read_image(files[0])
    small = max(probe.shape[-2:]) <= _data.SMALL_IMAGE_MAX and (image_size is None or image_size <= _data.SMALL_IMAGE_MAX)
    if small:
        x = _decode_small_cached(files, image_size)
        # fixed constants, identical for every split (never statistics of the split itself)
        mean, std = _data.IMAGENET_MEAN, _data.IMAGENET_STD
        if len(classes) == 10 and tuple(x.shape[-2:]) == (32, 32):
            mean, std = _data.CIFAR10_MEAN, _data.CIFAR10_STD  # CIFAR-10 copies: the usual constants
        return _data.ImageDataset(name=spec, classes=classes, mean=mean, std=std, images=x, labels=labels, split=split)
    return _data.ImageDataset(
        name=spec, classes=classes, mean=_data.IMAGENET_MEAN, std=_data.IMAGENET_STD, files=files,
        labels=labels, image_size=image_size or 224, channels=3, split=split,
    )  # fmt: skip


