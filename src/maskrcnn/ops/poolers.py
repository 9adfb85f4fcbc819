"""Pooling RoIs from a feature pyramid: pick a level per box, then RoIAlign / RoIPool.

Shape glossary: L levels; B images; C channels; Hl, Wl size of level l; Ki boxes of
image i; K = sum Ki; oh, ow output size.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from maskrcnn.ops.boxes import box_area
from maskrcnn.ops.roi_align import roi_align, roi_pool


def assign_levels(
    boxes: Tensor,
    k_min: int,
    k_max: int,
    canonical_scale: int = 224,
    canonical_level: int = 4,
    eps: float = 1e-6,
) -> Tensor:
    """Pyramid level index (K,) int64 in 0..k_max-k_min for (K, 4) boxes (FPN paper eq. 1).

    level = floor(canonical_level + log2(sqrt(area) / canonical_scale) + eps), clamped to
    [k_min, k_max], minus k_min (torchvision's LevelMapper).
    """
    scale = torch.sqrt(box_area(boxes))  # (K,)
    levels = torch.floor(canonical_level + torch.log2(scale / canonical_scale) + torch.tensor(eps, dtype=scale.dtype))
    levels = torch.clamp(levels, min=k_min, max=k_max)
    return (levels.to(torch.int64) - k_min).to(torch.int64)


def infer_scale(feature_size: tuple[int, int], image_size: tuple[int, int]) -> float:
    """Feature-to-image scale, a power of two: 2 ** round(log2(feature_h / image_h))."""
    approx = np.float32(float(feature_size[0]) / float(image_size[0]))
    return 2 ** float(np.round(np.log2(approx)))  # float32 log2, half to even: as torch's


def _boxes_to_rois(boxes: list[Tensor]) -> Tensor:
    """Per-image boxes [(Ki, 4)] -> (K, 5) rois [image index, x1, y1, x2, y2]."""
    rois = [
        torch.cat([torch.full((b.shape[0], 1), i, dtype=b.dtype, device=b.device), b], dim=1)
        for i, b in enumerate(boxes)
    ]
    return torch.cat(rois, dim=0)


def multilevel_roi_align(
    features: list[Tensor],
    boxes: list[Tensor],
    scales: list[float],
    output_size: int | tuple[int, int],
    sampling_ratio: int,
    aligned: bool,
    canonical_scale: int = 224,
    canonical_level: int = 4,
    pool: str = "align",
) -> Tensor:
    """Pool every box from its level: -> (K, C, oh, ow), image-then-box order of `boxes`.

    features[l] is (B, C, Hl, Wl) at scale scales[l] (e.g. 1/4 for P2); levels are
    assigned by box size with k_min = -log2(scales[0]) and k_max = -log2(scales[-1]).
    pool="align" uses RoIAlign, pool="max" RoIPool (sampling_ratio and aligned unused).
    """
    if pool not in ("align", "max"):
        raise ValueError(f"pool must be 'align' or 'max', got {pool!r}")
    if len(features) != len(scales) or not features:
        raise ValueError(f"multilevel_roi_align: {len(features)} feature maps but {len(scales)} scales")
    out_h, out_w = (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)

    def pool_level(feature: Tensor, level_rois: Tensor, scale: float) -> Tensor:
        if pool == "max":
            return roi_pool(feature, level_rois, (out_h, out_w), scale)
        return roi_align(feature, level_rois, (out_h, out_w), scale, sampling_ratio=sampling_ratio, aligned=aligned)

    first = features[0]
    if not boxes:
        return first.new_zeros((0, first.shape[1], out_h, out_w))
    rois = _boxes_to_rois([b.to(device=first.device) for b in boxes])  # (K, 5)
    if rois.shape[0] == 0:
        return first.new_zeros((0, first.shape[1], out_h, out_w))
    if len(features) == 1:
        return pool_level(first, rois, scales[0])
    k_min = int(round(-math.log2(scales[0])))
    k_max = int(round(-math.log2(scales[-1])))
    levels = assign_levels(rois[:, 1:], k_min, k_max, canonical_scale, canonical_level)  # (K,)
    # RoIs grouped by level; the group sizes reach the host in one read (not one per level)
    order = torch.sort(levels, stable=True).indices  # (K,)
    counts = torch.bincount(levels, minlength=len(features)).tolist()
    pooled, start = [], 0
    for count, feature, scale in zip(counts, features, scales):
        if count > 0:
            pooled.append(pool_level(feature, rois[order[start : start + count]], scale))
        start += count
    grouped = torch.cat(pooled) if len(pooled) > 1 else pooled[0]  # (K, C, oh, ow) in level order
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(order.shape[0], device=order.device)
    return grouped[inverse].to(first.dtype)
