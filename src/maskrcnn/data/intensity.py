"""Intensity scaling: any image data type (8/12/16/32-bit integers, floats) to 0..255.

The model takes 8-bit RGB. Microscopy and remote-sensing images are mostly 12/16-bit
integers or floats; how their values map to 0..255 is chosen by a mode (`--intensity` of
`maskrcnn predict`, `intensity=` of `read_image` and `Predictor.predict_tiled`):

    auto        (default) 8-bit data as it is. Non-negative data is divided by the smallest
                "full scale" that holds its maximum: 1 (floats in [0, 1]), 255, 1023, 4095,
                16383, 65535, 2**32 - 1. So 12-bit camera data in a 16-bit file (0..4095)
                uses the whole 0..255 range, and two images of one camera get the same
                scaling. Data with negative values: its own minimum..maximum.
    dtype       the type's full range: 0..65535 for uint16 (the old behaviour), 0..1 for floats.
    range       the image's own minimum..maximum (contrast stretch).
    percentile  the image's 0.1th..99.9th percentiles (robust to a few hot pixels), estimated
                from a regular subsample of at most about 4 million pixels.

All channels share one window (colour balance is kept). NaN becomes the window's low end.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

import numpy as np

from maskrcnn.errors import UserError

INTENSITY_MODES = ("auto", "dtype", "range", "percentile")
PERCENTILES = (0.1, 99.9)
FULL_SCALES = (1.0, 255.0, 1023.0, 4095.0, 16383.0, 65535.0, 4294967295.0)
SAMPLE_PIXELS = 4_000_000  # at most about this many values go into the percentile estimate


class IntensityModeError(UserError):
    """An intensity mode that is not one of INTENSITY_MODES."""


class IntensityWindow(NamedTuple):
    """Values mapped to 0 (low) and 255 (high); values outside are clipped."""

    low: float
    high: float


class IntensityStats(NamedTuple):
    """What the data-dependent modes need, gathered over the whole image (possibly in bands)."""

    minimum: float
    maximum: float
    sample: np.ndarray  # (K,) float64, a regular subsample of the finite values


def check_mode(mode: str) -> str:
    if mode not in INTENSITY_MODES:
        raise IntensityModeError(f"intensity mode {mode!r}: expected one of {', '.join(INTENSITY_MODES)}")
    return mode


def needs_stats(dtype: np.dtype, mode: str) -> bool:
    """Whether `mode` on data of `dtype` depends on the values (a pass over the image)."""
    dtype = np.dtype(dtype)
    if mode == "dtype" or dtype == np.bool_:
        return False
    return not (mode == "auto" and dtype == np.uint8)


def sample_stride(height: int, width: int) -> int:
    """Take every k-th row and column so that about SAMPLE_PIXELS values are kept."""
    return max(1, int(np.ceil(np.sqrt(height * width / SAMPLE_PIXELS))))


def gather_stats(bands: Iterable[np.ndarray], stride: int = 1) -> IntensityStats:
    """Min, max and a subsample over row bands (each (h, W) or (h, W, C)) of one image.

    Bands must start at multiples of `stride` rows so the subsample is regular.
    """
    minimum, maximum = np.inf, -np.inf
    samples = []
    for band in bands:
        values = band.astype(np.float64, copy=False)
        finite = values[np.isfinite(values)] if values.dtype.kind == "f" else values.ravel()
        if finite.size:
            minimum = min(minimum, float(finite.min()))
            maximum = max(maximum, float(finite.max()))
        sub = values[::stride, ::stride].ravel()
        samples.append(sub[np.isfinite(sub)])
    sample = np.concatenate(samples) if samples else np.zeros(0)
    if not np.isfinite(minimum):  # no finite value at all
        minimum, maximum = 0.0, 0.0
    return IntensityStats(minimum, maximum, sample)


def intensity_window(dtype: np.dtype, mode: str, stats: IntensityStats | None) -> IntensityWindow:
    """The window for data of `dtype` under `mode` (stats needed when `needs_stats`)."""
    check_mode(mode)
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return IntensityWindow(0.0, 1.0)
    if not needs_stats(dtype, mode):  # dtype mode, or 8-bit data in auto mode
        if dtype.kind == "f":
            return IntensityWindow(0.0, 1.0)
        info = np.iinfo(dtype)
        return IntensityWindow(float(min(info.min, 0)) if dtype.kind == "i" else 0.0, float(info.max))
    assert stats is not None, "this mode needs the image's statistics"
    if mode == "auto":
        if stats.minimum >= 0:
            for full_scale in FULL_SCALES:
                if full_scale == 1.0 and dtype.kind != "f":
                    continue  # an integer image of 0s and 1s is a 0..255 image, not a 0..1 one
                if stats.maximum <= full_scale:
                    return IntensityWindow(0.0, full_scale)
        return _nonempty(stats.minimum, stats.maximum)
    if mode == "range":
        return _nonempty(stats.minimum, stats.maximum)
    if stats.sample.size == 0:
        return _nonempty(stats.minimum, stats.maximum)
    low, high = np.percentile(stats.sample, PERCENTILES)
    return _nonempty(float(low), float(high))


def _nonempty(low: float, high: float) -> IntensityWindow:
    return IntensityWindow(low, high if high > low else low + 1.0)


def apply_window(values: np.ndarray, window: IntensityWindow) -> np.ndarray:
    """Any array -> uint8 of the same shape: window.low -> 0, window.high -> 255."""
    if values.dtype == np.uint8 and window == (0.0, 255.0):
        return values
    if values.dtype == np.bool_:
        return values.astype(np.uint8) * 255
    scaled = (values.astype(np.float32) - np.float32(window.low)) * np.float32(255.0 / (window.high - window.low))
    np.nan_to_num(scaled, copy=False, nan=0.0, posinf=255.0, neginf=0.0)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
