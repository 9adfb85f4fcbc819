"""Putting pictures together and on disk: display scale, side-by-side panels, titles, legends, PNG files."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from maskrcnn.io_utils import atomic_write_bytes
from maskrcnn.visualize.canvas import load_font

LEGEND_BACKGROUND = (30, 30, 30)


def display_scale(height: int, width: int, target: int = 512) -> float:
    """An integer up-scaling factor so that small images (e.g. 128 px) are drawn readably."""
    longest = max(height, width, 1)
    return float(max(1, target // longest))


def save_image(path: str | Path, image: np.ndarray) -> None:
    """Write an (H, W, 3) uint8 array as a PNG, atomically."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buffer, format="PNG")
    atomic_write_bytes(path, buffer.getvalue())


def side_by_side(left: np.ndarray, right: np.ndarray, gap: int = 6) -> np.ndarray:
    """Two (H, W, 3) pictures next to each other on white, `gap` pixels apart."""
    height = max(left.shape[0], right.shape[0])
    canvas = np.full((height, left.shape[1] + gap + right.shape[1], 3), 255, dtype=np.uint8)
    canvas[: left.shape[0], : left.shape[1]] = left
    canvas[: right.shape[0], left.shape[1] + gap :] = right
    return canvas


def with_legend(image: np.ndarray, entries: list[tuple[tuple[int, int, int], str]], note: str, font_size: int) -> np.ndarray:
    """Append a dark strip under the image with a colour swatch and text per entry (wrapped)."""
    font = load_font(font_size)
    pad = max(3, font_size // 3)
    line_height = font_size + 2 * pad
    width = image.shape[1]
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    placed: list[tuple[int, int, tuple[int, int, int] | None, str]] = []  # (x, row, colour, text)
    x, row = pad, 0
    for color, text in [*entries, (None, note)]:
        left, _, right, _ = measure.textbbox((0, 0), text, font=font)
        item_width = (font_size + pad // 2 + 1 if color is not None else 0) + right - left
        if x > pad and x + item_width > width - pad:
            x, row = pad, row + 1
        placed.append((x, row, color, text))
        x += item_width + 2 * pad
    strip = Image.new("RGB", (width, line_height * (row + 1)), LEGEND_BACKGROUND)
    draw = ImageDraw.Draw(strip)
    for x, row, color, text in placed:
        y = row * line_height + pad
        if color is not None:
            draw.rectangle([x, y, x + font_size, y + font_size], fill=color)
            x += font_size + pad // 2 + 1
        left, top, _, _ = draw.textbbox((0, 0), text, font=font)
        draw.text((x - left, y - top + 1), text, fill=(240, 240, 240), font=font)
    return np.concatenate([image, np.asarray(strip, dtype=np.uint8)], axis=0)


def with_title(image: np.ndarray, title: str, font_size: int | None = None) -> np.ndarray:
    """Add a dark strip with `title` above an (H, W, 3) uint8 image."""
    size = font_size or int(np.clip(round(min(image.shape[:2]) / 28), 10, 22))
    font = load_font(size)
    pad = max(3, size // 3)
    strip = Image.new("RGB", (image.shape[1], size + 2 * pad), LEGEND_BACKGROUND)
    draw = ImageDraw.Draw(strip)
    left, top, _, _ = draw.textbbox((0, 0), title, font=font)
    draw.text((pad - left, pad - top + 1), title, fill=(240, 240, 240), font=font)
    return np.concatenate([np.asarray(strip, dtype=np.uint8), image], axis=0)
