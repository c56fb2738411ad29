"""Activation probes on tiny hand-checkable models: call sites, fluctuation, unit means, saturation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from robustbench_act.probes import FLUCT_STATS, ModelProbe


class Shared(nn.Module):
    """One ReLU module called at two sites (like torchvision's BasicBlock)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(2, 3, 3, padding=1)
        self.conv2 = nn.Conv2d(3, 3, 3, padding=1)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv2(self.act(self.conv1(x))))


def _run(probe: ModelProbe, model: nn.Module, clean: torch.Tensor, corrupt: torch.Tensor,
         record_units: bool = False) -> torch.Tensor | None:
    with torch.inference_mode():
        probe.begin("clean", record_units=record_units)
        model(clean)
        probe.end()
        probe.begin("corrupt", cell=("c", 1))
        model(corrupt)
        avg = probe.end()
        probe.release_clean()
    return avg


def _manual(model: Shared, x: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(input, output) of each activation call site, computed without hooks."""
    with torch.no_grad():
        a = model.conv1(x)
        o1 = torch.relu(a)
        b = model.conv2(o1)
        o2 = torch.relu(b)
    return [(a, o1), (b, o2)]


def _per_sample(a: torch.Tensor, b: torch.Tensor) -> dict[str, torch.Tensor]:
    d = (a - b).flatten(1)
    n = d.shape[1]
    l1, l2 = d.abs().sum(1), d.norm(dim=1)
    c1, c2 = b.flatten(1).abs().sum(1), b.flatten(1).norm(dim=1)
    return {"fluct_l1": l1, "fluct_l2": l2, "fluct_l1_elem": l1 / n, "fluct_l2_elem": l2 / n,
            "fluct_l1_rel": l1 / c1, "fluct_l2_rel": l2 / c2}


def test_shared_module_is_two_call_sites_and_fluctuation_matches_manual() -> None:
    torch.manual_seed(0)
    model = Shared().eval()
    clean = torch.randn(5, 2, 6, 6)
    corrupt = clean + 0.3 * torch.randn(5, 2, 6, 6)
    probe = ModelProbe(model, "fluctuation")
    avg = _run(probe, model, clean, corrupt)
    assert list(probe.sites) == ["act#0", "act#1"]
    ref_c, ref_x = _manual(model, clean), _manual(model, corrupt)
    metrics, layers = probe.fluct_records(("c", 1), 5)
    by_layer = {(layer, stat): v for layer, _, stat, v in layers}
    per_site = []
    for i, site in enumerate(["act#0", "act#1"]):
        out = _per_sample(ref_x[i][1], ref_c[i][1])
        inp = _per_sample(ref_x[i][0], ref_c[i][0])  # the input before the in-place ReLU
        vals = {**out, **{f"in_{k}": v for k, v in inp.items()}}
        per_site.append(vals)
        for stat, v in vals.items():
            assert by_layer[(site, f"{stat}_mean")] == pytest.approx(float(v.mean()), rel=1e-5)
            assert by_layer[(site, f"{stat}_std")] == pytest.approx(float(v.std()), rel=1e-4)
    # cell level: per-sample layer average, then mean and std over samples
    for j, stat in enumerate(FLUCT_STATS):
        layer_avg = (per_site[0][stat] + per_site[1][stat]) / 2
        assert metrics[f"{stat}_mean"] == pytest.approx(float(layer_avg.mean()), rel=1e-5)
        assert metrics[f"{stat}_std"] == pytest.approx(float(layer_avg.std()), rel=1e-4)
        assert torch.allclose(avg[j].float(), layer_avg, rtol=1e-5)
    probe.detach()
    assert not any(m._forward_pre_hooks or m._forward_hooks for m in model.modules())


def test_identical_inputs_give_zero_fluctuation_and_probe_none_adds_no_hook() -> None:
    model = Shared().eval()
    x = torch.randn(3, 2, 4, 4)
    probe = ModelProbe(model, "all")
    _run(probe, model, x, x.clone())
    metrics, _ = probe.fluct_records(("c", 1), 3)
    assert metrics["fluct_l1_mean"] == 0.0 and metrics["in_fluct_l2_mean"] == 0.0
    probe.detach()
    none = ModelProbe(model, "none")
    assert none.sites == {} and not model.act._forward_hooks
    assert none.end() is None


def test_unit_means_and_saturation_of_a_bounded_activation() -> None:
    model = nn.Sequential(nn.Tanh()).eval()
    # channel 0: strongly positive (saturated at +1), channel 1: half at -1, half near 0
    x = torch.zeros(4, 2, 1, 2)
    x[:, 0] = 5.0
    x[:, 1, 0, 0] = -5.0
    probe = ModelProbe(model, "all")
    _run(probe, model, x, x, record_units=True)
    metrics, layers, units = probe.clean_records()
    u = {(stat, unit): v for _, unit, stat, v in units}
    t5 = float(torch.tanh(torch.tensor(5.0)))
    assert u[("mean", 0)] == pytest.approx(t5)
    assert u[("mean", 1)] == pytest.approx(-t5 / 2)
    assert u[("sat_pos", 0)] == 1.0 and u[("sat_neg", 0)] == 0.0
    assert u[("sat_pos", 1)] == 0.0 and u[("sat_neg", 1)] == 0.5
    assert u[("asym_sat", 0)] == 1.0 and u[("asym_sat", 1)] == 0.5
    assert metrics["abs_unit_mean"] == pytest.approx((t5 + t5 / 2) / 2)
    assert metrics["sat"] == pytest.approx(0.75)
    assert metrics["asym_sat"] == pytest.approx(0.75)
    assert "sparsity" not in metrics


def test_unbounded_activation_has_no_saturation_stats() -> None:
    model = nn.Sequential(nn.ReLU()).eval()
    probe = ModelProbe(model, "all")
    x = torch.randn(6, 3, 2, 2)
    _run(probe, model, x, x, record_units=True)
    metrics, _, units = probe.clean_records()
    assert set(metrics) == {"abs_unit_mean"}
    assert {stat for *_, stat, _ in units} == {"mean", "std"}
    assert metrics["abs_unit_mean"] == pytest.approx(float(torch.relu(x).mean(dim=(0, 2, 3)).abs().mean()))


@pytest.mark.parametrize("swapped", [False, True])
def test_post_bn_sparsity_only_in_swapped_order(swapped: bool) -> None:
    torch.manual_seed(0)
    layers = [nn.Conv2d(1, 4, 3, padding=1), nn.Tanh(), nn.BatchNorm2d(4)] if swapped else \
        [nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.Tanh()]
    model = nn.Sequential(*layers).eval()
    x = torch.randn(8, 1, 5, 5)
    probe = ModelProbe(model, "all")
    _run(probe, model, x, x, record_units=True)
    metrics, _, _ = probe.clean_records()
    if not swapped:
        assert "sparsity" not in metrics
        return
    with torch.no_grad():
        z = model(x)
    assert metrics["sparsity"] == pytest.approx(float((z.abs() < 0.1).float().mean()))


def test_fused_act_then_bn_sparsity_is_detected() -> None:
    from robustbench_act.models import build_model

    torch.manual_seed(0)
    model = build_model("cnn_small", num_classes=10, activation="tanh", order="swapped", in_chans=1).eval()
    probe = ModelProbe(model, "all")
    x = torch.randn(4, 1, 16, 16)
    _run(probe, model, x, x, record_units=True)
    _, layers, _ = probe.clean_records()
    sparse_sites = {layer for layer, _, stat, _ in layers if stat == "sparsity"}
    assert len(sparse_sites) == 4  # every conv-act-BN unit of cnn_small
