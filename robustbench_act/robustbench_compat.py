"""A drop-in for RobustBench's corruption benchmark: ``robustbench_act.benchmark``.

``from robustbench_act import benchmark`` replaces ``from robustbench.eval import benchmark``
for ``threat_model='corruptions'``: same arguments (in RobustBench's order), same data
layout, same numbers. The model takes [0, 1] images (no normalisation by us), as in
RobustBench. Data layout (RobustBench's):

- CIFAR-10 / CIFAR-100: the clean test set in torchvision's layout under ``data_dir``
  (``cifar-10-batches-py/``), downloaded only with ``download=True``; the corruptions in
  ``<corruptions_data_dir or data_dir>/CIFAR-10-C/<corruption>.npy`` (50000 = 5 severities
  x 10000 images, severity-major) + ``labels.npy``, never downloaded.
- ImageNet: ``<data_dir>/val/<wnid>/<file>`` and ``<dir>/ImageNet-C/<corruption>/<severity>/
  <wnid>/<file>``, both read through an image-id list (``wnid/file`` per line; RobustBench's
  ``helper_files/imagenet_test_image_ids.txt`` when that package is installed, else
  ``image_ids=``), class indices from the sorted class folders; clean images preprocessed
  by ``preprocessing`` (default Resize(256) + CenterCrop(224)), corrupted ones resized to
  224 x 224 (RobustBench's 'Res224').

Robust accuracy is the mean top-1 accuracy over the 15 corruptions x 5 severities on the
first ``n_examples`` images of each file. The evaluation runs through
:func:`robustbench_act.evaluate.evaluate_tables` (``probes="none"``).
"""

from __future__ import annotations

import importlib.util
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from robustbench_act.errors import UserError, unknown

#: RobustBench's 15 corruptions (its order; the mean does not depend on it).
CORRUPTIONS = ("shot_noise", "motion_blur", "snow", "pixelate", "gaussian_noise", "defocus_blur",
               "brightness", "fog", "zoom_blur", "frost", "glass_blur", "impulse_noise", "contrast",
               "jpeg_compression", "elastic_transform")  # fmt: skip
DATASETS = ("cifar10", "cifar100", "imagenet")
THREAT_MODELS = ("corruptions", "Linf", "L2", "corruptions_3d")
C_FOLDERS = {"cifar10": "CIFAR-10-C", "cifar100": "CIFAR-100-C", "imagenet": "ImageNet-C"}
IMAGENET_MAX = 5000
_KEY = "model"


def _value(x: Any) -> str:
    """An enum member's value (RobustBench's BenchmarkDataset / ThreatModel) or the string itself."""
    return str(getattr(x, "value", x))


def _check_args(dataset: str, threat_model: str, n_examples: int, to_disk: bool, eps: Any,
                aa_state_path: Any) -> None:  # fmt: skip
    if dataset not in DATASETS:
        raise unknown("dataset", dataset, DATASETS)
    if threat_model not in THREAT_MODELS:
        raise unknown("threat model", threat_model, THREAT_MODELS)
    if threat_model in ("Linf", "L2"):
        raise UserError(f"threat_model={threat_model!r} needs AutoAttack, which this package does not "
                        "implement; robustbench_act.benchmark evaluates threat_model='corruptions'")
    if threat_model == "corruptions_3d":
        raise UserError("threat_model='corruptions_3d' (ImageNet-3DCC) is not implemented here; "
                        "use threat_model='corruptions'")
    if to_disk:
        raise UserError("to_disk=True writes RobustBench's leaderboard json, not implemented here; "
                        "use `actbench run --out DIR` for a results folder")
    if eps is not None or aa_state_path is not None:
        raise UserError("eps / aa_state_path belong to the Linf/L2 threat models; leave them None")
    if isinstance(n_examples, bool) or not isinstance(n_examples, int) or n_examples < 1:
        raise UserError(f"n_examples must be a positive integer, got {n_examples!r}")
    if dataset == "imagenet" and n_examples > IMAGENET_MAX:
        raise UserError(f"ImageNet evaluation uses at most {IMAGENET_MAX} images, got n_examples={n_examples}")


def _model_device(model: nn.Module, device: Any) -> torch.device:
    if device is not None:
        if isinstance(device, Sequence) and not isinstance(device, str):
            raise UserError("several devices (parallel evaluation) are not implemented; give one device")
        return torch.device(device)
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


# ----------------------------------------------------------------------------- CIFAR


def _cifar_data(dataset: str, n_examples: int, data_dir: Path, c_dir: Path, download: bool
                ) -> tuple[Any, Any]:  # fmt: skip
    """(clean test set, *-C family) of CIFAR-10/100 in RobustBench's layout."""
    from robustbench_act.data import load_dataset

    folder = "cifar-10-batches-py" if dataset == "cifar10" else "cifar-100-python"
    if not download and not (data_dir / folder).is_dir():
        raise UserError(f"{dataset} test set not found at {data_dir / folder} (torchvision's layout); "
                        f"pass download=True to fetch it, or data_dir= the folder holding {folder}/")
    clean = load_dataset(dataset, split="test", root=data_dir, download=download, limit=n_examples)
    root = c_dir / C_FOLDERS[dataset]
    if not root.is_dir():
        raise UserError(f"no {C_FOLDERS[dataset]} folder in {c_dir} (RobustBench's layout "
                        f"{c_dir}/{C_FOLDERS[dataset]}/<corruption>.npy + labels.npy); it is never "
                        "downloaded here: fetch it from Zenodo and unpack it there")
    missing = [c for c in CORRUPTIONS if not (root / f"{c}.npy").is_file()]
    if not (root / "labels.npy").is_file():
        missing.append("labels")
    if missing:
        raise UserError(f"{root} lacks {len(missing)} of RobustBench's files: "
                        f"{', '.join(m + '.npy' for m in missing[:5])}{' ...' if len(missing) > 5 else ''}")
    family = load_dataset(f"{dataset}-c:{root}", limit=n_examples)
    first = family.get(CORRUPTIONS[0], 1)
    if len(first) < len(clean) or not torch.equal(first.labels[: len(clean)], clean.labels):
        raise UserError(f"{root}/labels.npy does not match the {dataset} test labels (first {len(clean)})")
    return clean, family


# ----------------------------------------------------------------------------- ImageNet


class _PILFiles(Dataset):
    """Image files decoded with Pillow and turned into [0, 1] tensors by ``transform``."""

    def __init__(self, name: str, files: list[Path], labels: list[int], num_classes: int,
                 transform: Callable[[Any], torch.Tensor]) -> None:  # fmt: skip
        self.name, self.files, self.transform = name, files, transform
        self.labels = torch.tensor(labels, dtype=torch.long)
        self.num_classes, self.channels = num_classes, 3
        self.classes = [str(i) for i in range(num_classes)]
        self.mean, self.std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(self.files[i]) as img:
                x = self.transform(img.convert("RGB"))
        except (OSError, UnidentifiedImageError) as exc:
            raise UserError(f"cannot decode image {self.files[i]}: {exc}") from exc
        return x, int(self.labels[i])


class _ImageNetC:
    """``get(corruption, severity)``: the id-listed images of one ImageNet-C cell."""

    def __init__(self, root: Path, ids: list[str], transform: Callable[[Any], torch.Tensor]) -> None:
        self.root, self.ids, self.transform, self.name = root, ids, transform, f"imagenet-c:{root}"

    def get(self, corruption: str, severity: int) -> _PILFiles:
        """The dataset of one (corruption, severity)."""
        return _id_listed(f"{self.name}/{corruption}/{severity}", self.root / corruption / str(severity),
                          self.ids, self.transform)


def _image_ids(image_ids: str | Path | Sequence[str] | None) -> list[str]:
    """The ``wnid/file`` lines of an id list (a file, a list, or RobustBench's installed one)."""
    if image_ids is None:
        spec = importlib.util.find_spec("robustbench")
        where = [Path(p) / "helper_files" / "imagenet_test_image_ids.txt"
                 for p in (spec.submodule_search_locations or [])] if spec else []  # fmt: skip
        found = next((p for p in where if p.is_file()), None)
        if found is None:
            raise UserError("ImageNet needs the list of test images: image_ids= a file (or list) of "
                            "wnid/filename lines, e.g. RobustBench's helper_files/imagenet_test_image_ids.txt")
        image_ids = found
    if isinstance(image_ids, (str, Path)):
        p = Path(image_ids)
        if not p.is_file():
            raise UserError(f"image id list not found: {p}")
        image_ids = p.read_text(encoding="utf-8").splitlines()
    ids = [line.strip() for line in image_ids if line.strip()]
    bad = next((i for i in ids if i.count("/") != 1), None)
    if bad is not None or not ids:
        raise UserError(f"image ids must be wnid/filename lines, got {bad!r}")
    return ids


def _id_listed(name: str, folder: Path, ids: list[str], transform: Callable[[Any], torch.Tensor]) -> _PILFiles:
    """RobustBench's CustomImageFolder: the listed files, labels from the sorted class folders."""
    if not folder.is_dir():
        raise UserError(f"ImageNet folder not found: {folder}")
    classes = sorted(d.name for d in folder.iterdir() if d.is_dir())
    index = {c: i for i, c in enumerate(classes)}
    unknown_cls = next((i for i in ids if i.split("/")[0] not in index), None)
    if unknown_cls is not None:
        raise UserError(f"{folder} has no class folder for listed image {unknown_cls}")
    files = [folder / i for i in ids]
    absent = next((f for f in files if not f.is_file()), None)
    if absent is not None:
        raise UserError(f"listed image not found: {absent}")
    return _PILFiles(name, files, [index[i.split("/")[0]] for i in ids], len(classes), transform)


def _imagenet_transform(preprocessing: str | Callable[[Any], torch.Tensor] | None, default: str
                        ) -> Callable[[Any], torch.Tensor]:  # fmt: skip
    """RobustBench's named preprocessings (PIL image -> [0, 1] tensor), or the callable given."""
    if callable(preprocessing):
        return preprocessing
    from torchvision import transforms as T

    named = {
        "Res256Crop224": lambda: [T.Resize(256), T.CenterCrop(224)],
        "Crop288": lambda: [T.CenterCrop(288)],
        "Res224": lambda: [T.Resize([224, 224])],
        "BicubicRes256Crop224": lambda: [T.Resize(256, interpolation=T.InterpolationMode.BICUBIC),
                                         T.CenterCrop(224)],
    }  # fmt: skip
    key = preprocessing or default
    if key not in named:
        raise unknown("preprocessing", str(key), list(named))
    return T.Compose([*named[key](), T.ToTensor()])


def _imagenet_data(n_examples: int, data_dir: Path, c_dir: Path, image_ids: Any,
                   preprocessing: Any) -> tuple[Any, Any]:  # fmt: skip
    ids = _image_ids(image_ids)[:n_examples]
    clean = _id_listed(f"imagenet:{data_dir / 'val'}", data_dir / "val", ids,
                       _imagenet_transform(preprocessing, "Res256Crop224"))
    root = c_dir / C_FOLDERS["imagenet"]
    if not root.is_dir():
        raise UserError(f"no ImageNet-C folder in {c_dir} (layout {c_dir}/ImageNet-C/<corruption>/"
                        "<severity>/<wnid>/<file>); it is never downloaded here")
    return clean, _ImageNetC(root, ids, _imagenet_transform("Res224", "Res224"))


# ----------------------------------------------------------------------------- benchmark


def _report(metrics: Any, verbose: bool) -> tuple[float, float]:
    """(clean accuracy, mean corrupted accuracy) from the metrics table; RobustBench's lines if verbose."""
    top1 = metrics[metrics["metric"] == "top1"]
    clean = float(top1[top1["corruption"] == "clean"]["value"].iloc[0])
    cells = top1[top1["corruption"] != "clean"]
    if len(cells) != len(CORRUPTIONS) * 5:
        raise UserError(f"evaluated {len(cells)} corruption cells, expected {len(CORRUPTIONS) * 5}")
    robust = float(cells["value"].mean())
    if verbose:
        print(f"Clean accuracy: {clean:.2%}")
        print(f"Evaluating over {len(CORRUPTIONS)} corruptions")
        for rec in cells.itertuples():
            print(f"corruption={rec.corruption}, severity={rec.severity}: {rec.value:.2%} accuracy")
        print(f"Corruptions accuracy (mean of {len(cells)} cells): {robust:.2%}")
    return clean, robust


def benchmark(model: nn.Module, n_examples: int = 10000, dataset: Any = "cifar10",
              threat_model: Any = "corruptions", to_disk: bool = False, model_name: str | None = None,
              data_dir: str | Path = "./data", corruptions_data_dir: str | Path | None = None,
              device: Any = None, batch_size: int = 32, eps: float | None = None,
              log_path: str | None = None, preprocessing: str | Callable[[Any], torch.Tensor] | None = None,
              aa_state_path: Any = None, *, download: bool = False,
              image_ids: str | Path | Sequence[str] | None = None, verbose: bool = True,
              ) -> tuple[float, float]:  # fmt: skip
    """RobustBench's ``benchmark`` for common corruptions: ``(clean accuracy, robust accuracy)`` as fractions.

    Arguments in RobustBench's order and meaning (see the module docstring for the data
    layout); ``model`` takes [0, 1] images. Differences: only ``threat_model='corruptions'``
    (Linf/L2 need AutoAttack), the clean set is downloaded only with ``download=True``,
    ``device=None`` keeps the model's own device, ``to_disk`` is not implemented, and
    ``model_name`` / ``log_path`` are accepted and unused. ``image_ids`` is the ImageNet
    id list; ``verbose`` prints RobustBench's progress lines.
    """
    ds_name, tm = _value(dataset).lower(), _value(threat_model)
    _check_args(ds_name, tm, n_examples, to_disk, eps, aa_state_path)
    if not isinstance(model, nn.Module):
        raise UserError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if model.training:
        warnings.warn("The given model is *not* in eval mode; it is evaluated in eval mode.", stacklevel=2)
    dev = _model_device(model, device)
    data_path = Path(data_dir).expanduser()
    c_path = Path(corruptions_data_dir).expanduser() if corruptions_data_dir is not None else data_path
    if ds_name == "imagenet":
        clean, family = _imagenet_data(n_examples, data_path, c_path, image_ids, preprocessing)
    else:
        clean, family = _cifar_data(ds_name, n_examples, data_path, c_path, download)
    from robustbench_act.evaluate import evaluate_tables

    zeros, ones = (0.0,) * clean.channels, (1.0,) * clean.channels
    tables = evaluate_tables({_KEY: model}, family, clean=clean, corruptions=list(CORRUPTIONS),
                             severities=[1, 2, 3, 4, 5], probes="none", batch_size=batch_size,
                             device=dev, limit=n_examples, normalization={_KEY: (zeros, ones)})
    return _report(tables.metrics, verbose)
