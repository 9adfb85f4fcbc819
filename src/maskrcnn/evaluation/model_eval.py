"""Run a model over a COCO data set and score it (the evaluation during training and `maskrcnn evaluate --weights`)."""

from __future__ import annotations

from typing import Any

import torch
from tqdm import tqdm

from maskrcnn.data.loader import build_loader
from maskrcnn.evaluation.coco_metrics import (
    DEFAULT_DSB_SCORE_THRESHOLD,
    STANDARD_MAX_DETS,
    coco_evaluate,
    dsb_score_from_coco,
)
from maskrcnn.evaluation.results import detections_to_coco_results
from maskrcnn.model.build import inner_model
from maskrcnn.model.inference_options import InferenceOptions


def model_max_dets(model: torch.nn.Module) -> int:
    """The most detections the model gives per image (its RoI heads' cap), else 100."""
    base = inner_model(model)
    return base.budgets().detections_per_img if base is not None else STANDARD_MAX_DETS


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
    """Run `model` (a MaskRCNN, or test-time augmentation around one) in eval mode over a
    CocoDataset (its augmentations switched off meanwhile) and score it: COCO bbox and segm AP plus `dsb_score` (masks of detections scoring >=
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
    base = inner_model(model)  # None: a stand-in model that returns full-size masks
    if mask_threshold is None:
        mask_threshold = base.mask_threshold if base is not None else 0.5
    mask_paste = base.mask_paste if base is not None else "torchvision"

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
        unpasted = {"options": InferenceOptions(paste_masks=False)} if base is not None else {}
        with torch.inference_mode():
            for images, _targets, infos in tqdm(loader, desc="evaluate", disable=not progress, leave=False):
                detections = model([image.to(device) for image in images], **unpasted)
                detections = [d.to("cpu") for d in detections]
                has_masks = has_masks and all(d.masks is not None for d in detections)
                sizes = [(int(image.shape[-2]), int(image.shape[-1])) for image in images] if base is not None else None
                results.extend(
                    detections_to_coco_results(
                        detections, infos, dataset.label_to_category_id, mask_threshold, unpasted_image_sizes=sizes,
                        mask_paste=mask_paste,
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
