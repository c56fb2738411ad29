"""Malformed inputs for every command: the fixtures they need and the table of invocations.

Used by ``tests/test_bad_inputs.py``. Each case is ``(id, argv)``; ``{name}`` in an argument
is replaced by the path of the fixture ``name`` (see :func:`build_fixtures`), ``{out}`` by
a fresh path inside the scratch folder the test watches for new files.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

HUGE = "99999999999999999999999"
CK_TRAIN = ["--dataset", "digits", "--limit", "64", "--epochs", "1", "--batch-size", "32", "--quiet"]
RUN = ["run", "--corruptions", "gaussian_noise", "--severities", "1", "--limit", "16", "--probes", "none",
       "--quiet"]  # fmt: skip
TRAIN = ["train", *CK_TRAIN]
SWEEP = ["sweep", "--models", "cnn_small", "--activations", "relu", "--dataset", "digits", "--epochs", "1",
         "--limit", "64", "--train-batch-size", "16", "--corruptions", "none", "--quiet"]  # fmt: skip
TRAIN_CFG = ["train", "--dataset", "digits", "--limit", "256", "--quiet"]  # the config file decides the rest
SWEEP_CFG = [w for w in SWEEP if w not in ("--epochs", "1")]
PREVIEW = ["corruptions", "preview", "{photo}", "--corruptions", "contrast"]
EXPORT = ["corruptions", "export", "--dataset", "digits", "--limit", "4", "--corruptions", "contrast",
          "--severities", "1"]  # fmt: skip


def _png(path: Path, seed: int, size: int = 12) -> None:
    from PIL import Image

    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path)


def _imagefolder(root: Path, classes: tuple[str, ...] = ("a", "b", "c"), per_class: int = 2,
                 size: int = 12) -> Path:  # fmt: skip
    for split in ("train", "test"):
        for ci, c in enumerate(classes):
            for i in range(per_class):
                _png(root / split / c / f"{i}.png", 10 * ci + i, size=size)
    return root


def _cifar_c(root: Path, *, n: int = 4, classes: int = 10) -> Path:
    """A CIFAR-10-C-style folder (no manifest) with gaussian_noise at 5 severities, 16x16 grey."""
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    np.save(root / "gaussian_noise.npy", rng.integers(0, 256, (5 * n, 16, 16, 1), dtype=np.uint8))
    np.save(root / "labels.npy", np.tile(np.arange(n) % classes, 5).astype(np.uint8))
    return root


def build_fixtures(root: Path) -> dict[str, str]:
    """Write every fixture the malformed cases name; returns name -> path (as text)."""
    from typer.testing import CliRunner

    from robustbench_act.cli import app

    root.mkdir(parents=True, exist_ok=True)
    fx: dict[str, Path] = {}
    fx["ck"] = root / "ck"
    res = CliRunner().invoke(app, ["train", *CK_TRAIN, "--out", str(fx["ck"])])
    assert res.exit_code == 0, res.output
    fx["res"] = root / "res"
    res = CliRunner().invoke(app, [*RUN, "--checkpoint", str(fx["ck"]), "--out", str(fx["res"])])
    assert res.exit_code == 0, res.output
    fx["ck_rgb"] = root / "ck_rgb"  # 3 classes a, b, c of RGB images, like the ImageFolder fixtures
    _imagefolder(root / "if_train_rgb", per_class=10, size=16)
    res = CliRunner().invoke(app, ["train", "--dataset", f"imagefolder:{root / 'if_train_rgb'}", "--recipe", "digits",
                                   "--model", "cnn_small", "--epochs", "1", "--batch-size", "4", "--quiet",
                                   "--out", str(fx["ck_rgb"])])  # fmt: skip
    assert res.exit_code == 0, res.output
    fx["file"] = root / "a_file.txt"
    fx["file"].write_text("not a folder\n")
    fx["dir"] = root / "a_dir"
    fx["dir"].mkdir()
    fx["photo"] = root / "photo.png"
    _png(fx["photo"], 0, size=40)
    fx["notimage"] = root / "not_an_image.png"
    fx["notimage"].write_bytes(b"\x89PNG but not really" * 10)
    fx["if"] = _imagefolder(root / "if")
    fx["if_empty_class"] = _imagefolder(root / "if_empty_class")
    for split in ("train", "test"):
        (fx["if_empty_class"] / split / "d").mkdir()
    fx["if_bad_image"] = _imagefolder(root / "if_bad_image")
    for split in ("train", "test"):
        (fx["if_bad_image"] / split / "b" / "9.png").write_bytes(b"garbage" * 30)
    fx["if_big_bad_image"] = _imagefolder(root / "if_big_bad_image", size=80)  # decoded per item
    for split in ("train", "test"):
        (fx["if_big_bad_image"] / split / "c" / "5.png").write_bytes(b"garbage" * 30)
    fx["if_noclass"] = root / "if_noclass"
    (fx["if_noclass"] / "test").mkdir(parents=True)
    (fx["if_noclass"] / "train").mkdir(parents=True)
    _cifar_fixtures(root, fx)
    _manifest_fixtures(root, fx)
    _plugin_fixtures(root, fx)
    _config_fixtures(root, fx)
    return {k: str(v) for k, v in fx.items()}


def _cifar_fixtures(root: Path, fx: dict[str, Path]) -> None:
    good = _cifar_c(root / "c_good")
    fx["c_good"] = good
    for name, write in {
        "c_random_bytes": lambda p: p.write_bytes(np.random.default_rng(1).bytes(4096)),
        "c_truncated": lambda p: p.write_bytes((good / "gaussian_noise.npy").read_bytes()[:300]),
        "c_object": lambda p: np.save(p, np.array([{"a": 1}] * 20, dtype=object), allow_pickle=True),
        "c_float": lambda p: np.save(p, np.zeros((20, 16, 16, 1), dtype=np.float32)),
        "c_3d": lambda p: np.save(p, np.zeros((20, 16, 16), dtype=np.uint8)),
        "c_empty_file": lambda p: p.write_bytes(b""),
    }.items():
        d = root / name
        shutil.copytree(good, d)
        write(d / "gaussian_noise.npy")
        fx[name] = d
    for name, labels in {
        "c_labels_range": np.tile(np.array([0, 1, 2, 250], dtype=np.uint8), 5),
        "c_labels_negative": np.tile(np.array([0, 1, -1, 3], dtype=np.int64), 5),
        "c_labels_float": np.tile(np.array([0.5, 1, 2, 3], dtype=np.float32), 5),
        "c_labels_2d": np.zeros((20, 2), dtype=np.uint8),
        "c_labels_count": np.zeros(7, dtype=np.uint8),
    }.items():
        d = root / name
        shutil.copytree(good, d)
        np.save(d / "labels.npy", labels)
        fx[name] = d
    d = root / "c_labels_bytes"
    shutil.copytree(good, d)
    (d / "labels.npy").write_bytes(b"\x00\x01junk" * 50)
    fx["c_labels_bytes"] = d
    d = root / "c_manifest_list"
    shutil.copytree(good, d)
    (d / "manifest.json").write_text("[1, 2]\n")
    fx["c_manifest_list"] = d
    d = root / "c_manifest_sev"
    shutil.copytree(good, d)
    (d / "manifest.json").write_text(json.dumps({"severities": "all", "classes": 7}) + "\n")
    fx["c_manifest_sev"] = d


def _manifest_fixtures(root: Path, fx: dict[str, Path]) -> None:
    """Copies of the results folder whose manifest.json is valid JSON of the wrong shape (or no JSON)."""
    manifest = json.loads((fx["res"] / "manifest.json").read_text())
    variants = {
        "m_list": [1, 2, 3],
        "m_string": "complete",
        "m_null": None,
        "m_config_list": {**manifest, "config": [1, 2]},
        "m_config_str": {**manifest, "config": "x"},
        "m_status_int": {**manifest, "status": 3},
        "m_versions_list": {**manifest, "versions": ["torch"]},
        "m_n_images_str": {**manifest, "config": {**manifest["config"], "n_images": "many"}},
        "m_seed_list": {**manifest, "config": {**manifest["config"], "corruption_seed": [0]}},
        "m_kind_int": {**manifest, "kind": 5},
        "m_dataset_dict": {**manifest, "config": {**manifest["config"], "dataset": {"a": 1}}},
    }
    for name, obj in variants.items():
        d = root / name
        shutil.copytree(fx["res"], d)
        (d / "manifest.json").write_text(json.dumps(obj) + "\n")
        fx[name] = d
    d = root / "m_not_json"
    shutil.copytree(fx["res"], d)
    (d / "manifest.json").write_text("{not json")
    fx["m_not_json"] = d
    for table in ("metrics", "layers", "samples", "units"):
        d = root / f"m_bad_{table}"
        shutil.copytree(fx["res"], d)
        (d / f"{table}.parquet").write_bytes(b"PAR1 garbage")
        fx[f"m_bad_{table}"] = d


_KERNEL = ("import corruptions\n"
           "@corruptions.register('{name}', group='extra', presets=[1, 2, 3, 4, 5], random=False)\n"
           "def _k(images, params, rng):\n    {body}\n")  # fmt: skip


def _plugin_fixtures(root: Path, fx: dict[str, Path]) -> None:
    bodies = {
        "p_kernel_raises": "raise RuntimeError('kernel on fire')",
        "p_kernel_exit": "import sys; sys.exit(3)",
        "p_kernel_shape": "return images[:, :, :2]",
        "p_kernel_type": "return 'not a tensor'",
        "p_kernel_keyerror": "return params['nope']",
    }
    _write_texts(root, fx, {name: _KERNEL.format(name=name, body=body) for name, body in bodies.items()}, ".py")
    _write_texts(root, fx, {
        "p_import_raises": "raise ImportError('no such dependency: foo')\n",
        "p_import_exit": "import sys\nsys.exit(3)\n",
        "p_syntax": "def broken(:\n",
        "p_nothing": "x = 1\n",
        "p_bad_register": "import corruptions\ncorruptions.register('bad name', group='extra', presets=[1]*5)(len)\n",
        "p_keyboard": "raise SystemExit('bye')\n",
    }, ".py")
    fx["p_not_py"] = root / "p_not_py.txt"
    fx["p_not_py"].write_text("hello\n")


def _write_texts(root: Path, fx: dict[str, Path], texts: dict[str, str], suffix: str) -> None:
    for name, text in texts.items():
        fx[name] = root / f"{name}{suffix}"
        fx[name].write_text(text)


def _config_fixtures(root: Path, fx: dict[str, Path]) -> None:
    _write_texts(root, fx, {
        "cfg_lr_huge": "lr = 1e308\n",
        "cfg_lr_nan": "lr = nan\n",
        "cfg_epochs_neg": "epochs = -1\n",
        "cfg_epochs_huge": f"epochs = {2**62}\n",
        "cfg_batch_zero": "batch_size = 0\n",
        "cfg_unknown": "learning_rate = 0.1\n",
        "cfg_type": "epochs = 'ten'\n",
        "cfg_syntax": "epochs = = 1\n",
        "cfg_wd_neg": "weight_decay = -0.1\n",
        "cfg_momentum_huge": "momentum = 1e9\n",
        "cfg_val_one": "val_fraction = 1.0\n",
        "cfg_seed_neg": "seed = -5\n",
        "cfg_seed_huge": f"seed = {2**63}\n",
        "cfg_milestones": "milestones = ['a']\n",
        "cfg_workers_huge": "num_workers = 100000\n",
        "cfg_list": "[[train]]\nepochs = 1\n",
    }, ".toml")
    fx["cfg_yaml_list"] = root / "cfg_yaml_list.yaml"
    fx["cfg_yaml_list"].write_text("- 1\n- 2\n")
    fx["cfg_txt"] = root / "cfg.txt"
    fx["cfg_txt"].write_text("epochs = 1\n")


def _numbers(prefix: list[str], option: str, values: tuple[str, ...], tail: list[str]) -> list[tuple[str, list[str]]]:
    words = [w for w in prefix[:2] if not w.startswith("-")] + [w for w in prefix if w == "--dry-run"]
    return [(f"{' '.join(words)} {option} {v}", [*prefix, option, v, *tail]) for v in values]


INTS = (HUGE, "-3", "0")
FLOATS = ("nan", "inf", "-inf", "1e308", "-1")


CK, OO = ["--checkpoint", "{ck}"], ["--out", "{out}"]
Cases = list[tuple[str, list[str]]]


def cases() -> Cases:
    """The malformed invocations, each expected to end in one 'error:' line and exit code 2."""
    return [*_number_cases(), *_list_cases(), *_path_cases(), *_reader_path_cases(), *_file_cases(),
            *_name_cases()]


def _number_cases() -> Cases:
    """Numbers out of range (huge, negative, zero where meaningless, NaN, inf), every command."""
    out: Cases = []
    ck, oo = CK, OO
    for opt in ("--seed", "--corruption-seed"):
        out += _numbers(RUN, opt, (HUGE, "-3"), [*ck, *oo])
    for opt in ("--limit", "--batch-size"):
        out += _numbers(RUN, opt, INTS, [*ck, *oo])
    out += _numbers(RUN, "--workers", (HUGE, "-1"), [*ck, *oo])
    for opt in ("--seed",):
        out += _numbers(TRAIN, opt, (HUGE, "-3"), oo)
    for opt in ("--epochs", "--iterations", "--batch-size", "--limit", "--image-size", "--workers"):
        out += _numbers(TRAIN, opt, INTS if opt != "--workers" else (HUGE, "-1"), oo)
    out += _numbers(TRAIN, "--image-size", ("100000", "4"), oo)
    for opt in ("--lr", "--weight-decay", "--val-fraction"):
        out += _numbers(TRAIN, opt, FLOATS, oo)
    out += _numbers(TRAIN, "--val-fraction", ("1", "1.5"), oo)
    for opt in ("--epochs", "--iterations", "--train-batch-size", "--limit", "--eval-limit",
                "--batch-size", "--parallel"):  # fmt: skip
        out += _numbers(SWEEP, opt, INTS, oo)
    out += _numbers(SWEEP, "--corruption-seed", (HUGE, "-3"), oo)
    out += _numbers(SWEEP, "--lr", FLOATS, oo)
    out += _numbers([*SWEEP, "--dry-run"], "--parallel", ("0", "-2", HUGE), oo)
    for opt in ("--index", "--seed"):
        out += _numbers(PREVIEW, opt, (HUGE, "-3"), oo)
    out += _numbers(PREVIEW, "--size", ("1000000", HUGE, "0", "-3", "4"), oo)
    for opt in ("--seed", "--limit", "--batch-size"):
        out += _numbers(EXPORT, opt, INTS if opt != "--seed" else (HUGE, "-3"), oo)
    for v in (HUGE, "99999999999999", "-3", "0"):
        out.append((f"surgery --num-classes {v}", ["surgery", "cnn_small", "--to", "relu", "--num-classes", v]))
        out.append((f"surgery resnet20 --num-classes {v}",
                    ["surgery", "resnet20", "--to", "silu", "--num-classes", v]))  # fmt: skip
    return out


def _list_cases() -> Cases:
    """Lists that select nothing or hold an empty item; ranges that are not ranges."""
    out: Cases = []
    ck, oo = CK, OO
    for v in ("", ",,", " ", ",", "relu,,silu"):
        out.append((f"run --activations {v!r}", [*RUN, "--activations", v, *oo]))
    for v in ("", ",,", " "):
        out.append((f"run --corruptions {v!r}", [*RUN[:1], "--corruptions", v, *RUN[3:], *ck, *oo]))
        out.append((f"sweep --models {v!r}", [*SWEEP, "--models", v, *oo]))
        out.append((f"sweep --activations {v!r}", [*SWEEP, "--activations", v, *oo]))
        out.append((f"sweep --orders {v!r}", [*SWEEP, "--orders", v, *oo]))
        out.append((f"preview --corruptions {v!r}", [*PREVIEW, "--corruptions", v, *oo]))
        out.append((f"export --corruptions {v!r}", [*EXPORT, "--corruptions", v, *oo]))
        out.append((f"run --severities {v!r}", [*RUN, "--severities", v, *ck, *oo]))
    for v in ("", ",", "0-", "5-1", HUGE, "1-99999999999999999999"):
        out.append((f"sweep --seeds {v!r}", [*SWEEP, "--seeds", v, *oo]))
    for v in ("1-" + HUGE, HUGE, "6", "0", "-1", "1--5", "a"):
        out.append((f"run --severities {v}", [*RUN, "--severities", v, *ck, *oo]))
        out.append((f"export --severities {v}", [*EXPORT, "--severities", v, *oo]))
    for v in ("", "0", "1/0", "2/2", "-1/2", "a/b", f"0/{HUGE}x"):
        out.append((f"sweep --shard {v!r}", [*SWEEP, "--shard", v, *oo]))
    return out


def _path_cases() -> Cases:
    """Paths of the wrong kind, missing, or holding the wrong things: run, train, sweep."""
    ck, oo = CK, OO
    return [
        ("run --out a file", [*RUN, *ck, "--out", "{file}"]),
        ("run --out below a file", [*RUN, *ck, "--out", "{file}/x"]),
        ("run --out a foreign folder", [*RUN, *ck, "--out", "{if}"]),
        ("run --out a checkpoint folder", [*RUN, *ck, "--out", "{ck}"]),
        ("run --out a complete run", [*RUN, *ck, "--out", "{res}"]),
        ("run --checkpoint missing", [*RUN, "--checkpoint", "{dir}/nope", *oo]),
        ("run --checkpoint empty dir", [*RUN, "--checkpoint", "{dir}", *oo]),
        ("run --checkpoint a text file", [*RUN, "--checkpoint", "{file}", *oo]),
        ("run --checkpoint a results folder", [*RUN, "--checkpoint", "{res}", *oo]),
        ("run --plugin missing", [*RUN, *ck, "--plugin", "{dir}/nope.py", *oo]),
        ("run --plugin a folder", [*RUN, *ck, "--plugin", "{dir}", *oo]),
        ("run --baseline missing folder", [*RUN, *ck, "--baseline", "{dir}/nope/", *oo]),
        ("run --baseline a file", [*RUN, *ck, "--baseline", "{file}", *oo]),
        ("run --root a file", [*RUN, *ck, "--dataset", "cifar10", "--root", "{file}", *oo]),
        ("run --dataset imagefolder:file", [*RUN, *ck, "--dataset", "imagefolder:{file}", *oo]),
        ("run --dataset imagefolder:missing", [*RUN, *ck, "--dataset", "imagefolder:{dir}/x", *oo]),
        ("run --dataset imagefolder:", [*RUN, *ck, "--dataset", "imagefolder:", *oo]),
        ("run --dataset digits:x", [*RUN, *ck, "--dataset", "digits:x", *oo]),
        ("run --dataset nope", [*RUN, *ck, "--dataset", "nope", *oo]),
        ("run --dataset cifar10-c:file", [*RUN, *ck, "--dataset", "cifar10-c:{file}", *oo]),
        ("run --dataset imagefolder no classes", [*RUN, *ck, "--dataset", "imagefolder:{if_noclass}", *oo]),
        ("run --dataset imagefolder empty dir", [*RUN, *ck, "--dataset", "imagefolder:{dir}", *oo]),
        ("train --out a file", [*TRAIN, "--out", "{file}"]),
        ("train --out below a file", [*TRAIN, "--out", "{file}/x"]),
        ("train --out a foreign folder", [*TRAIN, "--out", "{if}"]),
        ("train --out a results folder", [*TRAIN, "--out", "{res}"]),
        ("train --config missing", [*TRAIN, "--config", "{dir}/nope.toml", *oo]),
        ("train --config a folder", [*TRAIN, "--config", "{dir}", *oo]),
        ("train --checkpoint missing", [*TRAIN, "--recipe", "finetune", "--checkpoint", "{dir}/x", *oo]),
        ("train --checkpoint a file", [*TRAIN, "--recipe", "finetune", "--checkpoint", "{file}", *oo]),
        ("train --dataset imagefolder:file", [*TRAIN[:1], *CK_TRAIN[2:], "--dataset", "imagefolder:{file}", *oo]),
        ("train --dataset cifar10-c", [*TRAIN[:1], *CK_TRAIN[2:], "--dataset", "cifar10-c:{c_good}", *oo]),
        ("train --root a file", [*TRAIN[:1], *CK_TRAIN[2:], "--dataset", "cifar10", "--root", "{file}", *oo]),
        ("train empty class folder", [*TRAIN[:1], *CK_TRAIN[2:], "--dataset", "imagefolder:{if_empty_class}", *oo]),
        ("run undecodable image in a loader worker", [*RUN, "--checkpoint", "{ck_rgb}", "--dataset",
                                                      "imagefolder:{if_big_bad_image}", "--workers", "1", *oo]),  # fmt: skip
        ("train undecodable image", [*TRAIN[:1], *CK_TRAIN[2:], "--dataset", "imagefolder:{if_bad_image}", *oo]),
        ("sweep --out a file", [*SWEEP, "--out", "{file}"]),
        ("sweep --dry-run --out a file", [*SWEEP, "--dry-run", "--out", "{file}"]),
        ("sweep --dry-run --out below a file", [*SWEEP, "--dry-run", "--out", "{file}/x"]),
        ("sweep --out a results folder", [*SWEEP, "--out", "{res}"]),
        ("sweep --config missing", [*SWEEP, "--config", "{dir}/x.toml", *oo]),
        ("sweep --dataset imagefolder:file", [*SWEEP, "--dataset", "imagefolder:{file}", *oo]),
    ]


def _reader_path_cases() -> Cases:
    """Paths of the wrong kind for compare, report and the corruption commands."""
    oo = OO
    return [
        ("compare missing", ["compare", "{dir}/nope", *oo]),
        ("compare a file", ["compare", "{file}", *oo]),
        ("compare an empty folder", ["compare", "{dir}", *oo]),
        ("compare --out a file", ["compare", "{res}", "--out", "{file}"]),
        ("compare --out below a file", ["compare", "{res}", "--out", "{file}/x"]),
        ("report missing", ["report", "{dir}/nope", *oo]),
        ("report --out a file", ["report", "{res}", "--out", "{file}"]),
        ("report an empty folder", ["report", "{dir}", *oo]),
        ("preview missing image", ["corruptions", "preview", "{dir}/x.png", *oo]),
        ("preview image a folder", ["corruptions", "preview", "{dir}", *oo]),
        ("preview undecodable image", ["corruptions", "preview", "{notimage}", *oo]),
        ("preview text image", ["corruptions", "preview", "{file}", *oo]),
        ("preview --out a folder", [*PREVIEW, "--out", "{dir}"]),
        ("preview --out below a file", [*PREVIEW, "--out", "{file}/g.png"]),
        ("preview --out bad suffix", [*PREVIEW, "--out", "{out}.docx"]),
        ("preview image and dataset", [*PREVIEW, "--dataset", "digits", *oo]),
        ("preview neither", ["corruptions", "preview", *oo]),
        ("preview --dataset imagefolder:file", ["corruptions", "preview", "--dataset", "imagefolder:{file}", *oo]),
        ("preview --index past end", ["corruptions", "preview", "--dataset", "digits", "--index", "100000", *oo]),
        ("preview --dataset bad image", ["corruptions", "preview", "--dataset", "imagefolder:{if_bad_image}",
                                         "--index", "6", *oo]),  # fmt: skip
        ("export --out a file", [*EXPORT, "--out", "{file}"]),
        ("export --out below a file", [*EXPORT, "--out", "{file}/x"]),
        ("export --out a non-empty folder", [*EXPORT, "--out", "{if}"]),
        ("export --frost-dir missing", [*EXPORT, "--frost-dir", "{dir}/x", *oo]),
        ("export --frost-dir a file", [*EXPORT, "--frost-dir", "{file}", *oo]),
        ("export --frost-dir empty", [*EXPORT, "--corruptions", "frost", "--frost-dir", "{dir}", *oo]),
        ("export --dataset imagefolder:file", [*EXPORT[:2], "--dataset", "imagefolder:{file}", *EXPORT[4:], *oo]),
        ("export --dataset a family", [*EXPORT[:2], "--dataset", "cifar10-c:{c_good}", *EXPORT[4:], *oo]),
        ("export --dataset bad image", [*EXPORT[:2], "--dataset", "imagefolder:{if_bad_image}", *EXPORT[6:], *oo]),
        ("export --device nope", [*EXPORT, "--device", "nope", *oo]),
        ("export --device cuda:99", [*EXPORT, "--device", "cuda:99", *oo]),
        ("list --plugin missing", ["corruptions", "list", "--plugin", "{dir}/x.py"]),
        ("list --preset nope", ["corruptions", "list", "--preset", "nope"]),
    ]


def _file_cases() -> Cases:
    """Damaged files: *-C arrays and labels, manifests, plug-ins (user code), config files."""
    out: Cases = []
    ck, oo = CK, OO
    for name in ("c_random_bytes", "c_truncated", "c_object", "c_float", "c_3d", "c_empty_file",
                 "c_labels_range", "c_labels_negative", "c_labels_float", "c_labels_2d", "c_labels_count",
                 "c_labels_bytes", "c_manifest_list", "c_manifest_sev"):  # fmt: skip
        out.append((f"run cifar10-c {name}", ["run", "--severities", "1", "--probes", "none", "--quiet",
                                              *ck, "--dataset", f"cifar10-c:{{{name}}}", *oo]))  # fmt: skip
    # manifests of the wrong shape
    for name in ("m_list", "m_string", "m_null", "m_config_list", "m_config_str", "m_status_int",
                 "m_versions_list", "m_n_images_str", "m_seed_list", "m_kind_int", "m_dataset_dict",
                 "m_not_json", "m_bad_metrics", "m_bad_layers", "m_bad_samples", "m_bad_units"):  # fmt: skip
        out.append((f"compare {name}", ["compare", f"{{{name}}}", *oo]))
        out.append((f"report {name}", ["report", f"{{{name}}}", *oo]))
        out.append((f"run --baseline {name}", [*RUN, *ck, "--baseline", f"{{{name}}}", *oo]))
    # plug-ins (user code)
    for name in ("p_kernel_raises", "p_kernel_exit", "p_kernel_shape", "p_kernel_type", "p_kernel_keyerror"):
        out.append((f"run {name}", [*RUN, *ck, "--plugin", f"{{{name}}}", "--corruptions", name, *oo]))
        out.append((f"preview {name}", [*PREVIEW, "--plugin", f"{{{name}}}", "--corruptions", name, *oo]))
        out.append((f"export {name}", [*EXPORT, "--plugin", f"{{{name}}}", "--corruptions", name, *oo]))
    for name in ("p_import_raises", "p_import_exit", "p_syntax", "p_nothing", "p_bad_register", "p_keyboard",
                 "p_not_py"):  # fmt: skip
        out.append((f"run {name}", [*RUN, *ck, "--plugin", f"{{{name}}}", *oo]))
        out.append((f"list {name}", ["corruptions", "list", "--plugin", f"{{{name}}}"]))
    # config files
    for name in ("cfg_lr_huge", "cfg_lr_nan", "cfg_epochs_neg", "cfg_epochs_huge", "cfg_batch_zero",
                 "cfg_unknown", "cfg_type", "cfg_syntax", "cfg_wd_neg", "cfg_momentum_huge", "cfg_val_one",
                 "cfg_seed_neg", "cfg_seed_huge", "cfg_milestones", "cfg_workers_huge", "cfg_list",
                 "cfg_yaml_list", "cfg_txt"):  # fmt: skip
        out.append((f"train --config {name}", [*TRAIN_CFG, "--config", f"{{{name}}}", *oo]))
    for name in ("cfg_lr_huge", "cfg_epochs_neg", "cfg_syntax"):
        out.append((f"sweep --config {name}", [*SWEEP_CFG, "--config", f"{{{name}}}", *oo]))
    return out


def _name_cases() -> Cases:
    """Unknown or conflicting names and settings."""
    ck, oo = CK, OO
    return [
        ("run --activation typo", [*RUN, "--activations", "rleu", *oo]),
        ("run --activation bad spec", [*RUN, "--activations", "la_silu(alpha=)", *oo]),
        ("run --activation kwarg", [*RUN, "--activations", "la_silu(nope=1)", *oo]),
        ("run --activation alpha nan", [*RUN, "--activations", "la_silu(alpha=float('nan'))", *oo]),
        ("run --activations twice", [*RUN, "--activations", "relu,relu", *oo]),
        ("run --model typo", [*RUN, "--model", "cnn_smal", *oo]),
        ("run --order typo", [*RUN, "--order", "swaped", *oo]),
        ("run --probes typo", [*RUN, "--probes", "al", *ck, *oo]),
        ("run --amp typo", [*RUN, "--amp", "bf15", *ck, *oo]),
        ("run --preset typo", [*RUN, "--preset", "cifra", *ck, *oo]),
        ("run --device typo", [*RUN, "--device", "cpuu", *ck, *oo]),
        ("run --device cuda:huge", [*RUN, "--device", f"cuda:{HUGE}", *ck, *oo]),
        ("run --corruptions typo", [*RUN, "--corruptions", "gausian_noise", *ck, *oo]),
        ("run --baseline typo", [*RUN, "--baseline", "rleu", *ck, *oo]),
        ("run --checkpoint --model other", [*RUN, *ck, "--model", "resnet20", *oo]),
        ("run --checkpoint --activation other", [*RUN, *ck, "--activation", "silu", *oo]),
        ("run --activations with --checkpoint", [*RUN, *ck, "--activations", "relu", *oo]),
        ("run --activations and --activation", [*RUN, "--activations", "relu", "--activation", "silu", *oo]),
        ("run --dataset cifar10 no data", [*RUN, "--dataset", "cifar10", "--root", "{dir}", *oo]),
        ("train --model typo", [*TRAIN, "--model", "resnet2O", *oo]),
        ("train --activation typo", [*TRAIN, "--activation", "sigmoidd", *oo]),
        ("train --order typo", [*TRAIN, "--order", "swaped", *oo]),
        ("train --recipe typo", [*TRAIN, "--recipe", "fats", *oo]),
        ("train --schedule typo", [*TRAIN, "--schedule", "cosin", *oo]),
        ("train --amp typo", [*TRAIN, "--amp", "fp32x", *oo]),
        ("train --device typo", [*TRAIN, "--device", "gpu", *oo]),
        ("train --batch-size > images", [*TRAIN, "--batch-size", "4096", *oo]),
        ("train finetune without checkpoint", [*TRAIN, "--recipe", "finetune", *oo]),
        ("sweep --models typo", [*SWEEP, "--models", "cnn_smal", *oo]),
        ("sweep --activations typo", [*SWEEP, "--activations", "rleu", *oo]),
        ("sweep --orders typo", [*SWEEP, "--orders", "swaped", *oo]),
        ("sweep act@typo", [*SWEEP, "--activations", "relu@swaped", *oo]),
        ("sweep --recipe typo", [*SWEEP, "--recipe", "fats", *oo]),
        ("sweep --probes typo", [*SWEEP, "--probes", "al", *oo]),
        ("sweep --amp typo", [*SWEEP, "--amp", "bf15", *oo]),
        ("sweep --device typo", [*SWEEP, "--device", "cpuu", *oo]),
        ("sweep --corruptions typo", [*SWEEP, "--corruptions", "fgo", *oo]),
        ("compare --by typo", ["compare", "{res}", "--by", "activaton", *oo]),
        ("compare --reference typo", ["compare", "{res}", "--reference", "rleu", *oo]),
        ("compare --format typo", ["compare", "{res}", "--format", "docx", *oo]),
        ("report --figures typo", ["report", "{res}", "--figures", "heatmap", *oo]),
        ("report --by typo", ["report", "{res}", "--by", "activaton", *oo]),
        ("activations --kind typo", ["activations", "--kind", "elemnt"]),
        ("surgery model typo", ["surgery", "resnet2O", "--to", "relu"]),
        ("surgery --to typo", ["surgery", "cnn_small", "--to", "rleu"]),
        ("surgery --order typo", ["surgery", "cnn_small", "--to", "relu", "--order", "swaped"]),
        ("surgery --gates typo", ["surgery", "cnn_small", "--to", "relu", "--gates", "maybe"]),
        ("surgery --to empty", ["surgery", "cnn_small", "--to", ""]),
        ("surgery --to kwarg", ["surgery", "cnn_small", "--to", "la_silu(alpha=-1)"]),
        ("surgery tv:typo", ["surgery", "tv:resnt18", "--to", "relu"]),
        ("preview --preset typo", [*PREVIEW, "--preset", "cifra", *oo]),
        ("preview --split typo", ["corruptions", "preview", "--dataset", "digits", "--split", "tset", *oo]),
        ("preview --corruptions typo", [*PREVIEW, "--corruptions", "fgo", *oo]),
        ("export --format typo", [*EXPORT, "--format", "hdf5", *oo]),
        ("export --split typo", [*EXPORT, "--split", "tset", *oo]),
        ("export --preset typo", [*EXPORT, "--preset", "cifra", *oo]),
    ]


# ----------------------------------------------------------------------------- permissions

def build_permission_fixtures(root: Path, fx: dict[str, str]) -> dict[str, str]:
    """Fixtures a non-privileged process cannot read or write (chmod); call after build_fixtures."""
    import os

    out: dict[str, Path] = {}
    root.mkdir(parents=True, exist_ok=True)
    out["ro_dir"] = root / "ro_dir"
    out["ro_dir"].mkdir()
    out["ro_parent"] = root / "ro_parent"
    out["ro_parent"].mkdir()
    for name, target in (("c_unreadable_npy", "gaussian_noise.npy"), ("c_unreadable_labels", "labels.npy")):
        out[name] = root / name
        shutil.copytree(fx["c_good"], out[name])
        os.chmod(out[name] / target, 0)
    out["if_unreadable_class"] = _imagefolder(root / "if_unreadable_class")
    out["if_unreadable_image"] = _imagefolder(root / "if_unreadable_image")
    for split in ("train", "test"):
        os.chmod(out["if_unreadable_class"] / split / "b", 0)
        os.chmod(out["if_unreadable_image"] / split / "c" / "1.png", 0)
    for name, src in (("cfg_unreadable", "cfg_lr_huge"), ("p_unreadable", "p_kernel_raises")):
        out[name] = root / Path(fx[src]).name.replace(src, name)
        shutil.copy(fx[src], out[name])
        os.chmod(out[name], 0)
    out["ck_unreadable"] = root / "ck_unreadable"
    shutil.copytree(fx["ck"], out["ck_unreadable"])
    os.chmod(out["ck_unreadable"] / "model.safetensors", 0)
    for name, target in (("res_unreadable_parquet", "metrics.parquet"), ("res_unreadable_manifest", "manifest.json")):
        out[name] = root / name
        shutil.copytree(fx["res"], out[name])
        os.chmod(out[name] / target, 0)
    out["photo_unreadable"] = root / "photo_unreadable.png"
    shutil.copy(fx["photo"], out["photo_unreadable"])
    os.chmod(out["photo_unreadable"], 0)
    out["frost_unreadable"] = root / "frost_unreadable"
    out["frost_unreadable"].mkdir()
    _png(out["frost_unreadable"] / "f.png", 3)
    os.chmod(out["frost_unreadable"] / "f.png", 0)
    for name in ("ro_dir", "ro_parent"):  # last: nothing may be written below them
        os.chmod(out[name], 0o555)
    return {k: str(v) for k, v in out.items()}


def permission_cases() -> list[tuple[str, list[str]]]:
    """Malformed invocations that need a process without root's permission override."""
    ck, oo = ["--checkpoint", "{ck}"], ["--out", "{out}"]
    return [
        ("run --out read-only folder", [*RUN, *ck, "--out", "{ro_dir}"]),
        ("run --out below read-only folder", [*RUN, *ck, "--out", "{ro_parent}/new"]),
        ("train --out read-only folder", [*TRAIN, "--out", "{ro_dir}"]),
        ("train --out below read-only folder", [*TRAIN, "--out", "{ro_parent}/new"]),
        ("sweep --out read-only folder", [*SWEEP, "--out", "{ro_dir}"]),
        ("sweep --dry-run --out read-only", [*SWEEP, "--dry-run", "--out", "{ro_parent}/new"]),
        ("compare --out read-only folder", ["compare", "{res}", "--out", "{ro_dir}"]),
        ("report --out read-only folder", ["report", "{res}", "--out", "{ro_dir}"]),
        ("report --out below read-only folder", ["report", "{res}", "--out", "{ro_parent}/new"]),
        ("preview --out into read-only folder", [*PREVIEW, "--out", "{ro_dir}/grid.png"]),
        ("export --out read-only folder", [*EXPORT, "--out", "{ro_dir}"]),
        ("export --out below read-only folder", [*EXPORT, "--out", "{ro_parent}/new"]),
        ("run unreadable corruption file", ["run", "--severities", "1", "--probes", "none", "--quiet", *ck,
                                            "--dataset", "cifar10-c:{c_unreadable_npy}", *oo]),  # fmt: skip
        ("run unreadable labels file", ["run", "--severities", "1", "--probes", "none", "--quiet", *ck,
                                        "--dataset", "cifar10-c:{c_unreadable_labels}", *oo]),  # fmt: skip
        ("run unreadable class folder", [*RUN, *ck, "--dataset", "imagefolder:{if_unreadable_class}", *oo]),
        ("train unreadable class folder", [*TRAIN[:1], *CK_TRAIN[2:], "--dataset",
                                           "imagefolder:{if_unreadable_class}", *oo]),  # fmt: skip
        ("run unreadable image", [*RUN, *ck, "--dataset", "imagefolder:{if_unreadable_image}", *oo]),
        ("export unreadable image", [*EXPORT[:2], "--dataset", "imagefolder:{if_unreadable_image}", *EXPORT[6:], *oo]),
        ("train --config unreadable", [*TRAIN, "--config", "{cfg_unreadable}", *oo]),
        ("run --plugin unreadable", [*RUN, *ck, "--plugin", "{p_unreadable}", *oo]),
        ("run --checkpoint unreadable weights", [*RUN, "--checkpoint", "{ck_unreadable}", *oo]),
        ("compare unreadable metrics", ["compare", "{res_unreadable_parquet}", *oo]),
        ("compare unreadable manifest", ["compare", "{res_unreadable_manifest}", *oo]),
        ("report unreadable manifest", ["report", "{res_unreadable_manifest}", *oo]),
        ("preview unreadable image", ["corruptions", "preview", "{photo_unreadable}", *oo]),
        ("export --frost-dir unreadable image", [*EXPORT, "--corruptions", "frost", "--frost-dir",
                                                 "{frost_unreadable}", *oo]),  # fmt: skip
    ]
