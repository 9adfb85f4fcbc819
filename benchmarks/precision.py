"""Lower-precision inference options for the benchmark, and how far they move the outputs.

bf16: CPU autocast to bfloat16 (convs and matmuls; boxes, scores and losses stay float32
in the model). int8: dynamic quantization of the Linear layers (box head fc6/fc7 and
predictors), weights int8, activations quantized per batch.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from maskrcnn.ops.boxes import box_iou
from maskrcnn.structures import Detections


def precision_context(precision: str) -> Callable[[], Any]:
    """A factory of the context manager the model runs in for `precision`."""
    if precision == "bf16":
        return lambda: torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext


def quantize_linear_int8(model: nn.Module) -> nn.Module:
    """Dynamic int8 quantization of every nn.Linear (a copy; the model is unchanged)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torch.ao.quantization import quantize_dynamic

        return quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8, inplace=False)


def compare_detections(reference: Detections, other: Detections, min_box_iou: float = 0.9) -> dict[str, Any]:
    """How `other` differs from float32 `reference`: matched detections (same label, box IoU
    >= min_box_iou, greedy by reference score), score change, mask IoU of matched pairs."""
    num_ref = len(reference)
    if num_ref == 0 or len(other) == 0:
        return {"reference_detections": num_ref, "matched": 0, "detections": len(other)}
    iou = box_iou(reference.boxes.float(), other.boxes.float())  # (Dr, Do)
    iou = torch.where(reference.labels[:, None] == other.labels[None, :], iou, torch.zeros_like(iou))
    used = torch.zeros(len(other), dtype=torch.bool)
    pairs = []
    for i in range(num_ref):
        candidates = torch.where((iou[i] >= min_box_iou) & ~used)[0]
        if candidates.numel():
            j = int(candidates[iou[i, candidates].argmax()])
            used[j] = True
            pairs.append((i, j))
    result: dict[str, Any] = {"reference_detections": num_ref, "detections": len(other), "matched": len(pairs)}
    if pairs:
        ref_index = torch.tensor([i for i, _ in pairs])
        other_index = torch.tensor([j for _, j in pairs])
        score_change = (reference.scores[ref_index] - other.scores[other_index].float()).abs()
        result["score_abs_change_mean"] = round(float(score_change.mean()), 5)
        result["score_abs_change_max"] = round(float(score_change.max()), 5)
        result["box_iou_median"] = round(float(iou[ref_index, other_index].median()), 4)
        if reference.masks is not None and other.masks is not None:
            a = reference.masks[ref_index] > 0.5  # (P, H, W)
            b = other.masks[other_index].float() > 0.5
            inter = (a & b).flatten(1).sum(1).float()
            union = (a | b).flatten(1).sum(1).float()
            mask_iou = torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))
            result["mask_iou_median"] = round(float(mask_iou.median()), 4)
            result["mask_iou_min"] = round(float(mask_iou.min()), 4)
    return result
