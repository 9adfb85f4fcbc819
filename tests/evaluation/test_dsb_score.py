"""The Data Science Bowl score against hand-computed cases: a match needs IoU strictly above
the threshold, and each mask matches at most once."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from maskrcnn.evaluation.dsb_score import (
    DSB_IOU_THRESHOLDS,
    dsb_image_score,
    dsb_score,
    dsb_score_from_iou,
)


def stack(*pixel_sets: list[int], width: int = 12) -> np.ndarray:
    """(N, 1, width) masks of one row, each holding the listed columns."""
    masks = np.zeros((len(pixel_sets), 1, width), dtype=bool)
    for k, columns in enumerate(pixel_sets):
        masks[k, 0, columns] = True
    return masks


def test_the_thresholds_are_the_ten_of_the_competition():
    assert DSB_IOU_THRESHOLDS == (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)


def test_an_iou_of_exactly_one_half_is_no_match():
    # the prediction covers 1 of the object's 2 pixels: IoU 1/2, not above 0.5 -> TP 0,
    # FP 1, FN 1 at every threshold
    assert dsb_image_score(stack([0]), stack([0, 1])) == 0.0
    assert dsb_score_from_iou(torch.tensor([[0.5]], dtype=torch.float64)) == 0.0
    # just above one half matches at t = 0.5 only: (1 / 1 + 9 x 0) / 10
    assert dsb_score_from_iou(torch.tensor([[0.5 + 1e-9]], dtype=torch.float64)) == pytest.approx(0.1)


def test_one_prediction_over_two_objects_is_one_true_positive():
    # objects A (columns 0..9) and B (0..8, inside A); the prediction is A: IoU 1.0 with A,
    # 0.9 with B. One match at every threshold: TP 1, FP 0, FN 1 -> 1 / 2
    assert dsb_image_score(stack(list(range(10))), stack(list(range(10)), list(range(9)))) == pytest.approx(0.5)
    # from an IoU matrix: 0.9 and 0.8 -> TP 1 for t < 0.9 (8 thresholds), 0 from 0.9 on
    assert dsb_score_from_iou(torch.tensor([[0.9, 0.8]], dtype=torch.float64)) == pytest.approx(8 * 0.5 / 10)
    # two predictions over one object: the second is a false positive
    assert dsb_score_from_iou(torch.tensor([[0.9], [0.8]], dtype=torch.float64)) == pytest.approx(8 * 0.5 / 10)


def test_an_image_with_nothing_scores_one_and_a_miss_scores_zero():
    assert dsb_score([stack()], [stack()]) == 1.0
    assert dsb_score([stack()], [stack([3])]) == 0.0
    assert dsb_score([stack([3]), stack()], [stack([3]), stack([4])]) == 0.5
