"""What the generators of synthetic data sets (shapes, nuclei) share: boxes and PNG bytes."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def tight_bbox(mask: np.ndarray) -> list[float]:
    """COCO [x, y, w, h] of the pixels set in an (H, W) mask (pixel-edge coordinates)."""
    ys, xs = np.nonzero(mask)
    x0, y0 = int(xs.min()), int(ys.min())
    return [float(x0), float(y0), float(xs.max() + 1 - x0), float(ys.max() + 1 - y0)]


def png_bytes(pixels: np.ndarray) -> bytes:
    """An (H, W, 3) uint8 image encoded as PNG."""
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="RGB").save(buffer, format="PNG")
    return buffer.getvalue()
