"""Matching predictions (anchors or proposals) to ground-truth boxes by a quality matrix.

Shape glossary: M ground-truth boxes; N predictions.
"""

from __future__ import annotations

import torch
from torch import Tensor

from maskrcnn.ops.boxes import box_iou

IOU_PAIRS_AT_ONCE = 1 << 24  # match_boxes: IoU values computed at once (64 MB of float32)


class Matcher:
    """Assign each prediction the gt it overlaps most, or a negative code.

    For every prediction (column of the (M, N) quality matrix, usually IoU) the best gt is
    taken; a best value < low_threshold gives BELOW_LOW_THRESHOLD (-1), one in
    [low_threshold, high_threshold) gives BETWEEN_THRESHOLDS (-2). With
    allow_low_quality_matches, every prediction whose quality equals some gt's highest
    quality over all predictions keeps its best gt even below the thresholds (torchvision
    semantics). With no gt at all every prediction is BELOW_LOW_THRESHOLD.
    """

    BELOW_LOW_THRESHOLD = -1
    BETWEEN_THRESHOLDS = -2

    def __init__(self, high_threshold: float, low_threshold: float, allow_low_quality_matches: bool) -> None:
        if low_threshold > high_threshold:
            raise ValueError(
                f"Matcher: low_threshold ({low_threshold}) must be <= high_threshold ({high_threshold})"
            )
        self.high_threshold = high_threshold
        self.low_threshold = low_threshold
        self.allow_low_quality_matches = allow_low_quality_matches

    def __call__(self, match_quality: Tensor) -> Tensor:
        """(M, N) quality -> (N,) int64: matched gt index, or -1 / -2."""
        if match_quality.dim() != 2:
            raise ValueError(f"Matcher expects an (M gt, N pred) matrix, got shape {tuple(match_quality.shape)}")
        num_gt, num_pred = match_quality.shape
        if num_gt == 0 or num_pred == 0:
            return torch.full((num_pred,), self.BELOW_LOW_THRESHOLD, dtype=torch.int64, device=match_quality.device)
        best_quality, best_gt = match_quality.max(dim=0)  # (N,), (N,)
        low_quality = None
        if self.allow_low_quality_matches:
            best_for_each_gt = match_quality.max(dim=1).values  # (M,)
            low_quality = (match_quality == best_for_each_gt[:, None]).any(dim=0)  # (N,) bool
        return self._assign(best_quality, best_gt, low_quality)

    def _assign(self, best_quality: Tensor, best_gt: Tensor, low_quality: Tensor | None) -> Tensor:
        """Best gt per prediction (N,) -> matches with -1 / -2 codes; the predictions marked in
        `low_quality` (N,) bool (the best of some gt) keep their best gt whatever their quality.
        Element-wise selects only: no count the host would wait for on a GPU."""
        matches = torch.where(best_quality < self.low_threshold, self.BELOW_LOW_THRESHOLD, best_gt)
        between = (best_quality >= self.low_threshold) & (best_quality < self.high_threshold)
        matches = torch.where(between, self.BETWEEN_THRESHOLDS, matches)
        if low_quality is not None:
            matches = torch.where(low_quality, best_gt, matches)
        return matches

    def match_boxes(self, gt_boxes: Tensor, boxes: Tensor, max_pairs: int = IOU_PAIRS_AT_ONCE) -> Tensor:
        """`self(box_iou(gt_boxes, boxes))` for (M, 4) gt and (N, 4) boxes, the same matches,
        with at most about `max_pairs` IoU values in memory at once.

        A doubled 1000 px nuclei image has ~2 million anchors and ~300 nuclei: the whole
        IoU matrix and box_iou's temporaries took over 10 GB. Above the budget, the IoUs are
        computed over chunks of boxes, twice when low-quality matches are allowed (the
        second pass finds the boxes that reach some gt's highest IoU).
        """
        num_gt, num_boxes = gt_boxes.shape[0], boxes.shape[0]
        if num_gt * num_boxes <= max_pairs or num_gt == 0:
            return self(box_iou(gt_boxes, boxes))
        step = max(1, max_pairs // num_gt)
        best_quality, best_gt, highest = [], [], None
        for start in range(0, num_boxes, step):
            quality = box_iou(gt_boxes, boxes[start : start + step])  # (M, chunk)
            chunk_best, chunk_gt = quality.max(dim=0)
            best_quality.append(chunk_best)
            best_gt.append(chunk_gt)
            chunk_highest = quality.max(dim=1).values  # (M,)
            highest = chunk_highest if highest is None else torch.maximum(highest, chunk_highest)
        low_quality = None
        if self.allow_low_quality_matches:
            found = []
            for start in range(0, num_boxes, step):
                quality = box_iou(gt_boxes, boxes[start : start + step])  # (M, chunk)
                found.append((quality == highest[:, None]).any(dim=0))  # (chunk,) bool
            low_quality = torch.cat(found)
        return self._assign(torch.cat(best_quality), torch.cat(best_gt), low_quality)
