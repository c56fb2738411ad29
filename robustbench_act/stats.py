"""Statistics that cannot lie: paired tests over seeds, a paired bootstrap over test images, Holm.

Rules (the project's standard, enforced here so every table obeys them):

- A test over seeds needs at least :data:`MIN_PAIRS` paired seeds; with fewer there is
  no test and no interval, and the result says why.
- Differences that are all equal (zero variance) never give p = 0: the t-test is
  undefined there, so the exact sign-flip permutation test is used instead (with n
  pairs its smallest two-sided p is 2 / 2^n).
- Every comparison carries an effect size: the mean paired difference with a 95 %
  interval (t interval over seeds, percentile interval of the image bootstrap), and
  for seeds also Cohen's d_z (mean / sd of the differences).
- With one seed the uncertainty that remains is the test set's: every model saw the
  same (identically corrupted) images, so the per-image differences are resampled
  (paired bootstrap, explicit seed, same draws for every column).
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Sequence

import numpy as np

MIN_PAIRS = 3
BOOTSTRAP_SAMPLES = 2000
BOOTSTRAP_SEED = 0
_EXACT_MAX = 16  # sign-flip test enumerates 2^n assignments up to this n
_ROUNDING = 1e-10  # relative spread of differences below which they count as equal
NO_TEST_FEW = f"fewer than {MIN_PAIRS} paired seeds"


def _empty(n: int, mean_diff: float, reason: str) -> dict[str, float | int | str]:
    return {"n_pairs": n, "mean_diff": mean_diff, "sd_diff": math.nan, "ci_low": math.nan,
            "ci_high": math.nan, "effect_dz": math.nan, "t_stat": math.nan, "t_p": math.nan,
            "w_stat": math.nan, "w_p": math.nan, "p": math.nan, "test": "none", "note": reason}  # fmt: skip


def sign_flip_p(d: Sequence[float] | np.ndarray) -> float:
    """Exact two-sided sign-flip permutation p of the mean of paired differences ``d``."""
    d = np.asarray(d, dtype=float)
    n = len(d)
    if n == 0:
        return math.nan
    obs = abs(d.mean())
    if n <= _EXACT_MAX:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=n)))
    else:  # Monte Carlo with a fixed seed beyond 2^16 assignments
        signs = np.random.default_rng(BOOTSTRAP_SEED).choice((1.0, -1.0), size=(100_000, n))
    means = np.abs(signs @ d) / n
    return float(np.mean(means >= obs - 1e-12 * max(1.0, obs)))


def paired_tests(x: Sequence[float], y: Sequence[float]) -> dict[str, float | int | str]:
    """Paired comparison of x vs y over seeds: mean difference, 95 % t interval, d_z, tests.

    ``p`` is the primary test's p-value: the paired t-test, or the exact sign-flip test
    when the differences have zero variance; ``w_p`` is Wilcoxon's signed-rank (scipy).
    """
    from scipy import stats

    a, b = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ok = ~(np.isnan(a) | np.isnan(b))
    d = a[ok] - b[ok]
    n = len(d)
    mean = float(d.mean()) if n else math.nan
    if n < MIN_PAIRS:
        return _empty(n, mean, NO_TEST_FEW)
    res = _empty(n, mean, "")
    sd = float(d.std(ddof=1))
    res["sd_diff"] = sd
    # equal up to float rounding (0.9 - 0.8 vs 0.8 - 0.7): the t statistic would be noise / ~0
    scale = float(max(np.abs(a[ok]).max(), np.abs(b[ok]).max(), 1e-300))
    if sd <= _ROUNDING * scale or not math.isfinite(sd):
        p = 1.0 if mean == 0 else sign_flip_p(d)
        res.update(p=p, test="exact sign-flip", note="all paired differences equal: no t-test, no interval")
        return res
    half = float(stats.t.ppf(0.975, n - 1)) * sd / math.sqrt(n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = stats.ttest_rel(a[ok], b[ok])
        try:
            w = stats.wilcoxon(a[ok], b[ok])
            res.update(w_stat=float(w.statistic), w_p=float(w.pvalue))
        except ValueError:
            pass
    res.update(ci_low=mean - half, ci_high=mean + half, effect_dz=mean / sd, t_stat=float(t.statistic),
               t_p=float(t.pvalue), p=float(t.pvalue), test="paired t")  # fmt: skip
    return res


def bootstrap_diff(diffs: np.ndarray, *, samples: int = BOOTSTRAP_SAMPLES,
                   seed: int = BOOTSTRAP_SEED) -> dict[str, float | int | str]:  # fmt: skip
    """Paired bootstrap over images of per-image differences (images x columns).

    Returns, per column, the mean difference, its 95 % percentile interval and the two-sided
    bootstrap p ((count + 1) / (B + 1) of resamples on the other side of 0, doubled). The same
    resampled images serve every column (one family of draws from ``seed``).
    """
    d = np.asarray(diffs, dtype=float)
    if d.ndim == 1:
        d = d[:, None]
    n, k = d.shape
    if n < 2:
        return {"mean": np.full(k, np.nan), "ci_low": np.full(k, np.nan), "ci_high": np.full(k, np.nan),
                "p": np.full(k, np.nan), "n_images": n}  # fmt: skip
    rng = np.random.default_rng(seed)
    boot = np.empty((samples, k))
    chunk = max(1, 4_000_000 // max(n, 1))
    for start in range(0, samples, chunk):
        stop = min(samples, start + chunk)
        idx = rng.integers(0, n, size=(stop - start, n))
        boot[start:stop] = np.nanmean(d[idx], axis=1)
    mean = np.nanmean(d, axis=0)
    lo, hi = np.percentile(boot, [2.5, 97.5], axis=0)
    below = (boot <= 0).sum(axis=0)
    above = (boot >= 0).sum(axis=0)
    p = np.minimum(1.0, 2 * (np.minimum(below, above) + 1) / (samples + 1))
    p = np.where(np.all(d == 0, axis=0), 1.0, p)
    return {"mean": mean, "ci_low": lo, "ci_high": hi, "p": p, "n_images": n}


def holm(pvalues: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (NaN entries stay NaN and do not count in m)."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full_like(p, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    m = len(ok)
    if m == 0:
        return out
    order = ok[np.argsort(p[ok], kind="mergesort")]
    running = 0.0
    for i, idx in enumerate(order):
        running = max(running, min(1.0, (m - i) * p[idx]))
        out[idx] = running
    return out


def significance_mark(p: float, w_p: float = math.nan) -> str:
    """Table mark for Holm-adjusted p-values: '*' / '**' (primary test), '†' (Wilcoxon)."""
    mark = ""
    if not math.isnan(p) and p < 0.01:
        mark = "**"
    elif not math.isnan(p) and p < 0.05:
        mark = "*"
    if not math.isnan(w_p) and w_p < 0.05:
        mark += "†"
    return mark
