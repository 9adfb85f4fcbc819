"""Matching predictions (anchors or proposals) to ground-truth boxes by a quality matrix.

Shape glossary: M ground-truth boxes; N predictions.
"""

from __future__ import annotations

import torch
from torch import Tensor


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
        best_quality, matches = match_quality.max(dim=0)  # (N,), (N,)
        best_gt = matches.clone()
        below = best_quality < self.low_threshold
        between = (best_quality >= self.low_threshold) & (best_quality < self.high_threshold)
        matches[below] = self.BELOW_LOW_THRESHOLD
        matches[between] = self.BETWEEN_THRESHOLDS
        if self.allow_low_quality_matches:
            best_for_each_gt = match_quality.max(dim=1).values  # (M,)
            pred_indices = torch.where(match_quality == best_for_each_gt[:, None])[1]
            matches[pred_indices] = best_gt[pred_indices]
        return matches
