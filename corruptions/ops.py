"""Shared batched image operations (padding modes, Gaussian filtering, per-sample kernels).

Border modes follow scipy.ndimage's names, because the reference scripts use scipy and
scikit-image: ``reflect`` (d c b a | a b c d), ``mirror`` (d c b | a b c d),
``nearest`` (a a a | a b c d), ``wrap`` and ``constant`` (zeros).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from corruptions import native

BORDER_MODES = ("reflect", "mirror", "nearest", "wrap", "constant")


def index_add_deterministic(target: torch.Tensor, index: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """``target.index_add_(0, index, values)`` for 1-D ``target`` with a fixed summation order.

    CUDA's default index_add_ sums colliding entries with atomics, in an order that changes
    from run to run (last-bit differences); under PyTorch's deterministic mode it uses a
    sorted, ordered accumulation instead. The mode is switched on for this call only.
    On CPU the sum runs in index order anyway.
    """
    if target.device.type == "cpu":
        return target.index_add_(0, index, values)
    was_on = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        return target.index_add_(0, index, values)
    finally:
        torch.use_deterministic_algorithms(was_on, warn_only=warn_only)


def border_indices(size: int, before: int, after: int, mode: str, device: torch.device) -> torch.Tensor:
    """Source indices (length before + size + after) for padding one axis in ``mode``."""
    pos = torch.arange(-before, size + after, device=device)
    if mode == "nearest":
        return pos.clamp(0, size - 1)
    if mode == "wrap":
        return pos % size
    if mode == "reflect":
        if size == 1:
            return torch.zeros_like(pos)
        period = 2 * size
        p = pos % period
        return torch.where(p < size, p, period - 1 - p)
    if mode == "mirror":
        if size == 1:
            return torch.zeros_like(pos)
        period = 2 * size - 2
        p = pos % period
        return torch.where(p < size, p, period - p)
    raise ValueError(f"unknown border mode {mode!r}; modes: {', '.join(BORDER_MODES)}")


#: scipy border modes that F.pad implements natively (for pads shorter than the axis)
_TORCH_PAD = {"nearest": "replicate", "mirror": "reflect", "wrap": "circular"}


def select_last(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``x.index_select(-1, index)``; float32 through a 2-D view, the same values 2-4x faster.

    On a CPU, torch selects columns of a 2-D float32 tensor by a fast path that 3-D/4-D
    tensors and other dtypes miss (int32 and float64 are slower through the view, measured).
    """
    if x.dtype != torch.float32 or x.dim() <= 2 or x.device.type != "cpu":
        return x.index_select(-1, index)
    return x.reshape(-1, x.shape[-1]).index_select(1, index).view(*x.shape[:-1], index.numel())


def pad2d(x: torch.Tensor, pad_h: tuple[int, int], pad_w: tuple[int, int], mode: str) -> torch.Tensor:
    """Pad the last two dims of ``x`` with a scipy-named border mode (any pad size).

    F.pad's native kernels where they mean the same (10-30x faster on CPU than gathers);
    index gathers, only along the padded axes, for longer pads and ``reflect``.
    """
    if mode == "constant":
        return F.pad(x, (pad_w[0], pad_w[1], pad_h[0], pad_h[1]))
    h, w = x.shape[-2:]
    if mode in _TORCH_PAD and x.ndim in (3, 4) and max(pad_h) < h and max(pad_w) < w:
        return F.pad(x, (pad_w[0], pad_w[1], pad_h[0], pad_h[1]), mode=_TORCH_PAD[mode])
    if pad_h != (0, 0):
        x = x.index_select(-2, border_indices(h, pad_h[0], pad_h[1], mode, x.device))
    if pad_w != (0, 0):
        x = select_last(x, border_indices(w, pad_w[0], pad_w[1], mode, x.device))
    return x


def gaussian_kernel1d(sigma: float, truncate: float = 4.0, radius: int | None = None) -> torch.Tensor:
    """Normalised 1-D Gaussian taps as scipy.ndimage builds them (radius = int(truncate*sigma+0.5))."""
    if radius is None:
        radius = int(truncate * float(sigma) + 0.5)
    if sigma <= 0 or radius == 0:
        return torch.ones(1, dtype=torch.float64)
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (t / float(sigma)) ** 2)
    return k / k.sum()


def separable_filter(x: torch.Tensor, kernel_h: torch.Tensor, kernel_w: torch.Tensor, mode: str) -> torch.Tensor:
    """Correlate every (sample, channel) plane of ``x`` (N, C, H, W) with kh (rows) then kw (cols)."""
    n, c, h, w = x.shape
    kh = kernel_h.to(device=x.device, dtype=x.dtype)
    kw = kernel_w.to(device=x.device, dtype=x.dtype)
    rh, rw = (kh.numel() - 1) // 2, (kw.numel() - 1) // 2
    y = x.reshape(n * c, h, w)
    if rh:
        y = correlate_planes(pad2d(y, (rh, kh.numel() - 1 - rh), (0, 0), mode), kh.view(-1, 1))
    if rw:
        y = correlate_planes(pad2d(y, (0, 0), (rw, kw.numel() - 1 - rw), mode), kw.view(1, -1))
    return y.reshape(n, c, h, w)


def correlate_planes(planes: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Valid correlation of every plane of ``planes`` (P, H, W) with one 2-D ``kernel``.

    Runs as one depthwise convolution with P groups: on CPU, oneDNN's path for a
    one-channel convolution over a batch of P planes is about 20x slower.
    """
    p, h, w = planes.shape
    kh, kw = kernel.shape
    weight = kernel.to(device=planes.device, dtype=planes.dtype).expand(p, 1, kh, kw).contiguous()
    y = F.conv2d(planes.reshape(1, p, h, w), weight, groups=p)
    return y.reshape(p, h - kh + 1, w - kw + 1)


def gaussian_filter(x: torch.Tensor, sigma: float, mode: str = "nearest", truncate: float = 4.0) -> torch.Tensor:
    """scipy.ndimage.gaussian_filter over H and W of each plane (skimage's default mode is nearest)."""
    k = gaussian_kernel1d(sigma, truncate)
    return separable_filter(x, k, k, mode)


def filter2d_per_sample(x: torch.Tensor, kernels: torch.Tensor, mode: str = "reflect") -> torch.Tensor:
    """Correlate each sample's channels with its own 2-D kernel.

    ``x``: (N, C, H, W); ``kernels``: (N, kh, kw) or (kh, kw) with odd sizes. One grouped
    convolution for the whole batch, no Python loop over samples.
    """
    n, c, h, w = x.shape
    if kernels.ndim == 2:
        kernels = kernels.expand(n, *kernels.shape)
    kh, kw = kernels.shape[-2:]
    if kh % 2 == 0 or kw % 2 == 0:
        raise ValueError(f"kernel sizes must be odd, got {kh}x{kw}")
    xp = pad2d(x, (kh // 2, kh // 2), (kw // 2, kw // 2), mode)
    weight = kernels.to(x.dtype).repeat_interleave(c, dim=0).unsqueeze(1)  # (N*C, 1, kh, kw)
    y = F.conv2d(xp.reshape(1, n * c, *xp.shape[-2:]), weight, groups=n * c)
    return y.reshape(n, c, h, w)


def disk_kernel(radius: float, alias_sigma: float) -> torch.Tensor:
    """Normalised anti-aliased disk (defocus kernel), sampled on at least -8..8 like the reference."""
    if radius <= 8:
        half = 8
        ksize = 3
    else:
        half = int(math.ceil(radius))
        ksize = 5
    coords = torch.arange(-half, half + 1, dtype=torch.float64)
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    disk = ((xx**2 + yy**2) <= radius**2).to(torch.float64)
    disk = disk / disk.sum()
    # anti-alias with a small Gaussian (cv2.GaussianBlur with ksize x ksize)
    g = _cv2_gaussian_taps(ksize, alias_sigma)
    disk = F.conv2d(
        F.pad(disk.view(1, 1, *disk.shape), (ksize // 2,) * 4, mode="reflect"),
        (g.view(-1, 1) * g.view(1, -1)).view(1, 1, ksize, ksize),
    )[0, 0]
    return disk


def _cv2_gaussian_taps(ksize: int, sigma: float) -> torch.Tensor:
    """OpenCV's getGaussianKernel(ksize, sigma) taps, normalised."""
    t = torch.arange(ksize, dtype=torch.float64) - (ksize - 1) / 2
    k = torch.exp(-(t**2) / (2 * sigma**2))
    return k / k.sum()


# ---------------------------------------------------------------------------
# Per-tap border mapping, bilinear sampling, filter matrices, shared-kernel filters
# ---------------------------------------------------------------------------


def border_map(idx: torch.Tensor, size: int, mode: str) -> torch.Tensor:
    """Map integer indices (any tensor, any range) into [0, size) with a scipy border mode.

    ``constant`` maps out-of-range indices to ``-1`` (the caller masks them).
    """
    if mode == "nearest":
        return idx.clamp(0, size - 1)
    if mode == "wrap":
        return idx % size
    if mode == "constant":
        return torch.where((idx >= 0) & (idx < size), idx, torch.full_like(idx, -1))
    if size == 1:
        return torch.zeros_like(idx)
    if mode not in ("reflect", "mirror"):
        raise ValueError(f"unknown border mode {mode!r}; modes: {', '.join(BORDER_MODES)}")
    edge = 1 if mode == "reflect" else 0  # reflect repeats the edge pixel, mirror does not
    period = 2 * size - 2 + 2 * edge
    if idx.numel() and int(idx.min()) >= -size + 1 - edge and int(idx.max()) < 2 * size - 1 + edge:
        # at most one reflection on either side (the same indices, no integer division):
        # fold the left side (reflect: -1 - i, the bitwise not; mirror: -i), then the
        # right one as the smaller of i and its reflection
        sign = idx >> (8 * idx.element_size() - 1)  # -1 where negative, else 0
        low = torch.bitwise_xor(idx, sign) if edge else idx.abs()
        return torch.minimum(low, torch.rsub(low, period - edge))
    p = idx % period
    return torch.where(p < size, p, period - edge - p)


def sample_bilinear(x: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor, mode: str = "reflect") -> torch.Tensor:
    """Bilinear samples of ``x`` (N, C, H, W) at per-sample pixel coordinates.

    ``ys``/``xs``: (N, Ho, Wo) row/column coordinates in pixels (0 = first pixel centre).
    Every one of the four taps is mapped into the image with ``mode`` separately, which
    is what scipy.ndimage.map_coordinates(order=1) and OpenCV's remap do, so
    ``reflect`` / ``mirror`` here equal scipy's modes and cv2's BORDER_REFLECT / _101.
    One gather per tap for the whole batch; float32 on the CPU takes the native kernel (the
    same bits in one pass).
    """
    n, c, h, w = x.shape
    ho, wo = ys.shape[-2:]
    if x.dtype == torch.float32 and native.active(x.device) and ys.shape == xs.shape == (n, ho, wo):
        return native.sample_bilinear(x, ys, xs, mode)
    ys = ys.to(x.dtype)
    xs = xs.to(x.dtype)
    y0f = torch.floor(ys)
    x0f = torch.floor(xs)
    fy = (ys - y0f).unsqueeze(1)
    fx = (xs - x0f).unsqueeze(1)
    y0 = y0f.to(torch.int64)
    x0 = x0f.to(torch.int64)
    flat = x.reshape(n, c, h * w)
    rows = [border_map(y0 + dy, h, mode) for dy in (0, 1)]
    cols = [border_map(x0 + dx, w, mode) for dx in (0, 1)]
    out = None
    for yi, wy in zip(rows, (1.0 - fy, fy)):
        for xi, wx in zip(cols, (1.0 - fx, fx)):
            idx = (yi * w + xi).reshape(n, 1, ho * wo)
            if mode == "constant":
                valid = ((yi >= 0) & (xi >= 0)).reshape(n, 1, ho * wo)
                idx = idx.clamp(min=0)
            v = flat.gather(2, idx.expand(n, c, ho * wo))
            if mode == "constant":
                v = v * valid
            term = v.reshape(n, c, ho, wo).mul_(wy * wx)
            out = term if out is None else out.add_(term)
    assert out is not None
    return out


def filter_matrix(size: int, kernel: torch.Tensor, mode: str, device: torch.device | None = None,
                  dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(size, size) matrix A with ``A @ v`` = 1-D correlation of ``v`` with ``kernel`` in ``mode``.

    Folds every tap of a kernel of any length (longer than the signal too: multiple
    reflections) onto the signal, so a long Gaussian costs one small matmul.
    """
    k = kernel.to(torch.float64).flatten()
    r = (k.numel() - 1) // 2
    rows = torch.arange(size).view(-1, 1).expand(size, k.numel())
    pos = rows + torch.arange(k.numel()).view(1, -1) - r
    cols = border_map(pos, size, mode)
    weights = k.view(1, -1).expand(size, k.numel())
    keep = cols >= 0
    a = torch.zeros(size, size, dtype=torch.float64)
    a.index_put_((rows[keep], cols[keep]), weights[keep], accumulate=True)
    return a.to(device=device, dtype=dtype)


def separable_filter_matrix(x: torch.Tensor, kernel_h: torch.Tensor, kernel_w: torch.Tensor,
                            mode: str) -> torch.Tensor:
    """Like :func:`separable_filter` but as two matmuls (fast for very long kernels)."""
    h, w = x.shape[-2:]
    ah = filter_matrix(h, kernel_h, mode, x.device, x.dtype)
    aw = filter_matrix(w, kernel_w, mode, x.device, x.dtype)
    return torch.matmul(torch.matmul(ah, x), aw.transpose(0, 1))


def filter2d(x: torch.Tensor, kernel: torch.Tensor, mode: str = "mirror") -> torch.Tensor:
    """Correlate every (sample, channel) plane of ``x`` with one shared odd 2-D kernel.

    ``mode="mirror"`` is OpenCV's default BORDER_REFLECT_101 (cv2.filter2D). All-zero
    outer rings of the kernel are dropped first (exact, and much faster for small disks).
    """
    k = kernel.to(torch.float64)
    while k.shape[0] > 1 and k.shape[1] > 1 and bool((k[0] == 0).all() & (k[-1] == 0).all()
                                                    & (k[:, 0] == 0).all() & (k[:, -1] == 0).all()):
        k = k[1:-1, 1:-1]
    kh, kw = k.shape
    if kh % 2 == 0 or kw % 2 == 0:
        raise ValueError(f"kernel sizes must be odd, got {kh}x{kw}")
    n, c, h, w = x.shape
    y = pad2d(x.reshape(n * c, h, w), (kh // 2, kh // 2), (kw // 2, kw // 2), mode)
    return correlate_planes(y, k).reshape(n, c, h, w)



def weight_groups(kernel: torch.Tensor) -> tuple[list[float], list[list[tuple[int, int]]]]:
    """The nonzero taps of a 2-D ``kernel`` grouped by equal value: the weights in row-major
    order of first appearance, and each group's (row, column) taps in row-major order."""
    order: dict[float, list[tuple[int, int]]] = {}
    for r, row in enumerate(kernel.tolist()):
        for c, v in enumerate(row):
            if v != 0:
                order.setdefault(v, []).append((r, c))
    return list(order), list(order.values())


def filter_terms(kernel: torch.Tensor) -> tuple[list[float], list[list[tuple[int, int, int]]]]:
    """:func:`weight_groups` of ``kernel`` as sums of terms (kind, row, column), offsets from the
    centre: kind 1 is the pair of rows -row and +row of one column (both taps in the group, as
    in every vertically symmetric kernel), kind 0 a single tap; in the group's tap order."""
    weights, groups = weight_groups(kernel)
    cy, cx = kernel.shape[0] // 2, kernel.shape[1] // 2
    terms = []
    for taps in groups:
        members, own = set(taps), []
        for r, c in taps:
            dy, mirrored = r - cy, (2 * cy - r, c) in members
            if dy < 0 and mirrored:
                own.append((1, -dy, c - cx))
            elif not (dy > 0 and mirrored):
                own.append((0, dy, c - cx))
        terms.append(own)
    return weights, terms


def grouped_filter2d(x: torch.Tensor, kernel: torch.Tensor, mode: str = "mirror") -> torch.Tensor:
    """Correlate every (sample, channel) plane of ``x`` with one odd 2-D ``kernel``, summing the
    taps of equal weight before their one multiply: ``w_0 * S_0 + w_1 * S_1 + ...``.

    A blurred disk has few distinct weights (14 among 169 taps at radius 6), and the two rows
    of each vertically mirrored pair of taps are added first, once per row (:func:`filter_terms`),
    so this is about half an add per tap. The order is fixed (groups by first appearance, each
    ``S_g`` summed left to right), so the bits are the same on every machine; the weights are
    ``kernel`` in ``x``'s dtype. float32 and uint8 CPU input take the native kernel (same bits;
    uint8 levels come back as apply's 8-bit levels of the result, which only it computes).
    """
    kh, kw = kernel.shape
    if kh % 2 == 0 or kw % 2 == 0:
        raise ValueError(f"kernel sizes must be odd, got {kh}x{kw}")
    on_native = x.dtype in (torch.float32, torch.uint8) and native.active(x.device)
    if x.dtype == torch.uint8 and not on_native:
        raise ValueError("grouped_filter2d of uint8 levels runs only on the native CPU kernels")
    weights, groups = filter_terms(kernel.to(torch.float32 if x.dtype == torch.uint8 else x.dtype))
    if not weights:
        raise ValueError("grouped_filter2d needs at least one nonzero tap")
    terms = [t for g in groups for t in g]
    ry, rx = max(abs(r) for _, r, _ in terms), max(abs(c) for _, _, c in terms)
    n, c, h, w = x.shape
    planes = x.reshape(n * c, h, w)
    if on_native:
        out = native.grouped_filter(planes, padded_indices(h, ry, ry, mode), padded_indices(w, rx, rx, mode), ry,
                                    [(k, r if k else r + ry, q + rx) for k, r, q in terms],
                                    [len(g) for g in groups], weights)
        return out.reshape(n, c, h, w)
    return _grouped_filter_eager(pad2d(planes, (ry, ry), (rx, rx), mode), weights, groups, h, w).reshape(n, c, h, w)


def _grouped_filter_eager(xp: torch.Tensor, weights: list[float], groups: list[list[tuple[int, int, int]]],
                          h: int, w: int) -> torch.Tensor:
    """:func:`grouped_filter2d` of padded planes (P, h + 2 ry, w + 2 rx) as tensor ops (any device)."""
    ry, rx = (xp.shape[-2] - h) // 2, (xp.shape[-1] - w) // 2
    rows: dict[tuple[int, int], torch.Tensor] = {}
    for k, r, _ in (t for g in groups for t in g):
        if (k, r) not in rows:
            rows[k, r] = (xp[:, ry - r : ry - r + h] + xp[:, ry + r : ry + r + h]) if k else xp[:, ry + r : ry + r + h]
    acc = None
    for weight, own in zip(weights, groups, strict=True):
        parts = [rows[k, r][..., q + rx : q + rx + w] for k, r, q in own]
        s = parts[0] * weight if len(parts) == 1 else parts[0] + parts[1]  # in place from here: same ops
        for part in parts[2:]:
            s.add_(part)
        term = s if len(parts) == 1 else s.mul_(weight)
        acc = term if acc is None else acc.add_(term)
    if acc is None:  # grouped_filter2d refuses a kernel without a nonzero tap before this
        raise ValueError("grouped_filter2d needs at least one nonzero tap")
    return acc


def padded_indices(size: int, before: int, after: int, mode: str) -> torch.Tensor:
    """Source index of each padded position of one axis (int64, CPU); -1 where ``constant`` pads zeros."""
    if mode == "constant":
        pos = torch.arange(-before, size + after)
        return torch.where((pos >= 0) & (pos < size), pos, -1)
    return border_indices(size, before, after, mode, torch.device("cpu")).to(torch.int64).contiguous()


def shift_filter(
    x: torch.Tensor, taps_h: list[float], taps_w: list[float], mode: str
) -> torch.Tensor:
    """Separable correlation of the last two dims as sums of shifted slices (scipy border ``mode``).

    Same result as :func:`separable_filter`; faster on CPU for short kernels applied to a
    single channel, where a convolution call has a large fixed cost. float32 on the CPU
    takes the native kernel (:mod:`corruptions.native`): the same bits in one pass per axis.
    """
    if not any(taps_h) or not any(taps_w):
        raise ValueError("shift_filter needs at least one nonzero tap per axis")
    if x.dtype == torch.float32 and native.active(x.device):
        return native.shift_filter(x, taps_h, taps_w, mode)
    h, w = x.shape[-2:]
    rw, rh = (len(taps_w) - 1) // 2, (len(taps_h) - 1) // 2
    if rw:
        xp = pad2d(x, (0, 0), (rw, len(taps_w) - 1 - rw), mode)
        x = sum(t * xp[..., :, i : i + w] for i, t in enumerate(taps_w) if t != 0)
    if rh:
        xp = pad2d(x, (rh, len(taps_h) - 1 - rh), (0, 0), mode)
        x = sum(t * xp[..., i : i + h, :] for i, t in enumerate(taps_h) if t != 0)
    return x  # type: ignore[return-value]


def shift_gaussian(x: torch.Tensor, sigma: float, mode: str = "nearest") -> torch.Tensor:
    """scipy.ndimage.gaussian_filter (truncate 4) over the last two dims, via :func:`shift_filter`."""
    k = gaussian_kernel1d(sigma).tolist()
    return shift_filter(x, k, k, mode)
