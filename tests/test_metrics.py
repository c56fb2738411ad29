"""Classification metrics and the run summary (mCA, groups, CE, mCE, relative mCE, AlexNet)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from robustbench_act import metrics as M

KEY = dict(run="r", model="m", order="conventional", seed=0, dataset="d")


def _frame(acc: dict[str, dict[tuple[str, int], float]], extra: list[dict] | None = None) -> pd.DataFrame:
    """A tidy metrics table from {activation: {(corruption, severity): top1}}."""
    rows = []
    for act, cells in acc.items():
        for (c, s), v in cells.items():
            rows.append({**KEY, "activation": act, "corruption": c, "severity": s, "metric": "top1",
                         "value": v, "n": 100})
    return pd.DataFrame(rows + (extra or []))


def test_ece_matches_hand_computation() -> None:
    probs = torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.2, 0.8]])
    labels = torch.tensor([0, 1, 1, 1])
    # bins of width 1/15: conf .9 (correct), .6 (wrong), .7 (correct), .8 (correct) - each its own bin
    expected = (abs(0.9 - 1) + abs(0.6 - 0) + abs(0.7 - 1) + abs(0.8 - 1)) / 4
    assert M.expected_calibration_error(probs, labels) == pytest.approx(expected)
    assert M.expected_calibration_error(probs.numpy(), labels.numpy(), bins=1) == pytest.approx(
        abs((0.9 + 0.6 + 0.7 + 0.8) / 4 - 0.75))


def test_classification_sums_stream_equals_whole_batch() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(50, 10, generator=g)
    labels = torch.randint(0, 10, (50,), generator=g)
    whole = M.ClassificationSums(10)
    whole.update(logits, labels)
    parts = M.ClassificationSums(10)
    for i in range(0, 50, 7):
        parts.update(logits[i:i + 7], labels[i:i + 7])
    a, b = whole.results(), parts.results()
    assert a.keys() == {"top1", "top5", "nll", "ece"}
    for k in a:
        assert a[k] == pytest.approx(b[k], abs=1e-12)
    assert a["top1"] == pytest.approx(float((logits.argmax(1) == labels).float().mean()))
    top5 = (logits.topk(5, 1).indices == labels[:, None]).any(1).float().mean()
    assert a["top5"] == pytest.approx(float(top5))
    assert a["nll"] == pytest.approx(float(torch.nn.functional.cross_entropy(logits, labels)), rel=1e-6)
    probs = logits.softmax(1)
    assert a["ece"] == pytest.approx(M.expected_calibration_error(probs, labels), abs=1e-6)
    small = M.ClassificationSums(3)
    small.update(torch.randn(4, 3), torch.tensor([0, 1, 2, 0]))
    assert "top5" not in small.results()


def test_summarise_columns_and_values() -> None:
    acc = {
        "relu": {("clean", 0): 0.9, ("gaussian_noise", 1): 0.8, ("gaussian_noise", 2): 0.6,
                 ("fog", 1): 0.7, ("fog", 2): 0.5, ("saturate", 1): 0.85, ("saturate", 2): 0.75},
        "la_silu": {("clean", 0): 0.92, ("gaussian_noise", 1): 0.85, ("gaussian_noise", 2): 0.7,
                    ("fog", 1): 0.7, ("fog", 2): 0.6, ("saturate", 1): 0.9, ("saturate", 2): 0.8},
    }
    probe = [{**KEY, "activation": "relu", "corruption": c, "severity": s, "metric": "fluct_l1_mean",
              "value": v, "n": 100} for (c, s), v in [(("gaussian_noise", 1), 1.0), (("fog", 1), 3.0)]]
    probe.append({**KEY, "activation": "relu", "corruption": "clean", "severity": 0,
                  "metric": "abs_unit_mean", "value": 0.25, "n": 100})
    s = M.summarise(_frame(acc, probe)).set_index("activation")
    assert len(s) == 2
    r = s.loc["relu"]
    assert r["clean_top1"] == pytest.approx(0.9)
    assert r["mca"] == pytest.approx(np.mean([0.8, 0.6, 0.7, 0.5, 0.85, 0.75]))
    assert r["mca_noise"] == pytest.approx(0.7)
    assert r["mca_weather"] == pytest.approx(0.6)
    assert r["mca_extra"] == pytest.approx(0.8)
    assert "mca_blur" not in s.columns
    assert r["acc_fog"] == pytest.approx(0.6)
    # no baseline: plain mean errors, never called (m)CE; mean_err over the common ones only
    assert r["err_fog"] == pytest.approx(0.4)
    assert r["mean_err"] == pytest.approx(np.mean([0.2, 0.4, 0.3, 0.5]))
    assert r["mca_common"] == pytest.approx(np.mean([0.8, 0.6, 0.7, 0.5]))
    assert not {"mce", "rel_mce", "ce_fog"} & set(s.columns)
    assert r["fluct_l1_mean"] == pytest.approx(2.0)  # mean over corruption cells
    assert r["abs_unit_mean"] == pytest.approx(0.25)  # clean-only probe: the clean value
    assert math.isnan(s.loc["la_silu", "fluct_l1_mean"])
    for col in M.KEY_COLUMNS:
        assert col in s.reset_index().columns


def test_summarise_baseline_activation_and_frame() -> None:
    acc = {
        "relu": {("clean", 0): 0.9, ("gaussian_noise", 1): 0.8, ("gaussian_noise", 2): 0.6},
        "silu": {("clean", 0): 0.95, ("gaussian_noise", 1): 0.9, ("gaussian_noise", 2): 0.7},
    }
    frame = _frame(acc)
    s = M.summarise(frame, baseline="relu").set_index("activation")
    assert s.loc["relu", "mce"] == pytest.approx(1.0)
    assert s.loc["relu", "rel_mce"] == pytest.approx(1.0)
    ce = (0.1 + 0.3) / (0.2 + 0.4)
    assert s.loc["silu", "ce_gaussian_noise"] == pytest.approx(ce)
    assert s.loc["silu", "mce"] == pytest.approx(ce)
    rel = ((0.1 - 0.05) + (0.3 - 0.05)) / ((0.2 - 0.1) + (0.4 - 0.1))
    assert s.loc["silu", "rel_mce"] == pytest.approx(rel)
    # a baseline given as another run's metrics table
    other = _frame({"relu": acc["relu"]}).assign(run="base")
    s2 = M.summarise(_frame({"silu": acc["silu"]}), baseline=other).set_index("activation")
    assert s2.loc["silu", "mce"] == pytest.approx(ce)
    assert s2.loc["silu", "rel_mce"] == pytest.approx(rel)
    with pytest.raises(ValueError, match="gelu"):
        M.summarise(frame, baseline="gelu")


def test_baseline_is_the_seed_mean_of_the_matching_baseline_rows() -> None:
    """CE_c(run) = sum_s E / sum_s mean-over-seeds(E_base): the baseline averages 100 %."""
    rows = []
    for seed, (r1, s1) in enumerate([(0.8, 0.9), (0.6, 0.8), (0.7, 0.6)]):
        acc = {"relu": {("clean", 0): 0.9, ("fog", 1): r1}, "silu": {("clean", 0): 0.9, ("fog", 1): s1}}
        rows.append(_frame(acc).assign(seed=seed))
    s = M.summarise(pd.concat(rows, ignore_index=True), baseline="relu")
    base = np.mean([0.2, 0.4, 0.3])
    silu = s[s.activation == "silu"].sort_values("seed")
    assert silu["mce"].tolist() == pytest.approx([0.1 / base, 0.2 / base, 0.4 / base])
    assert s[s.activation == "relu"]["mce"].mean() == pytest.approx(1.0)


def test_summarise_alexnet_normalisation() -> None:
    cells = {("clean", 0): 0.6}
    cells.update({("gaussian_noise", s): 0.5 for s in range(1, 6)})
    s = M.summarise(_frame({"relu": cells}), alexnet=True).iloc[0]
    assert s["ce_gaussian_noise"] == pytest.approx(5 * 0.5 / (5 * 0.886428))
    assert s["mce"] == pytest.approx(0.5 / 0.886428)


def test_summarise_keeps_only_existing_model_keys() -> None:
    a = _frame({"relu": {("clean", 0): 0.9, ("fog", 1): 0.5}})
    b = _frame({"silu": {("clean", 0): 0.8, ("fog", 1): 0.4}}).assign(seed=1)
    s = M.summarise(pd.concat([a, b], ignore_index=True))
    assert len(s) == 2  # not the product of activations x seeds
    assert set(zip(s["activation"], s["seed"])) == {("relu", 0), ("silu", 1)}


def test_groups_helper() -> None:
    assert M.group_of("gaussian_noise") == "noise"
    assert M.group_of("speckle_noise") == "extra"
    assert M.corruption_groups(["fog", "pixelate"]) == {"fog": "weather", "pixelate": "digital"}
    assert len(M.COMMON) == 15 and sum(len(v) for v in M.GROUPS.values()) == 19
