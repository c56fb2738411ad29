"""The LayerAct authors' released CIFAR ResNets (``ResNet_small``) as built-in ``resnet20/32/44``.

Their training script (github.com/LayerAct/LayerAct, ``cifar_resnet_train.py``) saves the
``state_dict`` of ``models/architectures/ResNet_small.py`` (plain, or under ``'state_dict'``
in its training checkpoints). Differences from :class:`~robustbench_act.models.CifarResNet`,
and how they are bridged exactly:

- names: ``norm1`` -> ``bn1``, ``layers{1,2,3}`` -> ``layer{1,2,3}``, ``linear`` -> ``fc``;
  blocks keep ``conv1, bn1, act1, conv2, bn2, act2``;
- every convolution has a bias (``nn.Conv2d``'s default) and is followed directly by a
  BatchNorm: in evaluation BN(conv(x) + b) is BN with ``running_mean - b``, so the bias
  is folded into the running mean (in training BatchNorm removes it anyway);
- the option-A shortcut (``IdentityPadding``) puts the zero channels after the identity:
  the model is built with ``shortcut_pad="end"``; ``AvgPool2d(8)`` on the 8x8 map is our
  global average pool;
- activations hold no weights except PReLU's (``act*.weight``, kept); which one the file
  was trained with is not stored: give ``--activation`` (their ``la_silu``, ``la_hardsilu``
  with alpha 1e-5 are ours; their ``hardsilu`` is ``nn.Hardswish``, ``leakyrelu`` our
  ``leaky_relu``);
- inputs are normalised with the training set's per-channel mean and std, which are
  this project's CIFAR-10 / CIFAR-100 constants (to 4 decimals); recorded as mean/std.

Only the BatchNorm variant (their default) is mapped; other normalisations are refused.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from robustbench_act.errors import UserError

FORMAT = "layeract-resnet_small"
DEPTHS = {3: "resnet20", 5: "resnet32", 7: "resnet44"}
BN_KEYS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
#: Their activation names that differ from ours.
THEIR_NAMES = {"leakyrelu": "leaky_relu", "hardsilu": "hardswish"}
_BLOCK = re.compile(r"layers([123])\.(\d+)\.(.+)")
_STEM_NAMES = {"norm1": "bn1", "linear": "fc"}


def is_layeract_state(state: Mapping[str, torch.Tensor]) -> bool:
    """True for a state_dict with ``ResNet_small``'s names (norm1, layers1..3, linear)."""
    return "norm1.weight" in state and "linear.weight" in state and any(k.startswith("layers1.") for k in state)


def _blocks(state: Mapping[str, torch.Tensor]) -> int:
    """Blocks per stage (the same in all three stages, else an error)."""
    per_stage = [len({int(m.group(2)) for k in state if (m := _BLOCK.fullmatch(k)) and m.group(1) == s})
                 for s in "123"]  # fmt: skip
    if len(set(per_stage)) != 1 or per_stage[0] not in DEPTHS:
        raise UserError(f"LayerAct ResNet_small weights with {per_stage} blocks per stage: only "
                        "resnet20 / resnet32 / resnet44 (3, 5, 7 blocks) are mapped")
    return per_stage[0]


def _expected_keys(n: int, act_keys: set[str]) -> list[str]:
    """Every key a BatchNorm ResNet_small with ``n`` blocks per stage has (PReLU weights as found)."""
    keys = ["conv1.weight", "conv1.bias", *(f"norm1.{k}" for k in BN_KEYS)]
    for s in "123":
        for j in range(n):
            p = f"layers{s}.{j}."
            for conv, bn in (("conv1", "bn1"), ("conv2", "bn2")):
                keys += [f"{p}{conv}.weight", f"{p}{conv}.bias", *(f"{p}{bn}.{k}" for k in BN_KEYS)]
    return keys + ["linear.weight", "linear.bias"] + sorted(act_keys)


def _our_key(key: str) -> str:
    """ResNet_small name -> CifarResNet name (layers1.0.bn1.weight -> layer1.0.bn1.weight)."""
    m = _BLOCK.fullmatch(key)
    if m:
        return f"layer{m.group(1)}.{m.group(2)}.{m.group(3)}"
    head, _, rest = key.partition(".")
    return f"{_STEM_NAMES.get(head, head)}.{rest}"


def _bn_mean_of(bias_key: str) -> str:
    """The running mean of the BatchNorm right after the convolution with bias ``bias_key``."""
    if bias_key == "conv1.bias":
        return "norm1.running_mean"
    return bias_key.replace("conv1.bias", "bn1.running_mean").replace("conv2.bias", "bn2.running_mean")


def _check_keys(state: Mapping[str, torch.Tensor], n: int, source: str | Path) -> None:
    act_keys = {k for k in state if re.fullmatch(r"(layers[123]\.\d+\.)?act[12]\.weight", k)}
    expected = _expected_keys(n, act_keys)
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in set(expected)]
    if missing or unexpected:
        parts = [f"missing {len(missing)} keys: {', '.join(missing[:5])}" if missing else "",
                 f"unexpected {len(unexpected)} keys: {', '.join(unexpected[:5])}" if unexpected else ""]
        raise UserError(f"{source} is not a complete LayerAct ResNet_small ({DEPTHS[n]}, BatchNorm) "
                        f"state_dict: {'; '.join(p for p in parts if p)}")  # fmt: skip


def convert_state(state: Mapping[str, torch.Tensor], *, source: str | Path = "weights"
                  ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:  # fmt: skip
    """(CifarResNet state_dict, checkpoint metadata) of a ResNet_small state_dict (conv biases folded)."""
    n = _blocks(state)
    _check_keys(state, n, source)
    biases = {k: v for k, v in state.items() if k.endswith(("conv1.bias", "conv2.bias"))}
    out = {_our_key(k): v for k, v in state.items() if k not in biases}
    for key, bias in biases.items():
        target = _our_key(_bn_mean_of(key))
        out[target] = out[target] - bias.to(out[target].dtype)
    num_classes = int(state["linear.weight"].shape[0])
    from robustbench_act.data import CIFAR10_MEAN, CIFAR10_STD, CIFAR100_MEAN, CIFAR100_STD

    mean, std = (CIFAR100_MEAN, CIFAR100_STD) if num_classes == 100 else (CIFAR10_MEAN, CIFAR10_STD)
    meta = {"format": FORMAT, "model": DEPTHS[n], "num_classes": num_classes, "in_chans": 3,
            "order": "conventional", "model_kwargs": {"shortcut_pad": "end"}, "mean": list(mean),
            "std": list(std), "input_size": [3, 32, 32]}  # fmt: skip
    return out, meta


def activation_hint(path: str | Path) -> str | None:
    """The activation a released file's name suggests (resnet20_la_silu_1.pth -> la_silu), if any."""
    from robustbench_act.activations import list_activations

    stem = Path(path).name.lower()
    names = sorted({*list_activations(), *THEIR_NAMES}, key=len, reverse=True)
    hit = next((a for a in names if re.search(rf"(^|_){re.escape(a)}(_|\.|$)", stem)), None)
    return THEIR_NAMES.get(hit, hit) if hit else None


def resolve_meta(meta: dict[str, Any], arch: Mapping[str, Any], model: Any, path: str | Path) -> dict[str, Any]:
    """Merge the user's --model/--activation/--order with what the weights imply (conflicts refused)."""
    if isinstance(model, str) and model != meta["model"]:
        raise UserError(f"{path} holds LayerAct {meta['model']} weights, not {model}; drop --model or use "
                        f"--model {meta['model']}")
    if arch.get("order") not in (None, "conventional"):
        raise UserError(f"{path}: the LayerAct ResNet_small is conv-BN-act; --order {arch['order']} cannot load it")
    activation = arch.get("activation")
    if activation is None:
        hint = activation_hint(path)
        guess = f" (its file name suggests --activation {hint})" if hint else ""
        raise UserError(f"{path} holds the LayerAct authors' {meta['model']} weights, which do not record "
                        f"the activation: name it with --activation{guess}")
    activation = THEIR_NAMES.get(str(activation), activation)
    n = arch.get("num_classes")
    if n is not None and int(n) != meta["num_classes"]:
        raise UserError(f"{path} predicts {meta['num_classes']} classes, not {n}")
    return {**meta, "activation": activation}
