"""One definition per metric: its label, unit, which direction is better and how it is formed.

Every table, figure and JSON file that prints a metric reads it from here
(:func:`definition`), so a name means one thing everywhere: ``mce`` is always Hendrycks'
mean corruption error normalised by a baseline, and the plain mean error is ``mean_err``.
Families such as ``acc_<corruption>`` are written once with a placeholder.

Units: ``%`` is a fraction in [0, 1] shown times 100; ``% of baseline`` a ratio shown
times 100 (the baseline scores 100); ``nats`` and ``ratio`` plain numbers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Metric:
    """A metric's meaning: key, short label, unit, better direction, how it is computed."""

    key: str
    label: str
    unit: str  # "%", "% of baseline", "nats", "ratio" or "" (a count or a plain number)
    better: str | None  # "max", "min" or None (no direction: descriptive)
    formed: str  # how it is computed from the per-cell numbers (one line)

    @property
    def percent(self) -> bool:
        """Shown times 100."""
        return self.unit in ("%", "% of baseline")

    def as_dict(self) -> dict[str, object]:
        """JSON-able description (written beside numbers in JSON outputs)."""
        return {"key": self.key, "label": self.label, "unit": self.unit, "better": self.better,
                "formed": self.formed}  # fmt: skip


_FLUCT_NORM = {"l1": "L1", "l2": "L2"}
_FLUCT_KIND = {"": "", "_elem": " per element", "_rel": " relative"}

# (pattern, label, unit, better, how it is formed); {x} is the corruption, group or probe part
_TABLE: tuple[tuple[str, str, str, str | None, str], ...] = (
    ("clean_top1", "clean", "%", "max", "top-1 accuracy on the clean test set"),
    ("clean_top5", "clean top-5", "%", "max", "top-5 accuracy on the clean test set"),
    ("clean_nll", "clean NLL", "nats", "min", "mean negative log-likelihood on the clean test set"),
    ("clean_ece", "clean ECE", "%", "min", "expected calibration error (15 bins), clean test set"),
    ("mca", "mCA", "%", "max", "mean top-1 accuracy over every evaluated corruption x severity cell"),
    ("mca_common", "mCA (15)", "%", "max",
     "mean top-1 accuracy over the 15 common corruptions x their severities (RobustBench's number)"),
    ("mca_{x}", "{x}", "%", "max", "mean top-1 accuracy over the {x} corruptions x severities"),
    ("acc_{x}", "{x}", "%", "max", "top-1 accuracy on {x}, mean over its severities"),
    ("err_{x}", "{x} error", "%", "min", "top-1 error on {x}, mean over its severities"),
    ("mean_err", "mean error", "%", "min",
     "mean top-1 error over the 15 common corruptions x severities (not normalised: not mCE)"),
    ("ce_{x}", "CE {x}", "% of baseline", "min",
     "corruption error sum_s E_s / sum_s E^base_s (Hendrycks), E^base the baseline's mean error"),
    ("rce_{x}", "rel. CE {x}", "% of baseline", "min",
     "relative CE sum_s (E_s - E_clean) / sum_s (E^base_s - E^base_clean)"),
    ("mce", "mCE", "% of baseline", "min",
     "mean of CE_c over the 15 common corruptions (Hendrycks); the baseline scores 100"),
    ("rel_mce", "rel. mCE", "% of baseline", "min", "mean of the relative CE_c over the 15 common corruptions"),
    ("mean_nll", "NLL (corrupted)", "nats", "min", "mean NLL over the corrupted cells"),
    ("mean_ece", "ECE (corrupted)", "%", "min", "mean ECE over the corrupted cells"),
    ("abs_unit_mean", "|unit mean|", "", "min",
     "mean over units of |mean activation over clean samples| (zero-like mean: lower)"),
    ("sat", "saturation", "%", None, "fraction of outputs within 5% of the range from a bound"),
    ("sat_pos", "saturation +", "%", None, "fraction of outputs near the upper bound"),
    ("sat_neg", "saturation -", "%", None, "fraction of outputs near the lower bound"),
    ("asym_sat", "asym. saturation", "%", None, "|sat+ - sat-| per channel, averaged"),
    ("abs_skew", "|skewness|", "", None, "mean |skewness| of the channels' outputs"),
    ("sparsity", "post-BN sparsity", "%", None, "fraction of |z| < 0.1 after a BN fed by the activation"),
)
_FLUCT = re.compile(r"^(in_)?fluct_(l1|l2)(|_elem|_rel)_(mean|std)$")
_COMPILED = [(re.compile("^" + re.escape(p).replace(r"\{x\}", "(?P<x>.+)") + "$"), p, rest)
             for p, *rest in _TABLE]  # fmt: skip


def definition(key: str) -> Metric:
    """The definition of metric ``key`` (KeyError for a name no table uses)."""
    for rx, _pattern, (label, unit, better, formed) in _COMPILED:
        m = rx.match(key)
        if m:
            x = m.groupdict().get("x") or ""
            return Metric(key, label.format(x=x), unit, better, formed.format(x=x))
    m = _FLUCT.match(key)
    if m:
        return _fluct_metric(key, *m.groups())
    raise KeyError(f"no definition for metric {key!r}")


def _fluct_metric(key: str, inp: str | None, norm: str, kind: str, stat: str) -> Metric:
    side = "input" if inp else "output"
    what = f"{_FLUCT_NORM[norm]} fluctuation{_FLUCT_KIND[kind]} of the activation {side}"
    scale = {"": "", "_elem": " / elements", "_rel": " / ||g(x)||"}[kind]
    agg = "mean" if stat == "mean" else "std across samples"
    label = ("in. " if inp else "") + ("rel. " if kind == "_rel" else "") + "fluct." + (
        " sd" if stat == "std" else "")
    if kind == "_elem":
        label += f" ({_FLUCT_NORM[norm]}/elem)"
    elif kind == "":
        label += f" ({_FLUCT_NORM[norm]})"
    formed = (f"{what}: ||g(x_c) - g(x)||{scale} per sample, layer average, {agg}, "
              "mean over corrupted cells")  # fmt: skip
    unit = "ratio" if kind == "_rel" else ""
    return Metric(key, label, unit, None if inp else "min", formed)


def is_known(key: str) -> bool:
    """Whether ``key`` has a definition."""
    try:
        definition(key)
    except KeyError:
        return False
    return True


def with_label(metric: Metric, label: str) -> Metric:
    """The same metric under another display label (e.g. a corruption name in a wide table)."""
    return replace(metric, label=label)
