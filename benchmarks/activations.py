"""Training-step cost of each activation in a CIFAR ResNet-20, relative to SiLU.

For each activation: build ResNet-20 (``robustbench_act.models.build_model`` when present,
else the local definition below), run a few warm-up then timed SGD steps (forward +
backward + step) on random 32x32 batches, and report

- step time (median of the timed steps),
- autograd saved-tensor bytes of one step: every tensor autograd keeps for backward,
  counted once per storage via ``torch.autograd.graph.saved_tensors_hooks`` (this is the
  activation memory that grows with the batch; it is the CPU memory measure),
- on CUDA also ``torch.cuda.max_memory_allocated`` over a step.

``la_silu[naive]`` is LayerAct-SiLU written as plain autograd ops (what the custom
autograd Function replaces), so the Function's memory saving is visible side by side.
``<la_*>[eager]``, ``[inductor]``, ``[cpp]`` run that LayerAct on the named CPU kernel
(``ACTBENCH_LAYERACT_KERNEL`` set around its steps) beside the default (auto) one.

Usage: python benchmarks/activations.py --device cpu --iters 3 --batch-size 128
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

_HERE = Path(__file__).resolve().parent  # this checkout's packages first, then the helpers
sys.path[:] = [str(_HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != _HERE] + [str(_HERE)]

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from _harness import print_table, split_kernel, with_layeract_kernel  # noqa: E402
from torch import nn  # noqa: E402

from robustbench_act.activations import LayerAct, get_activation, layer_act_reference  # noqa: E402
from robustbench_act.layeract import cpu_kernel  # noqa: E402

DEFAULT_ACTS = (
    "relu",
    "silu",
    "gelu",
    "mish",
    "hardswish",
    "la_silu",
    "la_hardsilu",
    "la_gelu",
    "an_silu",
)
NAIVE = "la_silu[naive]"


# ----------------------------------------------------------------------------- local ResNet-20


class _Block(nn.Module):
    """CIFAR basic block: conv-BN-act-conv-BN, + shortcut (option A: stride + zero-pad), act."""

    def __init__(self, cin: int, cout: int, stride: int, act: Callable[[], nn.Module]) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.act1 = act()
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.act2 = act()
        self.stride, self.pad = stride, cout - cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual block forward."""
        out = self.bn2(self.conv2(self.act1(self.bn1(self.conv1(x)))))
        sc = x[:, :, :: self.stride, :: self.stride] if self.stride > 1 else x
        if self.pad:
            sc = F.pad(sc, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))
        return self.act2(out + sc)


class LocalResNet20(nn.Module):
    """ResNet-20 for CIFAR (He et al. 2016): 3 stages x 3 blocks, widths 16-32-64."""

    def __init__(self, act: Callable[[], nn.Module], num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), act())
        blocks: list[nn.Module] = []
        cin = 16
        for i, w in enumerate((16, 32, 64)):
            for j in range(3):
                blocks.append(_Block(cin, w, 2 if (i > 0 and j == 0) else 1, act))
                cin = w
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for a (N, 3, 32, 32) batch."""
        x = self.blocks(self.stem(x))
        return self.fc(x.mean(dim=(2, 3)))


# ----------------------------------------------------------------------------- helpers


class NaiveLayerAct(nn.Module):
    """LayerAct through plain autograd (saves every intermediate), for comparison only."""

    def __init__(self, scale: str, alpha: float, dims: str) -> None:
        super().__init__()
        self.scale, self.alpha, self.dims = scale, alpha, dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the LayerAct formula with autograd."""
        return layer_act_reference(x, self.scale, self.alpha, self.dims)


def _to_naive(model: nn.Module) -> int:
    """Replace every LayerAct in ``model`` by its naive twin; return how many were replaced."""
    count = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, LayerAct):
                setattr(parent, name, NaiveLayerAct(child.scale, child.alpha, child.dims))
                count += 1
    return count


def build_resnet20(act_name: str) -> tuple[nn.Module, str]:
    """ResNet-20 with the given activation; returns (model, which builder was used)."""
    spec = "la_silu" if act_name == NAIVE else split_kernel(act_name)[0]
    try:
        from robustbench_act.models import build_model
    except ImportError:
        build_model = None
    if build_model is not None:
        model, source = build_model("resnet20", num_classes=10, activation=spec), "build_model"
    else:
        model, source = LocalResNet20(lambda: get_activation(spec)), "local"
    if act_name == NAIVE and _to_naive(model) == 0:
        raise RuntimeError("no LayerAct module found to replace")
    return model, source


def saved_tensor_bytes(fn: Callable[[], torch.Tensor]) -> tuple[torch.Tensor, int]:
    """Run ``fn`` and count the bytes autograd saves for backward (each storage once)."""
    storages: dict[tuple[str, int], int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        st = t.untyped_storage()
        storages[(str(t.device), st.data_ptr())] = st.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return out, sum(storages.values())


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def prepare(
    act_name: str, device: torch.device, batch: int, warmup: int, seed: int
) -> tuple[Callable[[], None], dict[str, float | str]]:
    """A warmed-up training step of ResNet-20 with ``act_name``, and its saved-tensor bytes."""
    torch.manual_seed(seed)
    model, source = build_resnet20(act_name)
    model = model.to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    x = torch.randn(batch, 3, 32, 32, generator=gen).to(device)
    y = torch.randint(0, 10, (batch,), generator=gen).to(device)

    def step(count: bool) -> int:
        opt.zero_grad(set_to_none=True)
        if count:  # hooks only on untimed steps, so they add nothing to the timings
            logits, nbytes = saved_tensor_bytes(lambda: model(x))
        else:
            logits, nbytes = model(x), 0
        F.cross_entropy(logits, y).backward()
        opt.step()
        return nbytes

    step = with_layeract_kernel(split_kernel(act_name)[1], step)
    saved = 0
    for _ in range(max(1, warmup)):
        saved = step(count=True)
    _sync(device)
    return (lambda: step(count=False)), {"act": act_name, "source": source, "saved_mb": saved / 2**20}


def bench_all(
    acts: list[str], device: torch.device, batch: int, warmup: int, iters: int, seed: int
) -> list[dict[str, float | str]]:
    """Median step time (timed steps of all activations interleaved) and memory of each."""
    setups = [prepare(n, device, batch, warmup, seed) for n in acts]
    times: list[list[float]] = [[] for _ in acts]
    peaks = [0.0 for _ in acts]
    for _ in range(iters):
        for i, (step, _) in enumerate(setups):
            _sync(device)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
                base = torch.cuda.memory_allocated(device)
            t0 = time.perf_counter()
            step()
            _sync(device)
            times[i].append(time.perf_counter() - t0)
            if device.type == "cuda":
                peaks[i] = max(peaks[i], float(torch.cuda.max_memory_allocated(device) - base))
    rows = []
    for (_, rec), t, pk in zip(setups, times, peaks):
        rows.append({**rec, "time_s": statistics.median(t),
                     "peak_mb": pk / 2**20 if device.type == "cuda" else float("nan")})
    return rows


def layer_saved_bytes(batch: int, device: torch.device) -> list[tuple[str, float]]:
    """Saved-tensor MiB of one activation call on a (batch, 16, 32, 32) input."""
    x = torch.randn(batch, 16, 32, 32, device=device, requires_grad=True)
    rows = []
    for name in ("relu", "silu", "la_silu"):
        m = get_activation(name)
        rows.append((name, saved_tensor_bytes(lambda m=m: m(x))[1] / 2**20))
    rows.append((NAIVE, saved_tensor_bytes(lambda: layer_act_reference(x, "silu"))[1] / 2**20))
    return rows


def main() -> None:
    """Parse flags, run every activation side by side, print ratios to SiLU."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--iters", type=int, default=5, help="timed steps per activation (interleaved)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per activation")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("--acts", default=",".join((*DEFAULT_ACTS, NAIVE, "la_silu[inductor]", "la_silu[eager]")),
                   help="comma list")
    p.add_argument("--markdown", action="store_true", help="print a markdown table")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    acts = [s.strip() for s in a.acts.split(",") if s.strip()]
    if "silu" not in acts:
        acts.insert(0, "silu")
    rows = bench_all(acts, device, a.batch_size, a.warmup, a.iters, a.seed)
    ref = next(r for r in rows if r["act"] == "silu")
    print(f"# device={device} batch={a.batch_size} warmup={a.warmup} iters={a.iters} (interleaved, "
          f"median) threads={torch.get_num_threads()} torch={torch.__version__}; model builder: "
          f"{ref['source']}; memory = autograd saved-tensor bytes per step; LayerAct CPU kernel: "
          f"{cpu_kernel()}")
    headers = ["activation", "step ms", "time vs SiLU", "saved MiB", "saved vs SiLU"]
    if device.type == "cuda":
        headers += ["peak MiB", "peak vs SiLU"]
    table = []
    for r in rows:
        row = [r["act"], f"{1e3 * r['time_s']:.1f}", f"{r['time_s'] / ref['time_s']:.2f}",
               f"{r['saved_mb']:.1f}", f"{r['saved_mb'] / ref['saved_mb']:.2f}"]
        if device.type == "cuda":
            row += [f"{r['peak_mb']:.1f}", f"{r['peak_mb'] / ref['peak_mb']:.2f}"]
        table.append(row)
    print_table(headers, table, a.markdown)
    print(f"\nsingle activation call on ({a.batch_size}, 16, 32, 32) float32, saved MiB:")
    for name, mb in layer_saved_bytes(a.batch_size, device):
        print(f"  {name:<16}{mb:>8.1f}")


if __name__ == "__main__":
    main()
