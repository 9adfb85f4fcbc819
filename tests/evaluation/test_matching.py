"""Pairwise IoU and greedy matching used by the ground-truth-vs-prediction pictures."""

import numpy as np
import pytest

from maskrcnn.evaluation.matching import (
    match_predictions,
    pairwise_box_iou,
    pairwise_mask_iou,
)


def square_mask(size: int, x0: int, y0: int, side: int) -> np.ndarray:
    mask = np.zeros((size, size), dtype=bool)
    mask[y0 : y0 + side, x0 : x0 + side] = True
    return mask


def test_pairwise_ious_by_hand() -> None:
    a = square_mask(10, 0, 0, 4)  # 16 px
    b = square_mask(10, 2, 0, 4)  # overlaps a in 2x4 = 8 px; union 24
    iou = pairwise_mask_iou(np.stack([a]), np.stack([b, np.zeros_like(a)]))
    assert iou.shape == (1, 2)
    assert iou[0, 0] == pytest.approx(8 / 24) and iou[0, 1] == 0.0
    box_iou = pairwise_box_iou(np.array([[0, 0, 4, 4.0]]), np.array([[2, 0, 6, 4.0]]))
    assert box_iou[0, 0] == pytest.approx(8 / 24)


def test_match_predictions_greedy_by_score_and_class() -> None:
    # two gts, three predictions; pred 0 and pred 1 both overlap gt 0, pred 1 scores higher
    iou = np.array([[0.7, 0.9, 0.0], [0.0, 0.0, 0.4]])
    scores = np.array([0.5, 0.8, 0.9])
    assert match_predictions(iou, scores, 0.5).tolist() == [-1, 0, -1]
    # pred 0 is matched once the better one belongs to another class
    matched = match_predictions(iou, scores, 0.5, gt_labels=np.array([1, 1]), pred_labels=np.array([1, 2, 1]))
    assert matched.tolist() == [0, -1, -1]
    assert match_predictions(np.zeros((0, 2)), np.array([0.3, 0.2])).tolist() == [-1, -1]
