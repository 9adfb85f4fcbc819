"""COCO's own numbers, kept in full: summary AP, AP per class, precision-recall curves.

pycocotools' COCOeval.accumulate() leaves `eval["precision"]`, a (T, R, K, A, M) array:
T IoU thresholds 0.50:0.05:0.95, R = 101 recall points, K classes, A area ranges
(all, small, medium, large), M max-detection settings (1, 10, 100); -1 where a class has
no ground truth. The area under one IoU threshold's curve is the mean over its recall
points, i.e. the AP at that threshold (what analyze() in the COCO API plots).
"""

from __future__ import annotations

import contextlib
import copy
import io
from dataclasses import dataclass
from typing import Any

import numpy as np

SUMMARY_NAMES: tuple[str, ...] = ("AP", "AP50", "AP75", "APs", "APm", "APl")


@dataclass
class CocoCurves:
    iou_type: str
    summary: dict[str, float]  # SUMMARY_NAMES -> value (-1: no object of that size)
    iou_thresholds: np.ndarray  # (T,)
    recall: np.ndarray  # (R,)
    precision: np.ndarray  # (T, R): mean over classes with ground truth, all areas, 100 detections
    class_ids: list[int]
    class_ap: dict[int, float | None]  # AP over IoU 0.50:0.95 per class; None: no ground truth
    class_ap50: dict[int, float | None]

    @property
    def area_under(self) -> np.ndarray:
        """(T,) area under each IoU threshold's curve (its AP)."""
        return self.precision.mean(axis=1)


def _results_for(iou_type: str, results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Copies holding only what one IoU type is scored on (loadRes writes into what it gets)."""
    drop = "segmentation" if iou_type == "bbox" else "bbox"
    return [{k: copy.deepcopy(v) for k, v in r.items() if k != drop} for r in results]


def _mean_valid(values: np.ndarray) -> float | None:
    valid = values[values > -1]
    return float(valid.mean()) if valid.size else None


def coco_curves(coco_gt: Any, results: list[dict[str, Any]], iou_type: str) -> CocoCurves:
    from pycocotools.cocoeval import COCOeval

    class_ids = sorted(int(c) for c in coco_gt.getCatIds())
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator = COCOeval(coco_gt, coco_gt.loadRes(_results_for(iou_type, results)) if results else None, iou_type)
        if results:
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
    params = evaluator.params
    recall = np.asarray(params.recThrs, dtype=np.float64)
    thresholds = np.asarray(params.iouThrs, dtype=np.float64)
    if not results:
        zeros = np.zeros((len(thresholds), len(recall)))
        none: dict[int, float | None] = {c: 0.0 for c in class_ids}
        return CocoCurves(iou_type, {n: 0.0 for n in SUMMARY_NAMES}, thresholds, recall, zeros, class_ids, none, dict(none))
    precision = evaluator.eval["precision"]  # (T, R, K, A, M)
    all_areas, most_dets = 0, len(params.maxDets) - 1
    per_class = precision[:, :, :, all_areas, most_dets]  # (T, R, K)
    mean_curve = np.zeros((len(thresholds), len(recall)))
    valid_classes = [k for k in range(per_class.shape[2]) if np.all(per_class[:, :, k] > -1)]
    if valid_classes:
        mean_curve = per_class[:, :, valid_classes].mean(axis=2)
    cat_index = {int(c): k for k, c in enumerate(params.catIds)}
    class_ap = {c: _mean_valid(per_class[:, :, cat_index[c]]) for c in class_ids}
    class_ap50 = {c: _mean_valid(per_class[0, :, cat_index[c]]) for c in class_ids}
    summary = {name: float(v) for name, v in zip(SUMMARY_NAMES, evaluator.stats[:6])}
    return CocoCurves(iou_type, summary, thresholds, recall, mean_curve, class_ids, class_ap, class_ap50)
