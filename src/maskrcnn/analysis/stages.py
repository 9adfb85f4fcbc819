"""Run a Mask R-CNN's layers stage by stage on synthetic inputs of chosen sizes.

Used by `analyze flops` and `analyze params`: the backbone (and FPN) on one zero image of
the padded size, the RPN head on those features, then the box branch on exactly
`num_proposals` RoIs and the mask branch on exactly `num_detections` RoIs (zero RoI
features of the poolers' output size: RoIAlign itself has no weights and is not counted).
No NMS or score threshold runs, so the numbers of RoIs are the ones asked for, and the
whole pass can run on the meta device (shapes only, no arithmetic).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import torch
from torch import nn

from maskrcnn.analysis.errors import AnalysisError

STAGE_ORDER = ("backbone", "fpn", "rpn", "box_head", "mask_head")


def parse_image_size(value: str | int | tuple[int, int] | list[int]) -> tuple[int, int]:
    """'800x1216' or (800, 1216) or 800 -> (height, width)."""
    if isinstance(value, int):
        return value, value
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return int(value[0]), int(value[1])
    if isinstance(value, str):
        parts = value.lower().replace(",", "x").split("x")
        if len(parts) == 1 and parts[0].strip().isdigit():
            return int(parts[0]), int(parts[0])
        if len(parts) == 2 and all(p.strip().isdigit() for p in parts):
            return int(parts[0]), int(parts[1])
    raise AnalysisError(f"image size: expected HEIGHTxWIDTH such as 800x1216, got {value!r}")


def padded_size(model: nn.Module, image_size: tuple[int, int]) -> tuple[int, int]:
    """The size the model's transform pads to (a multiple of its size_divisible)."""
    divisible = int(getattr(getattr(model, "transform", None), "size_divisible", 1) or 1)
    return tuple(int(math.ceil(s / divisible) * divisible) for s in image_size)  # type: ignore[return-value]


def shape_copy(model: nn.Module) -> nn.Module:
    """A copy of `model` on the meta device (no memory, no arithmetic), requires_grad kept."""
    return copy.deepcopy(model).to("meta")


def run_mask_rcnn_stages(
    model: nn.Module,
    image_size: tuple[int, int],
    num_proposals: int,
    num_detections: int,
    enter_stage: Callable[[str], None] = lambda stage: None,
) -> None:
    """backbone -> RPN head -> box branch (num_proposals RoIs) -> mask branch (num_detections RoIs)."""
    for attribute in ("backbone", "rpn", "roi_heads"):
        if not hasattr(model, attribute):
            raise AnalysisError(f"expected a Mask R-CNN model with a {attribute!r} part, got {type(model).__name__}")
    param = next(model.parameters())
    device, dtype = param.device, param.dtype
    height, width = padded_size(model, image_size)
    with torch.no_grad():
        enter_stage("backbone")
        features = model.backbone(torch.zeros(1, 3, height, width, device=device, dtype=dtype))
        enter_stage("rpn")
        model.rpn.head(list(features.values()))
        heads = model.roi_heads
        channels = next(iter(features.values())).shape[1]
        enter_stage("box_head")
        box_size = heads.box_pooler.output_size
        pooled = torch.zeros(num_proposals, channels, box_size, box_size, device=device, dtype=dtype)
        heads.box_predictor(heads.box_head(heads.shared_head(pooled)))
        if heads.mask_on:
            enter_stage("mask_head")
            mask_size = heads.mask_pooler.output_size
            pooled = torch.zeros(num_detections, channels, mask_size, mask_size, device=device, dtype=dtype)
            heads.mask_predictor(heads.mask_head(heads.shared_head(pooled)))
