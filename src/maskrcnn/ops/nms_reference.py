"""Greedy non-maximum suppression written as plainly as possible.

The reference that `ops/nms.py` (the fast path: blocks of rows, vectorized IoU tiles,
bit-mask rows) is tested against. Quadratic Python loop: read it to learn what NMS keeps.

Shape glossary: N boxes (x1, y1, x2, y2); K kept boxes.
"""

from __future__ import annotations

import torch
from torch import Tensor

from maskrcnn.ops.boxes import box_iou


def nms_reference(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """(N, 4) boxes, (N,) scores -> (K,) int64 indices kept, highest score first.

    Boxes are visited by score (ties keep input order, as torchvision's stable sort);
    a box is kept unless a kept box overlaps it with IoU > iou_threshold.
    """
    order = torch.sort(scores, descending=True, stable=True)[1].tolist()
    iou = box_iou(boxes, boxes)  # (N, N)
    kept: list[int] = []
    for index in order:
        if all(iou[index, other] <= iou_threshold for other in kept):
            kept.append(index)
    return torch.tensor(kept, dtype=torch.int64)


def batched_nms_reference(boxes: Tensor, scores: Tensor, categories: Tensor, iou_threshold: float) -> Tensor:
    """NMS within each category; the kept indices of all categories, highest score first."""
    kept = [
        torch.where(categories == c)[0][nms_reference(boxes[categories == c], scores[categories == c], iou_threshold)]
        for c in torch.unique(categories).tolist()
    ]
    if not kept:
        return torch.zeros((0,), dtype=torch.int64)
    merged = torch.cat(kept)
    return merged[torch.sort(scores[merged], descending=True, stable=True)[1]]
