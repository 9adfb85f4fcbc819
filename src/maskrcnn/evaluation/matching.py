"""Matching predictions to ground truth for pictures: pairwise IoU and greedy matching.

Shape glossary: G ground-truth instances, P predictions, H, W image size.
"""

from __future__ import annotations

import numpy as np
import torch

from maskrcnn.ops.boxes import box_iou


def pairwise_mask_iou(masks_a: np.ndarray, masks_b: np.ndarray) -> np.ndarray:
    """(A, H, W) bool x (B, H, W) bool -> (A, B) IoU (0 where both masks are empty)."""
    pixels = int(np.prod(masks_a.shape[1:]))
    flat_a = masks_a.reshape(masks_a.shape[0], pixels).astype(np.float32)  # (A, H*W)
    flat_b = masks_b.reshape(masks_b.shape[0], pixels).astype(np.float32)  # (B, H*W)
    inter = flat_a @ flat_b.T  # (A, B)
    union = flat_a.sum(1)[:, None] + flat_b.sum(1)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)


def pairwise_box_iou(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """(A, 4) x (B, 4) xyxy -> (A, B) IoU (maskrcnn.ops.boxes.box_iou on NumPy arrays)."""
    iou = box_iou(torch.as_tensor(boxes_a, dtype=torch.float32), torch.as_tensor(boxes_b, dtype=torch.float32))
    return iou.numpy()


def match_predictions(
    iou: np.ndarray,
    pred_scores: np.ndarray,
    iou_threshold: float = 0.5,
    gt_labels: np.ndarray | None = None,
    pred_labels: np.ndarray | None = None,
) -> np.ndarray:
    """Greedy COCO-style matching, highest score first: (P,) index of the matched gt or -1.

    iou is (G, P). A gt is matched at most once; with labels given, only same-class pairs match.
    """
    num_gt, num_pred = iou.shape
    matched_gt = np.full(num_pred, -1, dtype=np.int64)
    taken = np.zeros(num_gt, dtype=bool)
    for p in np.argsort(-pred_scores, kind="stable"):
        candidates = iou[:, p].copy()
        candidates[taken] = -1.0
        if gt_labels is not None and pred_labels is not None:
            candidates[gt_labels != pred_labels[p]] = -1.0
        if num_gt == 0:
            continue
        g = int(np.argmax(candidates))
        if candidates[g] >= iou_threshold:
            matched_gt[p] = g
            taken[g] = True
    return matched_gt
