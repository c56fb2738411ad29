"""Classification metrics per cell and the aggregates papers report (mCA, CE, mCE, relative mCE).

Per (corruption, severity) cell the evaluation engine records top1, top5 (when the task
has at least 5 classes), nll and ece (15 bins) in a tidy long table (see
:mod:`robustbench_act.results`). :func:`summarise` turns such a table into one row per
model with the aggregates of ``shared/reference/corruptions.md``:

- ``mca``: mean corruption accuracy over every corruption/severity cell present;
  ``mca_common`` over the 15 common corruptions only (RobustBench's CIFAR number);
  ``mca_<group>`` within a group (noise, blur, weather, digital, extra);
- ``acc_<c>`` / ``err_<c>``: accuracy / error on corruption c averaged over its severities;
  ``mean_err``: the plain mean error over the 15 common corruptions (never called mCE);
- ``ce_<c>`` (only with a baseline): ``CE_c = sum_s E_cs / sum_s E^base_cs`` (Hendrycks),
  E^base the mean error of the matching baseline rows (:class:`Baseline`); with
  ``alexnet=True`` ``CE_c = mean_s E_cs / E^AlexNet_c`` (ImageNet-C);
- ``mce``: mean of ``ce_<c>`` over the 15 common corruptions present;
- ``rel_mce``: mean relative CE, ``sum_s (E_cs - E_clean) / sum_s (E^base_cs - E^base_clean)``,
  only with a (non-AlexNet) baseline.

Labels, units and directions of every name: :mod:`robustbench_act.definitions`.
Accuracies and errors are fractions in [0, 1].
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

#: Columns identifying one evaluated model in every results table.
KEY_COLUMNS = ("run", "model", "activation", "order", "seed", "dataset")
#: Columns identifying one evaluation cell.
CELL_COLUMNS = ("corruption", "severity")
#: Classification metrics recorded per cell (top5 only with >= 5 classes).
CLASSIFICATION_METRICS = ("top1", "top5", "nll", "ece")
#: Order of the corruption groups in summaries.
GROUP_ORDER = ("noise", "blur", "weather", "digital", "extra")
#: Built-in corruption groups (the grouping used in papers; the 4 validation ones are "extra").
GROUPS: dict[str, tuple[str, ...]] = {
    "noise": ("gaussian_noise", "shot_noise", "impulse_noise"),
    "blur": ("defocus_blur", "glass_blur", "motion_blur", "zoom_blur"),
    "weather": ("snow", "frost", "fog", "brightness"),
    "digital": ("contrast", "elastic_transform", "pixelate", "jpeg_compression"),
    "extra": ("speckle_noise", "gaussian_blur", "spatter", "saturate"),
}
#: The 15 benchmark corruptions (mCE is averaged over these).
COMMON: tuple[str, ...] = tuple(c for g in GROUP_ORDER[:4] for c in GROUPS[g])
#: ImageNet-C AlexNet top-1 error per corruption (mean over severities), as used by AugMix et al.
ALEXNET_ERRORS: dict[str, float] = {
    "gaussian_noise": 0.886428,
    "shot_noise": 0.894468,
    "impulse_noise": 0.922640,
    "defocus_blur": 0.819880,
    "glass_blur": 0.826268,
    "motion_blur": 0.785948,
    "zoom_blur": 0.798360,
    "snow": 0.866816,
    "frost": 0.826572,
    "fog": 0.819324,
    "brightness": 0.564592,
    "contrast": 0.853204,
    "elastic_transform": 0.646056,
    "pixelate": 0.717840,
    "jpeg_compression": 0.606500,
}


def group_of(name: str) -> str:
    """Group of a corruption: the built-in table, else the registry's group (plug-ins), else 'extra'."""
    for group, members in GROUPS.items():
        if name in members:
            return group
    try:
        import corruptions

        return corruptions.get(name).group
    except Exception:  # unknown or unloadable: still summarise it, as an extra
        return "extra"


def corruption_groups(names: Iterable[str]) -> dict[str, str]:
    """Map each corruption name to its group (see :func:`group_of`)."""
    return {n: group_of(n) for n in names}


# ----------------------------------------------------------------------------- per batch


def expected_calibration_error(probs: torch.Tensor | np.ndarray, labels: torch.Tensor | np.ndarray,
                               bins: int = 15) -> float:
    """ECE of predicted probabilities (N, K) against integer labels, equal-width confidence bins."""
    p = torch.as_tensor(probs, dtype=torch.float64)
    y = torch.as_tensor(labels, dtype=torch.int64)
    if p.ndim != 2 or y.ndim != 1 or p.shape[0] != y.shape[0]:
        raise ValueError(f"probs must be (N, K) and labels (N,), got {tuple(p.shape)} and {tuple(y.shape)}")
    if p.shape[0] == 0:
        return float("nan")
    conf, pred = p.max(dim=1)
    acc = CalibrationBins(bins)
    acc.update(conf, (pred == y).to(torch.float64))
    return acc.ece()


class CalibrationBins:
    """Streaming equal-width confidence bins: counts, summed confidence and accuracy per bin."""

    def __init__(self, bins: int = 15, device: torch.device | str | None = None,
                 dtype: torch.dtype = torch.float64):
        self.bins = int(bins)
        self.sums = torch.zeros(3, self.bins, dtype=dtype, device=device)

    def update(self, confidence: torch.Tensor, correct: torch.Tensor) -> None:
        """Add samples with their top-1 confidence and 0/1 correctness."""
        conf = confidence.detach().to(self.sums)
        # bin b holds (b/B, (b+1)/B]; confidence 0 goes to bin 0
        idx = (torch.ceil(conf * self.bins) - 1).clamp_(0, self.bins - 1).long()
        self.sums[0].index_add_(0, idx, torch.ones_like(conf))
        self.sums[1].index_add_(0, idx, conf)
        self.sums[2].index_add_(0, idx, correct.detach().to(self.sums))

    def ece(self) -> float:
        """The expected calibration error of everything added so far."""
        return ece_from_bins(self.sums)


def ece_from_bins(sums: torch.Tensor) -> float:
    """ECE from a (3, bins) tensor of per-bin counts, confidence sums and correct sums."""
    s = sums.detach().double().cpu()
    total = float(s[0].sum())
    if total == 0:
        return float("nan")
    return float((s[1] - s[2]).abs().sum() / total)


class ClassificationSums:
    """Streaming sums for top1/top5/nll/ece of one model on one cell; all-reducible as one tensor."""

    def __init__(self, num_classes: int, device: torch.device | str | None = None, bins: int = 15,
                 dtype: torch.dtype = torch.float64):
        self.num_classes = int(num_classes)
        self.bins = int(bins)
        # [n, top1, top5, nll_sum, bins_count(B), bins_conf(B), bins_correct(B)]
        self.data = torch.zeros(4 + 3 * self.bins, dtype=dtype, device=device)

    def update(self, logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Add a batch; return per-sample (correct 0/1, nll) float tensors on the logits' device."""
        logits = logits.detach().float()
        labels = labels.to(logits.device)
        logp = torch.log_softmax(logits, dim=1)
        nll = -logp.gather(1, labels.view(-1, 1)).view(-1)
        conf, pred = logp.max(dim=1)
        correct = (pred == labels).float()
        d = self.data
        B = self.bins
        d[0] += labels.numel()
        d[1] += correct.sum().to(d)
        if self.num_classes >= 5:
            top5 = logits.topk(5, dim=1).indices
            d[2] += (top5 == labels.view(-1, 1)).any(dim=1).sum().to(d)
        d[3] += nll.to(d).sum()
        conf = conf.exp().to(d)
        idx = (torch.ceil(conf * B) - 1).clamp_(0, B - 1).long()
        d[4:4 + B].index_add_(0, idx, torch.ones_like(conf))
        d[4 + B:4 + 2 * B].index_add_(0, idx, conf)
        d[4 + 2 * B:4 + 3 * B].index_add_(0, idx, correct.to(d))
        return correct, nll

    def results(self) -> dict[str, float]:
        """The metrics (fractions; nll as mean nats) of everything added so far."""
        d = self.data.detach().double().cpu()
        n = float(d[0])
        if n == 0:
            return {}
        B = self.bins
        out = {"top1": float(d[1]) / n}
        if self.num_classes >= 5:
            out["top5"] = float(d[2]) / n
        out["nll"] = float(d[3]) / n
        out["ece"] = ece_from_bins(d[4:].view(3, B))
        return out

    @property
    def n(self) -> int:
        """Number of samples added."""
        return int(round(float(self.data[0])))


# ----------------------------------------------------------------------------- summaries


@dataclass(frozen=True)
class Baseline:
    """The model rows that normalise CE / mCE, and the keys a row shares with its baseline rows.

    A row is normalised by the mean error of the baseline rows with the same ``match`` keys
    (over their seeds and runs), or of all baseline rows when none matches; the baseline's
    own mCE is then 100 % on average over its seeds. ``run --baseline X`` and ``compare
    --reference X`` both come here, so they give the same numbers.
    """

    name: str
    select: Callable[[pd.DataFrame], np.ndarray]  # model-key frame -> boolean mask
    match: tuple[str, ...] = ("model", "order", "dataset")


def baseline_activation(name: str) -> Baseline:
    """The rows with activation ``name`` (matched on model, order and dataset)."""
    return Baseline(name, lambda idx: (idx["activation"].astype(str) == name).to_numpy())


def _key_cols(frame: pd.DataFrame) -> list[str]:
    return [c for c in KEY_COLUMNS if c in frame.columns]


def _top1_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """Wide table: index = model key, columns = (corruption, severity), values = top1."""
    keys = _key_cols(metrics)
    t = metrics[metrics["metric"] == "top1"]
    wide = t.groupby([*keys, "corruption", "severity"], sort=False)["value"].mean()
    return wide.unstack(["corruption", "severity"])


def corruption_errors(top1: pd.DataFrame, base_mask: np.ndarray, match: Sequence[str]) -> pd.DataFrame:
    """ce_<c>, rce_<c>, mce and rel_mce of every row of a wide top-1 table (see :class:`Baseline`)."""
    err = 1.0 - top1
    idx = top1.index.to_frame(index=False)
    keys = [k for k in match if k in idx.columns]
    row_key = idx[keys].astype(str).agg("|".join, axis=1) if keys else pd.Series("", index=idx.index)
    base_err = err[base_mask].groupby(row_key[base_mask].to_numpy()).mean()
    fallback = err[base_mask].mean(axis=0)
    base = pd.DataFrame([base_err.loc[k] if k in base_err.index else fallback for k in row_key],
                        index=top1.index, columns=top1.columns)  # fmt: skip
    clean = [c for c in top1.columns if c[0] == "clean"]
    e_clean = err[clean].mean(axis=1) if clean else pd.Series(np.nan, index=top1.index)
    b_clean = base[clean].mean(axis=1) if clean else pd.Series(np.nan, index=top1.index)
    ce: dict[str, pd.Series] = {}
    rce: dict[str, pd.Series] = {}
    names = [c for c in dict.fromkeys(c for c, _ in top1.columns) if c != "clean"]
    for name in names:
        cells = [c for c in top1.columns if c[0] == name]
        e, b = err[cells], base[cells]
        ok = e.notna() & b.notna()
        den = b.where(ok).sum(axis=1, min_count=1)
        ce[f"ce_{name}"] = e.where(ok).sum(axis=1, min_count=1) / den.where(den > 0)
        rnum = e.where(ok).sub(e_clean, axis=0).sum(axis=1, min_count=1)
        rden = b.where(ok).sub(b_clean, axis=0).sum(axis=1, min_count=1)
        rce[f"rce_{name}"] = rnum / rden.where(rden > 0)
    common = [n for n in names if n in COMMON]
    nan = pd.Series(np.nan, index=top1.index)
    means = {"mce": pd.concat([ce[f"ce_{n}"] for n in common], axis=1).mean(axis=1) if common else nan,
             "rel_mce": pd.concat([rce[f"rce_{n}"] for n in common], axis=1).mean(axis=1) if common else nan}
    return pd.DataFrame({**ce, **rce, **means}, index=top1.index)


def _alexnet_errors(top1: pd.DataFrame) -> pd.DataFrame:
    """ce_<c> = mean_s E / E^AlexNet_c (ImageNet-C) and their mean over the 15 as mce."""
    out = pd.DataFrame(index=top1.index)
    names = [c for c in dict.fromkeys(c for c, _ in top1.columns) if c in ALEXNET_ERRORS]
    for name in names:
        out[f"ce_{name}"] = (1.0 - top1[[c for c in top1.columns if c[0] == name]]).mean(axis=1) / ALEXNET_ERRORS[name]
    out["mce"] = out[[f"ce_{n}" for n in names]].mean(axis=1) if names else np.nan
    return out


def _with_baseline_rows(metrics: pd.DataFrame, baseline: pd.DataFrame) -> tuple[pd.DataFrame, Baseline]:
    """Append another table's rows (run ids marked) and a Baseline selecting them."""
    marked = baseline.copy()
    marked["run"] = _BASE_MARK + marked["run"].astype(str)
    both = pd.concat([metrics, marked[metrics.columns.intersection(marked.columns)]], ignore_index=True)
    return both, Baseline("another run", lambda idx: idx["run"].astype(str).str.startswith(_BASE_MARK).to_numpy())


_BASE_MARK = "\0baseline:"


def summarise(metrics: pd.DataFrame, *, baseline: str | pd.DataFrame | Baseline | None = None,
              alexnet: bool = False) -> pd.DataFrame:
    """One row per model key: clean metrics, mCA (all, the 15 common, per group), per-corruption
    accuracy and mean error, CE / mCE against ``baseline`` (an activation name, another run's
    metrics table or a :class:`Baseline`) or the ImageNet-C AlexNet errors, and probe means.
    Names and meanings: :mod:`robustbench_act.definitions`.
    """
    if metrics is None or len(metrics) == 0:
        return pd.DataFrame(columns=list(KEY_COLUMNS))
    metrics = _clean_types(metrics)
    if isinstance(baseline, pd.DataFrame):
        metrics, baseline = _with_baseline_rows(metrics, _clean_types(baseline))
    elif isinstance(baseline, str):
        baseline = baseline_activation(baseline)
    top1 = _top1_table(metrics)
    if top1.empty:
        return pd.DataFrame(columns=_key_cols(metrics))
    out = pd.concat([_accuracy_columns(metrics, top1), _ce_columns(top1, baseline, alexnet),
                     _calibration_and_probes(metrics, top1.index)], axis=1)  # fmt: skip
    out = out.reset_index()
    if "run" in out.columns:
        out = out[~out["run"].astype(str).str.startswith(_BASE_MARK)].reset_index(drop=True)
    return out


def _clean_types(metrics: pd.DataFrame) -> pd.DataFrame:
    m = metrics.copy()
    for col in ("corruption", "metric"):
        m[col] = m[col].astype(str)
    m["severity"] = m["severity"].astype(int)
    return m


def _accuracy_columns(metrics: pd.DataFrame, top1: pd.DataFrame) -> pd.DataFrame:
    keys = _key_cols(metrics)
    names = [c for c in dict.fromkeys(metrics["corruption"]) if c != "clean"]
    cells = [c for c in top1.columns if c[0] != "clean"]
    groups = corruption_groups(names)
    out: dict[str, pd.Series] = {}

    def mean_of(sel: list[tuple[str, int]]) -> pd.Series:
        return top1[sel].mean(axis=1) if sel else pd.Series(np.nan, index=top1.index)

    out["clean_top1"] = mean_of([c for c in top1.columns if c[0] == "clean"])
    for name in ("top5", "nll", "ece"):
        sub = metrics[(metrics["metric"] == name) & (metrics["corruption"] == "clean")]
        if not sub.empty:
            out[f"clean_{name}"] = sub.groupby(keys, observed=True)["value"].mean().reindex(top1.index)
    out["mca"] = mean_of(cells)
    if any(c[0] in COMMON for c in cells):
        out["mca_common"] = mean_of([c for c in cells if c[0] in COMMON])
    for g in GROUP_ORDER + tuple(sorted(set(groups.values()) - set(GROUP_ORDER))):
        sel = [c for c in cells if groups[c[0]] == g]
        if sel:
            out[f"mca_{g}"] = mean_of(sel)
    for name in names:
        out[f"acc_{name}"] = mean_of([c for c in cells if c[0] == name])
    for name in names:
        out[f"err_{name}"] = 1.0 - out[f"acc_{name}"]
    if any(c[0] in COMMON for c in cells):
        out["mean_err"] = 1.0 - out["mca_common"]
    return pd.DataFrame(out, index=top1.index)


def _ce_columns(top1: pd.DataFrame, baseline: Baseline | None, alexnet: bool) -> pd.DataFrame:
    if alexnet:
        out = _alexnet_errors(top1)
        if baseline is not None:
            rel = corruption_errors(top1, baseline.select(top1.index.to_frame(index=False)), baseline.match)
            out = pd.concat([out, rel[[c for c in rel.columns if c.startswith("rce_")] + ["rel_mce"]]], axis=1)
        return out
    if baseline is None:
        return pd.DataFrame(index=top1.index)
    mask = baseline.select(top1.index.to_frame(index=False))
    if not mask.any():
        from robustbench_act.errors import unknown

        acts = sorted(set(top1.index.get_level_values("activation").astype(str))) \
            if "activation" in top1.index.names else []
        raise unknown("baseline activation", baseline.name, acts)
    return corruption_errors(top1, mask, baseline.match)


def _calibration_and_probes(metrics: pd.DataFrame, index: pd.Index) -> pd.DataFrame:
    keys = _key_cols(metrics)
    out: dict[str, pd.Series] = {}
    corr_rows = metrics[metrics["corruption"] != "clean"]
    for name in ("nll", "ece"):
        sub = corr_rows[corr_rows["metric"] == name]
        if not sub.empty:
            out[f"mean_{name}"] = sub.groupby(keys, observed=True)["value"].mean().reindex(index)
    probe_names = [m for m in dict.fromkeys(metrics["metric"]) if m not in CLASSIFICATION_METRICS]
    for name in probe_names:
        sub = corr_rows[corr_rows["metric"] == name]
        if sub.empty:
            sub = metrics[(metrics["metric"] == name) & (metrics["corruption"] == "clean")]
        out[name] = sub.groupby(keys, observed=True)["value"].mean().reindex(index)
    return pd.DataFrame(out, index=index)


def mean_std(total: float, total_sq: float, n: float) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1) from streaming sums."""
    if n <= 0:
        return float("nan"), float("nan")
    mean = total / n
    if n < 2:
        return mean, float("nan")
    var = max(total_sq - n * mean * mean, 0.0) / (n - 1)
    return mean, math.sqrt(var)
