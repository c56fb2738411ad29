"""Fine-tuning: start from a checkpoint, swap its activation by surgery, re-estimate BatchNorm statistics."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from robustbench_act.data import dataset_info
from robustbench_act.parsing import resolve_device
from robustbench_act.train_config import TrainConfig
from robustbench_act.train_data import _Batches


@torch.no_grad()
def recalibrate_bn(model: nn.Module, dataset: Any, *, batches: int, batch_size: int, seed: int,
                   device: str | torch.device = "cpu", augment: str = "none") -> int:  # fmt: skip
    """Re-estimate BatchNorm running statistics on training data (after an activation swap).

    ``torch.optim.swa_utils.update_bn`` on the first ``batches`` normalised batches of the
    seeded training order (epochs repeat when the data is shorter): running statistics
    reset, then their cumulative average (momentum None) in train mode; momenta and the
    training flag are restored. Returns the number of BN layers updated.
    """
    from torch.optim.swa_utils import update_bn

    dev = resolve_device(device)
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return 0
    info = dataset_info(dataset)
    cfg = TrainConfig(epochs=1, iterations=None, batch_size=min(batch_size, len(dataset)),
                      augment=augment, seed=seed, val_fraction=0.0)  # fmt: skip
    feeder = _Batches(dataset, cfg, dev, info["mean"], info["std"], channels_last=False)

    def inputs() -> Iterator[torch.Tensor]:
        done, epoch = 0, 0
        while done < batches:
            for x, _ in feeder.epoch(10_000 + epoch):
                yield x
                done += 1
                if done >= batches:
                    return
            epoch += 1

    was, momenta = model.training, [(m, m.momentum) for m in bns]
    try:
        update_bn(inputs(), model)
    finally:  # update_bn restores these itself, but not when a forward raises
        for m, momentum in momenta:
            m.momentum = momentum
        model.train(was)
    return len(bns)


def prepare_finetune(checkpoint: str | Path, train_set: Any, *, activation: str | None,
                     config: TrainConfig) -> tuple[nn.Module, dict[str, Any]]:  # fmt: skip
    """Load a checkpoint, swap its activations (surgery), re-estimate BN statistics."""
    from robustbench_act.checkpoint import load_checkpoint

    device = resolve_device(config.device)
    model, meta = load_checkpoint(checkpoint, device=device)
    assert model is not None
    meta = dict(meta)
    old = meta.get("activation")
    if activation and activation != old:
        from robustbench_act.surgery import swap_activations

        swap_activations(model, activation)
        meta["activation"] = activation
    model.to(device)
    n_bn = recalibrate_bn(model, train_set, batches=config.bn_recalibration_batches,
                          batch_size=config.batch_size, seed=config.seed, device=device)  # fmt: skip
    meta["finetuned_from"] = {"checkpoint": str(checkpoint), "activation": old, "bn_layers_recalibrated": n_bn}
    for k in ("metrics", "train_config", "format", "format_version", "weights", "saved", "selected"):
        meta.pop(k, None)
    return model, meta


