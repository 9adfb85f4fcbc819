"""RoIAlign and RoIPool written as plainly as possible: one bin, one sample at a time.

These loops state torchvision's semantics directly and are the reference that
`ops/roi_align.py` (the fast path) is tested against. They are far too slow for the
model (Python loops over RoIs, bins and samples); read them to learn what RoIAlign
computes, and `ops/roi_align.py` to learn how it is computed quickly.

Shape glossary: B images; C channels; H, W feature height and width; K RoIs;
rois (K, 5) rows (batch index, x1, y1, x2, y2) in input-image pixels.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def bilinear_sample(feature: Tensor, y: float, x: float) -> Tensor:
    """torchvision's bilinear rule for one point of a (C, H, W) map -> (C,).

    Points more than one pixel outside the map read 0; points just outside are clamped
    to the border pixel.
    """
    height, width = feature.shape[-2:]
    if y < -1.0 or y > height or x < -1.0 or x > width:
        return torch.zeros(feature.shape[0], dtype=feature.dtype)
    y, x = max(y, 0.0), max(x, 0.0)
    y_low, x_low = int(y), int(x)
    if y_low >= height - 1:
        y_low = y_high = height - 1
        y = float(y_low)
    else:
        y_high = y_low + 1
    if x_low >= width - 1:
        x_low = x_high = width - 1
        x = float(x_low)
    else:
        x_high = x_low + 1
    ly, lx = y - y_low, x - x_low
    hy, hx = 1 - ly, 1 - lx
    return (
        hy * hx * feature[:, y_low, x_low]
        + hy * lx * feature[:, y_low, x_high]
        + ly * hx * feature[:, y_high, x_low]
        + ly * lx * feature[:, y_high, x_high]
    )


def roi_align_reference(
    input: Tensor, rois: Tensor, out_size: int, scale: float, sampling_ratio: int, aligned: bool
) -> Tensor:
    """(B, C, H, W) features, (K, 5) rois -> (K, C, out_size, out_size).

    Each bin is the mean of a grid of bilinear samples: `sampling_ratio` per axis, or
    ceil(bin size) per axis when it is <= 0 (adaptive). `aligned` shifts the box by half
    a pixel (the v2 / detectron2 convention); without it, boxes are at least 1 x 1.
    """
    out = torch.zeros((rois.shape[0], input.shape[1], out_size, out_size), dtype=input.dtype)
    offset = 0.5 if aligned else 0.0
    for k, (b, x1, y1, x2, y2) in enumerate(rois.tolist()):
        start_x, start_y = x1 * scale - offset, y1 * scale - offset
        roi_w, roi_h = x2 * scale - offset - start_x, y2 * scale - offset - start_y
        if not aligned:
            roi_w, roi_h = max(roi_w, 1.0), max(roi_h, 1.0)
        bin_w, bin_h = roi_w / out_size, roi_h / out_size
        grid_h = sampling_ratio if sampling_ratio > 0 else math.ceil(roi_h / out_size)
        grid_w = sampling_ratio if sampling_ratio > 0 else math.ceil(roi_w / out_size)
        count = max(grid_h * grid_w, 1)
        for ph in range(out_size):
            for pw in range(out_size):
                total = torch.zeros(input.shape[1], dtype=input.dtype)
                for iy in range(grid_h):
                    y = start_y + ph * bin_h + (iy + 0.5) * bin_h / grid_h
                    for ix in range(grid_w):
                        x = start_x + pw * bin_w + (ix + 0.5) * bin_w / grid_w
                        total += bilinear_sample(input[int(b)], y, x)
                out[k, :, ph, pw] = total / count
    return out


def roi_pool_reference(input: Tensor, rois: Tensor, out_h: int, out_w: int, scale: float) -> Tensor:
    """torchvision's CPU RoIPool, bin by bin: the max over the pixels of each bin (0 if none).

    Box corners are rounded to whole pixels (C's round(): halves away from zero) and the
    box is at least 1 x 1 pixel.
    """
    height, width = input.shape[-2:]
    out = torch.zeros((rois.shape[0], input.shape[1], out_h, out_w), dtype=input.dtype)
    for k, (b, *corners) in enumerate(rois.tolist()):
        x1, y1, x2, y2 = (int(math.copysign(math.floor(abs(v * scale) + 0.5), v)) for v in corners)
        roi_w, roi_h = max(x2 - x1 + 1, 1), max(y2 - y1 + 1, 1)
        for ph in range(out_h):
            h0 = min(max(math.floor(ph * roi_h / out_h) + y1, 0), height)
            h1 = min(max(math.ceil((ph + 1) * roi_h / out_h) + y1, 0), height)
            for pw in range(out_w):
                w0 = min(max(math.floor(pw * roi_w / out_w) + x1, 0), width)
                w1 = min(max(math.ceil((pw + 1) * roi_w / out_w) + x1, 0), width)
                if h1 > h0 and w1 > w0:
                    out[k, :, ph, pw] = input[int(b), :, h0:h1, w0:w1].amax(dim=(1, 2))
    return out
