"""CUDA behaviour (skipped without a GPU): corruptions, training and evaluation on the device.

The CPU/CUDA tolerance tested here is the one the README and docs/benchmarks.md state:
for every corruption, the uint8 outputs of the two devices differ in at most 1 % of the
pixel values, by at most 0.1 grey levels on average.  Both devices run the same counter
hash for the random numbers, so differences come only from float rounding (fused
multiply-adds, transcendental functions, convolution summation order) moving a value
across a quantisation level, or, rarely, a random draw across a threshold.
``benchmarks/cuda_tolerance.py`` prints the measured figures per corruption.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import corruptions

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

MAX_DIFFERING_FRACTION = 0.01
MAX_MEAN_ABS_DIFF = 0.1  # grey levels


def _images(n: int, size: int, seed: int = 0) -> torch.Tensor:
    """Smooth-ish random uint8 RGB images, reproducible."""
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(n, 3, size // 4, size // 4, generator=g)
    x = torch.nn.functional.interpolate(base, size=(size, size), mode="bilinear", align_corners=False)
    x = 0.8 * x + 0.2 * torch.rand(n, 3, size, size, generator=g)
    return (x * 255).round().clamp(0, 255).to(torch.uint8)


def device_difference(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float]:
    """(fraction of differing values, mean absolute difference in grey levels) of two uint8 batches."""
    d = (a.cpu().int() - b.cpu().int()).abs()
    return float((d > 0).float().mean()), float(d.float().mean())


@pytest.mark.parametrize("name", corruptions.names("all"))
@pytest.mark.parametrize("size", [32, 224])
def test_cuda_is_deterministic_batch_independent_and_close_to_cpu(name: str, size: int) -> None:
    n = 12 if size == 32 else 3
    x = _images(n, size)
    xc = x.cuda()
    severity = 5
    a = corruptions.apply(xc, name, severity, seed=3)
    b = corruptions.apply(xc, name, severity, seed=3)
    assert a.device.type == "cuda" and a.dtype == torch.uint8 and a.shape == x.shape
    assert torch.equal(a, b), "two identical CUDA calls differ"
    head = corruptions.apply(xc[:1], name, severity, seed=3, indices=[0])
    tail = corruptions.apply(xc[1:], name, severity, seed=3, indices=range(1, n))
    assert torch.equal(torch.cat([head, tail]), a), "CUDA result depends on the batch split"
    frac, mad = device_difference(a, corruptions.apply(x, name, severity, seed=3))
    assert frac <= MAX_DIFFERING_FRACTION and mad <= MAX_MEAN_ABS_DIFF, (
        f"{name} @ {size}px: {100 * frac:.3f}% values differ, mean |diff| {mad:.4f}"
    )


def test_cuda_training_step_fast_settings_and_cpu_reload(tmp_path: Path) -> None:
    """bf16 autocast + channels_last + data on the GPU: finite loss, a checkpoint CPU can use."""
    from robustbench_act.checkpoint import load_checkpoint
    from robustbench_act.train import make_config, train_model

    cfg = make_config("fast", epochs=2, batch_size=64, limit=512, device="cuda", check_every=2)
    res = train_model("resnet20", dataset="digits", out_dir=tmp_path / "run", config=cfg,
                      activation="la_silu", progress=False, image_size=32)  # fmt: skip
    assert res.history.loss.notna().all() and (res.history.loss < 10).all()
    model, meta = load_checkpoint(tmp_path / "run")
    assert meta["train_config"]["amp"] == "auto"
    x = torch.rand(4, 1, 32, 32)
    with torch.no_grad():
        cpu_logits = model.eval()(x)
        gpu_logits = model.cuda()(x.cuda()).cpu()
    torch.testing.assert_close(gpu_logits, cpu_logits, rtol=1e-3, atol=1e-3)


def test_cuda_evaluation_equals_cpu_evaluation() -> None:
    """The same model on the same corrupted digits: CUDA and CPU accuracies agree."""
    from robustbench_act.data import load_dataset
    from robustbench_act.evaluate import evaluate
    from robustbench_act.models import build_model

    ds = load_dataset("digits", split="test", limit=256)
    torch.manual_seed(0)
    model = build_model("cnn_small", num_classes=10, in_chans=1).eval()
    kw = dict(corruptions=["gaussian_noise", "glass_blur"], severities=[1, 5], probes="none", seed=0)
    cpu = evaluate(model, ds, device="cpu", **kw)
    gpu = evaluate(model, ds, device="cuda", **kw)
    keys = ["corruption", "severity", "metric"]
    merged = cpu.merge(gpu, on=keys, suffixes=("_cpu", "_gpu"))
    assert len(merged) == len(cpu) == len(gpu)
    top1 = merged[merged.metric == "top1"]
    assert len(top1) == 5  # clean + 2 corruptions x 2 severities
    # at most 2 of 256 predictions may flip on near-ties
    assert ((top1.value_cpu - top1.value_gpu).abs() <= 2 / 256).all()


def test_index_add_deterministic_is_reproducible_on_cuda_and_restores_the_mode() -> None:
    """Colliding float adds (motion-blur taps, frost splats) give the same bits every time."""
    from corruptions.ops import index_add_deterministic

    g = torch.Generator().manual_seed(0)
    idx = torch.randint(0, 64, (200_000,), generator=g).cuda()  # ~3000 adds per cell
    val = torch.rand(200_000, generator=g).cuda()
    ref = index_add_deterministic(torch.zeros(64, device="cuda"), idx, val)
    assert not torch.are_deterministic_algorithms_enabled()
    for _ in range(10):
        assert torch.equal(index_add_deterministic(torch.zeros(64, device="cuda"), idx, val), ref)
    cpu = torch.zeros(64).index_add_(0, idx.cpu(), val.cpu())
    torch.testing.assert_close(ref.cpu(), cpu, rtol=1e-5, atol=1e-4)
