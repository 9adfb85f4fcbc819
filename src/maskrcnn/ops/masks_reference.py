"""Pasting mask probabilities into an image, written as plainly as possible.

The reference that `ops/masks.paste_masks_in_image` (the fast path: bilinear weights for
all masks at once, two small matrix products per mask, only the in-image part of each box)
is tested against: one F.interpolate per mask, as torchvision's loop does.

Shape glossary: N instances; M mask side (e.g. 28); h, w image height and width.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def paste_masks_reference(masks: Tensor, boxes: Tensor, image_size: tuple[int, int]) -> Tensor:
    """(N, M, M) probabilities, (N, 4) boxes x1y1x2y2 -> (N, h, w).

    Each mask gets one zero pixel per side, its box grows about the centre by (M + 2) / M
    and is truncated to integers, the mask is resized bilinearly to the box's whole pixels
    and written there, clipped to the image.
    """
    side = masks.shape[-1]
    scale = (side + 2) / side
    padded = F.pad(masks, (1, 1, 1, 1))  # (N, M + 2, M + 2)
    half_w = (boxes[:, 2] - boxes[:, 0]) * 0.5 * scale
    half_h = (boxes[:, 3] - boxes[:, 1]) * 0.5 * scale
    centre_x = (boxes[:, 2] + boxes[:, 0]) * 0.5
    centre_y = (boxes[:, 3] + boxes[:, 1]) * 0.5
    grown = torch.stack([centre_x - half_w, centre_y - half_h, centre_x + half_w, centre_y + half_h], 1)
    out = torch.zeros((len(masks),) + tuple(image_size))
    for n, (bx0, by0, bx1, by1) in enumerate(grown.long().tolist()):
        width, height = max(bx1 - bx0 + 1, 1), max(by1 - by0 + 1, 1)
        resized = F.interpolate(padded[n][None, None], size=(height, width), mode="bilinear", align_corners=False)
        x0, x1 = max(bx0, 0), min(bx1 + 1, image_size[1])
        y0, y1 = max(by0, 0), min(by1 + 1, image_size[0])
        if x1 > x0 and y1 > y0:
            out[n, y0:y1, x0:x1] = resized[0, 0, y0 - by0 : y1 - by0, x0 - bx0 : x1 - bx0]
    return out
