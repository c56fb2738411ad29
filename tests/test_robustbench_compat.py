"""The RobustBench drop-in (robustbench_act.benchmark), tensor datasets in evaluate(), and
RobustBench's data_dir layout for --dataset cifar10-c:DATA. Tiny fake data in tmp_path."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import robustbench_act
from robustbench_act.data import TensorImages, load_dataset
from robustbench_act.errors import UserError
from robustbench_act.evaluate import evaluate
from robustbench_act.robustbench_compat import CORRUPTIONS

N = 12


def tiny_net(seed: int = 0, channels: int = 3) -> nn.Module:
    """A conv net that takes [0, 1] images of any size; random weights (accuracies vary per cell)."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(channels, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                         nn.Flatten(), nn.Linear(32, 10)).eval()  # fmt: skip


def _accuracy(model: nn.Module, x_uint8: np.ndarray, y: np.ndarray) -> float:
    x = torch.from_numpy(x_uint8).permute(0, 3, 1, 2).float() / 255.0
    with torch.no_grad():
        return float((model(x).argmax(1).numpy() == y).mean())


@pytest.fixture()
def rb_data(tmp_path: Path, monkeypatch) -> tuple[Path, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """RobustBench's data_dir: cifar-10-batches-py/ (torchvision) and CIFAR-10-C/ (15 x 5 x N images)."""
    import torchvision.datasets.cifar as tv_cifar

    monkeypatch.setattr(tv_cifar, "check_integrity", lambda *a, **k: True)  # fake files, no md5
    rng = np.random.default_rng(0)
    clean = rng.integers(0, 256, (N, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, N)
    tv = tmp_path / "cifar-10-batches-py"
    tv.mkdir()
    entry = {"data": clean.transpose(0, 3, 1, 2).reshape(N, -1), "labels": labels.tolist()}
    (tv / "test_batch").write_bytes(pickle.dumps(entry))
    (tv / "batches.meta").write_bytes(pickle.dumps({"label_names": [f"c{i}" for i in range(10)]}))
    cdir = tmp_path / "CIFAR-10-C"
    cdir.mkdir()
    files = {}
    for k, name in enumerate(CORRUPTIONS):
        noise = rng.integers(-60, 60, (5 * N, 32, 32, 3))
        files[name] = np.clip(np.tile(clean, (5, 1, 1, 1)) + noise * (k % 3), 0, 255).astype(np.uint8)
        np.save(cdir / f"{name}.npy", files[name])
    np.save(cdir / "labels.npy", np.tile(labels, 5).astype(np.uint8))
    return tmp_path, clean, labels, files


def test_benchmark_gives_robustbench_numbers(rb_data) -> None:
    data_dir, clean, labels, files = rb_data
    model = tiny_net()
    for n in (N, 7):
        clean_acc, robust_acc = robustbench_act.benchmark(model, n_examples=n, data_dir=str(data_dir),
                                                          batch_size=5, verbose=False)  # fmt: skip
        want_clean = _accuracy(model, clean[:n], labels[:n])
        cells = [_accuracy(model, files[c][s * N : s * N + n], labels[:n])
                 for c in CORRUPTIONS for s in range(5)]  # fmt: skip
        assert clean_acc == pytest.approx(want_clean, abs=1e-12)
        assert robust_acc == pytest.approx(float(np.mean(cells)), abs=1e-12)


def test_benchmark_separate_corruptions_dir_and_positional_order(rb_data, tmp_path: Path, capsys) -> None:
    data_dir, *_ = rb_data
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    (data_dir / "CIFAR-10-C").rename(moved / "CIFAR-10-C")
    model = tiny_net(1)
    # RobustBench's positional order: model, n_examples, dataset, threat_model, to_disk, model_name, data_dir
    a = robustbench_act.benchmark(model, 5, "cifar10", "corruptions", False, None, str(data_dir),
                                  str(moved))
    out = capsys.readouterr().out
    assert out.startswith("Clean accuracy: ") and "corruption=fog, severity=5:" in out
    b = robustbench_act.benchmark(model, 5, data_dir=data_dir, corruptions_data_dir=moved, verbose=False)
    assert a == b and all(0.0 <= v <= 1.0 for v in a)


def test_benchmark_errors_are_one_line(rb_data, tmp_path: Path) -> None:
    data_dir, *_ = rb_data
    model = tiny_net()
    cases = [
        (dict(data_dir=tmp_path / "nothing"), "pass download=True"),
        (dict(data_dir=data_dir, threat_model="Linf"), "needs AutoAttack"),
        (dict(data_dir=data_dir, dataset="cifar1O"), "closest: cifar10"),
        (dict(data_dir=data_dir, corruptions_data_dir=tmp_path / "nothing"), "no CIFAR-10-C folder"),
        (dict(data_dir=data_dir, to_disk=True), "not implemented"),
        (dict(data_dir=data_dir, n_examples=0), "positive integer"),
    ]
    for kwargs, msg in cases:
        with pytest.raises(UserError, match=msg) as err:
            robustbench_act.benchmark(model, verbose=False, **kwargs)
        assert "\n" not in str(err.value)
    (data_dir / "CIFAR-10-C" / "fog.npy").unlink()
    with pytest.raises(UserError, match="lacks 1 of RobustBench's files: fog.npy"):
        robustbench_act.benchmark(model, data_dir=data_dir, verbose=False)


def test_evaluate_accepts_tensor_datasets_and_pairs() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (9, 3, 12, 12), generator=g, dtype=torch.uint8)
    y = torch.randint(0, 10, (9,), generator=g)
    model = tiny_net(2)
    kw = dict(corruptions=["gaussian_noise", "contrast"], severities=[1, 3], probes="none", seed=4,
              batch_size=4)  # fmt: skip
    pair = evaluate(model, (x, y), **kw)
    tds = evaluate(model, torch.utils.data.TensorDataset(x, y), **kw)
    floats = evaluate(model, (x.float() / 255.0, y), **kw)
    assert pair.equals(tds) and set(pair.corruption) == {"clean", "gaussian_noise", "contrast"}
    np.testing.assert_allclose(floats["value"], pair["value"], atol=1e-6)
    # [0, 1] input without normalisation: the clean accuracy is the model's on x / 255
    with torch.no_grad():
        want = float((model(x.float() / 255.0).argmax(1) == y).float().mean())
    top1 = pair[(pair.corruption == "clean") & (pair.metric == "top1")]["value"].item()
    assert top1 == pytest.approx(want)
    with pytest.raises(UserError, match="C = 1 or 3"):
        TensorImages(torch.zeros(2, 4, 8, 8), torch.zeros(2))


def test_cifar10c_spec_reads_robustbench_data_dir(rb_data, tmp_path: Path) -> None:
    data_dir, _, labels, files = rb_data
    fam = load_dataset(f"cifar10-c:{data_dir}")
    assert fam.path == data_dir / "CIFAR-10-C" and set(fam.corruptions()) == set(CORRUPTIONS)
    one = fam.get("snow", 2)
    assert torch.equal(one.images, torch.from_numpy(files["snow"][N : 2 * N]).permute(0, 3, 1, 2))
    assert one.labels.tolist() == labels.tolist()
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match=r"no corruption files in .*CIFAR-10-C/ \(RobustBench's data_dir"):
        load_dataset(f"cifar10-c:{empty}")
    ckpt = tmp_path / "ck.pt"  # exists: the input layer checks paths before the dataset is read
    ckpt.write_bytes(b"")
    cli = subprocess.run([sys.executable, "-m", "robustbench_act", "run", "--checkpoint", str(ckpt),
                          "--dataset", f"cifar10-c:{empty}"], capture_output=True, text=True)  # fmt: skip
    assert cli.returncode == 2 and "no corruption files in" in cli.stderr
    assert "valid: )" not in cli.stderr and len(cli.stderr.strip().splitlines()) == 1


def test_clean_counterpart_found_in_robustbench_data_dir(rb_data) -> None:
    from robustbench_act.checkpoint_eval import clean_counterpart

    data_dir, clean, *_ = rb_data
    fam = load_dataset(f"cifar10-c:{data_dir}")
    found = clean_counterpart(f"cifar10-c:{data_dir}", None, 5, fam.path)
    assert found is not None and torch.equal(found.images, torch.from_numpy(clean[:5]).permute(0, 3, 1, 2))


def _write_imagenet(root: Path, wnids: list[str], per_class: int) -> list[str]:
    """val/<wnid>/<file> and ImageNet-C/<c>/<s>/<wnid>/<file> PNGs (40 px); returns the id list."""
    from PIL import Image

    rng = np.random.default_rng(1)
    ids = [f"{w}/img_{w}_{k}.png" for w in wnids for k in range(per_class)]
    folders = [root / "val"] + [root / "ImageNet-C" / c / str(s) for c in CORRUPTIONS for s in range(1, 6)]
    for folder in folders:
        for i in ids:
            (folder / i).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(folder / i)
    return ids


def test_imagenet_through_an_image_id_list(tmp_path: Path) -> None:
    from torchvision import transforms as T

    ids = _write_imagenet(tmp_path, ["n01", "n02", "n03"], 2)
    listed = ids[::-1]  # the list decides order and membership, class folders the labels
    model = tiny_net(3)
    clean_acc, robust_acc = robustbench_act.benchmark(
        model, n_examples=4, dataset="imagenet", data_dir=tmp_path, image_ids=listed, batch_size=3,
        verbose=False)  # fmt: skip

    def acc(folder: Path, tf: T.Compose) -> float:
        from PIL import Image

        x = torch.stack([tf(Image.open(folder / i).convert("RGB")) for i in listed[:4]])
        y = torch.tensor([int(i[2]) - 1 for i in listed[:4]])
        with torch.no_grad():
            return float((model(x).argmax(1) == y).float().mean())

    clean_tf = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor()])
    c_tf = T.Compose([T.Resize([224, 224]), T.ToTensor()])
    assert clean_acc == pytest.approx(acc(tmp_path / "val", clean_tf))
    cells = [acc(tmp_path / "ImageNet-C" / c / str(s), c_tf) for c in CORRUPTIONS for s in range(1, 6)]
    assert robust_acc == pytest.approx(float(np.mean(cells)))
    id_file = tmp_path / "ids.txt"
    id_file.write_text("\n".join(listed) + "\n")
    again = robustbench_act.benchmark(model, 4, "imagenet", data_dir=tmp_path, image_ids=id_file,
                                      batch_size=3, verbose=False)  # fmt: skip
    assert again == (clean_acc, robust_acc)
    with pytest.raises(UserError, match="listed image not found"):
        robustbench_act.benchmark(model, 4, "imagenet", data_dir=tmp_path, image_ids=["n01/nope.png"],
                                  verbose=False)  # fmt: skip
