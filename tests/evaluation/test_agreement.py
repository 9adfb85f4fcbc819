"""agreement_ap: COCO AP of one set of predictions against another taken as ground truth."""

from __future__ import annotations

import numpy as np
import pytest

from maskrcnn.evaluation.agreement import agreement_ap


def prediction(boxes: list[list[int]], labels: list[int], scores: list[float], size=(40, 60)) -> dict:
    masks = np.zeros((len(boxes), *size), dtype=bool)
    for mask, (x1, y1, x2, y2) in zip(masks, boxes):
        mask[y1:y2, x1:x2] = True
    return {
        "boxes": np.array(boxes, dtype=np.float32).reshape(-1, 4),
        "labels": np.array(labels, dtype=np.int64),
        "scores": np.array(scores, dtype=np.float32),
        "masks": masks,
    }


REFERENCE = prediction([[2, 2, 12, 12], [20, 5, 40, 25], [30, 20, 55, 38], [5, 25, 15, 35]], [1, 2, 1, 3], [0.9, 0.8, 0.6, 0.3])


def test_identical_predictions_agree_fully():
    metrics = agreement_ap([REFERENCE], [REFERENCE])
    assert metrics["bbox_AP50"] == pytest.approx(1.0) and metrics["segm_AP50"] == pytest.approx(1.0)
    assert metrics["bbox_AP"] == pytest.approx(1.0)


def test_missing_or_wrong_detections_lower_the_ap():
    half = {key: value[:2] for key, value in REFERENCE.items()}
    metrics = agreement_ap([REFERENCE], [half])
    assert metrics["bbox_AP50"] == pytest.approx(0.5, abs=0.02)
    wrong_label = dict(REFERENCE, labels=np.array([1, 2, 1, 1]))
    assert agreement_ap([REFERENCE], [wrong_label])["segm_AP50"] < 1.0


def test_reference_score_threshold_selects_the_ground_truth():
    confident = {key: value[:3] for key, value in REFERENCE.items()}
    metrics = agreement_ap([REFERENCE], [confident], min_reference_score=0.5)  # 0.3 left out of the truth
    assert metrics["bbox_AP50"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="1 reference images but 2 candidate images"):
        agreement_ap([REFERENCE], [REFERENCE, REFERENCE])
