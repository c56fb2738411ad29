"""Tests for the activation registry, LayerAct, ANAct and the ``activations`` command."""

from __future__ import annotations

import importlib.metadata
import json
import math
from typing import Any

import pytest
import torch
import typer
from torch import nn
from typer.core import TyperGroup
from typer.testing import CliRunner

from robustbench_act import activations as A
from robustbench_act import layeract
from robustbench_act.activations import (
    ANAct,
    LayerAct,
    activation_bounds,
    canonical_spec,
    describe_activations,
    get_activation,
    layer_act_reference,
    list_activations,
    parse_spec,
    register_activation,
)
from robustbench_act.errors import UserError

SCALES = ("silu", "hardsilu", "gelu", "mish")


def _formula(x: torch.Tensor, scale: str, alpha: float, red: tuple[int, ...]) -> torch.Tensor:
    """LayerAct written out independently of the module (float64 reference)."""
    m = x.shape[red[0]] if len(red) == 1 else math.prod(x.shape[d] for d in red)
    mu = x.sum(dim=red, keepdim=True) / m
    var = ((x - mu) ** 2).sum(dim=red, keepdim=True) / (m - 1)
    n = (x - mu) / torch.sqrt(var + alpha)
    s = {
        "silu": lambda t: 1 / (1 + torch.exp(-t)),
        "hardsilu": lambda t: torch.where(
            t <= -3, torch.zeros_like(t), torch.where(t <= 3, t / 6 + 0.5, torch.ones_like(t))
        ),
        "gelu": lambda t: 0.5 * (1 + torch.special.erf(t / math.sqrt(2))),
        "mish": lambda t: torch.tanh(torch.log1p(torch.exp(t))),
    }[scale](n)
    return x * s


# ----------------------------------------------------------------------------- registry


@pytest.mark.parametrize("name", list_activations())
def test_every_name_builds_runs_and_is_not_inplace(name: str) -> None:
    torch.manual_seed(0)
    m = get_activation(name)
    assert isinstance(m, nn.Module)
    assert m.actbench_spec == canonical_spec(name)
    assert all(getattr(sub, "inplace", False) is False for sub in m.modules())
    x = torch.randn(2, 4, 5, 5, requires_grad=True)
    x_before = x.detach().clone()
    y = m(x)
    assert y.shape == x.shape and torch.isfinite(y).all()
    y.square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert torch.equal(x.detach(), x_before)  # input untouched
    assert get_activation(name) is not m  # fresh every time


def test_expected_names_and_aliases() -> None:
    names = set(list_activations())
    expected = [
        "relu",
        "relu6",
        "leaky_relu",
        "prelu",
        "elu",
        "celu",
        "selu",
        "gelu",
        "gelu_tanh",
        "silu",
        "swish",
        "mish",
        "hardswish",
        "hardsilu",
        "softplus",
        "sigmoid",
        "tanh",
        "lecun_tanh",
        "softsign",
        "identity",
        "la_silu",
        "la_hardsilu",
        "la_gelu",
        "la_mish",
        "an_silu",
        "an_swish",
        "an_relu",
        "an_gelu",
        "an_mish",
    ]
    assert set(expected) <= names
    assert canonical_spec("swish") == "silu"
    assert canonical_spec("hardsilu") == "hardswish"
    assert canonical_spec("an_swish") == "an_silu"
    assert isinstance(get_activation("swish"), nn.SiLU)
    assert isinstance(get_activation("hardsilu"), nn.Hardswish)
    kinds = {i.name: i.kind for i in describe_activations()}
    assert kinds["relu"] == "element" and kinds["la_silu"] == "layeract"
    assert kinds["an_silu"] == "anact"
    assert "swish" in next(i for i in describe_activations() if i.name == "silu").aliases


def test_kwargs_and_canonical_spec() -> None:
    assert parse_spec("la_silu(alpha=0.1, dims='last')") == (
        "la_silu",
        {"alpha": 0.1, "dims": "last"},
    )
    assert parse_spec("  LA-SiLU ") == ("la_silu", {})
    m = get_activation("la_silu(alpha=0.1)")
    assert isinstance(m, LayerAct) and m.alpha == 0.1 and m.dims == "sample"
    assert m.actbench_spec == "la_silu(alpha=0.1)"
    assert get_activation("la_silu(dims='last', alpha=0.1)").actbench_spec == (
        "la_silu(alpha=0.1, dims='last')"
    )
    assert canonical_spec("la_silu(alpha=1e-5)") == "la_silu"  # default dropped
    assert canonical_spec("leaky_relu(negative_slope=0)") == canonical_spec(
        "leaky_relu(negative_slope=0.0)"
    )
    lr = get_activation("leaky_relu(negative_slope=0.2)")
    assert isinstance(lr, nn.LeakyReLU) and lr.negative_slope == 0.2 and not lr.inplace
    an = get_activation("an_leaky_relu(negative_slope=0.2, momentum=0.5)")
    assert isinstance(an, ANAct) and an.momentum == 0.5 and an.base.negative_slope == 0.2
    assert an.actbench_spec == "an_leaky_relu(momentum=0.5, negative_slope=0.2)"
    assert get_activation("an_hardsilu").actbench_spec == "an_hardswish"
    assert isinstance(get_activation("an_tanh").base, nn.Tanh)
    # round trip
    for spec in ("la_gelu(alpha=0.1, dims='last')", "an_elu(alpha=0.5)", "prelu(init=0.1)"):
        assert canonical_spec(canonical_spec(spec)) == canonical_spec(spec)


@pytest.mark.parametrize(
    "spec",
    [
        "la_silu(alpha=)",
        "la_silu(os.system('x'))",
        "la_silu(alpha=__import__('os').getcwd())",
        "la_silu(**{'alpha': 1})",
        "la_silu(alpha=1, alpha=2)",
        "la_silu(alpha=1), relu(",
        "la_silu(alpha=-1)",
        "la_silu(alpha='big')",
        "la_silu(dims='middle')",
        "la_silu(beta=1)",
        "relu(inplace=True)",
        "hardtanh(min_val=2.0)",
        "an_relu(momentum=2)",
        "an_relu(nope=1)",
        "",
        "relu relu",
    ],
)
def test_bad_specs_raise_one_line_user_error(spec: str) -> None:
    with pytest.raises(UserError) as info:
        get_activation(spec)
    assert "\n" not in str(info.value)


def test_unknown_name_suggests_closest() -> None:
    with pytest.raises(UserError, match="closest: la_silu"):
        get_activation("la_sillu")
    with pytest.raises(UserError, match="unknown activation 'an_nothing'"):
        get_activation("an_nothing")
    with pytest.raises(UserError, match="unknown activation"):
        get_activation("an_la_silu")  # only element-level bases


def test_lecun_tanh_and_bounds() -> None:
    x = torch.linspace(-6, 6, 101, dtype=torch.float64)
    m = get_activation("lecun_tanh")
    torch.testing.assert_close(m(x), 1.7159 * torch.tanh(2 * x / 3), rtol=0, atol=1e-12)
    assert activation_bounds(m) == (-1.7159, 1.7159)
    assert activation_bounds(get_activation("tanh")) == (-1.0, 1.0)
    assert activation_bounds(get_activation("softsign")) == (-1.0, 1.0)
    assert activation_bounds(get_activation("sigmoid")) == (0.0, 1.0)
    assert activation_bounds(get_activation("hardtanh(min_val=-2, max_val=3)")) == (-2.0, 3.0)
    assert activation_bounds(nn.Tanh()) == (-1.0, 1.0)
    assert activation_bounds(nn.Sigmoid()) == (0.0, 1.0)
    assert activation_bounds(nn.Hardsigmoid()) == (0.0, 1.0)
    assert activation_bounds(nn.ReLU6()) == (0.0, 6.0)
    from timm.layers import activations as timm_act

    assert activation_bounds(timm_act.Tanh()) == (-1.0, 1.0)
    assert activation_bounds(timm_act.Sigmoid()) == (0.0, 1.0)
    for unbounded in ("relu", "silu", "gelu", "la_silu", "an_silu", "identity"):
        assert activation_bounds(get_activation(unbounded)) is None
    an = get_activation("an_tanh")
    an.factor.fill_(2.0)
    assert activation_bounds(an) == (-2.0, 2.0)
    info = {i.name: i for i in describe_activations()}
    assert info["tanh"].bounds == (-1.0, 1.0) and info["relu"].bounds is None


def test_register_activation_decorator() -> None:
    @register_activation("test_cube_act", kind="element", description="x^3", bounds=None)
    class Cube(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x**3

    try:
        assert "test_cube_act" in list_activations()
        assert isinstance(get_activation("test_cube_act"), Cube)
        assert isinstance(get_activation("an_test_cube_act").base, Cube)
        with pytest.raises(ValueError, match="already registered"):
            register_activation("relu", kind="element", description="dup")(nn.ReLU)
        with pytest.raises(ValueError, match="kind"):
            register_activation("test_x", kind="weird", description="")
    finally:
        A._REGISTRY.pop("test_cube_act", None)


# ----------------------------------------------------------------------------- entry points


class _PluginAct(nn.Module):
    """Plugin activation: x * 2."""

    actbench_bounds = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 2 * x


def _broken_factory() -> nn.Module:
    raise RuntimeError("never called")


def test_entry_point_discovery(monkeypatch: pytest.MonkeyPatch) -> None:
    eps = [
        importlib.metadata.EntryPoint(
            name="plugin_double", value=f"{__name__}:_PluginAct", group=A.ENTRY_POINT_GROUP
        ),
        importlib.metadata.EntryPoint(
            name="plugin_broken", value="no_such_module_xyz:thing", group=A.ENTRY_POINT_GROUP
        ),
    ]
    calls: list[str] = []

    def fake_entry_points(*, group: str) -> list[importlib.metadata.EntryPoint]:
        calls.append(group)
        return eps if group == A.ENTRY_POINT_GROUP else []

    monkeypatch.setattr(importlib.metadata, "entry_points", fake_entry_points)
    A.refresh_entry_points()
    try:
        names = list_activations()
        assert "plugin_double" in names and "plugin_broken" in names
        assert get_activation("relu") is not None  # a broken plugin does not block others
        m = get_activation("plugin_double")
        assert isinstance(m, _PluginAct) and m.actbench_spec == "plugin_double"
        assert isinstance(get_activation("an_plugin_double").base, _PluginAct)
        with pytest.raises(UserError, match="plugin_broken.*no_such_module_xyz"):
            get_activation("plugin_broken")
        with pytest.raises(UserError, match="plugin_broken"):
            describe_activations()
        assert calls == [A.ENTRY_POINT_GROUP]  # discovered once, lazily
    finally:
        monkeypatch.undo()
        A.refresh_entry_points()
    assert "plugin_double" not in list_activations()


# ----------------------------------------------------------------------------- LayerAct


@pytest.fixture(params=["eager", "inductor", "cpp"])
def la_kernel(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the test on one of LayerAct's CPU kernels (the suite's default is eager)."""
    monkeypatch.setenv("ACTBENCH_LAYERACT_KERNEL", request.param)
    assert layeract.cpu_kernel() == request.param
    return request.param


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("dims", ["sample", "last"])
def test_layeract_forward_matches_formula_and_gradcheck(scale: str, dims: str, la_kernel: str) -> None:
    g = torch.Generator().manual_seed(1)
    x = (torch.randn(3, 4, 3, 5, generator=g, dtype=torch.float64) * 2 + 0.5).requires_grad_()
    m = get_activation(f"la_{scale}(dims={dims!r}, alpha=0.01)")
    red = (1, 2, 3) if dims == "sample" else (3,)
    torch.testing.assert_close(m(x), _formula(x, scale, 0.01, red), rtol=1e-12, atol=1e-12)
    assert torch.autograd.gradcheck(m, (x,), eps=1e-6, atol=1e-7)
    # also the exact gradient of the autograd reference, on a larger (non-gradcheck) input
    xr = torch.randn(4, 6, 7, 7, generator=g, dtype=torch.float64, requires_grad=True)
    gout = torch.randn(4, 6, 7, 7, generator=g, dtype=torch.float64)
    (gx,) = torch.autograd.grad(m(xr), xr, gout)
    (gr,) = torch.autograd.grad(layer_act_reference(xr, scale, 0.01, dims), xr, gout)
    torch.testing.assert_close(gx, gr, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("shape", [(3, 8), (3, 6, 5), (3, 4, 5, 5)])
def test_layeract_shapes_and_sample_independence(shape: tuple[int, ...], la_kernel: str) -> None:
    torch.manual_seed(2)
    m = get_activation("la_silu")
    x = torch.randn(*shape, dtype=torch.float64)
    x[1:] *= 50  # other samples on a very different scale
    batched = m(x)
    alone = m(x[:1])
    assert batched.shape == x.shape
    torch.testing.assert_close(batched[:1], alone, rtol=0, atol=1e-14)
    if len(shape) == 3:
        mlast = get_activation("la_silu(dims='last')")
        torch.testing.assert_close(mlast(x)[:, :1], mlast(x[:, :1]), rtol=0, atol=1e-14)


def test_layeract_train_eval_same_and_no_state() -> None:
    m = get_activation("la_gelu")
    assert list(m.parameters()) == [] and list(m.buffers()) == []
    x = torch.randn(4, 3, 6, 6)
    y_train = m.train()(x)
    torch.testing.assert_close(m.eval()(x), y_train, rtol=0, atol=0)


def test_layeract_channels_last(la_kernel: str) -> None:
    torch.manual_seed(3)
    m = get_activation("la_mish")
    x = torch.randn(2, 8, 5, 5)
    xcl = x.clone().to(memory_format=torch.channels_last).requires_grad_()
    xc = x.clone().requires_grad_()
    ycl, yc = m(xcl), m(xc)
    torch.testing.assert_close(ycl, yc, rtol=1e-6, atol=1e-6)
    gout = torch.randn_like(yc)
    ycl.backward(gout)
    yc.backward(gout)
    torch.testing.assert_close(xcl.grad, xc.grad, rtol=1e-5, atol=1e-6)


def test_layeract_bf16_autocast_uses_fp32_statistics(la_kernel: str) -> None:
    g = torch.Generator().manual_seed(4)
    # a large common offset: bf16 statistics would lose the per-sample spread entirely
    x32 = torch.randn(4, 8, 6, 6, generator=g) * 0.05 + 40.0
    xb = x32.to(torch.bfloat16)
    m = get_activation("la_silu")
    ref = layer_act_reference(xb.double(), "silu", 1e-5, "sample")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = m(xb)
    assert out.dtype == torch.bfloat16
    # fp32 statistics: the only error left is the final rounding to bf16 (half an ulp)
    tol = ref.abs() * 2.0**-8 + 1e-6
    assert ((out.double() - ref).abs() <= tol).all()
    # the same formula computed in bf16 breaks that bound, so this test can fail
    naive = layer_act_reference(xb, "silu", 1e-5, "sample")
    assert ((naive.double() - ref).abs() > 2 * tol).any()
    # gradient flows back in the input dtype
    xg = xb.clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        m(xg).float().sum().backward()
    assert xg.grad is not None and xg.grad.dtype == torch.bfloat16


@pytest.mark.parametrize("scale", SCALES)
def test_layeract_cpu_chunks_match_the_whole_tensor(
    scale: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The chunk-by-chunk CPU kernel (2 samples per chunk here) computes the same function."""
    g = torch.Generator().manual_seed(5)
    cases = [
        ("sample", torch.randn(5, 4, 3, 3, generator=g, dtype=torch.float64) * 3 + 1),
        ("last", torch.randn(5, 3, 6, generator=g, dtype=torch.float64) * 3 - 1),
        ("sample", torch.randn(5, 4, 3, 3, generator=g).to(memory_format=torch.channels_last)),
    ]
    for dims, x in cases:
        m = get_activation(f"la_{scale}(dims={dims!r}, alpha=0.01)")
        gout = torch.randn(x.shape, generator=g, dtype=x.dtype)
        results = []
        for chunk in (10**9, 2 * x[0].numel()):
            monkeypatch.setattr(layeract, "CHUNK_ELEMENTS", chunk)
            xr = x.clone().requires_grad_()
            y = m(xr)
            y.backward(gout)
            results.append((y, xr.grad))
        tol = 1e-13 if x.dtype == torch.float64 else 1e-6
        torch.testing.assert_close(results[1], results[0], rtol=tol, atol=tol)
        assert results[1][0].stride() == results[0][0].stride()
    monkeypatch.setattr(layeract, "CHUNK_ELEMENTS", 4 * 3 * 3)  # one sample per chunk
    x = cases[0][1][:3].clone().requires_grad_()
    assert torch.autograd.gradcheck(get_activation(f"la_{scale}(alpha=0.01)"), (x,), eps=1e-6,
                                    atol=1e-7)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        xb = cases[0][1].to(torch.bfloat16).requires_grad_()
        yb = get_activation(f"la_{scale}")(xb)
        yb.float().sum().backward()
    assert yb.dtype == torch.bfloat16 and xb.grad is not None and xb.grad.dtype == torch.bfloat16


@pytest.mark.parametrize("scale", SCALES)
def test_layeract_inductor_kernel_matches_eager_chunk_by_chunk(
    scale: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The compiled CPU kernel (3 calls here, the last one shorter) agrees with the eager one."""
    g = torch.Generator().manual_seed(6)
    x = torch.randn(5, 6, 4, 4, generator=g) * 2 + 0.3
    gout = torch.randn(x.shape, generator=g)
    monkeypatch.setattr(layeract, "INDUCTOR_CHUNK_ELEMENTS", 2 * x[0].numel())
    m = get_activation(f"la_{scale}")
    results = {}
    for kernel, layout in [(k, f) for k in ("eager", "inductor")
                           for f in (torch.contiguous_format, torch.channels_last)]:  # fmt: skip
        monkeypatch.setenv("ACTBENCH_LAYERACT_KERNEL", kernel)
        compiled_before = layeract._compiled.cache_info().currsize
        xr = x.clone().to(memory_format=layout).requires_grad_()
        y = m(xr)
        y.backward(gout)
        assert y.stride() == xr.stride() and xr.grad.stride() == xr.stride()
        compiled = layeract._compiled.cache_info().currsize - compiled_before
        assert compiled == (4 if kernel == "inductor" else 0)  # 2 chunk shapes x fwd/bwd
        results[kernel, layout] = (y, xr.grad)
    for layout in (torch.contiguous_format, torch.channels_last):
        torch.testing.assert_close(results["inductor", layout], results["eager", layout],
                                   rtol=2e-6, atol=2e-6)  # fmt: skip


def test_layeract_kernel_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    """auto = cpp when a C++ compiler is there; a bad or unusable choice is a UserError."""
    monkeypatch.setenv("ACTBENCH_LAYERACT_KERNEL", "auto")
    assert layeract.cpu_kernel() == ("cpp" if layeract._cpp_compiler() else "eager")
    monkeypatch.setattr(layeract, "_cpp_compiler", lambda: None)
    assert layeract.cpu_kernel() == "eager"
    for kernel in ("inductor", "cpp"):
        monkeypatch.setenv("ACTBENCH_LAYERACT_KERNEL", kernel)
        with pytest.raises(UserError, match=f"{kernel} needs a C\\+\\+ compiler"):
            layeract.cpu_kernel()
    monkeypatch.setenv("ACTBENCH_LAYERACT_KERNEL", "inductr")
    with pytest.raises(UserError, match="closest: inductor .valid: auto, cpp, inductor, eager"):
        layeract.cpu_kernel()


@pytest.mark.parametrize("scale", SCALES)
def test_layeract_cpp_kernel_matches_eager(scale: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The per-sample C++ kernel agrees with the eager one: dtypes, layouts, dims, odd strides."""
    g = torch.Generator().manual_seed(7)
    base = torch.randn(5, 6, 4, 4, generator=g) * 2 + 0.3
    cases = [  # (dims, x, output gradient)
        ("sample", base, torch.randn(base.shape, generator=g)),
        ("sample", base.to(memory_format=torch.channels_last), torch.randn(base.shape, generator=g)),
        ("sample", base.double(), torch.randn(base.shape, generator=g, dtype=torch.float64)),
        ("sample", base.to(torch.bfloat16), torch.randn(base.shape, generator=g).to(torch.bfloat16)),
        ("last", base[:, :, 1:], torch.randn(5, 6, 3, 4, generator=g)),  # not contiguous
        # an output gradient whose strides differ from x's (broadcast from one sample)
        ("sample", base, torch.randn(1, 6, 4, 4, generator=g).expand(5, 6, 4, 4)),
    ]
    for dims, x, gout in cases:
        m = get_activation(f"la_{scale}(dims={dims!r}, alpha=0.01)")
        results = {}
        for kernel in ("eager", "cpp"):
            monkeypatch.setenv("ACTBENCH_LAYERACT_KERNEL", kernel)
            xr = x.clone().requires_grad_() if x.is_contiguous() or dims == "sample" else \
                x.detach().requires_grad_()
            y = m(xr)
            y.backward(gout)
            results[kernel] = (y, xr.grad)
            if dims == "sample":  # the output and gradient keep x's layout
                assert y.stride() == xr.stride() and xr.grad.stride() == xr.stride()
        tol = {torch.float64: 1e-13, torch.bfloat16: 2e-2}.get(x.dtype, 2e-6)
        torch.testing.assert_close(results["cpp"], results["eager"], rtol=tol, atol=tol)


def test_layeract_cpp_kernel_runs_and_reports_a_failed_build(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The cpp kernel really runs (its library is loaded); a compiler that fails is a UserError."""
    from robustbench_act import layeract_cpp

    monkeypatch.setenv("ACTBENCH_LAYERACT_KERNEL", "cpp")
    if layeract._cpp_compiler() is None:
        pytest.skip("no C++ compiler")
    calls = []
    real = layeract_cpp.forward
    monkeypatch.setattr(layeract_cpp, "forward", lambda *a, **k: calls.append(1) or real(*a, **k))
    get_activation("la_silu")(torch.randn(2, 3, 4, 4))
    assert calls == [1]
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    with pytest.raises(UserError, match="building LayerAct's C\\+\\+ CPU kernel with /bin/false failed"):
        layeract_cpp.library("/bin/false")
    assert not list(tmp_path.rglob("*.so"))  # nothing half-built left in the cache
    # a cache folder that cannot be made: one line naming it and the way out
    (tmp_path / "not-a-folder").write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "not-a-folder"))
    layeract_cpp.library.cache_clear()
    try:
        with pytest.raises(UserError, match="cannot build LayerAct's C\\+\\+ CPU kernel in .*XDG_CACHE_HOME"):
            layeract_cpp.library(str(layeract._cpp_compiler()))
    finally:
        layeract_cpp.library.cache_clear()


def test_layeract_traces_without_graph_breaks() -> None:
    """torch.compile of a model with LayerAct keeps one graph (forward and backward)."""
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), get_activation("la_silu"), torch.nn.Flatten(),
        torch.nn.Linear(4 * 6 * 6, 2), get_activation("la_gelu(dims='last')"),
    )
    torch._dynamo.reset()
    explanation = torch._dynamo.explain(model)(torch.randn(2, 3, 8, 8))
    assert explanation.graph_break_count == 0, explanation.break_reasons
    assert explanation.graph_count == 1


def test_layeract_saves_less_than_autograd_reference() -> None:
    x = torch.randn(8, 16, 16, 16, requires_grad=True)

    def saved_bytes(fn) -> int:
        seen: dict[int, int] = {}

        def pack(t: torch.Tensor) -> torch.Tensor:
            st = t.untyped_storage()
            seen[st.data_ptr()] = st.nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            fn(x)
        return sum(seen.values())

    custom = saved_bytes(get_activation("la_silu"))
    naive = saved_bytes(lambda t: layer_act_reference(t, "silu"))
    assert custom < 1.1 * x.numel() * 4  # the input plus a few per-sample scalars
    assert naive >= 2 * x.numel() * 4


# ----------------------------------------------------------------------------- ANAct


def test_anact_factor_formula_train_update_and_eval_frozen() -> None:
    x = torch.tensor([[-2.0, -1.0, 0.5, 1.0], [2.0, 3.0, -0.5, 0.0]])
    m = get_activation("an_relu")
    assert isinstance(m, ANAct) and "factor" in m.state_dict()
    assert float(m.factor) == 1.0
    relu = torch.relu(x)
    rho = relu.pow(2).mean() / x.pow(2).mean()
    rho_p = (x > 0).float().mean()  # relu'(x)^2
    lam = float((rho * rho_p) ** -0.25)
    m.train()
    y = m(x)
    torch.testing.assert_close(y, lam * relu)  # training uses the batch lambda
    assert float(m.factor) == pytest.approx(0.9 + 0.1 * lam, rel=1e-6)
    m(x)
    assert float(m.factor) == pytest.approx(0.9 * (0.9 + 0.1 * lam) + 0.1 * lam, rel=1e-6)
    frozen = float(m.factor)
    m.eval()
    y_eval = m(x * 3)
    assert float(m.factor) == frozen
    torch.testing.assert_close(y_eval, frozen * torch.relu(x * 3))
    # state dict round trip
    m2 = get_activation("an_relu")
    m2.load_state_dict(m.state_dict())
    assert float(m2.factor) == frozen


def test_anact_silu_uses_derivative_and_gradients() -> None:
    torch.manual_seed(5)
    x = torch.randn(16, 3, 4, 4, requires_grad=True)
    m = get_activation("an_silu(momentum=1.0)").train()
    y = m(x)
    xd = x.detach()
    s = torch.sigmoid(xd)
    f, df = xd * s, s * (1 + xd * (1 - s))
    lam = float(((f.pow(2).mean() / xd.pow(2).mean()) * df.pow(2).mean()) ** -0.25)
    assert float(m.factor) == pytest.approx(lam, rel=1e-5)
    y.sum().backward()  # no gradient through lambda: d/dx = lambda * f'(x)
    torch.testing.assert_close(x.grad, lam * df, rtol=1e-5, atol=1e-6)


def test_anact_degenerate_batch_keeps_factor() -> None:
    m = get_activation("an_relu").train()
    m.factor.fill_(1.5)
    y = m(-torch.ones(4, 3))  # relu is 0 everywhere: rho = 0
    assert torch.isfinite(y).all() and float(m.factor) == pytest.approx(1.5)
    with pytest.raises(UserError):
        ANAct(42)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- CLI


def _invoke(args: list[str]) -> Any:
    from robustbench_act.cli import app

    # A Typer app with a single command and no callback runs that command directly.
    prefix = ["activations"] if isinstance(typer.main.get_command(app), TyperGroup) else []
    return CliRunner().invoke(app, prefix + args)


def test_cli_table_and_json() -> None:
    res = _invoke([])
    assert res.exit_code == 0, res.output
    for name in ("la_silu", "lecun_tanh", "an_silu", "relu"):
        assert name in res.output
    res = _invoke(["--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)
    by_name = {r["name"]: r for r in rows}
    assert by_name["tanh"]["bounds"] == [-1.0, 1.0]
    assert by_name["silu"]["aliases"] == ["swish"]
    assert by_name["la_silu"]["kind"] == "layeract"
    assert len(rows) == len(describe_activations())
    res = _invoke(["--json", "--kind", "anact"])
    assert {r["kind"] for r in json.loads(res.output)} == {"anact"}
    res = _invoke(["--kind", "bogus"])  # a user error: one line, exit 2 (also under CliRunner)
    assert res.exit_code == 2 and res.stderr.startswith("error: unknown activation kind 'bogus'"), res.output


@pytest.mark.parametrize("scale", ["silu", "mish"])
def test_layeract_cpp_kernel_keeps_relative_accuracy_in_the_tails(scale: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where s(n) is tiny (n down to -15.9) float32 outputs keep float32's relative precision."""
    monkeypatch.setenv("ACTBENCH_LAYERACT_KERNEL", "cpp")
    if layeract._cpp_compiler() is None:
        pytest.skip("no C++ compiler")
    x = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(3), dtype=torch.float64) * 0.1
    x.view(2, -1)[:, :8] = torch.tensor([-0.5, -1.0, -1.5, -2.0, -3.0, 0.5, 1.0, 3.0], dtype=torch.float64)
    m = get_activation(f"la_{scale}")
    monkeypatch.setenv("ACTBENCH_LAYERACT_KERNEL", "eager")
    ref = m(x)  # float64 reference
    monkeypatch.setenv("ACTBENCH_LAYERACT_KERNEL", "cpp")
    out = m(x.float()).double()
    n = (x - x.mean(dim=(1, 2, 3), keepdim=True)) / x.std(dim=(1, 2, 3), keepdim=True)
    assert n.min() < -15  # the tail is reached
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=0.0)


def test_layeract_cpp_kernel_bits_do_not_depend_on_the_thread_count(monkeypatch: pytest.MonkeyPatch) -> None:
    """Samples are independent, so 1 and 2 threads give the same forward and backward bits."""
    monkeypatch.setenv("ACTBENCH_LAYERACT_KERNEL", "cpp")
    if layeract._cpp_compiler() is None:
        pytest.skip("no C++ compiler")
    x = torch.randn(6, 5, 7, 7, generator=torch.Generator().manual_seed(0))
    before = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            xx = x.clone().requires_grad_(True)
            y = get_activation("la_gelu")(xx)
            y.backward(torch.ones_like(y))
            results.append((y.detach(), xx.grad))
    finally:
        torch.set_num_threads(before)
    assert all(torch.equal(a, b) for a, b in zip(*results))
