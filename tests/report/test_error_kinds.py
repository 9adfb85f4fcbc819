"""The TIDE-style error breakdown on the hand-made case (tests/report/conftest.py)."""

from __future__ import annotations

import copy

import pytest
from report_case import box_rle, case_gt, case_results

from maskrcnn.data.coco import make_coco
from maskrcnn.report.coco_curves import coco_curves
from maskrcnn.report.error_kinds import classify_image, error_breakdown
from maskrcnn.report.inputs import image_records

SETTINGS = {"foreground_iou": 0.5, "background_iou": 0.1}

# Hand-computed: class 1 baseline AP (34 * 1 + 33 * 2/3) / 101 = 56/101, class 2 17/101;
# each fix changes one class's AP (see the docstring of each number).
BASELINE_AP = 73 / 202
DELTA_AP = {
    "cls": 39 / 202,  # class 2: d3 becomes a TP of g2 -> 56/101
    "loc": 20.4 / 202,  # class 1: d4 becomes a TP of g3 -> 76.4/101
    "both": 0.0,
    "dupe": 11 / 202,  # class 1: d1 removed -> 67/101
    "bkg": 17 / 202,  # class 2: d5 removed -> 34/101
    "miss": 8.5 / 202,  # class 2: g4 leaves the ground truth -> 25.5/101
}


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_each_error_kind_counted_once(case_coco, iou_type) -> None:
    records = image_records(case_coco, case_results(), max_detections=100)
    outcome = classify_image(case_coco, records[0], iou_type, **SETTINGS)
    assert outcome.det_kinds == ["tp", "dupe", "tp", "cls", "loc", "bkg", "tp"]
    assert outcome.det_targets == [-1, -1, -1, 2, 3, -1, -1]
    assert outcome.gt_missed == [False, False, False, False, True, False]
    breakdown = error_breakdown(case_coco, records, iou_type, **SETTINGS)
    assert breakdown.counts == {"cls": 1, "loc": 1, "both": 0, "dupe": 1, "bkg": 1, "miss": 1}


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_delta_ap_matches_hand_computation(case_coco, iou_type) -> None:
    records = image_records(case_coco, case_results(), max_detections=100)
    breakdown = error_breakdown(case_coco, records, iou_type, **SETTINGS)
    assert breakdown.ap == pytest.approx(BASELINE_AP, abs=1e-9)
    for kind, expected in DELTA_AP.items():
        assert breakdown.delta_ap[kind] == pytest.approx(expected, abs=1e-9), kind
    # Every false positive removed: class 1 T,T -> 67/101; class 2 T -> 34/101.
    assert breakdown.delta_ap["all_fp"] == pytest.approx((67 + 34) / 202 - BASELINE_AP, abs=1e-9)


def test_baseline_ap_is_coco_ap50(case_coco) -> None:
    records = image_records(case_coco, case_results(), max_detections=100)
    for iou_type in ("bbox", "segm"):
        breakdown = error_breakdown(case_coco, records, iou_type, **SETTINGS)
        assert breakdown.ap == pytest.approx(coco_curves(case_coco, case_results(), iou_type).summary["AP50"], abs=1e-9)


def test_both_error_and_fix_only_the_best_of_two() -> None:
    """A wrong-class detection at IoU 0.32 is 'both'; two loc errors on one object: only the
    higher-scoring one becomes a true positive when loc is fixed, the other is removed."""
    gt = case_gt()
    gt["annotations"] = [a for a in gt["annotations"] if a["id"] == 4]  # g3 only: c1 [60,60,20,20]
    coco = make_coco(gt)
    results = [
        {"image_id": 1, "category_id": 2, "bbox": [66.0, 66.0, 20.0, 20.0], "score": 0.9},  # both
        {"image_id": 1, "category_id": 1, "bbox": [66.0, 66.0, 20.0, 20.0], "score": 0.8},  # loc
        {"image_id": 1, "category_id": 1, "bbox": [54.0, 54.0, 20.0, 20.0], "score": 0.7},  # loc
    ]
    records = image_records(coco, results, max_detections=100)
    breakdown = error_breakdown(coco, records, "bbox", **SETTINGS)
    assert breakdown.counts == {"cls": 0, "loc": 2, "both": 1, "dupe": 0, "bkg": 0, "miss": 0}
    assert breakdown.ap == 0.0
    assert breakdown.delta_ap["loc"] == pytest.approx(1.0)  # one TP at precision 1 (the other removed)
    assert breakdown.delta_ap["both"] == 0.0


def test_crowd_region_detection_is_ignored(case_coco) -> None:
    gt = case_gt()
    crowd = copy.deepcopy(gt["annotations"][0])
    crowd.update(id=99, bbox=[0, 85, 10, 10], iscrowd=1, category_id=2)
    crowd["segmentation"] = box_rle([0, 85, 10, 10])
    gt["annotations"].append(crowd)
    coco = make_coco(gt)
    records = image_records(coco, case_results(), max_detections=100)
    outcome = classify_image(coco, records[0], "segm", **SETTINGS)
    assert outcome.det_kinds[5] == "ignored"  # d5 (class 2) inside a class-2 crowd region
    assert error_breakdown(coco, records, "segm", **SETTINGS).counts["bkg"] == 0


def test_no_ground_truth_means_background_and_max_detections(case_coco) -> None:
    gt = case_gt()
    gt["annotations"] = []
    coco = make_coco(gt)
    records = image_records(coco, case_results(), max_detections=3)
    assert [d["score"] for d in records[0].detections] == [0.95, 0.90, 0.85]
    breakdown = error_breakdown(coco, records, "bbox", **SETTINGS)
    assert breakdown.counts == {"cls": 0, "loc": 0, "both": 0, "dupe": 0, "bkg": 3, "miss": 0}
    assert breakdown.ap == 0.0 and all(v == 0.0 for v in breakdown.delta_ap.values())


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_an_iou_of_exactly_the_background_threshold_is_localisation_not_background(iou_type) -> None:
    """g3 is c1 [60,60,20,20] (400 px); a detection [60,60,20,2] covers 40 px of it: IoU
    40/400 = 0.1 exactly, t_b. Right class: a loc error (IoU_same in [t_b, t_f)); another
    class: background (IoU with every object <= t_b), not 'both' (which needs > t_b)."""
    gt = case_gt()
    gt["annotations"] = [a for a in gt["annotations"] if a["id"] == 4]
    coco = make_coco(gt)
    box = [60.0, 60.0, 20.0, 2.0]
    results = [
        {"image_id": 1, "category_id": 1, "bbox": box, "score": 0.9, "segmentation": box_rle(box)},
        {"image_id": 1, "category_id": 2, "bbox": box, "score": 0.8, "segmentation": box_rle(box)},
    ]
    records = image_records(coco, results, max_detections=100)
    outcome = classify_image(coco, records[0], iou_type, **SETTINGS)
    assert outcome.iou.tolist() == [[0.1], [0.1]]
    assert outcome.det_kinds == ["loc", "bkg"] and outcome.det_targets == [0, -1]
