"""Exact COCO numbers from pycocotools on hand-made cases, worked out by hand below.

A label swap (AP75 <-> APs, AP50 <-> APl ...) or a wrong maxDets changes these numbers,
so each figure is pinned to its own value, in the metrics and in the printed table.
"""

from __future__ import annotations

import json

import pytest

from maskrcnn.cli import main
from maskrcnn.data.coco import make_coco
from maskrcnn.evaluation.coco_metrics import coco_evaluate
from maskrcnn.evaluation.prediction_files import evaluate_files

# One 200x200 image, one category; COCO area ranges: small < 32^2, medium < 96^2, large.
# Each detection is its box moved d pixels right, so IoU = (w - d) / (w + d):
#   small  [10, 10, 20, 20]    (area 400),   d 4.5: IoU 15.5/24.5 = 0.633 -> TP at t = .50 .55 .60       (3 of 10)
#   medium [100, 10, 50, 50]   (area 2500),  d 5:   IoU 45/55     = 0.818 -> TP at t = .50 ... .80       (7 of 10)
#   large  [10, 60, 120, 120]  (area 14400), d 5:   IoU 115/125   = 0.920 -> TP at t = .50 ... .90       (9 of 10)
# scores: large 0.9, medium 0.8, small 0.7 (the order in which COCO takes them).
GT_BOXES = [[10, 10, 20, 20], [100, 10, 50, 50], [10, 60, 120, 120]]
SHIFTS = [4.5, 5, 5]
SCORES = [0.7, 0.8, 0.9]

# Per IoU threshold t, with 101 recall points 0, 0.01, ..., 1 and 3 ground-truth boxes:
#   t <= .60: three TPs                        -> AP_t = 1
#   .65 <= t <= .80: large TP, medium TP, small FP -> precision 1 up to recall 2/3: 67 points -> 67/101
#   .85, .90: large TP, then two FPs           -> precision 1 up to recall 1/3: 34 points -> 34/101
#   .95: no TP                                 -> 0
# AP = (3 * 1 + 4 * 67/101 + 2 * 34/101 + 0) / 10 = 639/1010.
# Per area range only that size's box counts (the others and their detections are ignored):
#   APs = 3/10, APm = 7/10, APl = 9/10; AP50 = 1; AP75 = 67/101.
EXPECTED = {"AP": 639 / 1010, "AP50": 1.0, "AP75": 67 / 101, "APs": 0.3, "APm": 0.7, "APl": 0.9}


def _gt() -> dict:
    return {
        "images": [{"id": 1, "file_name": "one.png", "height": 200, "width": 200}],
        "annotations": [
            {"id": i + 1, "image_id": 1, "category_id": 1, "bbox": box, "area": box[2] * box[3], "iscrowd": 0,
             "segmentation": [[box[0], box[1], box[0] + box[2], box[1], box[0] + box[2], box[1] + box[3],
                               box[0], box[1] + box[3]]]}
            for i, box in enumerate(GT_BOXES)
        ],
        "categories": [{"id": 1, "name": "thing"}],
    }


def _predictions() -> list[dict]:
    return [
        {"image_id": 1, "category_id": 1, "bbox": [box[0] + shift, box[1], box[2], box[3]], "score": score}
        for box, shift, score in zip(GT_BOXES, SHIFTS, SCORES)
    ]


def test_pinned_coco_box_numbers():
    metrics = coco_evaluate(make_coco(_gt()), _predictions(), ("bbox",))
    assert {k.removeprefix("bbox_"): v for k, v in metrics.items()} == pytest.approx(EXPECTED, abs=1e-12)


def test_pinned_numbers_in_the_printed_table_and_json(tmp_path, capsys):
    (tmp_path / "gt.json").write_text(json.dumps(_gt()))
    (tmp_path / "pred.json").write_text(json.dumps(_predictions()))
    status = main(["evaluate", "--annotations", str(tmp_path / "gt.json"), "--predictions",
                   str(tmp_path / "pred.json"), "--json", str(tmp_path / "m.json")])
    out = capsys.readouterr().out
    assert status == 0
    header, bbox_row = out.splitlines()[:2]
    assert header.split() == list(EXPECTED)
    assert bbox_row.split() == ["bbox"] + [f"{v:.3f}" for v in EXPECTED.values()]
    written = json.loads((tmp_path / "m.json").read_text())
    assert {k: written[f"bbox_{k}"] for k in EXPECTED} == pytest.approx(EXPECTED, abs=1e-12)
    assert "max_dets" not in written  # 3 detections: nothing beyond the standard 100


# Dense: 150 ground-truth 4x4 squares on a 15 x 10 grid, each detected exactly (IoU 1), scores
# all different. At maxDets 100 only the 100 best count: recall 100/150, precision 1 up to it:
# recall points 0 .. 0.66 -> 67 of 101 at every IoU threshold -> AP = 67/101. With maxDets 150
# every object is found: AP = 1.
def _dense() -> tuple[dict, list[dict]]:
    boxes = [[8 * col + 2, 8 * row + 2, 4, 4] for row in range(10) for col in range(15)]
    gt = {
        "images": [{"id": 1, "file_name": "dense.png", "height": 84, "width": 124}],
        "annotations": [{"id": i + 1, "image_id": 1, "category_id": 1, "bbox": b, "area": 16, "iscrowd": 0,
                         "segmentation": [[b[0], b[1], b[0] + 4, b[1], b[0] + 4, b[1] + 4, b[0], b[1] + 4]]}
                        for i, b in enumerate(boxes)],
        "categories": [{"id": 1, "name": "nucleus"}],
    }
    predictions = [{"image_id": 1, "category_id": 1, "bbox": b, "score": 1.0 - i / 1000} for i, b in enumerate(boxes)]
    return gt, predictions


def test_max_dets_above_100_reported_beside_the_standard_figures():
    gt, predictions = _dense()
    metrics = coco_evaluate(make_coco(gt), predictions, ("bbox",), max_dets=150)
    assert metrics["bbox_AP"] == pytest.approx(67 / 101, abs=1e-12)  # the standard maxDets=100 figure
    assert metrics["bbox_AP50"] == pytest.approx(67 / 101, abs=1e-12)
    assert metrics["bbox_AP@maxDets=150"] == pytest.approx(1.0)
    assert metrics["bbox_AP75@maxDets=150"] == pytest.approx(1.0)
    assert metrics["bbox_APm@maxDets=150"] == -1.0  # no medium objects
    assert metrics["max_dets"] == 150
    standard = coco_evaluate(make_coco(gt), predictions, ("bbox",))
    assert standard == {k: v for k, v in metrics.items() if "@" not in k and k != "max_dets"}


def test_predictions_file_uses_its_largest_detection_count(tmp_path, capsys):
    gt, predictions = _dense()
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "pred.json").write_text(json.dumps(predictions))
    metrics = evaluate_files(tmp_path / "gt.json", tmp_path / "pred.json")
    assert metrics["max_dets"] == 150 and metrics["bbox_AP@maxDets=150"] == pytest.approx(1.0)
    assert metrics["bbox_AP"] == pytest.approx(67 / 101, abs=1e-12)
    status = main(["evaluate", "--annotations", str(tmp_path / "gt.json"), "--predictions", str(tmp_path / "pred.json"),
                   "--max-dets", "120"])
    out = capsys.readouterr().out
    assert status == 0
    row = [line for line in out.splitlines() if line.startswith("bbox @maxDets=120")]
    # 120 of 150: recall points 0 .. 0.80 -> 81 of 101
    assert row and row[0].split()[2] == f"{81 / 101:.3f}"
