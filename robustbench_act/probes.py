"""Activation probes: paired clean/corrupted fluctuation, zero-like mean, saturation, sparsity.

A :class:`ModelProbe` hooks every activation *call site* of a model (a module called k
times in one forward is k sites, named ``"<qualname>#<call_idx>"``): a forward pre-hook
sees the activation's input before an in-place activation overwrites it, a forward hook
its output. The evaluation engine runs each batch clean first (the probe keeps that
batch's clean inputs/outputs per site), then corrupted, and the probe compares the two
on the fly. Everything is accumulated as streaming sums (float64 where the device has it),
so nothing of the dataset is kept beyond the current batch.

Operational definitions (``shared/reference/seeds.md``), per sample i and site l:

- fluctuation of the output ``d = g(x_c) - g(x_clean)``: ``fluct_l1 = ||d||_1``,
  ``fluct_l2 = ||d||_2``; ``*_elem`` divides by the number of elements of the site's
  output per sample; ``*_rel`` divides by the same norm of the clean output
  ``||g(x_clean)||``. ``in_*`` is the same for the activation's input.
- per cell: the per-sample value averaged over layers, then its mean and sample std
  (ddof=1) across samples (``fluct_l1_mean``, ``fluct_l1_std``, ...); per layer the
  same without the layer average (``layers`` table).
- zero-like mean (clean data): per unit (channel) the mean activation over the clean
  evaluation set; ``abs_unit_mean`` = mean over units of |unit mean|.
- bounded activations (``activations.activation_bounds(module)`` = (lo, hi)): per
  channel the fraction of outputs within 5 % of the range from the upper bound
  (``sat_pos``) and from the lower bound (``sat_neg``) - for a symmetric bound b this is
  exactly ``|f| >= 0.9 b`` -, ``sat = sat_pos + sat_neg``, ``asym_sat = |sat_pos - sat_neg|``
  and the skewness of the channel's outputs (``abs_skew`` = mean |skewness|).
- post-BN sparsity: fraction of ``|z| < 0.1`` in the output z of a BatchNorm that directly
  consumes an activation's output (swapped order Conv -> Act -> BN), detected by tensor
  identity at run time; reported for every site where it is detected.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from robustbench_act.parsing import PROBE_LEVELS  # noqa: F401  (re-exported: the probe levels)

_BASE = ("fluct_l1", "fluct_l2", "fluct_l1_elem", "fluct_l2_elem", "fluct_l1_rel", "fluct_l2_rel")
#: The 12 per-sample fluctuation statistics (output, then input).
FLUCT_STATS: tuple[str, ...] = _BASE + tuple(f"in_{s}" for s in _BASE)
#: Per-sample statistics written to ``samples.parquet`` (layer-averaged).
SAMPLE_FLUCT_STATS: tuple[str, ...] = (
    "fluct_l1_elem", "fluct_l2_elem", "in_fluct_l1_elem", "in_fluct_l2_elem", "fluct_l1_rel", "in_fluct_l1_rel",
)
#: Cell-level probe metric names in ``metrics.parquet`` (corrupted cells).
FLUCT_METRICS: tuple[str, ...] = tuple(f"{s}_{m}" for s in FLUCT_STATS for m in ("mean", "std"))
#: Clean-cell probe metric names (sat* only for bounded activations, sparsity when detected).
CLEAN_METRICS = ("abs_unit_mean", "sat", "sat_pos", "sat_neg", "asym_sat", "abs_skew", "sparsity")
SPARSITY_THRESHOLD = 0.1
SATURATION_FRACTION = 0.9
_EPS = 1e-12
SAMPLE_IDX = [FLUCT_STATS.index(s) for s in SAMPLE_FLUCT_STATS]



def check_level(level: str) -> str:
    """Validate a ``--probes`` level (one parser: :func:`robustbench_act.parsing.parse_probes`)."""
    from robustbench_act.parsing import parse_probes

    return parse_probes(level)


def find_sites(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Activation modules of ``model`` (qualified name, module), gates excluded: surgery's finder."""
    from robustbench_act.surgery import find_activations

    # attention / squeeze-excite gates are not "the activation"
    return [(str(item[0]), item[1]) for item in find_activations(model) if not getattr(item, "gate", False)]


def _bounds(module: nn.Module) -> tuple[float, float] | None:
    from robustbench_act.activations import activation_bounds

    try:
        b = activation_bounds(module)
    except Exception:  # an activation the registry does not know is simply unbounded
        return None
    if b is None:
        return None
    lo, hi = float(b[0]), float(b[1])
    if not (math.isfinite(lo) or math.isfinite(hi)):
        return None
    return lo, hi


def _accum_dtype(device: torch.device) -> torch.dtype:
    return torch.float32 if device.type == "mps" else torch.float64


def _norms(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    f = x.detach().reshape(x.shape[0], -1)
    return f.abs().sum(1, dtype=torch.float32), torch.linalg.vector_norm(f, 2, dim=1, dtype=torch.float32)


def _fluct(a: torch.Tensor, clean: torch.Tensor, c_l1: torch.Tensor, c_l2: torch.Tensor) -> torch.Tensor:
    """(6, N) per-sample L1, L2, per-element and relative fluctuation of a vs clean."""
    a = a.detach()
    exact = a.dtype == clean.dtype and a.dtype in (torch.float32, torch.float64)
    d = (a - clean) if exact else (a.float() - clean.float())
    d = d.reshape(d.shape[0], -1)
    numel = float(d.shape[1])
    l2 = torch.linalg.vector_norm(d, 2, dim=1, dtype=torch.float32)
    l1 = d.abs_().sum(1, dtype=torch.float32)  # d is our own temporary
    return torch.stack([l1, l2, l1 / numel, l2 / numel, l1 / (c_l1 + _EPS), l2 / (c_l2 + _EPS)])


def _channel_view(y: torch.Tensor) -> torch.Tensor:
    """(C, M) view of an activation output: channels = dim 1, or the last dim of (N, L, C) tokens."""
    y = y.detach().float()
    if y.ndim <= 1:
        return y.reshape(1, -1)
    cdim = y.ndim - 1 if y.ndim == 3 else 1
    return y.transpose(0, cdim).reshape(y.shape[cdim], -1)


class _Site:
    """Streaming state of one call site."""

    __slots__ = ("name", "index", "qualname", "bounds", "units", "sparse", "clean")

    def __init__(self, name: str, index: int, qualname: str, bounds: tuple[float, float] | None):
        self.name = name
        self.index = index
        self.qualname = qualname
        self.bounds = bounds
        self.units: torch.Tensor | None = None  # (7, C): count, s1, s2, s3, sat+, sat-, (spare)
        self.sparse: torch.Tensor | None = None  # (2,): small, total
        self.clean: dict[str, torch.Tensor] = {}


class ModelProbe:
    """Hooks on one model's activation call sites; see the module docstring for the statistics."""

    def __init__(self, model: nn.Module, level: str = "all"):
        self.level = check_level(level)
        self.model = model
        self.mode = "off"
        self.record_units = False
        self.cell: Any = None
        self.sites: dict[str, _Site] = {}
        self._handles: list[Any] = []
        self._names: dict[int, str] = {}
        self._bounds: dict[int, tuple[float, float] | None] = {}
        self._calls: dict[str, int] = {}
        self._stack: dict[int, list[str]] = {}
        self._last_act: tuple[str, torch.Tensor] | None = None
        self._bn_frames: list[list[tuple[str, torch.Tensor]]] = []
        self._bn_pending: dict[int, list[str | None]] = {}
        # per cell: site -> (12, 2) sums; "_avg" -> (12, 2) sums of the layer average; n
        self.fluct: dict[Any, dict[str, torch.Tensor]] = {}
        self.fluct_n: dict[Any, int] = {}
        self._batch_avg: torch.Tensor | None = None
        self._batch_sites = 0
        if self.level != "none":
            self._attach()

    # ------------------------------------------------------------------ hooks
    def _attach(self) -> None:
        seen: set[int] = set()
        for name, mod in find_sites(self.model):
            if id(mod) in seen:
                continue
            seen.add(id(mod))
            self._names[id(mod)] = name
            self._bounds[id(mod)] = _bounds(mod)
            self._handles.append(mod.register_forward_pre_hook(self._pre_hook))
            self._handles.append(mod.register_forward_hook(self._post_hook))
        if self.level == "all":
            for mod in self.model.modules():
                if isinstance(mod, nn.modules.batchnorm._BatchNorm):
                    self._handles.append(mod.register_forward_pre_hook(self._bn_pre_hook))
                    self._handles.append(mod.register_forward_hook(self._bn_post_hook))

    def detach(self) -> None:
        """Remove every hook and drop the stored clean tensors."""
        for h in self._handles:
            h.remove()
        self._handles.clear()
        for s in self.sites.values():
            s.clean.clear()

    def _site(self, module: nn.Module) -> _Site:
        qual = self._names[id(module)]
        k = self._calls.get(qual, 0)
        self._calls[qual] = k + 1
        name = f"{qual}#{k}"
        site = self.sites.get(name)
        if site is None:
            site = _Site(name, len(self.sites), qual, self._bounds[id(module)])
            self.sites[name] = site
        self._stack.setdefault(id(module), []).append(name)
        return site

    def _pre_hook(self, module: nn.Module, args: tuple) -> None:
        if self.mode == "off" or not args or not isinstance(args[0], torch.Tensor):
            return
        site = self._site(module)
        x = args[0]
        if self.mode == "clean":
            site.clean["in"] = x.detach().clone()
            site.clean["in_l1"], site.clean["in_l2"] = _norms(x)
        elif self.mode == "corrupt" and "in" in site.clean and site.clean["in"].shape == x.shape:
            c = site.clean
            self._add(site, 6, _fluct(x, c["in"], c["in_l1"], c["in_l2"]))

    def _post_hook(self, module: nn.Module, args: tuple, output: Any) -> None:
        stack = self._stack.get(id(module))
        if self.mode == "off" or not stack:
            return
        site = self.sites[stack.pop()]
        if not isinstance(output, torch.Tensor):
            return
        if self.mode == "clean":
            site.clean["out"] = output.detach().clone()
            site.clean["out_l1"], site.clean["out_l2"] = _norms(output)
            if self.record_units and self.level == "all":
                self._units(site, output)
                self._last_act = (site.name, output)
                for frame in self._bn_frames:
                    frame.append((site.name, output))
        elif self.mode == "corrupt" and "out" in site.clean and site.clean["out"].shape == output.shape:
            c = site.clean
            self._add(site, 0, _fluct(output, c["out"], c["out_l1"], c["out_l2"]))

    def _bn_pre_hook(self, module: nn.Module, args: tuple) -> None:
        if self.mode != "clean" or not self.record_units:
            return
        direct = None
        if args and isinstance(args[0], torch.Tensor) and self._last_act is not None:
            name, out = self._last_act
            if out.shape == args[0].shape and out.data_ptr() == args[0].data_ptr():
                direct = name
        self._bn_pending.setdefault(id(module), []).append(direct)
        self._bn_frames.append([])

    def _bn_post_hook(self, module: nn.Module, args: tuple, output: Any) -> None:
        pending = self._bn_pending.get(id(module))
        if self.mode != "clean" or not self.record_units or not pending:
            return
        direct = pending.pop()
        inner = self._bn_frames.pop() if self._bn_frames else []
        if not isinstance(output, torch.Tensor):
            return
        target = direct
        if target is None and inner:
            # an activation called inside this BN module (fused act-then-BN): the BN output is
            # post-BN when it is not the activation's own output
            name, act_out = inner[-1]
            if act_out.data_ptr() != output.data_ptr():
                target = name
        if target is None:
            return
        site = self.sites[target]
        z = output.detach().float()
        small = (z.abs() < SPARSITY_THRESHOLD).sum().to(_accum_dtype(z.device))
        vec = torch.stack([small, torch.tensor(float(z.numel()), dtype=small.dtype, device=z.device)])
        site.sparse = vec if site.sparse is None else site.sparse + vec

    # ------------------------------------------------------------------ statistics
    def _units(self, site: _Site, y: torch.Tensor) -> None:
        v = _channel_view(y)
        dt = _accum_dtype(v.device)
        # per-batch partial sums in float32 (pairwise reductions), accumulated in float64
        v2 = v * v
        rows = [torch.full((v.shape[0],), float(v.shape[1]), dtype=dt, device=v.device),
                v.sum(1).to(dt), v2.sum(1).to(dt)]
        rows.append((v2 * v).sum(1).to(dt) if site.bounds is not None else torch.zeros_like(rows[0]))
        if site.bounds is not None:
            lo, hi = site.bounds
            if math.isfinite(lo) and math.isfinite(hi):
                margin = (1.0 - SATURATION_FRACTION) / 2.0 * (hi - lo)
                t_hi, t_lo = hi - margin, lo + margin
            else:
                t_hi = SATURATION_FRACTION * hi if math.isfinite(hi) else math.inf
                t_lo = SATURATION_FRACTION * lo if math.isfinite(lo) else -math.inf
            rows += [(v >= t_hi).sum(1).to(dt), (v <= t_lo).sum(1).to(dt)]
        else:
            rows += [torch.zeros_like(rows[0]), torch.zeros_like(rows[0])]
        stats = torch.stack(rows)
        if site.units is None or site.units.shape != stats.shape:
            site.units = stats
        else:
            site.units += stats

    def _add(self, site: _Site, offset: int, vals: torch.Tensor) -> None:
        """Accumulate (6, N) per-sample values of ``site`` into the current cell."""
        cell = self.fluct.setdefault(self.cell, {})
        dt = _accum_dtype(vals.device)
        v = vals.to(dt)
        acc = cell.get(site.name)
        if acc is None:
            acc = cell[site.name] = torch.zeros(len(FLUCT_STATS), 2, dtype=dt, device=vals.device)
        acc[offset:offset + 6, 0] += v.sum(1)
        acc[offset:offset + 6, 1] += (v * v).sum(1)
        if self._batch_avg is None:
            self._batch_avg = torch.zeros(len(FLUCT_STATS), v.shape[1], dtype=dt, device=v.device)
        self._batch_avg[offset:offset + 6] += v
        if offset == 0:
            self._batch_sites += 1

    # ------------------------------------------------------------------ forward protocol
    def begin(self, mode: str, *, cell: Any = None, record_units: bool = False) -> None:
        """Prepare for one forward: ``clean`` (store and, for the clean cell, unit stats) or ``corrupt``."""
        if self.level == "none":
            return
        self.mode = mode
        self.cell = cell
        self.record_units = record_units
        self._calls.clear()
        self._stack.clear()
        self._last_act = None
        self._bn_frames.clear()
        self._bn_pending.clear()
        self._batch_avg = None
        self._batch_sites = 0

    def end(self) -> torch.Tensor | None:
        """Finish a forward; in corrupt mode return (12, N) layer-averaged per-sample values."""
        if self.level == "none":
            return None
        mode, self.mode = self.mode, "off"
        self._last_act = None
        if mode != "corrupt" or self._batch_avg is None or self._batch_sites == 0:
            return None
        avg = self._batch_avg / self._batch_sites
        acc = self.fluct.setdefault(self.cell, {})
        tot = acc.get("_avg")
        if tot is None:
            tot = acc["_avg"] = torch.zeros(len(FLUCT_STATS), 2, dtype=avg.dtype, device=avg.device)
        tot[:, 0] += avg.sum(1)
        tot[:, 1] += (avg * avg).sum(1)
        self.fluct_n[self.cell] = self.fluct_n.get(self.cell, 0) + int(avg.shape[1])
        self._batch_avg = None
        return avg

    def release_clean(self) -> None:
        """Drop the current batch's stored clean tensors."""
        for s in self.sites.values():
            s.clean.clear()

    # ------------------------------------------------------------------ reduction and frames
    def state_tensors(self, cells: Iterable[Any], units: bool) -> list[torch.Tensor]:
        """Every accumulator of the given cells (and unit stats) in a fixed order, for all-reduce."""
        out: list[torch.Tensor] = []
        for cell in cells:
            acc = self.fluct.get(cell, {})
            for name in ["_avg", *self.sites]:
                if name in acc:
                    out.append(acc[name])
        if units:
            for s in self.sites.values():
                if s.units is not None:
                    out.append(s.units)
                if s.sparse is not None:
                    out.append(s.sparse)
        return out

    def fluct_records(self, cell: Any, n: int) -> tuple[dict[str, float], list[tuple[str, int, str, float]]]:
        """Cell-level metrics and per-layer (layer, index, stat, value) rows of one corrupted cell."""
        from robustbench_act.metrics import mean_std

        acc = self.fluct.get(cell, {})
        metrics: dict[str, float] = {}
        layers: list[tuple[str, int, str, float]] = []
        if "_avg" in acc:
            a = acc["_avg"].double().cpu()
            for i, stat in enumerate(FLUCT_STATS):
                m, s = mean_std(float(a[i, 0]), float(a[i, 1]), n)
                metrics[f"{stat}_mean"], metrics[f"{stat}_std"] = m, s
        for site in self.sites.values():
            if site.name not in acc:
                continue
            a = acc[site.name].double().cpu()
            for i, stat in enumerate(FLUCT_STATS):
                m, s = mean_std(float(a[i, 0]), float(a[i, 1]), n)
                layers.append((site.name, site.index, f"{stat}_mean", m))
                layers.append((site.name, site.index, f"{stat}_std", s))
        return metrics, layers

    def clean_records(self) -> tuple[dict[str, float], list[tuple[str, int, str, float]],
                                     list[tuple[str, int, str, float]]]:
        """Clean-cell metrics, per-layer rows and per-unit (layer, unit, stat, value) rows."""
        per_layer: dict[str, list[float]] = {k: [] for k in CLEAN_METRICS}
        layers: list[tuple[str, int, str, float]] = []
        units: list[tuple[str, int, str, float]] = []
        for site in self.sites.values():
            vals: dict[str, float] = {}
            if site.units is not None:
                u = site.units.double().cpu()
                cnt = u[0].clamp_min(1.0)
                mean = u[1] / cnt
                ex2 = u[2] / cnt
                ex3 = u[3] / cnt
                var = (ex2 - mean * mean).clamp_min(0.0)
                std = var.sqrt()
                vals["abs_unit_mean"] = float(mean.abs().mean())
                unit_stats: dict[str, torch.Tensor] = {"mean": mean, "std": std}
                if site.bounds is not None:
                    sp, sn = u[4] / cnt, u[5] / cnt
                    mu3 = ex3 - 3 * mean * ex2 + 2 * mean**3
                    skew = torch.where(var > 1e-12, mu3 / var.clamp_min(1e-12) ** 1.5,
                                       torch.zeros_like(var))
                    unit_stats.update(sat=sp + sn, sat_pos=sp, sat_neg=sn,
                                      asym_sat=(sp - sn).abs(), skew=skew)
                    vals.update(sat=float((sp + sn).mean()), sat_pos=float(sp.mean()),
                                sat_neg=float(sn.mean()), asym_sat=float((sp - sn).abs().mean()),
                                abs_skew=float(skew.abs().mean()))
                for stat, t in unit_stats.items():
                    units.extend((site.name, c, stat, float(v)) for c, v in enumerate(t.tolist()))
            if site.sparse is not None:
                sp = site.sparse.double().cpu()
                vals["sparsity"] = float(sp[0] / sp[1]) if float(sp[1]) > 0 else float("nan")
            for k, v in vals.items():
                layers.append((site.name, site.index, k, v))
                per_layer[k].append(v)
        metrics = {k: sum(v) / len(v) for k, v in per_layer.items() if v}
        return metrics, layers, units

    def reset_cells(self, cells: Iterable[Any]) -> None:
        """Forget the accumulators of finished cells."""
        for c in cells:
            self.fluct.pop(c, None)
            self.fluct_n.pop(c, None)


require_level = check_level  # the same parser under its older name
