"""The 2018 Data Science Bowl score: mean over IoU thresholds of TP / (TP + FP + FN).

For one image and a threshold t, a predicted mask and a ground-truth mask match when their
IoU is above t (each mask matches at most once; pairs are taken from the highest IoU
down). TP counts matches, FP unmatched predictions, FN unmatched ground truth. The image
score is the mean over t = 0.50, 0.55, ..., 0.95; the data set score is the mean over
images. An image with neither ground truth nor predictions scores 1. Classes are ignored.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import Tensor

DSB_IOU_THRESHOLDS: tuple[float, ...] = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))

MaskStack = Tensor | np.ndarray  # (N, H, W), nonzero = inside


def mask_iou_matrix(pred: MaskStack, gt: MaskStack) -> Tensor:
    """IoU of every prediction with every ground-truth mask: (P, H, W), (G, H, W) -> (P, G)."""
    pred_t = torch.as_tensor(np.asarray(pred) if not isinstance(pred, Tensor) else pred)
    gt_t = torch.as_tensor(np.asarray(gt) if not isinstance(gt, Tensor) else gt)
    if pred_t.shape[0] == 0 or gt_t.shape[0] == 0:
        return torch.zeros((pred_t.shape[0], gt_t.shape[0]))
    if pred_t.shape[1:] != gt_t.shape[1:]:
        raise ValueError(
            f"dsb_score: prediction masks are {tuple(pred_t.shape[1:])} but ground truth masks "
            f"are {tuple(gt_t.shape[1:])}; they must have the same height and width"
        )
    p = (pred_t != 0).flatten(1).double()  # (P, H*W)
    g = (gt_t != 0).flatten(1).double()  # (G, H*W)
    inter = p @ g.T  # (P, G)
    union = p.sum(1)[:, None] + g.sum(1)[None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=1), torch.zeros_like(inter))


def count_matches(iou: Tensor, threshold: float) -> int:
    """Number of one-to-one pairs with IoU > threshold, taken greedily from the highest IoU."""
    pairs = (iou > threshold).nonzero()
    if pairs.shape[0] == 0:
        return 0
    order = iou[pairs[:, 0], pairs[:, 1]].argsort(descending=True)
    used_pred: set[int] = set()
    used_gt: set[int] = set()
    for p, g in pairs[order].tolist():
        if p not in used_pred and g not in used_gt:
            used_pred.add(p)
            used_gt.add(g)
    return len(used_pred)


def dsb_image_score(pred: MaskStack, gt: MaskStack) -> float:
    num_pred, num_gt = int(pred.shape[0]), int(gt.shape[0])
    if num_pred == 0 and num_gt == 0:
        return 1.0
    return dsb_score_from_iou(mask_iou_matrix(pred, gt))


def dsb_score_from_iou(iou: Tensor) -> float:
    """The image score from its (P, G) IoU matrix of predictions and ground truth."""
    num_pred, num_gt = int(iou.shape[0]), int(iou.shape[1])
    if num_pred == 0 and num_gt == 0:
        return 1.0
    total = 0.0
    for threshold in DSB_IOU_THRESHOLDS:
        tp = count_matches(iou, threshold)
        total += tp / (num_pred + num_gt - tp)  # TP / (TP + FP + FN)
    return total / len(DSB_IOU_THRESHOLDS)


def dsb_score(pred_masks: Sequence[MaskStack], gt_masks: Sequence[MaskStack]) -> float:
    """Mean DSB score over images; `pred_masks[i]` and `gt_masks[i]` are (N, H, W) stacks of image i."""
    if len(pred_masks) != len(gt_masks):
        raise ValueError(
            f"dsb_score: {len(pred_masks)} images of predictions but {len(gt_masks)} of ground truth"
        )
    if not gt_masks:
        return 0.0
    return float(np.mean([dsb_image_score(p, g) for p, g in zip(pred_masks, gt_masks)]))
