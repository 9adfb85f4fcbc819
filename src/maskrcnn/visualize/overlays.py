"""Pictures of instances on an image: translucent masks, contours, boxes and captions.

`draw_instances` shows what a model found (one distinct colour per instance, in the manner
of matterport's display_instances and detectron2's Visualizer). `draw_gt_vs_pred` compares
predictions with ground truth: matched predictions in green, missed ground truth in red
with a dashed box, false positives in magenta, and a legend with the counts.

Shape glossary: H, W image height and width; N predicted instances; G ground-truth
instances. Inputs may be NumPy arrays or CPU tensors; masks may be bool, {0,1} or float
probabilities (thresholded at 0.5). Outputs are (H', W', 3) uint8 arrays, H' = H * scale.
"""

from __future__ import annotations

import colorsys
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from maskrcnn.evaluation.matching import (
    match_predictions,
    pairwise_box_iou,
    pairwise_mask_iou,
)
from maskrcnn.io_utils import atomic_write_bytes

MATCHED_COLOR = (40, 200, 70)
MISSED_COLOR = (235, 45, 45)
FALSE_POSITIVE_COLOR = (225, 60, 225)
LEGEND_BACKGROUND = (30, 30, 30)
# A caption is not drawn where it would cover more than this share of another instance's box.
HIDDEN_FRACTION = 0.25


# ---------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------


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


def _to_numpy(value: Any, dtype: Any | None = None) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor
        value = value.detach().cpu().numpy()
    array = np.asarray(value)
    return array.astype(dtype) if dtype is not None else array


def _check_image(image: Any) -> np.ndarray:
    array = _to_numpy(image)
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
        raise ValueError(
            f"image: expected an (H, W, 3) uint8 RGB array, got shape {tuple(array.shape)} "
            f"dtype {array.dtype}"
        )
    return array


def _binary_masks(masks: Any, count: int, height: int, width: int) -> np.ndarray | None:
    if masks is None:
        return None
    array = _to_numpy(masks)
    if array.shape != (count, height, width):
        raise ValueError(f"masks: expected shape {(count, height, width)}, got {tuple(array.shape)}")
    return array > 0.5 if array.dtype != np.bool_ else array


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


class _Canvas:
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
        self.font = _font(self.font_size)
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


# ---------------------------------------------------------------------------------------
# Predictions
# ---------------------------------------------------------------------------------------


def draw_instances(
    image: np.ndarray,
    boxes: Any,
    labels: Any,
    scores: Any | None = None,
    masks: Any | None = None,
    class_names: Sequence[str] | None = None,
    *,
    colors: np.ndarray | None = None,
    alpha: float = 0.45,
    scale: float = 1.0,
    show_boxes: bool = True,
    show_captions: bool = True,
    font_size: int | None = None,
) -> np.ndarray:
    """Draw N instances on an (H, W, 3) uint8 image and return the new (H', W', 3) uint8 image.

    boxes (N, 4) x1 y1 x2 y2 in image pixels; labels (N,); scores (N,) or None; masks
    (N, H, W) or None; class_names indexed by label. Captions read "name 0.97"
    (`show_captions=False` leaves them out, for crowded images).
    """
    image = _check_image(image)
    height, width = image.shape[:2]
    boxes_np = _to_numpy(boxes, np.float32).reshape(-1, 4)  # (N, 4)
    count = boxes_np.shape[0]
    labels_np = _to_numpy(labels, np.int64).reshape(count)
    scores_np = None if scores is None else _to_numpy(scores, np.float32).reshape(count)
    masks_np = _binary_masks(masks, count, height, width)
    colors = instance_colors(count) if colors is None else np.asarray(colors, np.uint8)

    canvas = _Canvas(image, scale, font_size)
    scaled_masks = [canvas.scale_mask(m) for m in masks_np] if masks_np is not None else []
    for mask, color in zip(scaled_masks, colors):
        canvas.blend(mask, color, alpha)
    for mask, color in zip(scaled_masks, colors):
        canvas.outline(mask, color)
    if show_boxes:
        for box, color in zip(boxes_np, colors):
            canvas.box(box, color)
    canvas.keep_visible(boxes_np)
    for i in range(count if show_captions else 0):
        text = caption_name(int(labels_np[i]), class_names)
        if scores_np is not None:
            text = f"{text} {scores_np[i]:.2f}"
        canvas.caption(text, boxes_np[i], colors[i])
    return canvas.image()


def draw_boxes_and_captions(
    image: np.ndarray, boxes: Any, texts: Sequence[str], colors: np.ndarray, *, font_size: int | None = None
) -> np.ndarray:
    """Boxes (N, 4) x1 y1 x2 y2 in image pixels and their captions on an (H, W, 3) uint8
    image, placed as draw_instances places them (no caption over a crowd)."""
    boxes_np = _to_numpy(boxes, np.float32).reshape(-1, 4)  # (N, 4)
    canvas = _Canvas(_check_image(image), 1.0, font_size)
    for box, color in zip(boxes_np, colors):
        canvas.box(box, color)
    canvas.keep_visible(boxes_np)
    for box, text, color in zip(boxes_np, texts, colors):
        canvas.caption(text, box, color)
    return canvas.image()


# ---------------------------------------------------------------------------------------
# Ground truth versus predictions
# ---------------------------------------------------------------------------------------


def draw_gt_vs_pred(
    image: np.ndarray,
    gt_boxes: Any,
    gt_masks: Any | None,
    pred_boxes: Any,
    pred_scores: Any,
    pred_masks: Any | None,
    *,
    gt_labels: Any | None = None,
    pred_labels: Any | None = None,
    class_names: Sequence[str] | None = None,
    iou_threshold: float = 0.5,
    alpha: float = 0.4,
    scale: float = 1.0,
    font_size: int | None = None,
) -> np.ndarray:
    """Compare G ground-truth instances with N predictions on one image.

    Predictions are matched to ground truth greedily by score at mask IoU >= iou_threshold
    (box IoU without masks; same class when both label arrays are given). Matched: green
    mask, outline and caption with score and IoU; missed ground truth: red outline and
    dashed box; false positives: magenta. A legend strip with the counts is added below,
    so the result is (H' + legend, W', 3) uint8.
    """
    image = _check_image(image)
    height, width = image.shape[:2]
    gt_boxes_np = _to_numpy(gt_boxes, np.float32).reshape(-1, 4)  # (G, 4)
    pred_boxes_np = _to_numpy(pred_boxes, np.float32).reshape(-1, 4)  # (N, 4)
    num_gt, num_pred = gt_boxes_np.shape[0], pred_boxes_np.shape[0]
    scores_np = _to_numpy(pred_scores, np.float32).reshape(num_pred)
    gt_masks_np = _binary_masks(gt_masks, num_gt, height, width)
    pred_masks_np = _binary_masks(pred_masks, num_pred, height, width)
    gt_labels_np = None if gt_labels is None else _to_numpy(gt_labels, np.int64).reshape(num_gt)
    pred_labels_np = None if pred_labels is None else _to_numpy(pred_labels, np.int64).reshape(num_pred)

    if gt_masks_np is not None and pred_masks_np is not None:
        iou = pairwise_mask_iou(gt_masks_np, pred_masks_np)  # (G, N)
    else:
        iou = pairwise_box_iou(gt_boxes_np, pred_boxes_np)  # (G, N)
    matched_gt = match_predictions(iou, scores_np, iou_threshold, gt_labels_np, pred_labels_np)
    missed = np.setdiff1d(np.arange(num_gt), matched_gt[matched_gt >= 0])
    false_positives = np.flatnonzero(matched_gt < 0)
    matched = np.flatnonzero(matched_gt >= 0)

    canvas = _Canvas(image, scale, font_size)
    if pred_masks_np is not None:
        for p in matched:
            canvas.blend(canvas.scale_mask(pred_masks_np[p]), MATCHED_COLOR, alpha)
        for p in false_positives:
            canvas.blend(canvas.scale_mask(pred_masks_np[p]), FALSE_POSITIVE_COLOR, alpha)
        for p in matched:
            canvas.outline(canvas.scale_mask(pred_masks_np[p]), MATCHED_COLOR)
        for p in false_positives:
            canvas.outline(canvas.scale_mask(pred_masks_np[p]), FALSE_POSITIVE_COLOR)
    if gt_masks_np is not None:
        for g in missed:
            gt_mask = canvas.scale_mask(gt_masks_np[g])
            canvas.blend(gt_mask, MISSED_COLOR, alpha * 0.5)
            canvas.outline(gt_mask, MISSED_COLOR)
    for g in missed:
        canvas.box(gt_boxes_np[g], MISSED_COLOR, dashed=True)
    for p in false_positives:
        canvas.box(pred_boxes_np[p], FALSE_POSITIVE_COLOR)

    def label_text(labels: np.ndarray | None, index: int) -> str:
        return "" if labels is None else caption_name(int(labels[index]), class_names) + " "

    # every prediction and every missed object stays visible (matched ground truth lies
    # under its prediction)
    canvas.keep_visible(np.concatenate([pred_boxes_np, gt_boxes_np[missed]]))
    for p in matched:
        text = f"{label_text(pred_labels_np, p)}{scores_np[p]:.2f} IoU {iou[matched_gt[p], p]:.2f}"
        canvas.caption(text, pred_boxes_np[p], MATCHED_COLOR)
    for p in false_positives:
        canvas.caption(f"FP {label_text(pred_labels_np, p)}{scores_np[p]:.2f}", pred_boxes_np[p], FALSE_POSITIVE_COLOR)
    for g in missed:
        canvas.caption(f"missed {label_text(gt_labels_np, g)}".rstrip(), gt_boxes_np[g], MISSED_COLOR)

    legend = [
        (MATCHED_COLOR, f"matched {len(matched)}/{num_gt}"),
        (MISSED_COLOR, f"missed {len(missed)}"),
        (FALSE_POSITIVE_COLOR, f"false pos. {len(false_positives)}"),
    ]
    return _with_legend(canvas.image(), legend, f"IoU>={iou_threshold:g}", canvas.font_size)


def _with_legend(image: np.ndarray, entries: list[tuple[tuple[int, int, int], str]], note: str, font_size: int) -> np.ndarray:
    """Append a dark strip under the image with a colour swatch and text per entry (wrapped)."""
    font = _font(font_size)
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
    font = _font(size)
    pad = max(3, size // 3)
    strip = Image.new("RGB", (image.shape[1], size + 2 * pad), LEGEND_BACKGROUND)
    draw = ImageDraw.Draw(strip)
    left, top, _, _ = draw.textbbox((0, 0), title, font=font)
    draw.text((pad - left, pad - top + 1), title, fill=(240, 240, 240), font=font)
    return np.concatenate([np.asarray(strip, dtype=np.uint8), image], axis=0)
