"""Frost: a random crop of a frost photograph or of a procedural ice texture, blended in.

The reference's six frost photographs are not redistributable here; they are used when a
folder is given (:func:`set_frost_images`, ``$ACTBENCH_FROST_DIR``) or an installed
package ships them (imagecorruptions), then exact up to the RNG; otherwise a procedural
frost texture bank (see :func:`frost_texture_bank`). :func:`frost_info` says which, and
manifests and resume keys record it (by the photographs' digest).
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.nn.functional as F

from corruptions import native
from corruptions.ops import index_add_deterministic, shift_gaussian
from corruptions.registry import DEFAULT_CHUNK_VALUES, CorruptionError, preset_for_size, register
from corruptions.rng import SampleRNG, name_code, randint_from_bits24, uniform_from_bits24

#: How the reference rescales its frost photographs per preset (cv2.resize fx=fy) and
#: the image side it was written for; other sizes scale the factor proportionally.
FROST_PHOTO_SCALE = {"cifar": (0.2, 32), "tinyimagenet": (0.3, 64), "imagenet": (1.0, 224)}
#: Number of textures the reference draws from (``np.random.randint(5)`` over 6 files).
FROST_CHOICES = 5
#: Procedural bank: side of each texture relative to the image side.
FROST_BANK_FACTOR = 3
#: Procedural texture constants (tuned so the crops' statistics resemble the reference
#: photographs: mean ~0.45 with a slight blue cast, bright thin crystals on a grey haze).
FROST_TINT = (0.88, 0.95, 1.0)  # RGB multipliers of the grey texture (blue-white ice)
FROST_HAZE = (0.24, 0.3)  # haze = HAZE[0] + HAZE[1] * multi-octave noise in [0, 1]
FROST_CRYSTAL_GAIN = 1.4  # brightness of the crystal lines (1 - exp(-gain * density))
FROST_SIZE_EXPONENT = 1.0  # crystal mass ~ (side / 224) ** exponent
FROST_GLOW = 0.3  # weight of the wide glow around crystals
FROST_FERNS = 25.0  # dendrites per (image side)^2
FROST_NEEDLES = 100.0  # loose ice needles per (image side)^2
FROST_BANK_SEED = 0x0F2057

#: Installed packages known to ship frost photographs, and the folder inside each.
FROST_PACKAGES = (("imagecorruptions", "frost"),)
#: ``set_frost_images`` / ``$ACTBENCH_FROST_DIR`` value forcing the procedural texture.
PROCEDURAL = "procedural"

_frost_dir: Path | str | None = None  # a folder, PROCEDURAL, or None (the default order)
_frost_cache: dict[tuple, object] = {}


def set_frost_images(path: str | os.PathLike | None) -> None:
    """Use the frost photographs in folder ``path`` (png/jpg) for ``frost``; None: back to default.

    Precedence (first that applies): this folder; ``$ACTBENCH_FROST_DIR``; the photographs
    of an installed package that ships them (imagecorruptions: ``imagecorruptions/frost/``,
    found without importing it); the procedural texture bank. ``"procedural"`` (here or
    in the variable) forces the texture. With the reference's six photographs frost is
    the reference's, apart from the random numbers themselves.
    """
    global _frost_dir
    if path is None or str(path) == PROCEDURAL:
        _frost_dir = None if path is None else PROCEDURAL
        return
    p = Path(path)
    _frost_files(p)  # validate now: a bad folder is a one-line error here, not mid-run
    _frost_dir = p


@contextlib.contextmanager
def frost_images(path: str | os.PathLike | None) -> Iterator[None]:
    """Use ``path`` (a folder of frost photographs, or "procedural") inside the block; None:
    leave the current source. The frost source as a parameter (run/sweep ``--frost-dir``)."""
    global _frost_dir
    before = _frost_dir
    if path is not None:
        set_frost_images(path)
    try:
        yield
    finally:
        _frost_dir = before


def _package_frost_dir() -> tuple[str, Path] | None:
    """(package, folder) of the first installed package in FROST_PACKAGES holding frost images."""
    import importlib.util

    for package, sub in FROST_PACKAGES:
        try:
            spec = importlib.util.find_spec(package)  # locates, does not import (cv2 stays unloaded)
        except (ImportError, ValueError):
            continue
        for loc in (spec.submodule_search_locations or []) if spec else []:
            folder = Path(loc) / sub
            try:
                _frost_files(folder)
            except CorruptionError:  # a package version without the photographs
                continue
            return package, folder
    return None


def frost_info() -> dict[str, str | None]:
    """Where frost textures come from now, for manifests.

    ``source``: ``folder`` (set_frost_images), ``environment`` ($ACTBENCH_FROST_DIR),
    ``package`` (an installed package's photographs) or ``procedural``; ``path`` and
    ``package`` where they apply.
    """
    if isinstance(_frost_dir, Path):
        return {"source": "folder", "path": str(_frost_dir), "package": None, "digest": frost_digest(_frost_dir)}
    env = os.environ.get("ACTBENCH_FROST_DIR")
    if _frost_dir is None and env and env != PROCEDURAL:
        return {"source": "environment", "path": env, "package": None, "digest": frost_digest(Path(env))}
    found = _package_frost_dir() if _frost_dir is None and not env else None
    if found is not None:
        return {"source": "package", "path": str(found[1]), "package": found[0], "digest": frost_digest(found[1])}
    return {"source": PROCEDURAL, "path": None, "package": None, "digest": None}


def frost_digest(folder: Path) -> str:
    """sha256 over the names and bytes of the photographs frost draws from ``folder``: what
    the frost images depend on, wherever the folder lies (another machine, another venv)."""
    files = _frost_files(Path(folder))
    key = tuple((str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files)
    cached = _digest_cache.get(key)
    if cached is None:
        h = hashlib.sha256()
        for f in files:
            try:
                data = f.read_bytes()
            except OSError as exc:  # unreadable: one line naming it
                raise CorruptionError(f"cannot read frost image {f}: {exc.strerror or exc}") from None
            h.update(f.name.encode() + b"\0" + data)
        cached = _digest_cache[key] = h.hexdigest()[:16]
    return cached


def same_frost(a: dict[str, str | None] | None, b: dict[str, str | None] | None) -> bool:
    """Whether two recorded frost sources give the same frost: both procedural, or photographs
    with the same digest (records without a digest compare by path)."""
    if a is None or b is None:
        return a is b
    if (a.get("source") == PROCEDURAL) or (b.get("source") == PROCEDURAL):
        return a.get("source") == b.get("source")
    if a.get("digest") and b.get("digest"):
        return a["digest"] == b["digest"]
    return a.get("path") == b.get("path")


_digest_cache: dict[tuple, str] = {}


def frost_description(info: dict[str, str | None] | None = None) -> str:
    """One line naming the frost source (printed by the CLI)."""
    info = info or frost_info()
    where = {"folder": "the folder given", "environment": "$ACTBENCH_FROST_DIR",
             "package": f"the installed {info['package']} package"}.get(str(info["source"]))  # fmt: skip
    if where is not None:
        return f"frost: photographs from {where} ({info['path']})"
    return ("frost: procedural ice texture (no frost photographs: install imagecorruptions, "
            "or set ACTBENCH_FROST_DIR / --frost-dir to a folder of them)")


def frost_source() -> str:
    """Where frost textures come from now: a folder path, or ``"procedural"``."""
    d = _active_frost_dir()
    return str(d) if d is not None else PROCEDURAL


def _active_frost_dir() -> Path | None:
    info = frost_info()
    return Path(info["path"]) if info["path"] else None


def _frost_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise CorruptionError(f"frost image folder not found: {folder}")
    exts = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in exts and p.is_file())
    if not files:
        raise CorruptionError(f"no frost images (png/jpg) in {folder}")
    ref = [f"frost{i}" for i in range(1, 7)]
    if [p.stem for p in files] == ref:
        files = files[:FROST_CHOICES]  # the reference never draws frost6 (randint(5))
    return files


def _frost_scale(h: int, w: int) -> float:
    base, side = FROST_PHOTO_SCALE[preset_for_size(h, w)]
    return base * max(h, w) / side


def _load_frost_photos(folder: Path, h: int, w: int, device: torch.device) -> list[torch.Tensor]:
    """The folder's photographs as float RGB (3, h', w') rescaled like the reference, cached."""
    from corruptions.imageio import read_image

    key = ("photos", str(folder.resolve()), h, w, str(device))
    cached = _frost_cache.get(key)
    if cached is not None:
        return cached  # type: ignore[return-value]
    fx = _frost_scale(h, w)
    photos = []
    for f in _frost_files(folder):
        try:
            img = read_image(f, 3)
        except CorruptionError as exc:  # corrupt file: one line naming it
            raise CorruptionError(f"frost image: {exc}") from exc
        t = img.to(device=device, dtype=torch.float32).unsqueeze(0) / 255.0
        ph, pw = t.shape[-2:]
        nh, nw = int(round(ph * fx)), int(round(pw * fx))
        # the random crop needs at least one free row/column (randint(0, size - crop))
        grow = max((h + 1) / max(nh, 1), (w + 1) / max(nw, 1), 1.0)
        nh, nw = max(int(math.ceil(nh * grow)), h + 1), max(int(math.ceil(nw * grow)), w + 1)
        if (nh, nw) != (ph, pw):
            # cv2.resize INTER_LINEAR: half-pixel centres, no antialiasing
            t = F.interpolate(
                t, size=(nh, nw), mode="bilinear", align_corners=False, antialias=False
            )
        photos.append(t[0].clamp(0.0, 1.0))
    _frost_cache[key] = photos
    return photos


def _value_noise(
    rng: SampleRNG, hb: int, wb: int, cell: float, device: torch.device
) -> torch.Tensor:
    """Smooth random field (N, 1, hb, wb) in [0, 1]: a random grid of ``cell`` px, bicubic-upsampled."""
    gh, gw = max(2, int(math.ceil(hb / cell)) + 1), max(2, int(math.ceil(wb / cell)) + 1)
    grid = rng.uniform(1, gh, gw).to(device)
    up = F.interpolate(
        grid,
        size=(int(round(gh * cell)), int(round(gw * cell))),
        mode="bicubic",
        align_corners=True,
    )
    return up[..., :hb, :wb].clamp(0.0, 1.0)


def _splat_segments(
    canvas: torch.Tensor,
    x0: torch.Tensor,
    y0: torch.Tensor,
    ang: torch.Tensor,
    length: torch.Tensor,
    inten: torch.Tensor,
    *,
    max_len: float,
    step: float,
) -> None:
    """Add line segments (N, S) into ``canvas`` (N, hb, wb) by bilinear splatting of points.

    Segments wrap around the borders, so the bank tiles seamlessly.
    """
    n, hb, wb = canvas.shape
    pts = max(2, int(math.ceil(max_len / step)) + 1)
    t = torch.linspace(0.0, 1.0, pts, device=canvas.device).view(1, 1, -1)
    d = t * length.unsqueeze(-1)  # (N, S, P)
    px = x0.unsqueeze(-1) + d * torch.cos(ang).unsqueeze(-1)
    py = y0.unsqueeze(-1) + d * torch.sin(ang).unsqueeze(-1)
    # point weight: intensity spread over the segment's sampling density, fading at the tip
    dens = (length / (pts - 1)).clamp(max=step).unsqueeze(-1) / step
    wgt = inten.unsqueeze(-1) * dens * (1.0 - 0.6 * t)
    px = torch.remainder(px, float(wb))
    py = torch.remainder(py, float(hb))
    fx, fy = torch.floor(px), torch.floor(py)
    ax, ay = px - fx, py - fy
    ix = fx.to(torch.int64)
    iy = fy.to(torch.int64)
    ix = torch.where(ix >= wb, ix - wb, ix)  # float remainder can round up to wb
    iy = torch.where(iy >= hb, iy - hb, iy)
    ix1 = torch.where(ix + 1 >= wb, 0, ix + 1)
    iy1 = torch.where(iy + 1 >= hb, 0, iy + 1)
    base = torch.arange(n, device=canvas.device).view(-1, 1, 1) * (hb * wb)
    r0, r1 = base + iy * wb, base + iy1 * wb
    wx1, wy1 = wgt * ax, ay
    wx0 = wgt - wx1
    flat = canvas.view(-1)
    idx = torch.cat(
        [
            (r0 + ix).reshape(-1),
            (r0 + ix1).reshape(-1),
            (r1 + ix).reshape(-1),
            (r1 + ix1).reshape(-1),
        ]
    )
    val = torch.cat(
        [
            (wx0 * (1 - wy1)).reshape(-1),
            (wx1 * (1 - wy1)).reshape(-1),
            (wx0 * wy1).reshape(-1),
            (wx1 * wy1).reshape(-1),
        ]
    )
    index_add_deterministic(flat, idx, val)


def _wrap_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur with wrap-around borders."""
    return shift_gaussian(x, sigma, "wrap")


def _wide_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur with a large sigma, computed on a box-downsampled copy (cheap, wrap borders)."""
    f = max(1, int(sigma // 2))
    if f == 1:
        return _wrap_blur(x, sigma)
    small = F.interpolate(x, scale_factor=1.0 / f, mode="area", recompute_scale_factor=False)
    small = _wrap_blur(small, sigma / f)
    return F.interpolate(small, size=x.shape[-2:], mode="bilinear", align_corners=False)


def _branch_level(
    rng: SampleRNG,
    parent: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
    children: int,
    length_range: tuple[float, float],
    fade: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Child segments of every parent segment (x, y, angle, length, intensity; each (N, S))."""
    px, py, pang, plen, pint = (t.unsqueeze(-1) for t in parent)
    n, s = parent[0].shape
    pos = 0.1 + 0.85 * rng.uniform(s, children)  # where along the parent the child starts
    side = torch.where(torch.arange(children, device=px.device) % 2 == 0, 1.0, -1.0)
    ang = pang + side * (math.pi / 3) + 0.3 * (rng.uniform(s, children) - 0.5)
    lo, hi = length_range
    length = plen * (lo + (hi - lo) * rng.uniform(s, children)) * (1.0 - 0.5 * pos)
    x = px + pos * plen * torch.cos(pang)
    y = py + pos * plen * torch.sin(pang)
    inten = (pint * fade).expand(n, s, children)
    return tuple(t.reshape(n, s * children) for t in (x, y, ang, length, inten))  # type: ignore[return-value]


def frost_texture_bank(
    h: int, w: int, device: torch.device | str = "cpu", count: int = FROST_CHOICES
) -> torch.Tensor:
    """``count`` procedural frost textures (count, 3, hb, wb), hb = 3h, wb = 3w, values in [0, 1].

    Deterministic (fixed seed, like the reference's fixed photographs) and cached per
    size and device. Feature sizes scale with the image side ``s = max(h, w)`` because
    the reference's crops cover about the same area of its photographs at every preset
    (32/0.2 = 160, 64/0.3 = 213, 224/1 = 224 photo pixels). Recipe, per texture:

    1. haze: multi-octave value noise (cells s/2 .. s/64, amplitudes 1/2^octave), contrast
       stretched, mapped to ``FROST_HAZE[0] + FROST_HAZE[1] * noise``;
    2. ice crystals: ``FROST_FERNS`` dendrites per s x s area, each a trunk (length
       0.1..0.35 s, random direction) with 8 branches at +-60 degrees (0.2..0.5 of the
       trunk), 4 twigs per branch (0.2..0.5 of the branch) and 2 needles per twig, plus
       ``FROST_NEEDLES`` loose needles (0.015..0.05 s) per area; splatted as thin lines,
       softened by a Gaussian (sigma max(0.5, s/224) px) plus a wider glow (4 s/224);
    3. grey = haze + (1 - haze) * (1 - exp(-gain * crystals)), gain = FROST_CRYSTAL_GAIN *
       min(1, s/224) (thin lines cannot get thinner than a pixel, so their mass follows the
       image side: the mean stays ~0.45-0.47 from 32 to 224 px); RGB = grey * FROST_TINT,
       rounded to 8 bits like a photograph.
    """
    device = torch.device(device)
    key = ("bank", h, w, str(device), count)
    cached = _frost_cache.get(key)
    if cached is not None:
        return cached  # type: ignore[return-value]
    s = float(max(h, w))
    hb, wb = FROST_BANK_FACTOR * h, FROST_BANK_FACTOR * w
    rng = SampleRNG(FROST_BANK_SEED, name_code(f"frost-bank|{h}x{w}"), torch.arange(count), device)
    haze = _frost_haze(rng, count, hb, wb, s, device)
    c = _frost_crystal_lines(rng, count, hb, wb, s, device).unsqueeze(1)
    fine = _wrap_blur(c, max(s / 224.0, 0.5))
    glow = _wide_blur(c, max(4.0 * s / 224.0, 1.0))
    # lines cannot get thinner than a pixel: scale their mass with the image side so that
    # the mean brightness stays about the same from 32 to 224 px
    gain = FROST_CRYSTAL_GAIN * min(1.0, s / 224.0) ** FROST_SIZE_EXPONENT
    crystals = 1.0 - torch.exp(-gain * (fine + FROST_GLOW * glow))
    grey = haze + (1.0 - haze) * crystals
    tint = torch.tensor(FROST_TINT, device=device).view(1, 3, 1, 1)
    bank = torch.round((grey * tint).clamp(0.0, 1.0) * 255.0) / 255.0  # 8 bits, like a photograph
    if len(_frost_cache) > 16:
        _frost_cache.clear()
    _frost_cache[key] = bank
    return bank


def _frost_haze(rng: SampleRNG, count: int, hb: int, wb: int, s: float, device: torch.device) -> torch.Tensor:
    """Step 1 of :func:`frost_texture_bank`: the grey haze (count, 1, hb, wb), multi-octave value noise."""
    # the haze is smooth: build it at half resolution and upsample once
    hh, hw = (hb + 1) // 2, (wb + 1) // 2
    haze = torch.zeros(count, 1, hh, hw, device=device)
    amp_total = 0.0
    for octave in range(6):
        cell = s / (2 ** (octave + 2))  # in half-resolution pixels
        if cell < 0.75:
            break
        amp = 0.6**octave
        haze += amp * _value_noise(rng, hh, hw, max(cell, 1.0), device)
        amp_total += amp
    haze = F.interpolate(haze / amp_total, size=(hb, wb), mode="bilinear", align_corners=False)
    haze = ((haze - 0.5) * 2.0 + 0.5).clamp(0.0, 1.0)  # the sum concentrates near 0.5
    return FROST_HAZE[0] + FROST_HAZE[1] * haze


def _frost_crystal_lines(
    rng: SampleRNG, count: int, hb: int, wb: int, s: float, device: torch.device
) -> torch.Tensor:
    """Step 2 of :func:`frost_texture_bank`: dendrites and loose needles splatted as thin lines (count, hb, wb)."""
    step = 0.5
    area = hb * wb / (s * s)
    canvas = torch.zeros(count, hb, wb, device=device)
    trunks = max(4, int(round(FROST_FERNS * area)))
    seg = (
        rng.uniform(trunks) * wb,
        rng.uniform(trunks) * hb,
        rng.uniform(trunks) * (2 * math.pi),
        (0.1 + 0.25 * rng.uniform(trunks)) * s,
        0.6 + 0.4 * rng.uniform(trunks),
    )
    max_len = 0.35 * s
    _splat_segments(canvas, *seg, max_len=max_len, step=step)
    for children, (lo, hi), fade in (
        (8, (0.2, 0.5), 0.85),
        (4, (0.2, 0.5), 0.85),
        (2, (0.3, 0.6), 0.8),
    ):
        seg = _branch_level(rng, seg, children, (lo, hi), fade)
        max_len *= hi
        _splat_segments(canvas, *seg, max_len=max_len, step=step)
    needles = max(4, int(round(FROST_NEEDLES * area)))
    _splat_segments(
        canvas,
        rng.uniform(needles) * wb,
        rng.uniform(needles) * hb,
        rng.uniform(needles) * (2 * math.pi),
        (0.015 + 0.035 * rng.uniform(needles)) * s,
        0.3 + 0.5 * rng.uniform(needles),
        max_len=0.05 * s,
        step=step,
    )
    return canvas


def _crop_per_sample(
    src: torch.Tensor, r0: torch.Tensor, c0: torch.Tensor, h: int, w: int
) -> torch.Tensor:
    """Crops (n, C, h, w) of ``src`` (C, H', W') at per-sample top-left corners."""
    if h * w >= SLICED_CROP_PIXELS and src.device.type == "cpu":
        return torch.stack([src[:, top : top + h, left : left + w] for top, left in zip(r0.tolist(), c0.tolist())])
    return _row_gather(src.unsqueeze(0), torch.zeros_like(r0), r0, c0, h, w)


def _row_gather(src: torch.Tensor, which: torch.Tensor, r0: torch.Tensor, c0: torch.Tensor,
                h: int, w: int) -> torch.Tensor:  # fmt: skip
    """Crops (n, C, h, w) of ``src`` (K, C, H, W) as one ``index_select`` of crop rows.

    Every crop row is ``w`` consecutive values of the flat source, i.e. one row of its
    overlapping ``unfold(0, w, 1)`` view: selecting n*C*h of those rows copies w values
    each (4x faster than advanced indexing of the unfolded windows at 32 px). Same values.
    """
    _, ch, height, width = src.shape
    dev = src.device
    plane = which.view(-1, 1, 1) * ch + torch.arange(ch, device=dev).view(1, -1, 1)  # (n, C, 1)
    row = plane * height + r0.view(-1, 1, 1) + torch.arange(h, device=dev).view(1, 1, -1)  # (n, C, h)
    starts = (row * width + c0.view(-1, 1, 1)).reshape(-1)
    rows = src.contiguous().view(-1).unfold(0, w, 1)
    return rows.index_select(0, starts).view(which.numel(), ch, h, w)


#: Crops of at least this many pixels are sliced one sample at a time (contiguous row copies,
#: 6x faster than one indexed copy at 224 px on a CPU); smaller ones are one row gather
#: (:func:`_row_gather`; the windows' indexed copy was 2.6x faster than the loop at 32 px and
#: the row gather 4x faster than that). Same values.
SLICED_CROP_PIXELS = 64 * 64


def _bank_crops(bank: torch.Tensor, which: torch.Tensor, r0: torch.Tensor, c0: torch.Tensor,
                h: int, w: int) -> torch.Tensor:  # fmt: skip
    """Crops (n, 3, h, w) of the texture bank (count, 3, H', W') at per-sample corners."""
    if h * w < SLICED_CROP_PIXELS or bank.device.type != "cpu":
        return _row_gather(bank, which, r0, c0, h, w)
    out = torch.empty(which.numel(), bank.shape[1], h, w, dtype=bank.dtype)
    for crop, k, top, left in zip(out, which.tolist(), r0.tolist(), c0.tolist()):
        crop.copy_(bank[k, :, top : top + h, left : left + w])
    return out


def frost_layers(n: int, h: int, w: int, rng: SampleRNG, device: torch.device) -> torch.Tensor:
    """One frost crop (n, 3, h, w) per sample: photo/texture index, then crop corner, like the reference."""
    folder = _active_frost_dir()
    if folder is not None:
        sources = _load_frost_photos(folder, h, w, device)
    else:
        sources = frost_texture_bank(h, w, device)  # (count, 3, hb, wb): one size for all
    k = rng.bits24(3, 1).view(3, -1)  # three streams in one draw: index, row, column
    which = randint_from_bits24(k[0], 0, len(sources))
    u_r, u_c = (uniform_from_bits24(t).to(torch.float64) for t in k[1:])
    if isinstance(sources, torch.Tensor):
        # np.random.randint(0, size - crop): offsets in [0, size - crop)
        r0 = torch.floor(u_r * (sources.shape[-2] - h)).to(torch.int64)
        c0 = torch.floor(u_c * (sources.shape[-1] - w)).to(torch.int64)
        return _bank_crops(sources, which, r0, c0, h, w)
    out = torch.empty(n, 3, h, w, device=device)
    for k, src in enumerate(sources):
        sel = (which == k).nonzero().view(-1)
        if sel.numel() == 0:
            continue
        r0 = torch.floor(u_r[sel] * (src.shape[-2] - h)).to(torch.int64)
        c0 = torch.floor(u_c[sel] * (src.shape[-1] - w)).to(torch.int64)
        out[sel] = _crop_per_sample(src, r0, c0, h, w)
    return out


def _frost_levels(levels: torch.Tensor, params: dict, rng: SampleRNG) -> torch.Tensor | None:
    """uint8 images to uint8 levels with the blend and apply's quantisation in one native pass
    (the float path's levels); None, drawing nothing, where the native kernels are not in use."""
    if not native.active(levels.device):
        return None
    n, _, h, w = levels.shape
    layer = frost_layers(n, h, w, rng, levels.device)
    return native.frost_blend(levels, layer, float(params["image_weight"]), float(params["frost_weight"]))


@register(
    "frost",
    chunk_values=2 * DEFAULT_CHUNK_VALUES,  # a light blend: fewer, larger calls (1.25x at 32 px)
    group="weather",
    presets={
        "cifar": [(1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45)],
        "tinyimagenet": [(1, 0.3), (0.9, 0.4), (0.8, 0.45), (0.75, 0.5), (0.7, 0.55)],
        "imagenet": [(1, 0.4), (0.8, 0.6), (0.7, 0.7), (0.65, 0.7), (0.6, 0.75)],
    },
    param_names=("image_weight", "frost_weight"),
    random=True,
    rgb=True,
    description="frost: image_weight*x + frost_weight*(random crop of a frost texture)",
    levels_fn=_frost_levels,
)
def frost(images: torch.Tensor, params: dict, rng: SampleRNG) -> torch.Tensor:
    """Blend a random crop of a frost texture (procedural, or photographs via set_frost_images)."""
    n, _, h, w = images.shape
    layer = frost_layers(n, h, w, rng, images.device).to(images.dtype)
    out = images * float(params["image_weight"])
    return out.add_(layer.mul_(float(params["frost_weight"]))).clamp_(0.0, 1.0)
