"""Reading image files into RGB uint8 arrays, whatever their mode.

Handled: 8-bit RGB, grayscale (L), 1-bit, palette (P), RGBA / LA (composited on white),
CMYK, and 16-bit or 32-bit grayscale (scaled to 8 bits by the file's own range).
Anything that cannot be opened raises `ImageReadError` naming the file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError


class ImageReadError(ValueError):
    """An image file that is missing or cannot be decoded."""


def _high_bit_depth_to_uint8(array: np.ndarray) -> np.ndarray:
    """Scale a 16/32-bit single-channel array to 0..255.

    16-bit files whose values all fit in 0..255 are kept as they are; otherwise the values
    are divided by the type's maximum (65535 for 16-bit data) so that brightness survives.
    Signed 32-bit data (PIL mode "I") is scaled by its own maximum.
    """
    array = array.astype(np.float64)
    top = float(array.max()) if array.size else 0.0
    if top <= 255.0:
        scale = 1.0
    elif top <= 65535.0:
        scale = 255.0 / 65535.0
    else:
        scale = 255.0 / top
    return np.clip(np.round(array * scale), 0, 255).astype(np.uint8)


def pil_to_rgb_array(image: Image.Image) -> np.ndarray:
    """Convert a PIL image of any common mode to a (H, W, 3) uint8 array."""
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        gray = _high_bit_depth_to_uint8(np.asarray(image))
        return np.repeat(gray[:, :, None], 3, axis=2)
    if mode == "P":
        image = image.convert("RGBA") if "transparency" in image.info else image.convert("RGB")
        mode = image.mode
    if mode in ("RGBA", "LA", "PA"):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, rgba)
    return np.array(image.convert("RGB"), dtype=np.uint8)  # a writable copy


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as RGB: (H, W, 3) uint8."""
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: image file not found")
    try:
        with Image.open(path) as image:
            image.load()
            return pil_to_rgb_array(image)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageReadError(f"{path}: cannot read image ({exc})") from None


def read_label_image(path: str | Path) -> np.ndarray:
    """Read an integer label image (one integer per instance, 0 background) as (H, W) int64.

    An RGB(A) label image is read by packing the channels (r*65536 + g*256 + b), so each
    distinct colour is a distinct instance and black is background.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: label image not found")
    try:
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
    """(height, width) of an image file, read from its header only."""
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: image file not found")
    try:
        with Image.open(path) as image:
            width, height = image.size
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageReadError(f"{path}: cannot read image ({exc})") from None
    return height, width
