"""The drawing surface of every picture: an image scaled for display, with translucent masks,
outlines, boxes and captions placed so that none hides a crowd; colours and fonts."""

from __future__ import annotations

import colorsys
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

# A caption is not drawn where it would cover more than this share of another instance's box.
HIDDEN_FRACTION = 0.25


def instance_colors(count: int) -> np.ndarray:
    """`count` bright, well separated colours (hues stepped by the golden ratio): (count, 3) uint8."""
    hues = (np.arange(count) * 0.618033988749895 + 0.12) % 1.0
    rgb = [colorsys.hsv_to_rgb(h, 0.8 if i % 2 == 0 else 0.65, 1.0) for i, h in enumerate(hues)]
    return (np.asarray(rgb, dtype=np.float64).reshape(count, 3) * 255).round().astype(np.uint8)


def mask_outline(mask: np.ndarray, thickness: int = 1) -> np.ndarray:
    """Pixels of a (H, W) bool mask within `thickness` pixels of its border: (H, W) bool."""
    eroded = mask.copy()
    for _ in range(max(1, thickness)):
        padded = np.pad(eroded, 1, constant_values=False)
        eroded = (
            padded[1:-1, 1:-1]
            & padded[:-2, 1:-1]
            & padded[2:, 1:-1]
            & padded[1:-1, :-2]
            & padded[1:-1, 2:]
        )
    return mask & ~eroded


def caption_name(label: int, class_names: Sequence[str] | None) -> str:
    if class_names is not None and 0 <= label < len(class_names):
        return str(class_names[label])
    return str(label)


def as_numpy(value: Any, dtype: Any | None = None) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor
        value = value.detach().cpu().numpy()
    array = np.asarray(value)
    return array.astype(dtype) if dtype is not None else array


def check_rgb_image(image: Any) -> np.ndarray:
    array = as_numpy(image)
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
        raise ValueError(
            f"image: expected an (H, W, 3) uint8 RGB array, got shape {tuple(array.shape)} "
            f"dtype {array.dtype}"
        )
    return array


def binary_masks(masks: Any, count: int, height: int, width: int) -> np.ndarray | None:
    if masks is None:
        return None
    array = as_numpy(masks)
    if array.shape != (count, height, width):
        raise ValueError(f"masks: expected shape {(count, height, width)}, got {tuple(array.shape)}")
    return array > 0.5 if array.dtype != np.bool_ else array


def load_font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


class Canvas:
    """An image scaled for display, with blending, outline, box and caption drawing."""

    def __init__(self, image: np.ndarray, scale: float, font_size: int | None) -> None:
        height, width = image.shape[:2]
        self.scale = float(scale)
        self.height = max(1, round(height * self.scale))
        self.width = max(1, round(width * self.scale))
        pil = Image.fromarray(image)
        if (self.height, self.width) != (height, width):
            pil = pil.resize((self.width, self.height), Image.Resampling.BILINEAR)
        self.pixels = np.asarray(pil, dtype=np.float32).copy()  # (H', W', 3)
        short_side = min(self.height, self.width)
        self.line_width = max(1, round(short_side / 220))
        self.font_size = font_size or int(np.clip(round(short_side / 28), 10, 22))
        self.font = load_font(self.font_size)
        self._pil: Image.Image | None = None
        self._draw: ImageDraw.ImageDraw | None = None
        self._captions: list[tuple[float, float, float, float]] = []  # placed caption boxes
        self._visible = np.zeros((0, 4), np.float32)  # (M, 4) display pixels: see keep_visible

    def scale_mask(self, mask: np.ndarray) -> np.ndarray:
        """(H, W) bool -> (H', W') bool, resized smoothly (bilinear, then threshold 0.5)."""
        if mask.shape == (self.height, self.width):
            return mask
        pil = Image.fromarray(mask.astype(np.uint8) * 255)
        resized = pil.resize((self.width, self.height), Image.Resampling.BILINEAR)
        return np.asarray(resized) >= 128

    def blend(self, mask: np.ndarray, color: Sequence[int], alpha: float) -> None:
        self._flush()
        self.pixels[mask] = self.pixels[mask] * (1.0 - alpha) + np.asarray(color, np.float32) * alpha

    def paint(self, mask: np.ndarray, color: Sequence[int]) -> None:
        self._flush()
        self.pixels[mask] = np.asarray(color, np.float32)

    def outline(self, mask: np.ndarray, color: Sequence[int]) -> None:
        self.paint(mask_outline(mask, self.line_width), color)

    def draw(self) -> ImageDraw.ImageDraw:
        if self._draw is None:
            self._pil = Image.fromarray(self.pixels.round().clip(0, 255).astype(np.uint8))
            self._draw = ImageDraw.Draw(self._pil)
        return self._draw

    def _flush(self) -> None:
        if self._pil is not None:
            self.pixels = np.asarray(self._pil, dtype=np.float32).copy()
            self._pil, self._draw = None, None

    def box(self, box: np.ndarray, color: Sequence[int], dashed: bool = False) -> None:
        x1, y1, x2, y2 = (float(v) * self.scale for v in box)
        draw, width = self.draw(), self.line_width
        if not dashed:
            draw.rectangle([x1, y1, x2, y2], outline=tuple(color), width=width)
            return
        dash = 4 * width + 2
        for (ax, ay), (bx, by) in [((x1, y1), (x2, y1)), ((x2, y1), (x2, y2)), ((x2, y2), (x1, y2)), ((x1, y2), (x1, y1))]:
            length = max(abs(bx - ax), abs(by - ay))
            steps = max(1, int(length // dash))
            for i in range(0, steps, 2):
                t0, t1 = i / steps, min(1.0, (i + 1) / steps)
                draw.line([ax + (bx - ax) * t0, ay + (by - ay) * t0, ax + (bx - ax) * t1, ay + (by - ay) * t1],
                          fill=tuple(color), width=width)

    def keep_visible(self, boxes: np.ndarray) -> None:
        """Boxes (M, 4) in image pixels whose instances captions must not hide (see caption)."""
        self._visible = np.asarray(boxes, np.float32).reshape(-1, 4) * self.scale

    def caption(self, text: str, box: np.ndarray, color: Sequence[int]) -> None:
        """White text on a darkened copy of `color`: above the box, else inside its top edge,
        else below it; the first of these that covers no earlier caption and no more than
        HIDDEN_FRACTION of any box given to keep_visible (its own included: inside the top
        edge of a large box is fine, over a small one is not). Where all would, none is
        drawn: in a crowded image (hundreds of nuclei), captions hid the instances."""
        draw = self.draw()
        left, top, right, bottom = draw.textbbox((0, 0), text, font=self.font)
        pad = max(1, self.font_size // 6)
        text_w, text_h = right - left + 2 * pad, bottom - top + 2 * pad
        x1, y1, _, y2 = (float(v) * self.scale for v in box)
        x = min(max(0.0, x1), max(0.0, self.width - text_w))
        candidates = [y1 - text_h, y1, y2, y2 - text_h]
        candidates = [min(max(0.0, y), max(0.0, self.height - text_h)) for y in candidates]
        y = next(
            (c for c in candidates if not self._covers(x, c, text_w, text_h) and not self._hides(x, c, text_w, text_h)),
            None,
        )
        if y is None:
            return
        self._captions.append((x, y, x + text_w, y + text_h))
        background = tuple(int(c * 0.55) for c in color)
        draw.rectangle([x, y, x + text_w - 1, y + text_h - 1], fill=background)  # PIL includes the end
        draw.text((x + pad - left, y + pad - top), text, fill=(255, 255, 255), font=self.font)

    def _hides(self, x: float, y: float, w: float, h: float) -> bool:
        boxes = self._visible  # (M, 4) display pixels
        if len(boxes) == 0:
            return False
        overlap_w = np.clip(np.minimum(boxes[:, 2], x + w) - np.maximum(boxes[:, 0], x), 0, None)  # (M,)
        overlap_h = np.clip(np.minimum(boxes[:, 3], y + h) - np.maximum(boxes[:, 1], y), 0, None)  # (M,)
        areas = np.maximum((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]), 1e-6)  # (M,)
        return bool((overlap_w * overlap_h / areas > HIDDEN_FRACTION).any())

    def _covers(self, x: float, y: float, w: float, h: float) -> bool:
        return any(x < bx2 and bx1 < x + w and y < by2 and by1 < y + h for bx1, by1, bx2, by2 in self._captions)

    def image(self) -> np.ndarray:
        self._flush()
        return self.pixels.round().clip(0, 255).astype(np.uint8)
