"""COCO evaluation: detections -> COCO results, COCO AP, and the Data Science Bowl score.

Metric names: `bbox_AP, bbox_AP50, bbox_AP75, bbox_APs, bbox_APm, bbox_APl` and the same
with `segm_` (pycocotools' first six summary numbers, in [0, 1]; -1 where the ground truth
has no object of that size), always at COCO's standard maxDets=100 detections per image
and category. When more detections are allowed (a model with `detections_per_img` above
100, for dense scenes), the same six figures at that cap are added as
`bbox_AP@maxDets=N` ... and `max_dets` holds N; both come from one COCOeval pass with
maxDets [1, 10, 100, N]. Boxes and masks are evaluated as torchvision's reference script
does: bbox results without their masks, segm results without their boxes.
"""

from __future__ import annotations

import contextlib
import copy
import io
from typing import Any, Sequence

import numpy as np
import torch
from pycocotools import mask as mask_utils
from pycocotools.cocoeval import COCOeval

from maskrcnn.config import EvaluationConfig
from maskrcnn.evaluation.dsb_score import dsb_score_from_iou

METRIC_SUFFIXES: tuple[str, ...] = ("AP", "AP50", "AP75", "APs", "APm", "APl")
STANDARD_MAX_DETS = 100  # COCO's maxDets for the reported AP
_SUFFIX_SETTINGS = {
    "AP": (None, "all"), "AP50": (0.5, "all"), "AP75": (0.75, "all"),
    "APs": (None, "small"), "APm": (None, "medium"), "APl": (None, "large"),
}
DEFAULT_DSB_SCORE_THRESHOLD = EvaluationConfig().dsb_score_threshold


def max_dets_key(name: str, max_dets: int) -> str:
    """`bbox_AP` -> `bbox_AP@maxDets=1000`: a figure at a detection cap other than 100."""
    return f"{name}@maxDets={max_dets}"


def _empty_metrics(iou_types: Sequence[str], max_dets: int) -> dict[str, float]:
    metrics = {f"{iou_type}_{suffix}": 0.0 for iou_type in iou_types for suffix in METRIC_SUFFIXES}
    if max_dets > STANDARD_MAX_DETS:
        metrics.update({max_dets_key(k, max_dets): 0.0 for k in list(metrics)})
    return metrics


def _average_precision(evaluator: Any, suffix: str, max_dets: int) -> float:
    """One summary AP of an accumulated COCOeval at a given maxDets (COCOeval.summarize's rule:
    the mean over precisions that exist, -1 if none)."""
    params = evaluator.params
    iou, area = _SUFFIX_SETTINGS[suffix]
    precision = evaluator.eval["precision"]  # (T IoUs, R recalls, K categories, A areas, M maxDets)
    if iou is not None:
        precision = precision[np.where(np.isclose(params.iouThrs, iou))[0]]
    precision = precision[:, :, :, params.areaRngLbl.index(area), params.maxDets.index(max_dets)]
    valid = precision[precision > -1]
    return float(np.mean(valid)) if valid.size else -1.0


def _results_for(iou_type: str, results: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Copies holding what one IoU type is scored on (loadRes adds fields to what it gets)."""
    drop = "segmentation" if iou_type == "bbox" else "bbox"
    return [{k: copy.deepcopy(v) for k, v in r.items() if k != drop} for r in results]


def coco_evaluate(
    coco_gt: Any,
    results: Sequence[dict[str, Any]],
    iou_types: Sequence[str] = ("bbox", "segm"),
    max_dets: int = STANDARD_MAX_DETS,
) -> dict[str, float]:
    """COCO AP of `results` against `coco_gt` (a pycocotools COCO); pycocotools' prints are captured.

    The six standard figures per IoU type at maxDets=100; with `max_dets` above 100 also
    the six at that cap (keys `bbox_AP@maxDets=N` ...) and `max_dets`. Empty results give
    zeros. An IoU type whose results lack its field ("segmentation" for segm) is left out.
    """

    for iou_type in iou_types:
        if iou_type not in ("bbox", "segm"):
            raise ValueError(f"coco_evaluate: iou_types must be 'bbox' or 'segm', got {iou_type!r}")
    if max_dets < 1:
        raise ValueError(f"coco_evaluate: max_dets must be positive, got {max_dets}")
    extra = max_dets > STANDARD_MAX_DETS
    if not results:
        metrics = _empty_metrics(iou_types, max_dets)
        if extra:
            metrics["max_dets"] = float(max_dets)
        return metrics
    metrics: dict[str, float] = {}
    for iou_type in iou_types:
        field = "bbox" if iou_type == "bbox" else "segmentation"
        if not all(field in r for r in results):
            continue
        with contextlib.redirect_stdout(io.StringIO()):
            coco_dt = coco_gt.loadRes(_results_for(iou_type, results))
            evaluator = COCOeval(coco_gt, coco_dt, iou_type)
            if extra:  # one pass; summarize still reports maxDets[2] = 100
                evaluator.params.maxDets = [1, 10, STANDARD_MAX_DETS, max_dets]
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
        for suffix, value in zip(METRIC_SUFFIXES, evaluator.stats[:6]):
            metrics[f"{iou_type}_{suffix}"] = float(value)
        if extra:
            for suffix in METRIC_SUFFIXES:
                metrics[max_dets_key(f"{iou_type}_{suffix}", max_dets)] = _average_precision(evaluator, suffix, max_dets)
    if extra:
        metrics["max_dets"] = float(max_dets)
    return metrics


def dsb_score_from_coco(
    coco_gt: Any, results: Sequence[dict[str, Any]], score_threshold: float = DEFAULT_DSB_SCORE_THRESHOLD
) -> float:
    """DSB score over every ground-truth image, from result RLEs with score >= score_threshold.

    Crowd regions are left out of the ground truth; classes are ignored. The IoUs are
    computed on the run-length encodings (pycocotools): a dense 1000 px image with hundreds
    of nuclei and detections would need gigabytes as full-size mask stacks.
    """

    by_image: dict[int, list[dict[str, Any]]] = {}
    for r in results:
        if "segmentation" in r and r["score"] >= score_threshold:
            by_image.setdefault(int(r["image_id"]), []).append(r)
    scores = []
    for image_id in sorted(coco_gt.getImgIds()):
        anns = [a for a in coco_gt.imgToAnns.get(image_id, []) if not a.get("iscrowd", 0)]
        gt = [coco_gt.annToRLE(a) for a in anns]
        pred = [r["segmentation"] for r in by_image.get(image_id, [])]
        if pred and gt:
            iou = torch.as_tensor(np.asarray(mask_utils.iou(pred, gt, [0] * len(gt)), dtype=np.float64))  # (P, G)
        else:
            iou = torch.zeros((len(pred), len(gt)), dtype=torch.float64)
        scores.append(dsb_score_from_iou(iou))
    return float(np.mean(scores)) if scores else 0.0
