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

from collections.abc import Sequence
from typing import Any

import numpy as np

from maskrcnn.evaluation.matching import (
    match_predictions,
    pairwise_box_iou,
    pairwise_mask_iou,
)
from maskrcnn.visualize.canvas import (
    Canvas,
    as_numpy,
    binary_masks,
    caption_name,
    check_rgb_image,
    instance_colors,
)
from maskrcnn.visualize.panels import with_legend

MATCHED_COLOR = (40, 200, 70)
MISSED_COLOR = (235, 45, 45)
FALSE_POSITIVE_COLOR = (225, 60, 225)


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
    image = check_rgb_image(image)
    height, width = image.shape[:2]
    boxes_np = as_numpy(boxes, np.float32).reshape(-1, 4)  # (N, 4)
    count = boxes_np.shape[0]
    labels_np = as_numpy(labels, np.int64).reshape(count)
    scores_np = None if scores is None else as_numpy(scores, np.float32).reshape(count)
    masks_np = binary_masks(masks, count, height, width)
    colors = instance_colors(count) if colors is None else np.asarray(colors, np.uint8)

    canvas = Canvas(image, scale, font_size)
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
    boxes_np = as_numpy(boxes, np.float32).reshape(-1, 4)  # (N, 4)
    canvas = Canvas(check_rgb_image(image), 1.0, font_size)
    for box, color in zip(boxes_np, colors):
        canvas.box(box, color)
    canvas.keep_visible(boxes_np)
    for box, text, color in zip(boxes_np, texts, colors):
        canvas.caption(text, box, color)
    return canvas.image()


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
    image = check_rgb_image(image)
    height, width = image.shape[:2]
    gt_boxes_np = as_numpy(gt_boxes, np.float32).reshape(-1, 4)  # (G, 4)
    pred_boxes_np = as_numpy(pred_boxes, np.float32).reshape(-1, 4)  # (N, 4)
    num_gt, num_pred = gt_boxes_np.shape[0], pred_boxes_np.shape[0]
    scores_np = as_numpy(pred_scores, np.float32).reshape(num_pred)
    gt_masks_np = binary_masks(gt_masks, num_gt, height, width)
    pred_masks_np = binary_masks(pred_masks, num_pred, height, width)
    gt_labels_np = None if gt_labels is None else as_numpy(gt_labels, np.int64).reshape(num_gt)
    pred_labels_np = None if pred_labels is None else as_numpy(pred_labels, np.int64).reshape(num_pred)

    if gt_masks_np is not None and pred_masks_np is not None:
        iou = pairwise_mask_iou(gt_masks_np, pred_masks_np)  # (G, N)
    else:
        iou = pairwise_box_iou(gt_boxes_np, pred_boxes_np)  # (G, N)
    matched_gt = match_predictions(iou, scores_np, iou_threshold, gt_labels_np, pred_labels_np)
    missed = np.setdiff1d(np.arange(num_gt), matched_gt[matched_gt >= 0])
    false_positives = np.flatnonzero(matched_gt < 0)
    matched = np.flatnonzero(matched_gt >= 0)

    canvas = Canvas(image, scale, font_size)
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
    return with_legend(canvas.image(), legend, f"IoU>={iou_threshold:g}", canvas.font_size)
