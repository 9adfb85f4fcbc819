"""COCO results rows: the one writer that predict, evaluate, serve and the report all use.

A row is what COCO's `loadRes` reads, one per detection:

    {"file_name": "cells.png" (only when given), "image_id": 1, "category_id": 3,
     "bbox": [x, y, width, height], "score": 0.98765,
     "segmentation": {"size": [H, W], "counts": "..."} (when the detections have masks)}

One rounding rule for every output: box corners are made x, y, width, height in float32
and rounded to 3 decimals (a thousandth of a pixel), scores to 5.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from maskrcnn.ops.masks import masks_to_rles, paste_masks_to_rles
from maskrcnn.structures import Detections

BOX_DECIMALS = 3
SCORE_DECIMALS = 5


def coco_result_rows(
    boxes: np.ndarray,
    scores: np.ndarray,
    category_ids: Sequence[int],
    rles: Sequence[dict[str, Any]] | None,
    *,
    image_id: int,
    file_name: str | None = None,
) -> list[dict[str, Any]]:
    """Rows for one image: boxes (N, 4) x1 y1 x2 y2 pixels, scores (N,), one category id
    and (unless `rles` is None) one COCO RLE per detection."""
    corners = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    xywh = np.concatenate([corners[:, :2], corners[:, 2:] - corners[:, :2]], axis=1).tolist()  # float32 arithmetic
    masks: Sequence[dict[str, Any] | None] = [None] * len(xywh) if rles is None else rles
    rows = []
    for box, score, category_id, rle in zip(xywh, np.asarray(scores).tolist(), category_ids, masks, strict=True):
        row: dict[str, Any] = {} if file_name is None else {"file_name": file_name}
        row.update({
            "image_id": int(image_id),
            "category_id": int(category_id),
            "bbox": [round(float(v), BOX_DECIMALS) for v in box],
            "score": round(float(score), SCORE_DECIMALS),
        })  # fmt: skip
        if rle is not None:
            row["segmentation"] = rle
        rows.append(row)
    return rows


def category_ids_of(labels: Sequence[int], category_id_of: Callable[[int], int]) -> list[int]:
    return [int(category_id_of(int(label))) for label in labels]


def predictor_result_rows(
    result: dict[str, np.ndarray],
    *,
    image_id: int,
    file_name: str | None,
    category_id_of: Callable[[int], int],
    rles: list[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Rows of one Predictor result (boxes, labels, scores, masks (N, H, W) bool);
    `rles`: the masks already encoded (tiled prediction)."""
    if rles is None:
        rles = masks_to_rles(result["masks"])
    category_ids = category_ids_of(result["labels"], category_id_of)
    return coco_result_rows(result["boxes"], result["scores"], category_ids, rles, image_id=image_id, file_name=file_name)


def detections_to_coco_results(
    detections: Sequence[Detections],
    infos: Sequence[dict[str, Any]],
    label_to_category_id: dict[int, int],
    mask_threshold: float = 0.5,
    unpasted_image_sizes: Sequence[tuple[int, int]] | None = None,
    mask_paste: str = "torchvision",
) -> list[dict[str, Any]]:
    """Rows of a batch of model Detections (one `infos` dict with "image_id" per image);
    masks: probability > mask_threshold.

    Masks are full-size (N, H, W); or, with `unpasted_image_sizes` ((h, w) per image), the
    model's (N, M, M) masks, pasted a chunk at a time (bounded memory for dense images) the
    model's way (`mask_paste`: its model.roi_heads.mask_paste)."""

    def category_id_of(label: int) -> int:
        if label not in label_to_category_id:
            raise ValueError(
                f"detections_to_coco_results: label {label} has no category id (known labels {sorted(label_to_category_id)})"
            )
        return label_to_category_id[label]

    results: list[dict[str, Any]] = []
    sizes = [None] * len(detections) if unpasted_image_sizes is None else list(unpasted_image_sizes)
    for det, info, size in zip(detections, infos, sizes, strict=True):
        if len(det) == 0:
            continue
        boxes = det.boxes.detach().float().cpu()  # (N, 4) x1 y1 x2 y2
        rles: list[dict[str, Any]] | None = None
        if det.masks is not None and size is not None:
            rles = paste_masks_to_rles(det.masks.detach().float().cpu(), boxes, size, mask_threshold, how=mask_paste)
        elif det.masks is not None:
            rles = masks_to_rles((det.masks.detach() > mask_threshold).to(torch.uint8).cpu().numpy())  # (N, H, W)
        category_ids = category_ids_of(det.labels.detach().cpu().tolist(), category_id_of)
        scores = det.scores.detach().float().cpu().numpy()
        results.extend(coco_result_rows(boxes.numpy(), scores, category_ids, rles, image_id=int(info["image_id"])))
    return results
