"""Mask-head targets of a whole batch in one RoIAlign call, with one read of the crop sizes.

Shape glossary: B images; G_i gt masks of image i (H_i, W_i); N_i RoIs of image i;
N = sum N_i; U crops (gt masks some RoI uses); Hc, Wc the largest crop; M the mask side.

`crop_and_resize_masks` (ops/masks.py) does one image and reads several sizes back per
image (which masks are used, how large their crops are). Here every image's geometry is
computed on the device first and comes back to the host in one read; the crops of all
images go into one stack and one RoIAlign call makes every target. The values are
`crop_and_resize_masks`'s, image by image (tests/ops/test_mask_targets.py).
"""

from __future__ import annotations

import torch
from torch import Tensor

from maskrcnn.ops.masks import _CROP_MARGIN, crop_and_resize_masks
from maskrcnn.ops.roi_align import roi_align


def _geometry(gt_masks: Tensor, boxes: Tensor, mask_indices: Tensor) -> tuple[Tensor, Tensor]:
    """Per gt mask (G, 5) int64 [used, x0, y0, x1, y1] (its crop, exclusive far edge) and
    the image's `inside` flag (1,) int64: every box's samples stay inside the image."""
    height, width = gt_masks.shape[-2:]
    num_masks = gt_masks.shape[0]
    reach = boxes[:, :2] + (boxes[:, 2:] - boxes[:, :2]).clamp(min=1.0)  # (N, 2) far edge sampled
    inside = (boxes[:, :2] >= 0).all() & (reach[:, 0] <= width).all() & (reach[:, 1] <= height).all()
    by_mask = mask_indices[:, None].expand(-1, 2)
    low = boxes.new_full((num_masks, 2), float("inf")).scatter_reduce(0, by_mask, boxes[:, :2], "amin")
    high = boxes.new_full((num_masks, 2), -float("inf")).scatter_reduce(0, by_mask, boxes[:, 2:], "amax")
    used = torch.zeros(num_masks, dtype=torch.int64, device=boxes.device).index_fill_(0, mask_indices, 1)  # (G,)
    starts = torch.where(used[:, None] > 0, low, 0.0).floor().to(torch.int64)  # (G, 2) x0, y0
    ends = high.ceil().clamp(min=-1.0) + _CROP_MARGIN  # (G, 2)
    ends = torch.stack([ends[:, 0].clamp(max=width), ends[:, 1].clamp(max=height)], dim=1).to(torch.int64)
    ends = torch.where(used[:, None] > 0, ends, starts)
    return torch.cat([used[:, None], starts, ends], dim=1), inside.to(torch.int64).reshape(1)


def mask_targets_batch(
    gt_masks: list[Tensor], boxes: list[Tensor], mask_indices: list[Tensor], mask_size: int
) -> Tensor:
    """(N, M, M) float targets: image i's (N_i, 4) boxes cut from its (G_i, H_i, W_i) masks,
    box j of image i reading gt_masks[i][mask_indices[i][j]]; images in order.

    torchvision's project_masks_on_boxes (RoIAlign of the float masks, spatial scale 1,
    adaptive sampling, aligned=False), as `crop_and_resize_masks` computes it.
    """
    dtype = next((b.dtype for b in boxes if b.is_floating_point()), torch.float32)
    device = boxes[0].device if boxes else torch.device("cpu")
    images = [i for i, b in enumerate(boxes) if b.shape[0] > 0]
    if not images:
        return torch.zeros((0, mask_size, mask_size), dtype=dtype, device=device)
    boxes = [b.to(dtype) for b in boxes]
    parts = [_geometry(gt_masks[i], boxes[i], mask_indices[i].to(device)) for i in images]
    flat = torch.cat([torch.cat([inside, geometry.reshape(-1)]) for geometry, inside in parts]).tolist()  # the one read

    crops_of: dict[int, list[tuple[int, int, int, int, int]]] = {}  # image -> [(mask, x0, y0, x1, y1)]
    inside_images, offset = [], 0
    for i in images:
        num_masks = gt_masks[i].shape[0]
        inside, rows = flat[offset], flat[offset + 1 : offset + 1 + 5 * num_masks]
        offset += 1 + 5 * num_masks
        if inside:
            inside_images.append(i)
            crops_of[i] = [(g, *rows[5 * g + 1 : 5 * g + 5]) for g in range(num_masks) if rows[5 * g]]
    targets: dict[int, Tensor] = {}
    for i in images:  # boxes past an image's edge: that image as crop_and_resize_masks does it
        if i not in crops_of:
            targets[i] = crop_and_resize_masks(gt_masks[i], boxes[i], mask_size, mask_indices=mask_indices[i])
    if inside_images:
        crops_rois = [_crop_rois(gt_masks[i], boxes[i], mask_indices[i].to(device), crops_of[i]) for i in inside_images]
        stack = _stack_crops([c for c, _ in crops_rois], dtype, device)  # (U, Hc + 1, Wc + 1)
        rois, slot = [], 0
        for i, (crops, image_rois) in zip(inside_images, crops_rois):
            shifted = image_rois.clone()
            shifted[:, 0] += slot
            rois.append(shifted)
            slot += len(crops)
        pooled = roi_align(stack[:, None], torch.cat(rois), (mask_size, mask_size), 1.0, sampling_ratio=-1, aligned=False)
        for i, image_targets in zip(inside_images, pooled[:, 0].split([boxes[i].shape[0] for i in inside_images])):
            targets[i] = image_targets
    return torch.cat([targets[i] for i in images])


def _crop_rois(
    masks: Tensor, boxes: Tensor, mask_indices: Tensor, crops: list[tuple[int, int, int, int, int]]
) -> tuple[list[tuple[Tensor, bool, bool]], Tensor]:
    """One image's crops (mask region, touches the bottom edge, touches the right edge) and
    its RoIs (N, 5) [crop index within the image, box moved into its crop's pixels]."""
    height, width = masks.shape[-2:]
    slot_of_mask = torch.zeros(masks.shape[0], dtype=torch.int64, device=boxes.device)
    starts = torch.zeros((masks.shape[0], 2), dtype=boxes.dtype, device=boxes.device)
    pieces = []
    for slot, (g, x0, y0, x1, y1) in enumerate(crops):
        pieces.append((masks[g, y0:y1, x0:x1], y1 == height, x1 == width))
        slot_of_mask[g] = slot
        starts[g, 0], starts[g, 1] = x0, y0
    shift = starts[mask_indices].repeat(1, 2)  # (N, 4) x0 y0 x0 y0
    rois = torch.cat([slot_of_mask[mask_indices].to(boxes.dtype)[:, None], boxes - shift], dim=1)
    return pieces, rois


def _stack_crops(images_crops: list[list[tuple[Tensor, bool, bool]]], dtype: torch.dtype, device: torch.device) -> Tensor:
    """Every crop, zero-padded to the largest plus one row and column; where a crop ends at
    its image's edge that row / column is repeated once (RoIAlign clamps to the last pixel)."""
    pieces = [piece for crops in images_crops for piece in crops]
    height = max(p.shape[0] for p, _, _ in pieces) + 1
    width = max(p.shape[1] for p, _, _ in pieces) + 1
    stack = torch.zeros((len(pieces), height, width), dtype=dtype, device=device)
    for k, (piece, at_bottom, at_right) in enumerate(pieces):
        h, w = piece.shape
        stack[k, :h, :w] = piece
        if at_bottom:
            stack[k, h, :w] = stack[k, h - 1, :w]
        if at_right:
            stack[k, : h + 1, w] = stack[k, : h + 1, w - 1]
    return stack
