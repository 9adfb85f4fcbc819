"""Reading image files into RGB uint8 arrays, whatever their mode, depth or size.

Handled: 8-bit RGB, grayscale (L), 1-bit, palette (P), RGBA / LA (composited on white),
CMYK; 16-bit and 32-bit integer and float images (PNG through Pillow, TIFF through
tifffile), brought to 0..255 by an intensity mode (`maskrcnn.data.intensity`: "auto" by
default, so 12-bit data in a 16-bit file and floats in [0, 1] keep their brightness).

Images over `max_pixels` (default `ImageConfig.max_image_pixels`) are refused with one line
naming the limit, before anything is decoded: whole-image prediction of such an image
would not fit in memory. `maskrcnn predict --tile` reads them by regions instead
(`maskrcnn.data.image_source`). Anything that cannot be opened raises `ImageReadError`
naming the file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from maskrcnn.config import ImageConfig
from maskrcnn.data.image_source import (
    ImageReadError,
    ImageTooLargeError,
    check_pixel_limit,
    close_raw_image,
    is_tiff,
    open_raw_image,
    pil_size_limit_lifted,
    pil_to_rgb_array,
    raw_to_rgb,
    window_for,
)
from maskrcnn.data.intensity import check_mode

__all__ = ["ImageReadError", "ImageTooLargeError", "image_size", "pil_to_rgb_array", "read_image", "read_label_image"]
DEFAULTS = ImageConfig()


def read_image(
    path: str | Path, *, intensity: str = DEFAULTS.intensity, max_pixels: int | None = DEFAULTS.max_image_pixels
) -> np.ndarray:
    """Read an image file as RGB: (H, W, 3) uint8. `max_pixels=None`: no limit."""
    check_mode(intensity)
    raw = open_raw_image(path, max_pixels)
    try:
        check_pixel_limit(Path(path), raw.height, raw.width, max_pixels)
        return np.array(raw_to_rgb(raw.read(0, raw.height, 0, raw.width), window_for(raw, intensity)), dtype=np.uint8)
    except ImageReadError:
        raise
    except (OSError, ValueError, RuntimeError) as exc:
        raise ImageReadError(f"{path}: cannot read image ({exc})") from None
    finally:
        close_raw_image(raw)


def read_label_image(path: str | Path) -> np.ndarray:
    """Read an integer label image (one integer per instance, 0 background) as (H, W) int64.

    An RGB(A) label image is read by packing the channels (r*65536 + g*256 + b), so each
    distinct colour is a distinct instance and black is background.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: label image not found")
    try:
        if is_tiff(path):
            import tifffile

            labels = tifffile.imread(path)
            if labels.ndim == 3 and labels.shape[2] in (3, 4):
                rgb = labels[:, :, :3].astype(np.int64)
                return rgb[:, :, 0] * 65536 + rgb[:, :, 1] * 256 + rgb[:, :, 2]
            return np.asarray(labels).astype(np.int64)
        with Image.open(path) as image:
            image.load()
            if image.mode in ("RGB", "RGBA"):
                rgb = np.asarray(image.convert("RGB")).astype(np.int64)
                return rgb[:, :, 0] * 65536 + rgb[:, :, 1] * 256 + rgb[:, :, 2]
            if image.mode in ("LA", "PA"):
                image = image.convert("L")
            return np.asarray(image).astype(np.int64)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageReadError(f"{path}: cannot read label image ({exc})") from None


def image_size(path: str | Path) -> tuple[int, int]:
    """(height, width) of an image file, read from its header only (any size)."""
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: image file not found")
    try:
        if is_tiff(path):
            import tifffile

            with tifffile.TiffFile(path) as tif:
                page = tif.pages.first
                return int(page.imagelength), int(page.imagewidth)
        with pil_size_limit_lifted(), Image.open(path) as image:
            width, height = image.size
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageReadError(f"{path}: cannot read image ({exc})") from None
    return height, width
