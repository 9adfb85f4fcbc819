"""Compare two sets of detections of one image with the parity criterion of shared/parity/README.md.

Shape glossary: N reference detections; D candidate detections; H, W the image size.

An expected (reference) detection is matched by an unused candidate with the same label,
box IoU >= 0.99 and |score difference| <= 1e-3 (the one with the highest IoU). Parity:
at least 98 % of the reference detections matched (98 of 100); over matched pairs,
median mask IoU >= 0.995 and at least 95 % of them with mask IoU >= 0.95.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from maskrcnn.ops.boxes import box_iou

MIN_MATCHED_SHARE = 0.98
MIN_MEDIAN_MASK_IOU = 0.995
MIN_GOOD_MASK_SHARE = 0.95
GOOD_MASK_IOU = 0.95


class DetectionSet(NamedTuple):
    boxes: np.ndarray  # (N, 4) float x1 y1 x2 y2
    labels: np.ndarray  # (N,) int
    scores: np.ndarray  # (N,) float
    masks: np.ndarray  # (N, H, W) bool


class ParityReport(NamedTuple):
    reference: int  # detections in the reference
    candidate: int
    matched: int
    median_mask_iou: float
    good_mask_share: float  # matched pairs with mask IoU >= 0.95
    max_score_difference: float  # over matched pairs

    @property
    def passes(self) -> bool:
        needed = int(np.ceil(MIN_MATCHED_SHARE * self.reference))
        return (
            self.matched >= needed
            and (self.reference == 0 or self.median_mask_iou >= MIN_MEDIAN_MASK_IOU)
            and (self.reference == 0 or self.good_mask_share >= MIN_GOOD_MASK_SHARE)
        )

    def summary(self) -> str:
        return (
            f"{self.matched}/{self.reference} matched ({self.candidate} candidates), median mask IoU "
            f"{self.median_mask_iou:.4f}, {100 * self.good_mask_share:.1f}% >= {GOOD_MASK_IOU}, "
            f"max |score diff| {self.max_score_difference:.2e}"
        )


def match_pairs(reference: DetectionSet, candidate: DetectionSet) -> list[tuple[int, int]]:
    """One-to-one (reference index, candidate index) pairs under the criterion above."""
    if len(reference.boxes) == 0 or len(candidate.boxes) == 0:
        return []
    iou = box_iou(torch.as_tensor(reference.boxes, dtype=torch.float64), torch.as_tensor(candidate.boxes, dtype=torch.float64))
    score_ok = np.abs(reference.scores[:, None].astype(np.float64) - candidate.scores[None, :]) <= 1e-3
    ok = (iou.numpy() >= 0.99) & score_ok & (reference.labels[:, None] == candidate.labels[None, :])
    used: set[int] = set()
    pairs = []
    for i in range(ok.shape[0]):
        options = [int(j) for j in np.flatnonzero(ok[i]) if int(j) not in used]
        if options:
            j = max(options, key=lambda c: float(iou[i, c]))
            used.add(j)
            pairs.append((i, j))
    return pairs


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def compare_detections(reference: DetectionSet, candidate: DetectionSet) -> ParityReport:
    pairs = match_pairs(reference, candidate)
    ious = np.array([mask_iou(reference.masks[i], candidate.masks[j]) for i, j in pairs])
    score_diff = max((abs(float(reference.scores[i]) - float(candidate.scores[j])) for i, j in pairs), default=0.0)
    return ParityReport(
        reference=len(reference.boxes),
        candidate=len(candidate.boxes),
        matched=len(pairs),
        median_mask_iou=float(np.median(ious)) if len(ious) else 0.0,
        good_mask_share=float((ious >= GOOD_MASK_IOU).mean()) if len(ious) else 0.0,
        max_score_difference=score_diff,
    )
