"""Box arithmetic on (N, 4) tensors of x1, y1, x2, y2 corners.

Shape glossary: N, M boxes; K classes (deltas per class); H, W mask height and width.

Widths are `x2 - x1` (no +1), as in torchvision. Every function takes empty inputs and
keeps the device and dtype of its inputs.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def box_area(boxes: Tensor) -> Tensor:
    """Areas of (N, 4) boxes -> (N,)."""
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Intersection over union of every pair: (N, 4), (M, 4) -> (N, M).

    Same arithmetic as torchvision.ops.box_iou (a zero-area pair gives NaN there and here).
    """
    area1 = box_area(boxes1)  # (N,)
    area2 = box_area(boxes2)  # (M,)
    top_left = torch.max(boxes1[:, None, :2], boxes2[:, :2])  # (N, M, 2)
    bottom_right = torch.min(boxes1[:, None, 2:], boxes2[:, 2:])  # (N, M, 2)
    wh = (bottom_right - top_left).clamp(min=0)  # (N, M, 2)
    inter = wh[:, :, 0] * wh[:, :, 1]  # (N, M)
    union = area1[:, None] + area2 - inter
    return inter / union


def clip_boxes(boxes: Tensor, image_size: tuple[int, int]) -> Tensor:
    """Clamp (..., 4) boxes into an image of size (h, w): x to [0, w], y to [0, h]."""
    height, width = image_size
    x = boxes[..., 0::2].clamp(min=0, max=width)
    y = boxes[..., 1::2].clamp(min=0, max=height)
    return torch.stack((x, y), dim=-1).reshape(boxes.shape)


def large_enough(boxes: Tensor, min_size: float) -> Tensor:
    """(N,) bool: the (N, 4) boxes with width >= min_size and height >= min_size."""
    widths = boxes[:, 2] - boxes[:, 0]
    heights = boxes[:, 3] - boxes[:, 1]
    return (widths >= min_size) & (heights >= min_size)


def remove_small_boxes(boxes: Tensor, min_size: float) -> Tensor:
    """Indices (int64) of the (N, 4) boxes with width >= min_size and height >= min_size."""
    return torch.where(large_enough(boxes, min_size))[0]


def masks_to_boxes(masks: Tensor) -> Tensor:
    """Tight boxes around (N, H, W) masks -> (N, 4) float32, COCO-style corners.

    Convention: x1, y1 = first foreground column/row; x2, y2 = last foreground column/row
    + 1 (so a single pixel at (r, c) gives [c, r, c+1, r+1] and width = pixel count).
    This differs from torchvision.ops.masks_to_boxes, whose x2 is the last column itself.
    An empty mask gives [0, 0, 0, 0].
    """
    if masks.dim() != 3:
        raise ValueError(f"masks_to_boxes expects masks of shape (N, H, W), got {tuple(masks.shape)}")
    num, height, width = masks.shape
    boxes = torch.zeros((num, 4), dtype=torch.float32, device=masks.device)
    if num == 0:
        return boxes
    foreground = masks != 0
    any_in_row = foreground.any(dim=2)  # (N, H)
    any_in_col = foreground.any(dim=1)  # (N, W)
    rows = torch.arange(height, device=masks.device)
    cols = torch.arange(width, device=masks.device)
    big = max(height, width) + 1
    y1 = torch.where(any_in_row, rows, big).amin(dim=1)
    y2 = torch.where(any_in_row, rows, -1).amax(dim=1) + 1
    x1 = torch.where(any_in_col, cols, big).amin(dim=1)
    x2 = torch.where(any_in_col, cols, -1).amax(dim=1) + 1
    nonempty = any_in_row.any(dim=1)  # (N,)
    found = torch.stack((x1, y1, x2, y2), dim=1).to(torch.float32)
    boxes[nonempty] = found[nonempty]
    return boxes


class BoxCoder:
    """Box <-> regression delta conversion, with torchvision's BoxCoder arithmetic.

    deltas = (wx * (gx - rx) / rw, wy * (gy - ry) / rh, ww * log(gw / rw), wh * log(gh / rh))
    where (rx, ry, rw, rh) are reference (anchor/proposal) centres and sizes and
    (gx, gy, gw, gh) those of the ground-truth box; decode inverts it, clamping dw and dh
    at `bbox_xform_clip` before the exponential.
    """

    def __init__(
        self,
        weights: tuple[float, float, float, float],
        bbox_xform_clip: float = math.log(1000.0 / 16),
    ) -> None:
        if len(weights) != 4:
            raise ValueError(f"BoxCoder weights must have 4 values (wx, wy, ww, wh), got {weights!r}")
        self.weights = tuple(float(w) for w in weights)
        self.bbox_xform_clip = bbox_xform_clip

    def encode(self, gt_boxes: Tensor, reference_boxes: Tensor) -> Tensor:
        """Deltas (N, 4) that move each reference box (N, 4) onto its gt box (N, 4)."""
        wx, wy, ww, wh = self.weights  # Python numbers: no copy to the device per call

        ref_x1, ref_y1 = reference_boxes[:, 0:1], reference_boxes[:, 1:2]
        ref_x2, ref_y2 = reference_boxes[:, 2:3], reference_boxes[:, 3:4]
        gt_x1, gt_y1 = gt_boxes[:, 0:1], gt_boxes[:, 1:2]
        gt_x2, gt_y2 = gt_boxes[:, 2:3], gt_boxes[:, 3:4]

        ref_widths = ref_x2 - ref_x1  # (N, 1)
        ref_heights = ref_y2 - ref_y1
        ref_ctr_x = ref_x1 + 0.5 * ref_widths
        ref_ctr_y = ref_y1 + 0.5 * ref_heights

        gt_widths = gt_x2 - gt_x1
        gt_heights = gt_y2 - gt_y1
        gt_ctr_x = gt_x1 + 0.5 * gt_widths
        gt_ctr_y = gt_y1 + 0.5 * gt_heights

        dx = wx * (gt_ctr_x - ref_ctr_x) / ref_widths
        dy = wy * (gt_ctr_y - ref_ctr_y) / ref_heights
        dw = ww * torch.log(gt_widths / ref_widths)
        dh = wh * torch.log(gt_heights / ref_heights)
        return torch.cat((dx, dy, dw, dh), dim=1)  # (N, 4)

    def decode(self, deltas: Tensor, reference_boxes: Tensor) -> Tensor:
        """Apply deltas (N, K*4) to reference boxes (N, 4) -> boxes (N, K, 4)."""
        num = reference_boxes.shape[0]
        reference_boxes = reference_boxes.to(deltas.dtype)
        if deltas.dim() != 2 or deltas.shape[0] != num or deltas.shape[1] % 4 != 0:
            raise ValueError(
                f"BoxCoder.decode: deltas must be (N, K*4) for N = {num} boxes, got {tuple(deltas.shape)}"
            )
        widths = reference_boxes[:, 2] - reference_boxes[:, 0]  # (N,)
        heights = reference_boxes[:, 3] - reference_boxes[:, 1]
        ctr_x = reference_boxes[:, 0] + 0.5 * widths
        ctr_y = reference_boxes[:, 1] + 0.5 * heights

        wx, wy, ww, wh = self.weights
        dx = deltas[:, 0::4] / wx  # (N, K)
        dy = deltas[:, 1::4] / wy
        dw = deltas[:, 2::4] / ww
        dh = deltas[:, 3::4] / wh
        dw = torch.clamp(dw, max=self.bbox_xform_clip)
        dh = torch.clamp(dh, max=self.bbox_xform_clip)

        pred_ctr_x = dx * widths[:, None] + ctr_x[:, None]
        pred_ctr_y = dy * heights[:, None] + ctr_y[:, None]
        pred_w = torch.exp(dw) * widths[:, None]
        pred_h = torch.exp(dh) * heights[:, None]
        half_h = 0.5 * pred_h  # 0.5 is exact in every float type: the same as torchvision's tensor
        half_w = 0.5 * pred_w
        boxes = torch.stack(
            (pred_ctr_x - half_w, pred_ctr_y - half_h, pred_ctr_x + half_w, pred_ctr_y + half_h),
            dim=2,
        )  # (N, K, 4)
        return boxes
