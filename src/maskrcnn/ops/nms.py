"""Non-maximum suppression, greedy, with torchvision's exact keep lists.

Shape glossary: N boxes (x1, y1, x2, y2); K kept boxes.

How it is fast without a compiled kernel: boxes are sorted by score (stable, descending,
as torchvision), the "box i suppresses box j" relation (IoU > threshold, j after i) is
computed in row blocks with vectorized tensor ops and packed into one Python integer
bitmask per row, and the greedy sweep is then a loop of integer ORs.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

_ROW_BLOCK = 256  # rows of the IoU matrix computed at once


def _suppression_rows(boxes: Tensor, iou_threshold: float) -> list[int]:
    """For sorted (N, 4) float boxes: one bitmask per box i of the later j it suppresses."""
    num = boxes.shape[0]
    x1, y1, x2, y2 = boxes.unbind(dim=1)  # (N,) each
    areas = (x2 - x1) * (y2 - y1)  # (N,)
    rows: list[int] = []
    padded_cols = (num + 7) // 8 * 8
    for start in range(0, num, _ROW_BLOCK):
        stop = min(start + _ROW_BLOCK, num)
        # Only columns j > i matter; the block's columns start at its first row.
        col = slice(start, num)
        xx1 = torch.maximum(x1[start:stop, None], x1[None, col])  # (R, N - start)
        yy1 = torch.maximum(y1[start:stop, None], y1[None, col])
        xx2 = torch.minimum(x2[start:stop, None], x2[None, col])
        yy2 = torch.minimum(y2[start:stop, None], y2[None, col])
        width = (xx2 - xx1).clamp_(min=0)
        height = (yy2 - yy1).clamp_(min=0)
        inter = width.mul_(height)
        union = (areas[start:stop, None] + areas[None, col]).sub_(inter)
        suppress = inter.div_(union) > iou_threshold  # (R, N - start) bool
        bits = np.zeros((stop - start, padded_cols), dtype=bool)
        bits[:, start:num] = suppress.cpu().numpy()
        packed = np.packbits(bits, axis=1, bitorder="little")  # (R, padded_cols / 8)
        for offset in range(stop - start):
            row = int.from_bytes(packed[offset].tobytes(), "little")
            row &= ~((1 << (start + offset + 1)) - 1)  # keep bits j > i only
            rows.append(row)
    return rows


def nms(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Greedy NMS: indices (K,) int64 of kept boxes, by decreasing score.

    A box is dropped when its IoU with a kept, higher-scored box is > iou_threshold.
    Equal scores keep their input order (stable descending sort, as torchvision).
    """
    if boxes.dim() != 2 or boxes.shape[-1] != 4 or scores.shape != boxes.shape[:1]:
        raise ValueError(
            f"nms expects boxes (N, 4) and scores (N,), got {tuple(boxes.shape)} and {tuple(scores.shape)}"
        )
    if boxes.shape[0] == 0:
        return torch.zeros((0,), dtype=torch.int64, device=boxes.device)
    order = torch.sort(scores, dim=0, descending=True, stable=True)[1]  # (N,)
    sorted_boxes = boxes[order]
    if not sorted_boxes.is_floating_point():
        sorted_boxes = sorted_boxes.float()
    rows = _suppression_rows(sorted_boxes, iou_threshold)
    removed = 0
    kept: list[int] = []
    for i, row in enumerate(rows):
        if (removed >> i) & 1:
            continue
        kept.append(i)
        removed |= row
    kept_positions = torch.as_tensor(kept, dtype=torch.int64, device=boxes.device)
    return order[kept_positions]


def batched_nms(boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float) -> Tensor:
    """NMS done independently per category `idxs` (N,): kept indices (K,) by decreasing score.

    Mirrors torchvision: for up to 1000 boxes every category's boxes are shifted by
    idxs * (max coordinate + 1) so that categories never overlap and one NMS runs; for more,
    NMS runs per category and the union is sorted by score.
    """
    if boxes.shape[0] == 0:
        return torch.zeros((0,), dtype=torch.int64, device=boxes.device)
    if boxes.numel() <= 4000:
        max_coordinate = boxes.max()
        offsets = idxs.to(boxes) * (max_coordinate + torch.tensor(1).to(boxes))  # (N,)
        return nms(boxes + offsets[:, None], scores, iou_threshold)
    keep_mask = torch.zeros_like(scores, dtype=torch.bool)
    for category in torch.unique(idxs).tolist():
        members = torch.where(idxs == category)[0]
        keep_mask[members[nms(boxes[members], scores[members], iou_threshold)]] = True
    kept = torch.where(keep_mask)[0]
    return kept[torch.sort(scores[kept], descending=True, stable=True)[1]]
