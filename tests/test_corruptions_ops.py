"""Shared image operations of the corruptions package against numpy's own padding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from corruptions.ops import pad2d

# scipy.ndimage border names -> numpy.pad modes
NUMPY_MODE = {"reflect": "symmetric", "mirror": "reflect", "nearest": "edge", "wrap": "wrap",
              "constant": "constant"}


@pytest.mark.parametrize("mode", sorted(NUMPY_MODE))
@pytest.mark.parametrize("shape", [(2, 3, 5, 7), (4, 5, 7), (5, 7), (1, 1, 1, 6)])
@pytest.mark.parametrize("pads", [((2, 1), (0, 0)), ((0, 0), (3, 2)), ((1, 2), (2, 1)), ((6, 9), (8, 7))])
def test_pad2d_equals_numpy_pad(mode: str, shape: tuple[int, ...], pads) -> None:
    """Native F.pad paths (short pads) and index gathers (long pads) give numpy's values."""
    x = torch.arange(float(np.prod(shape))).reshape(shape)
    (top, bottom), (left, right) = pads
    if mode in ("mirror",) and 1 in shape[-2:]:
        pytest.skip("numpy's reflect of a single pixel is undefined")
    want = np.pad(x.numpy(), [(0, 0)] * (len(shape) - 2) + [(top, bottom), (left, right)],
                  mode=NUMPY_MODE[mode])
    got = pad2d(x, (top, bottom), (left, right), mode)
    assert np.array_equal(got.numpy(), want)


@pytest.mark.parametrize("mode", ["reflect", "mirror"])
@pytest.mark.parametrize("size", [1, 2, 3, 7])
def test_border_map_equals_numpy_pad_for_near_and_far_indices(mode: str, size: int) -> None:
    """Near indices (one reflection, the compare-select path) and far ones (the modulo path)
    both land where numpy's pad puts them (scipy's reflect = numpy's symmetric, mirror = reflect)."""
    from corruptions.ops import border_map

    np_mode = {"reflect": "symmetric", "mirror": "reflect"}[mode]
    reach = 5 * size + 3
    padded = np.pad(np.arange(size), reach, mode=np_mode)  # padded[reach + i] = source of index i
    for lo, hi in ((-size, 2 * size), (-reach, reach)):
        want = torch.from_numpy(padded[reach + lo: reach + hi])
        for dtype in (torch.int64, torch.int32):
            got = border_map(torch.arange(lo, hi, dtype=dtype), size, mode)
            assert torch.equal(got.long(), want), (lo, hi, dtype)
