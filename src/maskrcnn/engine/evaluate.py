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
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from maskrcnn.config import EvaluationConfig
from maskrcnn.data.coco import DatasetError, load_coco_gt, read_json_file
from maskrcnn.data.validate import is_finite_number, rle_problem
from maskrcnn.engine.dsb_score import dsb_score_from_iou
from maskrcnn.model.transform import unpasted_masks
from maskrcnn.ops.masks import masks_to_rles, paste_masks_to_rles
from maskrcnn.structures import Detections

METRIC_SUFFIXES: tuple[str, ...] = ("AP", "AP50", "AP75", "APs", "APm", "APl")
STANDARD_MAX_DETS = 100  # COCO's maxDets for the reported AP
# (IoU threshold or None for 0.50:0.95, area range) of each suffix, as COCOeval.summarize
_SUFFIX_SETTINGS = {
    "AP": (None, "all"), "AP50": (0.5, "all"), "AP75": (0.75, "all"),
    "APs": (None, "small"), "APm": (None, "medium"), "APl": (None, "large"),
}
DEFAULT_DSB_SCORE_THRESHOLD = EvaluationConfig().dsb_score_threshold


def max_dets_key(name: str, max_dets: int) -> str:
    """`bbox_AP` -> `bbox_AP@maxDets=1000`: a figure at a detection cap other than 100."""
    return f"{name}@maxDets={max_dets}"


def model_max_dets(model: torch.nn.Module) -> int:
    """The most detections the model gives per image (its RoI heads' cap), else 100."""
    heads = getattr(getattr(model, "module", model), "roi_heads", None)  # DistributedDataParallel: .module
    return int(getattr(heads, "detections_per_img", STANDARD_MAX_DETS))


def detections_to_coco_results(
    detections: Sequence[Detections],
    infos: Sequence[dict[str, Any]],
    label_to_category_id: dict[int, int],
    mask_threshold: float = 0.5,
    unpasted_image_sizes: Sequence[tuple[int, int]] | None = None,
    mask_paste: str = "torchvision",
) -> list[dict[str, Any]]:
    """One COCO result dict per detection: image_id, category_id, bbox [x, y, w, h], score,
    and (when the detections have masks) segmentation as RLE with str counts, from
    mask probability > mask_threshold.

    Masks are full-size (N, H, W); or, with `unpasted_image_sizes` ((h, w) per image), the
    model's (N, M, M) masks, pasted a chunk at a time (bounded memory for dense images) the
    model's way (`mask_paste`: its model.roi_heads.mask_paste)."""
    results: list[dict[str, Any]] = []
    sizes = [None] * len(detections) if unpasted_image_sizes is None else list(unpasted_image_sizes)
    for det, info, size in zip(detections, infos, sizes, strict=True):
        if len(det) == 0:
            continue
        boxes = det.boxes.detach().float().cpu()  # (N, 4) x1 y1 x2 y2
        xywh = torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], dim=1).tolist()
        scores = det.scores.detach().float().cpu().tolist()
        labels = det.labels.detach().cpu().tolist()
        rles: list[dict[str, Any] | None] = [None] * len(det)
        if det.masks is not None and size is not None:
            rles = paste_masks_to_rles(det.masks.detach().float().cpu(), boxes, size, mask_threshold, how=mask_paste)
        elif det.masks is not None:
            binary = (det.masks.detach() > mask_threshold).to(torch.uint8).cpu().numpy()  # (N, H, W)
            rles = masks_to_rles(binary)
        for box, score, label, rle in zip(xywh, scores, labels, rles):
            if int(label) not in label_to_category_id:
                raise ValueError(
                    f"detections_to_coco_results: label {label} has no category id "
                    f"(known labels {sorted(label_to_category_id)})"
                )
            result = {
                "image_id": int(info["image_id"]),
                "category_id": int(label_to_category_id[int(label)]),
                "bbox": [round(float(v), 3) for v in box],
                "score": round(float(score), 5),
            }
            if rle is not None:
                result["segmentation"] = rle
            results.append(result)
    return results


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
    from pycocotools.cocoeval import COCOeval

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
    from pycocotools import mask as mask_utils

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


def evaluate_model(
    model: torch.nn.Module,
    dataset: Any,
    *,
    device: torch.device | str,
    batch_size: int = 1,
    progress: bool = True,
    dsb_score_threshold: float = DEFAULT_DSB_SCORE_THRESHOLD,
    max_dets: int | None = None,
    mask_threshold: float | None = None,
) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Run `model` in eval mode over a CocoDataset (its augmentations switched off meanwhile)
    and score it: COCO bbox and segm AP plus `dsb_score` (masks of detections scoring >=
    dsb_score_threshold). COCO maxDets: 100, and also `max_dets` (default: the model's
    detections_per_img) when above 100. Masks are binarised above `mask_threshold` (default:
    the model's model.roi_heads.mask_threshold).

    Returns (metrics, COCO results). The model's train/eval mode is restored afterwards.

    Which model runs here matters for the numbers' last digits: during training this is the
    plain model being trained; `maskrcnn evaluate --weights` passes the Predictor's prepared
    model (folded norms, fused convs, Winograd: the same one `maskrcnn predict` runs), whose
    outputs differ from the plain model's by float rounding (~1e-5 of a layer's largest
    output), so a training log and `maskrcnn evaluate` of the same weights can differ slightly.
    """
    from tqdm import tqdm

    from maskrcnn.data.loader import build_loader
    from maskrcnn.model.roi_heads import model_mask_paste, model_mask_threshold

    if mask_threshold is None:
        mask_threshold = model_mask_threshold(model)

    was_training = model.training
    saved_transforms = getattr(dataset, "transforms", None)
    dataset.transforms = None
    results: list[dict[str, Any]] = []
    has_masks = True
    try:
        model.eval()
        loader = build_loader(dataset, batch_size=batch_size, train=False, group_by_aspect_ratio=False)
        # Masks come back M x M and are pasted a few at a time: a dense image's hundreds of
        # full-size float masks at once took gigabytes.
        transform = getattr(model, "transform", None)
        keep_unpasted = unpasted_masks(transform) if transform is not None else contextlib.nullcontext()
        with torch.inference_mode(), keep_unpasted:
            for images, _targets, infos in tqdm(loader, desc="evaluate", disable=not progress, leave=False):
                detections = model([image.to(device) for image in images])
                detections = [d.to("cpu") for d in detections]
                has_masks = has_masks and all(d.masks is not None for d in detections)
                sizes = [(int(image.shape[-2]), int(image.shape[-1])) for image in images] if transform is not None else None
                results.extend(
                    detections_to_coco_results(
                        detections, infos, dataset.label_to_category_id, mask_threshold, unpasted_image_sizes=sizes,
                        mask_paste=model_mask_paste(model),
                    )
                )
    finally:
        dataset.transforms = saved_transforms
        model.train(was_training)
    iou_types = ("bbox", "segm") if has_masks else ("bbox",)
    max_dets = model_max_dets(model) if max_dets is None else max_dets
    metrics = coco_evaluate(dataset.coco, results, iou_types, max_dets=max_dets)
    if has_masks:
        metrics["dsb_score"] = dsb_score_from_coco(dataset.coco, results, dsb_score_threshold)
        metrics["dsb_score_threshold"] = dsb_score_threshold
        metrics["mask_threshold"] = float(mask_threshold)
    metrics["num_images"] = float(len(dataset))
    metrics["num_detections"] = float(len(results))
    return metrics, results


def _result_problem(r: dict[str, Any], coco_gt: Any, image_ids: set[int], category_ids: set[int]) -> str | None:
    """Why one COCO result cannot be scored, or None."""
    if r.get("image_id") not in image_ids:
        return f"image_id {r.get('image_id')!r} is not in the ground truth"
    if r.get("category_id") not in category_ids:
        return f"category_id {r.get('category_id')!r} is not in the ground truth categories"
    if not is_finite_number(r.get("score")):
        return f"'score' must be a finite number, got {r.get('score')!r}"
    if "bbox" not in r and "segmentation" not in r:
        return "needs 'bbox' or 'segmentation'"
    bbox = r.get("bbox")
    if bbox is not None:
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(map(is_finite_number, bbox))):
            return f"'bbox' must be [x, y, width, height] finite numbers, got {bbox!r}"
        if bbox[2] < 0 or bbox[3] < 0:
            return f"'bbox' width and height must not be negative, got {bbox!r} (x, y, width, height)"
    segm = r.get("segmentation")
    if segm is not None:
        if not (isinstance(segm, dict) and "counts" in segm and "size" in segm):
            return "'segmentation' must be an RLE object with 'counts' and 'size'"
        img = coco_gt.imgs[r["image_id"]]
        if list(segm["size"]) != [img["height"], img["width"]]:
            return (
                f"segmentation size {segm['size']} differs from image {r['image_id']}'s "
                f"[{img['height']}, {img['width']}]"
            )
        problem = rle_problem(segm, img["height"], img["width"])
        if problem is not None:
            return f"segmentation: {problem}"
    return None


def load_results(path: str | Path, coco_gt: Any) -> list[dict[str, Any]]:
    """Read and check a COCO results file against the ground truth it is scored on; the
    first unusable result stops with its index and what is wrong."""
    path = Path(path)
    results = read_json_file(path, "predictions file")
    if not isinstance(results, list):
        raise DatasetError(f"{path}: expected a JSON list of COCO results")
    image_ids, category_ids = set(coco_gt.getImgIds()), set(coco_gt.getCatIds())
    for i, r in enumerate(results):
        if not isinstance(r, dict):
            raise DatasetError(f"{path.name}: result {i}: expected an object")
        problem = _result_problem(r, coco_gt, image_ids, category_ids)
        if problem is not None:
            raise DatasetError(f"{path.name}: result {i}: {problem}")
    return results


def largest_detection_count(results: Sequence[dict[str, Any]]) -> int:
    """The most results any one (image, category) has: what COCO's maxDets counts."""
    counts: dict[tuple[Any, Any], int] = {}
    for r in results:
        key = (r.get("image_id"), r.get("category_id"))
        counts[key] = counts.get(key, 0) + 1
    return max(counts.values(), default=0)


def evaluate_files(
    gt_json: str | Path,
    results_json: str | Path,
    *,
    score_threshold: float = DEFAULT_DSB_SCORE_THRESHOLD,
    max_dets: int | None = None,
) -> dict[str, float]:
    """Score a predictions file against a ground-truth file (no model, no images).

    Returns COCO metrics for every IoU type the predictions carry (at maxDets 100, and at
    `max_dets` when above 100; default: the most results of one image and category), and
    `dsb_score` (from predictions with score >= score_threshold) when they carry masks.
    """
    coco_gt, _warnings = load_coco_gt(gt_json)
    results = load_results(results_json, coco_gt)
    iou_types = tuple(
        t for t, f in (("bbox", "bbox"), ("segm", "segmentation")) if results and all(f in r for r in results)
    ) or ("bbox", "segm")
    if max_dets is None:
        max_dets = max(STANDARD_MAX_DETS, largest_detection_count(results))
    metrics = coco_evaluate(coco_gt, results, iou_types, max_dets=max_dets)
    if not results or all("segmentation" in r for r in results):
        metrics["dsb_score"] = dsb_score_from_coco(coco_gt, results, score_threshold)
        metrics["dsb_score_threshold"] = score_threshold
    metrics["num_images"] = float(len(coco_gt.getImgIds()))
    metrics["num_predictions"] = float(len(results))
    return metrics
