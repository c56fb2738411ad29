"""Classification metrics per cell and the aggregates papers report (mCA, CE, mCE, relative mCE).

Per (corruption, severity) cell the evaluation engine records top1, top5 (when the task
has at least 5 classes), nll and ece (15 bins) in a tidy long table (see
:mod:`robustbench_act.results`). :func:`summarise` turns such a table into one row per
model with the aggregates of ``shared/reference/corruptions.md``:

- ``mca``: mean corruption accuracy over every corruption/severity cell present;
  ``mca_<group>`` the same within a group (noise, blur, weather, digital, extra);
- ``acc_<c>``: accuracy on corruption c averaged over its severities;
- ``ce_<c>``: corruption error. With a baseline (an activation name or another run's
  metrics) ``CE_c = sum_s E_cs / sum_s E^base_cs``; with ``alexnet=True`` the ImageNet-C
  AlexNet errors: ``CE_c = mean_s E_cs / E^AlexNet_c`` (= ``sum_s E / (5 E^AlexNet_c)`` on
  all 5 severities); without either it is the unnormalised mean error ``mean_s E_cs``
  (the "mean corruption error" CIFAR papers print, since CIFAR has no standard baseline);
- ``mce``: mean of ``ce_<c>`` over the 15 benchmark corruptions present;
- ``rel_mce``: mean relative CE, ``sum_s (E_cs - E_clean) / sum_s (E^base_cs - E^base_clean)``,
  only with a (non-AlexNet) baseline.

Accuracies and errors are fractions in [0, 1].
"""

from __future__ import annotations

import math
from collections.abc import Iterable

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


def _key_cols(frame: pd.DataFrame) -> list[str]:
    return [c for c in KEY_COLUMNS if c in frame.columns]


def _top1_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """Wide table: index = model key, columns = (corruption, severity), values = top1."""
    keys = _key_cols(metrics)
    t = metrics[metrics["metric"] == "top1"]
    wide = t.groupby([*keys, "corruption", "severity"], sort=False)["value"].mean()
    return wide.unstack(["corruption", "severity"])


def _baseline_errors(metrics: pd.DataFrame, baseline: str | pd.DataFrame,
                     keys: list[str]) -> pd.DataFrame:
    """Baseline top1 per model key (same index as :func:`_top1_table`), NaN where none matches."""
    own = _top1_table(metrics)
    if isinstance(baseline, str):
        if "activation" not in keys:
            raise ValueError("a baseline activation name needs an 'activation' column")
        grp = [k for k in keys if k != "activation"]
        idx = own.index.to_frame(index=False)
        base_rows = own[own.index.get_level_values("activation") == baseline]
        if base_rows.empty:
            from robustbench_act.errors import unknown

            raise unknown("baseline activation", baseline,
                          sorted(set(own.index.get_level_values("activation").astype(str))))
        base_idx = base_rows.index.to_frame(index=False)[grp]
        base_vals = base_rows.reset_index(drop=True)
        lookup = {tuple(r): i for i, r in enumerate(base_idx.itertuples(index=False, name=None))}
        out = pd.DataFrame(np.nan, index=own.index, columns=own.columns)
        for i, r in enumerate(idx[grp].itertuples(index=False, name=None)):
            j = lookup.get(tuple(r))
            if j is not None:
                out.iloc[i] = base_vals.iloc[j].reindex(own.columns).to_numpy()
        return out
    base = _top1_table(baseline)
    bidx = base.index.to_frame(index=False)
    rows = []
    for _, r in own.index.to_frame(index=False).iterrows():
        sel = np.ones(len(base), dtype=bool)
        if "dataset" in bidx.columns and "dataset" in r.index:
            sel &= (bidx["dataset"].astype(str) == str(r["dataset"])).to_numpy()
        if "seed" in bidx.columns and "seed" in r.index:
            same_seed = sel & (bidx["seed"].astype(str) == str(r["seed"])).to_numpy()
            if same_seed.any():
                sel = same_seed
        if sel.any():
            rows.append(base[sel].mean(axis=0).reindex(own.columns).to_numpy())
        else:
            rows.append(np.full(len(own.columns), np.nan))
    return pd.DataFrame(rows, index=own.index, columns=own.columns)


def summarise(metrics: pd.DataFrame, *, baseline: str | pd.DataFrame | None = None,
              alexnet: bool = False) -> pd.DataFrame:
    """One row per model key with clean accuracy, mCA (overall and per group), CE/mCE and probes.

    ``baseline``: an activation name (the rows of the same run/model/order/seed/dataset with
    that activation) or the metrics table of another run; ``alexnet``: normalise CE by the
    ImageNet-C AlexNet errors instead (takes precedence over ``baseline`` for ``ce_*``/``mce``;
    ``rel_mce`` still needs ``baseline``).
    """
    if metrics is None or len(metrics) == 0:
        return pd.DataFrame(columns=list(KEY_COLUMNS))
    metrics = metrics.copy()
    for col in ("corruption", "metric"):
        metrics[col] = metrics[col].astype(str)
    metrics["severity"] = metrics["severity"].astype(int)
    keys = _key_cols(metrics)
    top1 = _top1_table(metrics)
    if top1.empty:
        return pd.DataFrame(columns=keys)
    present = set(top1.columns)
    corr_names = [c for c in dict.fromkeys(metrics["corruption"]) if c != "clean"]
    corr_cells = [(c, s) for c in corr_names
                  for s in sorted({s for cc, s in present if cc == c})]
    groups = corruption_groups(corr_names)
    out = pd.DataFrame(index=top1.index)

    def col_of(cells: list[tuple[str, int]]) -> pd.Series:
        return top1[cells].mean(axis=1) if cells else pd.Series(np.nan, index=top1.index)

    clean_cells = [c for c in top1.columns if c[0] == "clean"]
    out["clean_top1"] = col_of(clean_cells)
    for name in ("top5", "nll", "ece"):
        sub = metrics[(metrics["metric"] == name) & (metrics["corruption"] == "clean")]
        if not sub.empty:
            out[f"clean_{name}"] = sub.groupby(keys, observed=True)["value"].mean().reindex(out.index)
    out["mca"] = col_of(corr_cells)
    for g in GROUP_ORDER + tuple(sorted(set(groups.values()) - set(GROUP_ORDER))):
        cells = [c for c in corr_cells if groups[c[0]] == g]
        if cells:
            out[f"mca_{g}"] = col_of(cells)
    for name in corr_names:
        out[f"acc_{name}"] = col_of([c for c in corr_cells if c[0] == name])

    # corruption errors
    base = _baseline_errors(metrics, baseline, keys) if baseline is not None else None
    ce: dict[str, pd.Series] = {}
    rel: dict[str, pd.Series] = {}
    clean_err = 1.0 - out["clean_top1"]
    for name in corr_names:
        cells = [c for c in corr_cells if c[0] == name]
        err = 1.0 - top1[cells]
        if alexnet:
            ref = ALEXNET_ERRORS.get(name)
            ce[name] = err.mean(axis=1) / ref if ref else pd.Series(np.nan, index=top1.index)
        elif base is not None:
            berr = 1.0 - base[cells]
            ce[name] = err.sum(axis=1, min_count=1) / berr.sum(axis=1, min_count=1)
        else:
            ce[name] = err.mean(axis=1)
        if base is not None:
            berr = 1.0 - base[cells]
            bclean = 1.0 - base[clean_cells].mean(axis=1) if clean_cells else np.nan
            num = err.sub(clean_err, axis=0).sum(axis=1, min_count=1)
            den = berr.sub(bclean, axis=0).sum(axis=1, min_count=1)
            rel[name] = num / den.where(den != 0)
    for name in corr_names:
        out[f"ce_{name}"] = ce[name]
    common = [n for n in corr_names if n in COMMON]
    out["mce"] = pd.concat([ce[n] for n in common], axis=1).mean(axis=1) if common else np.nan
    if base is not None:
        out["rel_mce"] = pd.concat([rel[n] for n in common], axis=1).mean(axis=1) if common else np.nan

    # corrupted-data calibration and probe summaries
    corr_rows = metrics[metrics["corruption"] != "clean"]
    for name in ("nll", "ece"):
        sub = corr_rows[corr_rows["metric"] == name]
        if not sub.empty:
            out[f"mean_{name}"] = sub.groupby(keys, observed=True)["value"].mean().reindex(out.index)
    probe_names = [m for m in dict.fromkeys(metrics["metric"]) if m not in CLASSIFICATION_METRICS]
    for name in probe_names:
        sub = corr_rows[corr_rows["metric"] == name]
        if sub.empty:
            sub = metrics[(metrics["metric"] == name) & (metrics["corruption"] == "clean")]
        out[name] = sub.groupby(keys, observed=True)["value"].mean().reindex(out.index)
    return out.reset_index()


def mean_std(total: float, total_sq: float, n: float) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1) from streaming sums."""
    if n <= 0:
        return float("nan"), float("nan")
    mean = total / n
    if n < 2:
        return mean, float("nan")
    var = max(total_sq - n * mean * mean, 0.0) / (n - 1)
    return mean, math.sqrt(var)
