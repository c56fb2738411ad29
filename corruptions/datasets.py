"""Read and write corruption datasets in the published layouts (CIFAR-10-C, ImageNet-C).

Layouts (exactly those of the published sets):

- ``cifar-c``: ``<root>/<corruption>.npy`` of shape ``[S*N, H, W, C]`` uint8,
  severity-major (all N images of the first severity, then the next ...), plus one
  ``<root>/labels.npy`` with the ``S*N`` labels (the published files repeat the N labels
  once per severity). S = 5 for the published sets.
- ``imagefolder`` (ImageNet-C / Tiny-ImageNet-C): ``<root>/<corruption>/<severity>/<class>/<image>``.

Sets written by :func:`export_c_dataset` also carry ``<root>/manifest.json`` (seed,
corruptions, severities, preset, parameters, versions, classes); the readers use it
when present (severity order, class names) and work without it on the published sets.
Images come back as ``(uint8 tensor (C, H, W), int label)``.
"""

from __future__ import annotations

import datetime as _dt
import difflib
import json
import os
import platform
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from corruptions.registry import CorruptionError, apply, check_severity, get, names, preset_for_size
from corruptions.streams import check_streams, stream_version, using_streams

FORMATS = ("cifar-c", "imagefolder")
MANIFEST = "manifest.json"
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".JPEG")


def _hint(name: str, candidates: Iterable[str]) -> str:
    hits = difflib.get_close_matches(name, sorted(candidates), n=3, cutoff=0.5)
    return f"; closest: {', '.join(hits)}" if hits else ""


@contextmanager
def _reading(path: str | os.PathLike, what: str) -> Iterator[None]:
    """Any failure while reading ``path`` becomes one CorruptionError line naming it and the problem."""
    try:
        yield
    except CorruptionError:
        raise
    except Exception as exc:
        if isinstance(exc, OSError) and exc.strerror:
            why = exc.strerror[:1].lower() + exc.strerror[1:]
        else:
            lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
            why = f"{type(exc).__name__}: {lines[0][:200]}" if lines else type(exc).__name__
        raise CorruptionError(f"cannot read {what} {path}: {why}") from exc


def _manifest_problem(m: Any) -> str | None:
    """Why a parsed manifest.json does not describe a dataset (None when it does)."""
    if not isinstance(m, dict):
        return f"expected a JSON object, got {type(m).__name__}"
    lists = {"severities": int, "corruptions": str, "classes": str, "image_shape": int}
    for key, item in lists.items():
        v = m.get(key)
        if v is not None and (not isinstance(v, list) or not all(
                isinstance(x, item) and not isinstance(x, bool) for x in v)):  # fmt: skip
            return f"{key!r} must be a list of {'integers' if item is int else 'strings'}, got {v!r:.60}"
    return None


def read_manifest(root: str | os.PathLike) -> dict[str, Any] | None:
    """The ``manifest.json`` of a dataset folder written by :func:`export_c_dataset`, or None."""
    p = Path(root) / MANIFEST
    if not p.is_file():
        return None
    with _reading(p, "dataset manifest"):
        manifest = json.loads(p.read_text(encoding="utf-8"))
    problem = _manifest_problem(manifest)
    if problem:
        raise CorruptionError(f"cannot read dataset manifest {p}: {problem}")
    return manifest


def _severity_block(manifest: dict | None, severity: int) -> tuple[int, int]:
    """(position of ``severity`` in the file's severity order, number of severities)."""
    check_severity(severity)
    sevs = (
        [int(s) for s in manifest["severities"]]
        if manifest and "severities" in manifest
        else [1, 2, 3, 4, 5]
    )
    if severity not in sevs:
        raise CorruptionError(f"severity {severity} is not in this dataset (severities: {sevs})")
    return sevs.index(severity), len(sevs)


class CIFARCDataset(Dataset):
    """One corruption and severity of a CIFAR-10-C-style folder (memory-mapped .npy files)."""

    def __init__(
        self,
        root: str | os.PathLike,
        corruption: str,
        severity: int,
        transform: Callable[[torch.Tensor], Any] | None = None,
        classes: Sequence[str] | None = None,
    ) -> None:
        import numpy as np

        self.root = Path(root)
        if not self.root.is_dir():
            raise CorruptionError(f"dataset folder not found: {self.root}")
        path = self.root / f"{corruption}.npy"
        if not path.is_file():
            have = [p.stem for p in self.root.glob("*.npy") if p.stem != "labels"]
            raise CorruptionError(f"no {path.name} in {self.root}{_hint(corruption, have)}")
        labels_path = self.root / "labels.npy"
        if not labels_path.is_file():
            raise CorruptionError(f"no labels.npy in {self.root}")
        manifest = read_manifest(self.root)
        block, count = _severity_block(manifest, severity)
        with _reading(path, "corruption file"):
            data = np.load(path, mmap_mode="r")
        if data.ndim != 4 or data.dtype != np.uint8 or data.shape[0] % count or data.shape[3] not in (1, 3):
            raise CorruptionError(
                f"{path} must be uint8 [{count}*N, H, W, C] with C 1 or 3, got {data.dtype} {tuple(data.shape)}"
            )
        n = data.shape[0] // count
        with _reading(labels_path, "labels file"):
            labels = np.load(labels_path, mmap_mode="r")
        if labels.ndim != 1 or labels.dtype.kind not in "iu":
            raise CorruptionError(f"{labels_path} must hold integer class labels [N], got {labels.dtype} "
                                  f"{tuple(labels.shape)}")  # fmt: skip
        if len(labels) == len(data):
            labels = labels[block * n : (block + 1) * n]
        elif len(labels) != n:
            raise CorruptionError(f"{labels_path} has {len(labels)} labels for {len(data)} images")
        self._data = data[block * n : (block + 1) * n]
        with _reading(labels_path, "labels file"):
            self.labels = torch.from_numpy(np.array(labels, dtype=np.int64))  # a copy: mmaps are read-only
        self.corruption = corruption
        self.severity = severity
        self.transform = transform
        if classes is None and manifest and manifest.get("classes"):
            classes = manifest["classes"]
        if classes is None:
            classes = [str(i) for i in range(int(self.labels.max()) + 1 if len(self.labels) else 0)]
        outside = self.labels[(self.labels < 0) | (self.labels >= len(classes))]
        if len(outside):
            raise CorruptionError(f"{labels_path} has labels outside the {len(classes)} classes "
                                  f"0..{len(classes) - 1}, e.g. {int(outside[0])}")  # fmt: skip
        self.classes = list(classes)
        self.num_classes = len(self.classes)
        self.channels = int(data.shape[3])
        self.image_size = (int(data.shape[1]), int(data.shape[2]))
        self.name = f"{self.root.name}/{corruption}/{severity}"
        self.manifest = manifest

    def __len__(self) -> int:
        return int(self._data.shape[0])

    def __getitem__(self, i: int) -> tuple[Any, int]:
        import numpy as np

        img = torch.from_numpy(np.array(self._data[i])).permute(2, 0, 1).contiguous()
        if self.transform is not None:
            img = self.transform(img)
        return img, int(self.labels[i])

    def images(self) -> torch.Tensor:
        """All images of this corruption/severity as one uint8 tensor (N, C, H, W)."""
        import numpy as np

        return torch.from_numpy(np.array(self._data)).permute(0, 3, 1, 2).contiguous()


def _class_dir(name: str) -> str:
    """A class name made safe as one folder name."""
    safe = "".join("_" if ch in '/\\:*?"<>|' or ord(ch) < 32 else ch for ch in str(name)).strip()
    return safe if safe not in ("", ".", "..") else "_"


class ImageNetCDataset(Dataset):
    """One corruption and severity of an ImageNet-C-style tree ``<root>/<name>/<severity>/<class>/<image>``."""

    def __init__(
        self,
        root: str | os.PathLike,
        corruption: str,
        severity: int,
        transform: Callable[[torch.Tensor], Any] | None = None,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise CorruptionError(f"dataset folder not found: {self.root}")
        check_severity(severity)
        cdir = self.root / corruption
        if not cdir.is_dir():
            have = [p.name for p in self.root.iterdir() if p.is_dir()]
            raise CorruptionError(
                f"no corruption folder {corruption!r} in {self.root}{_hint(corruption, have)}"
            )
        sdir = cdir / str(severity)
        if not sdir.is_dir():
            raise CorruptionError(f"no severity folder {sdir}")
        manifest = read_manifest(self.root)
        with _reading(sdir, "folder"):
            dirs = sorted(p.name for p in sdir.iterdir() if p.is_dir())
        if manifest and manifest.get("classes"):
            classes = list(manifest["classes"])
            folder_to_label = {_class_dir(c): i for i, c in enumerate(classes)}
            extra = [d for d in dirs if d not in folder_to_label]
            if extra:
                raise CorruptionError(f"class folders {extra[:3]} of {sdir} are not in {MANIFEST}")
        else:
            classes = dirs
            folder_to_label = {d: i for i, d in enumerate(dirs)}
        samples: list[tuple[Path, int]] = []
        for d in sorted(folder_to_label, key=folder_to_label.__getitem__):
            folder = sdir / d
            if not folder.is_dir():
                continue
            with _reading(folder, "class folder"):
                files = sorted(
                    p
                    for p in folder.iterdir()
                    if p.suffix in IMAGE_EXTENSIONS or p.suffix.lower() in IMAGE_EXTENSIONS
                )
            samples.extend((p, folder_to_label[d]) for p in files)
        if not samples:
            raise CorruptionError(f"no images under {sdir}")
        self.samples = samples
        self.files = [p for p, _ in samples]
        self.labels = torch.tensor([lab for _, lab in samples], dtype=torch.int64)
        self.classes = classes
        self.num_classes = len(classes)
        self.corruption = corruption
        self.severity = severity
        self.transform = transform
        self.manifest = manifest
        self.channels = (
            int(manifest["image_shape"][0]) if manifest and "image_shape" in manifest else 3
        )
        first = self._read(self.files[0])
        self.image_size = (int(first.shape[1]), int(first.shape[2]))
        self.name = f"{self.root.name}/{corruption}/{severity}"

    def _read(self, path: Path) -> torch.Tensor:
        from corruptions.imageio import read_image

        return read_image(path, 1 if self.channels == 1 else 3)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        path, label = self.samples[i]
        img = self._read(path)
        if self.transform is not None:
            img = self.transform(img)
        return img, label


def _versions() -> dict[str, str]:
    import numpy as np
    import PIL

    import corruptions

    out = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "pillow": PIL.__version__,  # the JPEG codec and the PNG writer
        "corruptions": corruptions.__version__,
    }
    try:
        import torchvision
    except ImportError:  # not needed by this package
        return out
    return {**out, "torchvision": torchvision.__version__}


def _iter_batches(
    dataset: Any, batch_size: int
) -> Iterable[tuple[int, torch.Tensor, torch.Tensor]]:
    """(start index, uint8 images (B, C, H, W), labels (B,)) over the dataset in order."""
    n = len(dataset)
    images = getattr(dataset, "images", None)
    labels = getattr(dataset, "labels", None)
    if isinstance(images, torch.Tensor) and isinstance(labels, torch.Tensor) and len(images) == n:
        for start in range(0, n, batch_size):
            yield start, images[start : start + batch_size], labels[start : start + batch_size]
        return
    for start in range(0, n, batch_size):
        items = [dataset[i] for i in range(start, min(n, start + batch_size))]
        imgs = []
        for img, _ in items:
            t = torch.as_tensor(img)
            if t.dtype != torch.uint8 or t.ndim != 3:
                raise CorruptionError(
                    f"dataset items must be uint8 (C, H, W) tensors, got {t.dtype} {tuple(t.shape)}"
                )
            imgs.append(t)
        if len({tuple(t.shape) for t in imgs}) > 1:
            raise CorruptionError(
                "all images of the dataset must have the same size (resize them first)"
            )
        yield (
            start,
            torch.stack(imgs),
            torch.tensor([int(lab) for _, lab in items], dtype=torch.int64),
        )


def export_c_dataset(
    dataset: Any,
    out_dir: str | os.PathLike,
    *,
    corruptions: str | Sequence[str] = "all",
    severities: Sequence[int] = (1, 2, 3, 4, 5),
    seed: int = 0,
    format: str = "cifar-c",
    batch_size: int = 256,
    preset: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    device: str | torch.device | None = None,
    overwrite: bool = False,
    streams: int | None = None,
) -> Path:
    """Corrupt every image of ``dataset`` and write a CIFAR-10-C / ImageNet-C style folder.

    ``dataset`` yields ``(uint8 (C, H, W), label)``. Image ``i`` gets
    ``corruptions.apply(image, name, s, seed=seed, indices=[i], preset=preset)``, so any
    subset can be recomputed later. All files are written into a temporary folder next
    to ``out_dir`` that is renamed at the end: on error nothing partial is left.
    ``progress(done, total)`` is called after every batch (units: images x corruptions x
    severities). ``streams``: the random-stream version (None: the process default), recorded
    in the manifest. Returns the output folder.
    """
    with using_streams(None if streams is None else check_streams(streams)):
        return _export(dataset, out_dir, corruptions, severities, seed=seed, format=format, batch_size=batch_size,
                       preset=preset, progress=progress, device=device, overwrite=overwrite)  # fmt: skip


def _export(dataset: Any, out_dir: str | os.PathLike, corruptions: str | Sequence[str], severities: Sequence[int],
            *, seed: int, format: str, batch_size: int, preset: str | None, progress: Any, device: Any,
            overwrite: bool) -> Path:  # fmt: skip
    """:func:`export_c_dataset` under the selected stream version."""
    corr_list, sev_list = _export_plan(corruptions, severities, format, batch_size)
    n = len(dataset)
    if n == 0:
        raise CorruptionError("the dataset is empty")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise CorruptionError(f"output path exists and is not a folder: {out}")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise CorruptionError(f"output folder {out} is not empty (use overwrite=True / --overwrite)")
    first = torch.as_tensor(dataset[0][0])
    if first.ndim != 3 or first.dtype != torch.uint8:
        raise CorruptionError(
            f"dataset items must be uint8 (C, H, W) tensors, got {first.dtype} {tuple(first.shape)}"
        )
    shape = tuple(int(v) for v in first.shape)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it private; the result is an ordinary folder
    try:
        _export_into(tmp, dataset, corr_list, sev_list, shape, seed=seed, format=format, batch_size=batch_size,
                     preset=preset, progress=progress,
                     device=torch.device(device) if device is not None else torch.device("cpu"))  # fmt: skip
        _move_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _export_plan(corruptions: str | Sequence[str], severities: Sequence[int], format: str,
                 batch_size: int) -> tuple[list[str], list[int]]:  # fmt: skip
    """The corruption names and severities to export (validated)."""
    if format not in FORMATS:
        raise CorruptionError(
            f"unknown format {format!r}{_hint(format, FORMATS)} (formats: {', '.join(FORMATS)})"
        )
    if isinstance(corruptions, str):  # "all", a subset, names, or a comma-separated mix
        corr_list: list[str] = []
        for part in (p.strip() for p in corruptions.split(",")):
            corr_list.extend(n for n in (names(part) if part else []) if n not in corr_list)
    else:
        corr_list = list(corruptions)
    if not corr_list:
        raise CorruptionError("no corruptions to export")
    for name in corr_list:
        get(name)
    if len(set(corr_list)) != len(corr_list):
        raise CorruptionError(f"corruptions listed twice: {corr_list}")
    sev_list = [check_severity(s) for s in severities]
    if not sev_list or len(set(sev_list)) != len(sev_list):
        raise CorruptionError(f"severities must be distinct values 1..5, got {list(severities)}")
    if batch_size <= 0:
        raise CorruptionError(f"batch_size must be positive, got {batch_size}")
    return corr_list, sev_list


def _export_into(tmp: Path, dataset: Any, corr_list: list[str], sev_list: list[int], shape: tuple[int, ...], *,
                 seed: int, format: str, batch_size: int, preset: str | None,
                 progress: Callable[[int, int], None] | None, device: torch.device) -> None:  # fmt: skip
    """Corrupt every image into ``tmp``: one memory-mapped .npy per corruption, or PNG trees."""
    import numpy as np

    n, (c, h, w), n_sev = len(dataset), shape, len(sev_list)
    classes = [str(x) for x in getattr(dataset, "classes", []) or []]
    arrays: dict[str, Any] = {}
    if format == "cifar-c":
        for name in corr_list:
            arrays[name] = np.lib.format.open_memmap(tmp / f"{name}.npy", mode="w+", dtype=np.uint8,
                                                     shape=(n_sev * n, h, w, c))  # fmt: skip
    all_labels = np.zeros(n, dtype=np.int64)
    total, done = n * len(corr_list) * n_sev, 0
    try:
        for start, imgs, labels in _iter_batches(dataset, batch_size):
            b = len(imgs)
            all_labels[start : start + b] = labels.numpy()
            idx = torch.arange(start, start + b, dtype=torch.int64)
            x = imgs.to(device)
            for name in corr_list:
                for k, s in enumerate(sev_list):
                    y = apply(x, name, s, seed=seed, indices=idx, preset=preset).cpu()
                    if format == "cifar-c":
                        arrays[name][k * n + start : k * n + start + b] = y.permute(0, 2, 3, 1).numpy()
                    else:
                        _write_pngs(tmp / name / str(s), y, labels, idx, classes)
                    done += b
                    if progress is not None:
                        progress(done, total)
        for arr in arrays.values():
            arr.flush()
    finally:
        arrays.clear()
    if format == "cifar-c":
        small = all_labels.max(initial=0) < 256 and all_labels.min(initial=0) >= 0
        np.save(tmp / "labels.npy", np.tile(all_labels, n_sev).astype(np.uint8 if small else np.int64))
    manifest = _export_manifest(dataset, corr_list, sev_list, shape, classes, seed=seed, format=format,
                                preset=preset)  # fmt: skip
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str) + "\n", encoding="utf-8")


def _export_manifest(dataset: Any, corr_list: list[str], sev_list: list[int], shape: tuple[int, ...],
                     classes: list[str], *, seed: int, format: str, preset: str | None) -> dict[str, Any]:  # fmt: skip
    """What an exported folder holds and how it was made (versions, preset, parameters, frost source)."""
    from corruptions.frost import frost_info, frost_source

    c, h, w = shape
    used_preset = preset or preset_for_size(h, w)
    return {
        "format": format,
        "layout": ("<name>.npy [S*N, H, W, C] uint8 severity-major + labels.npy [S*N]" if format == "cifar-c"
                   else "<name>/<severity>/<class>/<index:06d>.png"),
        "seed": seed, "corruptions": corr_list, "severities": sev_list,
        "preset": used_preset, "preset_requested": preset,
        "params": {name: {str(s): get(name).params(s, used_preset) for s in sev_list}
                   if used_preset in get(name).presets else None for name in corr_list},
        "image_count": len(dataset), "image_shape": [c, h, w], "classes": classes or None,
        "dataset": getattr(dataset, "name", type(dataset).__name__),
        "frost_source": frost_source() if "frost" in corr_list else None,
        "frost": frost_info() if "frost" in corr_list else None,
        "streams": stream_version(),
        "quantization": "uint8(x * 255) truncation, as the published files",
        "indices": "image i of the dataset is sample index i (corruptions.apply(..., indices=[i]))",
        "versions": _versions(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }  # fmt: skip


def _write_pngs(
    folder: Path, images: torch.Tensor, labels: torch.Tensor, idx: torch.Tensor, classes: list[str]
) -> None:
    from corruptions.imageio import write_png

    for img, lab, i in zip(images, labels.tolist(), idx.tolist()):
        cls = classes[lab] if 0 <= lab < len(classes) else str(lab)
        d = folder / _class_dir(cls)
        d.mkdir(parents=True, exist_ok=True)
        write_png(d / f"{i:06d}.png", img)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _move_into_place(tmp: Path, out: Path) -> None:
    """Rename the finished temp folder onto ``out`` (replacing an existing folder last).

    A failed rename (no permission, another writer got there first) is one CorruptionError
    line, and the old folder is back in place with nothing left beside it.
    """
    try:
        if not out.exists():
            os.rename(tmp, out)
            return
        trash = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        try:
            os.rename(out, trash / out.name)
        except OSError:
            trash.rmdir()
            raise
        try:
            os.rename(tmp, out)
        except BaseException:
            os.rename(trash / out.name, out)
            trash.rmdir()
            raise
        shutil.rmtree(trash, ignore_errors=True)
    except OSError as exc:
        raise CorruptionError(f"cannot write {out}: {exc.strerror or exc}") from exc
