"""Prediction files: COCO results JSON read back, matched to the ground truth, checked, scored.

One loader (`load_prediction_file`) serves `maskrcnn evaluate --predictions` and the
report: results that carry a `file_name` (as `maskrcnn predict` writes them) get the
ground truth's image_id of that file, then every row is checked against the ground truth
it is scored on; the first unusable row stops with its index and what is wrong.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from maskrcnn.data.coco import DatasetError, load_coco_gt, read_json_file
from maskrcnn.data.validate import is_finite_number, rle_problem
from maskrcnn.errors import UserError
from maskrcnn.evaluation.coco_metrics import (
    DEFAULT_DSB_SCORE_THRESHOLD,
    STANDARD_MAX_DETS,
    coco_evaluate,
    dsb_score_from_coco,
)


class PredictionFileError(UserError):
    """A predictions file whose rows cannot be matched to the ground truth's images."""


def _common_suffix(a: tuple[str, ...], b: tuple[str, ...]) -> int:
    count = 0
    while count < min(len(a), len(b)) and a[-1 - count] == b[-1 - count]:
        count += 1
    return count


def match_image_ids_by_file_name(
    results: list[Any], gt: dict[str, Any], *, predictions: Any = "predictions", annotations: Any = "annotations"
) -> list[Any]:
    """Give results that carry a `file_name` the ground truth's image_id of that file.

    `maskrcnn predict` numbers images by position and writes the path it read; a result's
    file belongs to the ground-truth image whose file_name shares the longest tail of path
    components with it (at least the base name). A file_name that names no ground-truth
    image, or two equally well, stops with the result's index: its image_id could only
    coincide by chance. Results without file_name keep their image_id.
    """
    images = [img for img in gt.get("images", []) if isinstance(img, dict) and isinstance(img.get("file_name"), str)]
    parts = [(Path(img["file_name"]).parts, img) for img in images]
    by_id = {img.get("id"): img["file_name"] for img in images}
    found: dict[str, Any] = {}
    matched = []
    for i, row in enumerate(results):
        name = row.get("file_name") if isinstance(row, dict) else None
        if not isinstance(name, str):
            matched.append(row)
            continue
        if name not in found:
            mine = Path(name).parts
            scored = [(_common_suffix(mine, theirs), img) for theirs, img in parts]
            best = max((score for score, _ in scored), default=0)
            candidates = [img for score, img in scored if score == best and best > 0]
            if len(candidates) != 1:
                there = by_id.get(row.get("image_id"))
                if not candidates:
                    why = f"is not an image of {annotations}" + (
                        f" (its image_id {row.get('image_id')!r} is {there!r} there)" if there else "")
                else:
                    why = f"matches several images of {annotations}: " + ", ".join(
                        repr(c["file_name"]) for c in candidates[:3])
                raise PredictionFileError(
                    f"{predictions}: result {i}: file_name {name!r} {why}; evaluate predictions of the ground "
                    "truth's own images (or remove file_name to match by image_id)"
                )
            found[name] = candidates[0]["id"]
        matched.append({**row, "image_id": found[name]})
    return matched


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


def check_results(results: Any, coco_gt: Any, where: str | Path) -> list[dict[str, Any]]:
    """`results` (parsed JSON) as a list of rows that can be scored against `coco_gt`."""
    name = Path(where).name
    if not isinstance(results, list):
        raise DatasetError(f"{where}: expected a JSON list of COCO results")
    image_ids, category_ids = set(coco_gt.getImgIds()), set(coco_gt.getCatIds())
    for i, r in enumerate(results):
        if not isinstance(r, dict):
            raise DatasetError(f"{name}: result {i}: expected an object")
        problem = _result_problem(r, coco_gt, image_ids, category_ids)
        if problem is not None:
            raise DatasetError(f"{name}: result {i}: {problem}")
    return results


def load_prediction_file(predictions: str | Path, annotations: str | Path, coco_gt: Any) -> list[dict[str, Any]]:
    """A COCO results file as `maskrcnn evaluate --predictions` scores it: image ids matched
    by file_name where the rows carry one, then checked against the ground truth `coco_gt`
    (loaded from `annotations`)."""
    results = read_json_file(Path(predictions), "predictions file")
    if isinstance(results, list):
        results = match_image_ids_by_file_name(results, coco_gt.dataset, predictions=predictions, annotations=annotations)
    return check_results(results, coco_gt, predictions)


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

    Image ids are matched by file_name where the results carry one (`load_prediction_file`).
    Returns COCO metrics for every IoU type the predictions carry (at maxDets 100, and at
    `max_dets` when above 100; default: the most results of one image and category), and
    `dsb_score` (from predictions with score >= score_threshold) when they carry masks.
    """
    coco_gt, _warnings = load_coco_gt(gt_json)
    if not coco_gt.getImgIds():
        raise PredictionFileError(f"{gt_json}: 'images' is empty; nothing to evaluate on")
    results = load_prediction_file(results_json, gt_json, coco_gt)
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
