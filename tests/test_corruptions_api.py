"""API, determinism and batch-independence tests of the standalone ``corruptions`` package."""

from __future__ import annotations

import dataclasses
import types

import pytest
import torch

import corruptions
from corruptions import registry
from corruptions.rng import SampleRNG

ALL = [
    "gaussian_noise", "shot_noise", "impulse_noise",
    "defocus_blur", "glass_blur", "motion_blur", "zoom_blur",
    "snow", "frost", "fog", "brightness",
    "contrast", "elastic_transform", "pixelate", "jpeg_compression",
    "speckle_noise", "gaussian_blur", "spatter", "saturate",
]  # fmt: skip
GROUPS = {
    "noise": ["gaussian_noise", "shot_noise", "impulse_noise"],
    "blur": ["defocus_blur", "glass_blur", "motion_blur", "zoom_blur"],
    "weather": ["snow", "frost", "fog", "brightness"],
    "digital": ["contrast", "elastic_transform", "pixelate", "jpeg_compression"],
}


def _images(n: int = 8, c: int = 3, h: int = 32, w: int = 32, seed: int = 0) -> torch.Tensor:
    """Smooth-ish random uint8 images (a few octaves of noise), reproducible."""
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(n, c, h // 4, w // 4, generator=g)
    x = torch.nn.functional.interpolate(base, size=(h, w), mode="bilinear", align_corners=False)
    x = 0.8 * x + 0.2 * torch.rand(n, c, h, w, generator=g)
    return (x * 255).round().clamp(0, 255).to(torch.uint8)


@pytest.fixture
def clean_registry():
    """Restore the registry (and the entry-point flag) after a test that registers things."""
    corruptions.names()  # make sure the built-ins are loaded before the snapshot
    saved = dict(registry._REGISTRY)
    saved_flag = registry._ENTRY_POINTS_LOADED
    yield
    registry._REGISTRY.clear()
    registry._REGISTRY.update(saved)
    registry._ENTRY_POINTS_LOADED = saved_flag


# --------------------------------------------------------------------------- names


def test_names_all_in_canonical_order():
    assert corruptions.names() == ALL
    assert corruptions.names("all") == ALL


def test_names_subsets():
    assert corruptions.names("common") == ALL[:15]
    assert corruptions.names("extra") == ["speckle_noise", "gaussian_blur", "spatter", "saturate"]
    for group, members in GROUPS.items():
        assert corruptions.names(group) == members
    for name in corruptions.names("extra"):
        assert corruptions.get(name).group == "extra"
    assert corruptions.names("plugins") == []
    assert corruptions.names("contrast,pixelate") == ["contrast", "pixelate"]


def test_every_builtin_has_three_presets_of_five_rows():
    for name in ALL:
        c = corruptions.get(name)
        assert set(c.presets) >= {"cifar", "tinyimagenet", "imagenet"}, name
        for table in c.presets.values():
            assert len(table) == 5
            for row in table:
                assert set(row) == set(c.param_names)


def test_documented_parameter_names():
    expected = {
        "gaussian_noise": ("sigma",), "shot_noise": ("lam",), "impulse_noise": ("amount",),
        "speckle_noise": ("sigma",), "gaussian_blur": ("sigma",),
        "defocus_blur": ("radius", "alias_sigma"), "zoom_blur": ("zooms",),
        "glass_blur": ("sigma", "max_delta", "iterations"), "contrast": ("factor",),
        "brightness": ("delta",), "saturate": ("scale", "shift"), "pixelate": ("scale",),
        "jpeg_compression": ("quality",), "elastic_transform": ("alpha", "sigma", "affine"),
    }  # fmt: skip
    for name, params in expected.items():
        assert corruptions.get(name).param_names == params


def test_exact_tables_spot_checks():
    p = corruptions.get("gaussian_noise").params
    assert [p(s, "cifar")["sigma"] for s in range(1, 6)] == [0.04, 0.06, 0.08, 0.09, 0.10]
    assert [p(s, "imagenet")["sigma"] for s in range(1, 6)] == [0.08, 0.12, 0.18, 0.26, 0.38]
    q = corruptions.get("jpeg_compression").params
    assert [q(s, "tinyimagenet")["quality"] for s in range(1, 6)] == [65, 58, 50, 40, 25]
    g = corruptions.get("glass_blur").params(5, "imagenet")
    assert (g["sigma"], g["max_delta"], g["iterations"]) == (1.5, 4, 2)
    e = corruptions.get("elastic_transform").params(5, "tinyimagenet")
    assert (e["alpha"], e["sigma"], e["affine"]) == (0.16, 0.03, 0.02)
    # ImageNet's elastic rows are the script's 244-multiples expressed per 224 px
    e = corruptions.get("elastic_transform").params(1, "imagenet")
    assert e["alpha"] * 224 == pytest.approx(488.0)
    assert e["sigma"] * 224 == pytest.approx(244 * 0.7)


# --------------------------------------------------------------------------- apply basics


@pytest.mark.parametrize("name", ALL)
def test_uint8_and_float_keep_dtype_shape_device(name):
    x = _images(2)
    out = corruptions.apply(x, name, 3)
    assert out.dtype == torch.uint8 and out.shape == x.shape and out.device == x.device
    xf = x.float() / 255
    outf = corruptions.apply(xf, name, 3)
    assert outf.dtype == torch.float32 and outf.shape == x.shape
    assert float(outf.min()) >= 0.0 and float(outf.max()) <= 1.0
    # float results are the uint8 levels / 255
    assert torch.equal(outf, out.float() / 255)


@pytest.mark.parametrize("name", ALL)
def test_grey_input(name):
    x = _images(2, c=1)
    out = corruptions.apply(x, name, 2)
    assert out.shape == x.shape and out.dtype == torch.uint8


def test_float64_input():
    x = _images(2).double() / 255
    out = corruptions.apply(x, "gaussian_blur", 2)
    assert out.dtype == torch.float64 and out.shape == x.shape


@pytest.mark.parametrize("name", ALL)
def test_deterministic_and_batch_independent(name):
    x = _images(8)
    full = corruptions.apply(x, name, 4, seed=7)
    again = corruptions.apply(x, name, 4, seed=7)
    assert torch.equal(full, again), "same call twice must be bit-identical"
    head = corruptions.apply(x[:3], name, 4, seed=7)
    tail = corruptions.apply(x[3:], name, 4, seed=7, indices=range(3, 8))
    assert torch.equal(torch.cat([head, tail]), full), "result must not depend on the batch"


@pytest.mark.parametrize("name", ALL)
def test_cpu_chunks_give_the_whole_batch_result(name, clean_registry, monkeypatch):
    """apply's chunk-by-chunk CPU path (3 samples per call here) changes no value."""
    monkeypatch.setattr(registry, "MIN_CHUNK_SAMPLES", 1)
    x = _images(8)
    c = corruptions.get(name)
    registry._REGISTRY[name] = dataclasses.replace(c, chunk_values=None)
    whole = corruptions.apply(x, name, 4, seed=7, indices=range(5, 13))
    whole_f = corruptions.apply(x.float() / 255, name, 4, seed=7, quantize=False)
    registry._REGISTRY[name] = dataclasses.replace(c, chunk_values=3 * 3 * 32 * 32)
    assert torch.equal(corruptions.apply(x, name, 4, seed=7, indices=range(5, 13)), whole)
    assert torch.equal(corruptions.apply(x.float() / 255, name, 4, seed=7, quantize=False), whole_f)


def test_plugins_run_on_the_whole_batch_unless_they_ask_for_chunks(clean_registry, monkeypatch):
    monkeypatch.setattr(registry, "MIN_CHUNK_SAMPLES", 1)
    calls = []

    def noisy(images, params, rng):
        calls.append(images.shape[0])
        return images + 0.1 * rng.uniform(*images.shape[1:])

    corruptions.register("tmp_whole", group="extra", presets=[1, 2, 3, 4, 5])(noisy)
    corruptions.register(
        "tmp_chunked", group="extra", presets=[1, 2, 3, 4, 5], chunk_values=2 * 3 * 8 * 8
    )(noisy)
    x = _images(5, h=8, w=8)
    whole = corruptions.apply(x, "tmp_whole", 1)
    assert calls == [5]
    calls.clear()
    chunked = corruptions.apply(x, "tmp_chunked", 1)
    assert calls == [2, 2, 1]
    # the name keys the streams: same per-sample noise relation, different draws
    assert not torch.equal(whole, chunked)
    assert torch.equal(chunked, torch.cat([corruptions.apply(x[i : i + 1], "tmp_chunked", 1,
                                                             indices=[i]) for i in range(5)]))
    monkeypatch.setattr(registry, "MIN_CHUNK_SAMPLES", 4)  # large images: a floor on samples
    calls.clear()
    assert torch.equal(corruptions.apply(x, "tmp_chunked", 1), chunked) and calls == [4, 1]
    with pytest.raises(corruptions.CorruptionError, match="chunk_values"):
        corruptions.register("tmp_bad", group="extra", presets=[1, 2, 3, 4, 5], chunk_values=0)


@pytest.mark.parametrize("name", [n for n in ALL if n not in ("pixelate", "jpeg_compression")])
def test_changes_the_image(name):
    x = _images(4)
    assert not torch.equal(corruptions.apply(x, name, 5), x)


@pytest.mark.parametrize("name", ALL)
def test_seed_changes_random_ones(name):
    c = corruptions.get(name)
    x = _images(4)
    a = corruptions.apply(x, name, 4, seed=1)
    b = corruptions.apply(x, name, 4, seed=2)
    if c.random:
        assert not torch.equal(a, b)
    else:
        assert torch.equal(a, b)


def test_deterministic_ones_are_flagged():
    deterministic = {n for n in ALL if not corruptions.get(n).random}
    assert {
        "gaussian_blur",
        "defocus_blur",
        "zoom_blur",
        "contrast",
        "brightness",
        "saturate",
        "pixelate",
        "jpeg_compression",
    } <= deterministic
    assert not deterministic & {
        "gaussian_noise",
        "shot_noise",
        "impulse_noise",
        "speckle_noise",
        "glass_blur",
        "elastic_transform",
    }


# --------------------------------------------------------------------------- parametric use


def test_parametric_gaussian_noise():
    x = _images(4)
    out = corruptions.apply(x, "gaussian_noise", params={"sigma": 0.15})
    assert out.shape == x.shape
    assert torch.equal(out, corruptions.apply(x, "gaussian_noise", params={"sigma": 0.15}))
    for s in range(1, 6):
        assert not torch.equal(out, corruptions.apply(x, "gaussian_noise", s))
    # stronger noise, bigger change
    small = corruptions.apply(x, "gaussian_noise", params={"sigma": 0.02})
    change = lambda y: (y.float() - x.float()).abs().mean()  # noqa: E731
    assert change(out) > 3 * change(small)


def test_parametric_gaussian_blur_and_shot_noise():
    x = _images(4)
    a = corruptions.apply(x, "gaussian_blur", params={"sigma": 2.5})
    b = corruptions.apply(x, "gaussian_blur", params={"sigma": 1.0})
    assert corruptions.apply(x, "gaussian_blur", params={"sigma": 1.0}).equal(
        corruptions.apply(x, "gaussian_blur", 5)
    )
    assert (a.float().std() < b.float().std()) and not torch.equal(a, b)
    s = corruptions.apply(x, "shot_noise", params={"lam": 20})
    assert s.shape == x.shape and not torch.equal(s, x)
    # a severity with an override of one parameter
    o = corruptions.apply(x, "glass_blur", 2, params={"iterations": 3})
    assert o.shape == x.shape


def test_parametric_errors():
    x = _images(1)
    with pytest.raises(corruptions.CorruptionError, match="no parameter"):
        corruptions.apply(x, "gaussian_noise", params={"sigmaa": 0.1})
    with pytest.raises(corruptions.CorruptionError, match="quality"):
        corruptions.apply(x, "jpeg_compression", params={"quality": 0})
    with pytest.raises(corruptions.CorruptionError, match="lam"):
        corruptions.apply(x, "shot_noise", params={"lam": -1})
    with pytest.raises(corruptions.CorruptionError, match="needs parameter"):
        corruptions.apply(x, "glass_blur", params={"sigma": 1.0})


# --------------------------------------------------------------------------- errors


def _one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert "\n" not in msg and msg
    return msg


def test_unknown_name_hints_closest():
    with pytest.raises(corruptions.CorruptionError) as e:
        corruptions.apply(_images(1), "gausian_noise", 1)
    assert "gaussian_noise" in _one_line(e)
    with pytest.raises(corruptions.CorruptionError) as e:
        corruptions.get("pixelat")
    assert "pixelate" in _one_line(e)


@pytest.mark.parametrize("severity", [0, 6, 2.5, True, "3"])
def test_bad_severity(severity):
    with pytest.raises(corruptions.CorruptionError) as e:
        corruptions.apply(_images(1), "contrast", severity)
    assert "severity" in _one_line(e)


@pytest.mark.parametrize(
    ("images", "needle"),
    [
        (torch.zeros(3, 32, 32, dtype=torch.uint8), "shape"),
        (torch.zeros(1, 2, 32, 32, dtype=torch.uint8), "channels"),
        (torch.zeros(1, 3, 32, 32, dtype=torch.int32), "int32"),
        ([[0]], "torch.Tensor"),
    ],
)
def test_bad_images(images, needle):
    with pytest.raises(corruptions.CorruptionError) as e:
        corruptions.apply(images, "contrast", 1)
    assert needle in _one_line(e)


def test_bad_indices_and_preset():
    with pytest.raises(corruptions.CorruptionError) as e:
        corruptions.apply(_images(3), "gaussian_noise", 1, indices=[0, 1])
    assert "indices" in _one_line(e)
    with pytest.raises(corruptions.CorruptionError) as e:
        corruptions.apply(_images(1), "contrast", 1, preset="cifr")
    assert "cifar" in _one_line(e)


def test_empty_batch():
    x = torch.zeros(0, 3, 32, 32, dtype=torch.uint8)
    assert corruptions.apply(x, "gaussian_noise", 1).shape == x.shape


# --------------------------------------------------------------------------- presets


def test_preset_auto_choice_and_override():
    assert corruptions.preset_for_size(32, 32) == "cifar"
    assert corruptions.preset_for_size(64, 64) == "tinyimagenet"
    assert corruptions.preset_for_size(224, 224) == "imagenet"
    for size, factor in [(32, 0.75), (64, 0.4), (224, 0.4)]:
        x = _images(1, h=size, w=size)
        assert torch.equal(
            corruptions.apply(x, "contrast", 1),
            corruptions.apply(x, "contrast", params={"factor": factor}),
        )
    x = _images(1, h=64, w=64)
    assert torch.equal(
        corruptions.apply(x, "contrast", 1, preset="cifar"),
        corruptions.apply(x, "contrast", params={"factor": 0.75}),
    )
    # jpeg differs by preset: cifar q=80 vs tinyimagenet q=65 on the same image
    assert not torch.equal(
        corruptions.apply(x, "jpeg_compression", 1),
        corruptions.apply(x, "jpeg_compression", 1, preset="cifar"),
    )


def test_non_square_images():
    x = _images(2, h=40, w=24)
    for name in [
        "zoom_blur",
        "glass_blur",
        "elastic_transform",
        "pixelate",
        "defocus_blur",
        "jpeg_compression",
        "shot_noise",
    ]:
        out = corruptions.apply(x, name, 3)
        assert out.shape == x.shape, name


# --------------------------------------------------------------------------- RNG streams


def test_poisson_keeps_later_streams_batch_independent():
    rate = torch.linspace(0, 40, 600).repeat(5, 1)
    r_all = SampleRNG(3, 11, torch.arange(5), torch.device("cpu"))
    k_all = r_all.poisson(rate)
    u_all = r_all.uniform(4)
    r_sub = SampleRNG(3, 11, torch.arange(2, 4), torch.device("cpu"))
    k_sub = r_sub.poisson(rate[2:4])
    u_sub = r_sub.uniform(4)
    assert torch.equal(k_all[2:4], k_sub)
    assert torch.equal(u_all[2:4], u_sub)


def test_poisson_rejects_bad_rates():
    r = SampleRNG(0, 1, torch.arange(1), torch.device("cpu"))
    with pytest.raises(ValueError):
        r.poisson(torch.tensor([[-1.0]]))
    with pytest.raises(ValueError):
        r.poisson(torch.tensor([[float("nan")]]))
    assert int(r.poisson(torch.zeros(1, 10)).sum()) == 0


# --------------------------------------------------------------------------- plug-ins


PLUGIN = '''
import corruptions

@corruptions.register(
    "tmp_invert",
    group="digital",
    presets=[0.2, 0.4, 0.6, 0.8, 1.0],
    param_names=("amount",),
    random=False,
)
def tmp_invert(images, params, rng):
    """Blend towards the inverted image."""
    a = params["amount"]
    return (1 - a) * images + a * (1 - images)
'''


def test_register_and_load_plugin(tmp_path, clean_registry):
    path = tmp_path / "my_corruption.py"
    path.write_text(PLUGIN)
    assert corruptions.load_plugin(path) == ["tmp_invert"]
    assert corruptions.names("plugins") == ["tmp_invert"]
    assert corruptions.names()[-1] == "tmp_invert" and corruptions.names()[:19] == ALL
    assert corruptions.names("digital")[-1] == "tmp_invert"
    x = _images(2)
    out = corruptions.apply(x, "tmp_invert", 5)
    assert torch.equal(out, 255 - x)
    assert corruptions.get("tmp_invert").source == str(path)


def test_register_decorator_directly(clean_registry):
    @corruptions.register(
        "tmp_shift",
        group="extra",
        presets=[(0.1,), (0.2,), (0.3,), (0.4,), (0.5,)],
        param_names=("delta",),
        random=False,
    )
    def tmp_shift(images, params, rng):
        return images + params["delta"]

    x = torch.zeros(1, 3, 8, 8)
    assert corruptions.apply(x, "tmp_shift", 5, quantize=False).max().item() == pytest.approx(0.5)
    with pytest.raises(corruptions.CorruptionError, match="already registered"):
        corruptions.register("tmp_shift", group="extra", presets=[1, 2, 3, 4, 5])(tmp_shift)
    with pytest.raises(corruptions.CorruptionError, match="5 rows"):
        corruptions.register("tmp_bad", group="extra", presets=[1, 2, 3])


def test_a_levels_fn_returning_none_sends_the_call_down_the_float_path(clean_registry):
    """uint8 input takes levels_fn; None from it means the float kernel runs instead."""
    calls = []

    def levels(images, params, rng):
        calls.append("levels")
        return None if params["delta"] < 0.3 else 255 - images

    @corruptions.register("tmp_levels", group="extra", presets=[(0.1,), (0.2,), (0.3,), (0.4,), (0.5,)],
                          param_names=("delta",), random=False, levels_fn=levels)  # fmt: skip
    def tmp_levels(images, params, rng):
        calls.append("float")
        return images + params["delta"]

    x = torch.full((1, 3, 4, 4), 100, dtype=torch.uint8)
    assert torch.equal(corruptions.apply(x, "tmp_levels", 1), torch.full_like(x, 125))  # floor(125.5)
    assert calls == ["levels", "float"]
    assert torch.equal(corruptions.apply(x, "tmp_levels", 3), 255 - x)
    assert calls[2:] == ["levels"]


def test_apply_ignores_and_restores_the_callers_tf32_and_cudnn_settings(clean_registry):
    """Speed settings of the caller (TF32 matmuls, cuDNN benchmark) never reach a corruption."""
    seen = {}

    @corruptions.register("tmp_probe", group="extra", presets=[1, 2, 3, 4, 5], random=False)
    def tmp_probe(images, params, rng):
        seen["matmul"] = torch.backends.cuda.matmul.fp32_precision
        seen["cudnn"] = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
        if images.shape[0] == 2:
            raise RuntimeError("probe failure")
        return images

    matmul = torch.backends.cuda.matmul
    before = (matmul.fp32_precision, torch.backends.cudnn.benchmark)
    try:
        matmul.fp32_precision = "tf32"
        torch.backends.cudnn.benchmark = True
        corruptions.apply(torch.zeros(1, 3, 8, 8), "tmp_probe", 1)
        assert seen == {"matmul": "ieee", "cudnn": (True, False)}
        assert matmul.fp32_precision == "tf32" and torch.backends.cudnn.benchmark is True
        with pytest.raises(RuntimeError, match="probe failure"):  # restored after a failure too
            corruptions.apply(torch.zeros(2, 3, 8, 8), "tmp_probe", 1)
        assert matmul.fp32_precision == "tf32"
    finally:
        matmul.fp32_precision, torch.backends.cudnn.benchmark = before


@pytest.mark.parametrize(
    "body",
    [
        "def broken(:\n",  # syntax error
        PLUGIN + "\nraise RuntimeError('boom')\n",  # registers, then fails
        "x = 1\n",  # registers nothing
    ],
)
def test_broken_plugin_leaves_nothing(tmp_path, clean_registry, body):
    path = tmp_path / "broken_plugin.py"
    path.write_text(body)
    before = corruptions.names()
    with pytest.raises(corruptions.CorruptionError) as e:
        corruptions.load_plugin(path)
    _one_line(e)
    assert corruptions.names() == before
    assert "tmp_invert" not in registry._REGISTRY


def test_missing_plugin_file(tmp_path):
    with pytest.raises(corruptions.CorruptionError, match="not found"):
        corruptions.load_plugin(tmp_path / "nope.py")


def test_entry_point_discovery(monkeypatch, clean_registry):
    def ep_fn(images, params, rng):
        return images * params["gain"]

    ep_fn._corruption_table = {
        "group": "extra",
        "presets": [0.9, 0.8, 0.7, 0.6, 0.5],
        "param_names": ("gain",),
        "random": False,
    }
    ep = types.SimpleNamespace(name="ep_darken", value="pkg.mod:ep_fn", load=lambda: ep_fn)
    seen = {}

    def fake_entry_points(group):
        seen["group"] = group
        return [ep]

    monkeypatch.setattr(registry, "entry_points", fake_entry_points)
    monkeypatch.setattr(registry, "_ENTRY_POINTS_LOADED", False)
    assert "ep_darken" in corruptions.names("plugins")
    assert seen["group"] == "corruptions"
    assert corruptions.get("ep_darken").source.startswith("entry point")
    x = torch.full((1, 3, 4, 4), 200, dtype=torch.uint8)
    assert int(corruptions.apply(x, "ep_darken", 5).max()) == 100


def test_broken_entry_point(monkeypatch, clean_registry):
    def bad_load():
        raise ImportError("no module named nowhere")

    ep = types.SimpleNamespace(name="ep_bad", value="nowhere:fn", load=bad_load)
    monkeypatch.setattr(registry, "entry_points", lambda group: [ep])
    monkeypatch.setattr(registry, "_ENTRY_POINTS_LOADED", False)
    with pytest.raises(corruptions.CorruptionError) as e:
        corruptions.names()
    assert "ep_bad" in _one_line(e)
