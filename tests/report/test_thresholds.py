"""Score-threshold table and the AP helper on the hand-made case (report_case.py)."""

from __future__ import annotations

import pytest
from report_case import case_results

from maskrcnn.evaluation.coco_metrics import dsb_score_from_coco
from maskrcnn.report.ap import average_precision
from maskrcnn.report.error_kinds import error_breakdown
from maskrcnn.report.inputs import image_records
from maskrcnn.report.thresholds import threshold_table


def test_average_precision_by_hand() -> None:
    # T F T with 3 objects: precision 1 up to recall 1/3 (34 points), 2/3 up to 2/3 (33 points).
    assert average_precision([0.9, 0.8, 0.7], [True, False, True], 3) == pytest.approx(56 / 101)
    assert average_precision([], [], 2) == 0.0
    assert average_precision([0.5], [False], 0) is None
    # Ties keep their order (COCO's stable sort): T then F at the same score.
    assert average_precision([0.5, 0.5], [True, False], 1) == pytest.approx(1.0)


def test_threshold_rows_by_hand(case_coco) -> None:
    records = image_records(case_coco, case_results(), max_detections=100)
    outcomes = error_breakdown(case_coco, records, "segm", foreground_iou=0.5, background_iou=0.1).outcomes
    rows = {r.threshold: r for r in threshold_table(outcomes, (0.3, 0.8, 0.9, 0.99), with_dsb=True)}
    # 6 objects. >= 0.3: all 7 (d0, d2, d6 correct); >= 0.8: d0..d3 (2 correct); >= 0.9: d0, d1.
    assert (rows[0.3].true_positives, rows[0.3].false_positives, rows[0.3].false_negatives) == (3, 4, 3)
    assert rows[0.3].precision == pytest.approx(3 / 7) and rows[0.3].recall == pytest.approx(0.5)
    assert (rows[0.8].true_positives, rows[0.8].false_positives) == (2, 2)
    assert rows[0.8].f1 == pytest.approx(2 * 0.5 * (1 / 3) / (0.5 + 1 / 3))
    assert (rows[0.9].true_positives, rows[0.9].false_positives) == (1, 1)
    assert rows[0.99].precision is None and rows[0.99].recall == 0.0 and rows[0.99].f1 is None
    assert rows[0.3].best_f1 and not any(r.best_f1 for t, r in rows.items() if t != 0.3)
    assert sum(r.best_dsb for r in rows.values()) == 1


def test_threshold_dsb_equals_evaluate_dsb(case_coco) -> None:
    records = image_records(case_coco, case_results(), max_detections=100)
    outcomes = error_breakdown(case_coco, records, "segm", foreground_iou=0.5, background_iou=0.1).outcomes
    thresholds = (0.3, 0.5, 0.78, 0.9)
    for row in threshold_table(outcomes, thresholds, with_dsb=True):
        assert row.dsb_score == pytest.approx(dsb_score_from_coco(case_coco, case_results(), row.threshold), abs=1e-12)
    assert all(r.dsb_score is None for r in threshold_table(outcomes, thresholds, with_dsb=False))


def test_count_matches_numpy_equals_engine() -> None:
    import numpy as np
    import torch

    from maskrcnn.evaluation.dsb_score import count_matches
    from maskrcnn.report.thresholds import count_matches_numpy

    rng = np.random.default_rng(0)
    for _ in range(50):
        iou = rng.random((int(rng.integers(0, 6)), int(rng.integers(0, 6))))
        for t in (0.3, 0.5, 0.75, 0.9):
            assert count_matches_numpy(iou, t) == count_matches(torch.as_tensor(iou), t)
