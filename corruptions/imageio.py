"""Image files and the JPEG codec of the reference scripts: Pillow's, or an exact faster path.

Pillow is what the reference scripts use for JPEG (``PIL.Image.save(format='JPEG',
quality=q)``: baseline, 4:2:0 chroma subsampling, islow DCT, libjpeg(-turbo)), so the
JPEG corruption's pixels are defined as that codec's. Two faster paths give the same
pixels and are taken only where a probe shows them exact against the installed Pillow
(:func:`jpeg_codec_path`): the native kernel (:mod:`corruptions.native_jpeg`: the codec's
integer pipeline without the lossless entropy coding, 2-12x faster), then torchvision's
libjpeg-turbo ops. Images travel as uint8 tensors (C, H, W) with C = 1 (grey) or 3 (RGB).
"""

from __future__ import annotations

import functools
import io
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from corruptions import native
from corruptions.registry import CorruptionError

#: Pillow modes of the images we read: channels -> mode.
MODES = {1: "L", 3: "RGB"}
#: Fewest images per thread of the JPEG round trip (smaller batches run in one thread).
_MIN_CHUNK = 16


def to_pil(image: torch.Tensor):  # -> PIL.Image.Image
    """A uint8 (C, H, W) tensor (C = 1 or 3) as a Pillow image (mode L or RGB)."""
    from PIL import Image

    if image.dtype != torch.uint8 or image.ndim != 3 or image.shape[0] not in MODES:
        raise CorruptionError(
            f"expected a uint8 (1 or 3, H, W) image, got {image.dtype} {tuple(image.shape)}"
        )
    arr = image.detach().cpu().permute(1, 2, 0).numpy()
    return Image.fromarray(np.ascontiguousarray(arr[..., 0] if arr.shape[2] == 1 else arr))


def from_pil(img, channels: int = 3) -> torch.Tensor:
    """A Pillow image converted to ``channels`` (1: L, 3: RGB) as a uint8 (C, H, W) tensor."""
    if channels not in MODES:
        raise CorruptionError(f"channels must be 1 or 3, got {channels}")
    mode = MODES[channels]
    if img.mode != mode:
        img = img.convert(mode)
    arr = np.asarray(img, dtype=np.uint8)
    if arr.ndim == 2:
        arr = arr[..., None]
    # transpose in numpy: torch's threaded copy stalls on a loaded machine for ~0.1 MP images
    return torch.from_numpy(np.array(arr.transpose(2, 0, 1), order="C"))  # a writable copy


def read_image(path: str | os.PathLike, channels: int = 3) -> torch.Tensor:
    """Decode an image file to uint8 (C, H, W), C = ``channels``; a bad file is one CorruptionError line."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()
            return from_pil(img, channels)
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise CorruptionError(f"cannot decode image {path}: {first}") from exc


def encode_png(image: torch.Tensor) -> bytes:
    """PNG bytes of a uint8 (C, H, W) tensor (lossless)."""
    buf = io.BytesIO()
    to_pil(image).save(buf, format="PNG")
    return buf.getvalue()


def write_png(path: str | os.PathLike, image: torch.Tensor) -> None:
    """Write a uint8 (C, H, W) tensor as a PNG file."""
    Path(path).write_bytes(encode_png(image))


def _saved_jpeg(mode: str, size: tuple[int, int], data: bytes, quality: int):  # -> Image
    """The reference's round trip of one image: ``Image.save(JPEG, quality)``, ``Image.open``."""
    from PIL import Image

    buf = io.BytesIO()
    image = Image.frombuffer(mode, size, data, "raw", mode, 0, 1)
    image.save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    with Image.open(buf) as img:
        img.load()
        return image, img.tobytes()


@functools.lru_cache(maxsize=64)
def _direct_encoder_config(mode: str, quality: int) -> tuple | None:
    """Pillow's JPEG encoder settings for ``quality``, if calling its codec directly is exact.

    ``Image.save`` spends most of a small image's time in Python (option parsing, marker
    parsing on ``open``); the same libjpeg encoder and decoder run without it through
    ``Image.tobytes("jpeg", ...)`` and ``Image.frombytes(..., "jpeg", ...)``. The settings
    are the ones ``save`` itself computed (``encoderconfig``); the direct path is used only
    if it reproduces ``save``'s file and ``open``'s pixels on a probe image, else None (the
    ``save``/``open`` path: same pixels, slower).
    """
    from PIL import Image

    c = len(mode)
    probe = np.random.default_rng(0).integers(0, 256, (24, 40, c), dtype=np.uint8)
    probe[8:, :20] //= 3  # some smooth, some busy blocks
    image, pixels = _saved_jpeg(mode, (40, 24), probe.tobytes(), quality)
    config = getattr(image, "encoderconfig", None)
    if not isinstance(config, tuple):
        return None
    try:
        direct = _direct_roundtrip(mode, (40, 24), probe.tobytes(), config)
    except (OSError, ValueError, TypeError, SystemError):
        return None
    buf = io.BytesIO()
    Image.frombuffer(mode, (40, 24), probe.tobytes(), "raw", mode, 0, 1).save(buf, format="JPEG", quality=quality)
    encoded = Image.frombuffer(mode, (40, 24), probe.tobytes(), "raw", mode, 0, 1).tobytes("jpeg", mode, *config)
    return config if direct == pixels and encoded == buf.getvalue() else None


def _direct_roundtrip(mode: str, size: tuple[int, int], data: bytes, config: tuple) -> bytes:
    """Pillow's JPEG encoder then decoder on one image, without ``save``/``open``."""
    from PIL import Image

    encoded = Image.frombuffer(mode, size, data, "raw", mode, 0, 1).tobytes("jpeg", mode, *config)
    return Image.frombytes(mode, size, encoded, "jpeg", mode, "").tobytes()


@functools.cache
def _torchvision_jpeg_ops():  # -> (encode, decode) | None
    """torchvision's libjpeg-turbo ops (``torch.ops.image``), or None where they are missing.

    Called as ops, below torchvision's deprecated Python wrappers (torchvision 0.29); the
    round trip uses them only where :func:`_torchvision_exact` finds Pillow's pixels.
    """
    try:
        import torchvision.io.image  # noqa: F401  (loads the image extension)
        from torchvision.io import ImageReadMode

        encode, decode = torch.ops.image.encode_jpeg, torch.ops.image.decode_jpeg
    except Exception:  # no torchvision, or one without its image codecs: Pillow alone
        return None
    unchanged = ImageReadMode.UNCHANGED.value
    return encode, lambda data: decode(data, unchanged, False)


def _torchvision_roundtrip(image: torch.Tensor, quality: int) -> torch.Tensor:
    """One (C, H, W) uint8 image through torchvision's JPEG encoder and decoder."""
    encode, decode = _torchvision_jpeg_ops()
    return decode(encode(image, quality))


def _matches_pillow(roundtrip, channels: int, quality: int) -> bool:
    """Whether ``roundtrip`` ((C, H, W) uint8 image, quality -> image) gives Pillow's
    ``save``/``open`` pixels on probe images: smooth and busy blocks, sizes that are and are
    not multiples of the 16-px colour block, and one narrower than three colour samples."""
    rng = np.random.default_rng(1)
    mode = MODES[channels]
    for h, w in ((24, 40), (17, 31), (64, 48), (5, 3)):
        probe = rng.integers(0, 256, (h, w, channels), dtype=np.uint8)
        probe[h // 3 :, : w // 2] //= 3
        probe[: h // 2, w // 2 :] = np.sort(probe[: h // 2, w // 2 :], axis=1)  # gradients
        want = np.frombuffer(_saved_jpeg(mode, (w, h), probe.tobytes(), quality)[1], np.uint8)
        try:
            got = roundtrip(torch.from_numpy(probe).permute(2, 0, 1).contiguous(), quality)
        except Exception:  # an op that refuses these arguments: not usable
            return False
        if tuple(got.shape) != (channels, h, w) or \
                not np.array_equal(got.permute(1, 2, 0).numpy().reshape(-1), want):
            return False
    return True


@functools.lru_cache(maxsize=64)
def _torchvision_exact(channels: int, quality: int) -> bool:
    """Whether torchvision's codec gives Pillow's ``save``/``open`` pixels at ``quality`` here.

    Both wrap libjpeg(-turbo) with the same defaults (baseline, 4:2:0, islow DCT, fancy
    upsampling), but they ship their own builds: the path is taken only if it reproduces
    Pillow's pixels on the probe images, else Pillow's codec runs.
    """
    return _torchvision_jpeg_ops() is not None and _matches_pillow(_torchvision_roundtrip, channels, quality)


@functools.lru_cache(maxsize=64)
def _native_probe(channels: int, quality: int) -> bool:
    """Whether the native kernel reproduces the installed Pillow codec at ``quality`` (probe images)."""
    return _matches_pillow(lambda image, q: native.jpeg_roundtrip(image[None], q)[0], channels, quality)


def _native_exact(channels: int, quality: int) -> bool:
    """Whether the round trip takes the native kernel: native kernels chosen and the probe passes.

    The kernel repeats libjpeg-turbo's x86 SIMD arithmetic; a Pillow built on another libjpeg
    (IJG libjpeg 9's DCT-domain upsampling, say) fails the probe and its own codec runs.
    """
    return native.active(torch.device("cpu")) and _native_probe(channels, int(quality))


def jpeg_codec_path(channels: int, quality: int) -> str:
    """Which codec path the round trip takes here: "native", "torchvision", "direct" or "save/open".

    All four give the same pixels (each fast path is checked against ``save``/``open``).
    """
    if _native_exact(channels, int(quality)):
        return "native"
    if _torchvision_exact(channels, int(quality)):
        return "torchvision"
    return "direct" if _direct_encoder_config(MODES[channels], int(quality)) is not None else "save/open"


def _torchvision_chunk(levels: torch.Tensor, quality: int) -> torch.Tensor:
    """Round-trip each (C, H, W) image of a uint8 (N, C, H, W) batch through torchvision's codec.

    The codec works on interleaved (H, W, C) pixels; colour images go there and back through
    the native layout loops (one pass each, into a reused buffer and straight into the output)
    instead of torch's strided uint8 copies, which took a third of the round trip at 224 px.
    """
    out = torch.empty_like(levels)
    n, c, h, w = levels.shape
    if c == 1 or not native.active(levels.device):
        for i in range(n):
            out[i] = _torchvision_roundtrip(levels[i].contiguous(), quality)
        return out
    encode, decode = _torchvision_jpeg_ops()
    interleaved = torch.empty((h, w, c), dtype=torch.uint8)
    for i in range(n):
        native.to_interleaved(levels[i].contiguous(), interleaved)
        native.to_planar(decode(encode(interleaved.permute(2, 0, 1), quality)), out[i])
    return out


def _jpeg_chunk(arrs: np.ndarray, quality: int) -> np.ndarray:
    """Encode each (H, W, C) uint8 image of ``arrs`` as a JPEG with Pillow and decode it again."""
    n, h, w, c = arrs.shape
    mode = MODES[c]
    config = _direct_encoder_config(mode, quality)
    out = np.empty_like(arrs)
    for i in range(n):
        if config is not None:
            pixels = _direct_roundtrip(mode, (w, h), arrs[i].tobytes(), config)
        else:
            pixels = _saved_jpeg(mode, (w, h), arrs[i].tobytes(), quality)[1]
        out[i] = np.frombuffer(pixels, dtype=np.uint8).reshape(h, w, c)
    return out


def jpeg_roundtrip(levels: torch.Tensor, quality: int, *, workers: int | None = None) -> torch.Tensor:
    """JPEG-compress every image of a uint8 (N, C, H, W) CPU batch at ``quality`` (1..100).

    Grey images are encoded as grey JPEGs, RGB as 4:2:0 colour JPEGs, exactly as
    ``PIL.Image.fromarray(img).save(buf, 'JPEG', quality=q)``. The batch is cut into one
    chunk per thread (Pillow releases the GIL in its codec), as many threads as torch uses
    (``torch.set_num_threads``) unless ``workers`` says; the result does not depend on the
    number of threads.
    """
    n, c, h, w = levels.shape
    if _native_exact(c, int(quality)):
        return native.jpeg_roundtrip(levels, int(quality), threads=workers)
    threads = max(1, min(workers if workers is not None else torch.get_num_threads(), 8, n // _MIN_CHUNK))
    if _torchvision_exact(c, int(quality)):
        if threads == 1:
            return _torchvision_chunk(levels, quality)
        with ThreadPoolExecutor(max_workers=threads) as pool:
            return torch.cat(list(pool.map(lambda a: _torchvision_chunk(a, quality),
                                           torch.tensor_split(levels, threads))))  # fmt: skip
    arrs = np.ascontiguousarray(levels.numpy().transpose(0, 2, 3, 1))
    if threads == 1:
        out = _jpeg_chunk(arrs, quality)
    else:
        chunks = np.array_split(arrs, threads)
        with ThreadPoolExecutor(max_workers=threads) as pool:
            out = np.concatenate(list(pool.map(lambda a: _jpeg_chunk(a, quality), chunks)))
    return torch.from_numpy(np.ascontiguousarray(out.transpose(0, 3, 1, 2)))
