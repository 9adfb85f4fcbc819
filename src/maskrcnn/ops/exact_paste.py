"""Pixel-exact mask pasting (`model.roi_heads.mask_paste: exact`).

Shape glossary: N masks; M mask side (e.g. 28); H, W image height and width.

torchvision's paste (ops/masks.paste_masks_in_image) truncates each box to integers and
resizes the mask to (x2 - x1 + 1) pixels: every mask comes out about one pixel wider and
taller than its box, which for 10-20 px objects (nuclei) is 5-10 % of their area. And its
mask targets (RoIAlign aligned=False) sit half a pixel of the network's input off the box,
so the mask head learns grids shifted by that much. Here instead:

- `align_mask_grids` resamples each predicted grid so that cell i shows the box at
  x1 + (i + 0.5) * w / M (in the pixels the heads worked in), undoing the target shift;
- `paste_masks_exact` gives every image pixel the grid's bilinear value at its centre
  (zero outside the grid), so a mask covers its box and nothing more.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def align_mask_grids(grids: Tensor, boxes: Tensor) -> Tensor:
    """(N, M, M) mask probabilities predicted for (N, 4) boxes in the heads' pixels ->
    the same grids sampled where the box's cells really are.

    The mask targets were RoIAlign (aligned=False) samples, taken half a pixel right of and
    below the cell centres: cell i of a grid shows x1 + (i + 0.5) * w / M + 0.5. So the
    aligned grid's cell j reads the predicted grid at j - 0.5 * M / w (bilinear). Reads
    before the first cell take its value: no target sample lay that close to the box's
    top-left edge, and the nearest one is the best guess (zeros would cut a pixel off)."""
    num, side = grids.shape[0], grids.shape[-1]
    if num == 0:
        return grids
    widths = (boxes[:, 2] - boxes[:, 0]).clamp(min=1e-3).to(grids.dtype)  # (N,)
    heights = (boxes[:, 3] - boxes[:, 1]).clamp(min=1e-3).to(grids.dtype)
    cells = torch.arange(side, dtype=grids.dtype, device=grids.device)  # (M,)
    x = cells[None, :] - 0.5 * side / widths[:, None]  # (N, M) read positions, in cells
    y = cells[None, :] - 0.5 * side / heights[:, None]
    # grid_sample (align_corners=True): -1 and 1 are the centres of the first and last cells
    scale = 2.0 / max(side - 1, 1)
    sample = torch.stack(
        (  # (N, M, M, 2) as (x, y)
            (x * scale - 1.0)[:, None, :].expand(num, side, side),
            (y * scale - 1.0)[:, :, None].expand(num, side, side),
        ),
        dim=-1,
    )
    return F.grid_sample(grids[:, None], sample, mode="bilinear", padding_mode="border", align_corners=True)[:, 0]


def _centre_weights(starts: Tensor, counts: Tensor, edges: Tensor, cell: Tensor, side: int, dtype: torch.dtype) -> Tensor:
    """(N, O, M) bilinear weights: output pixel o of mask n (image pixel starts[n] + o, its
    centre at + 0.5) reads the M grid cells of size cell[n] that begin at edges[n]; weights
    that fall outside the grid are dropped (zero padding); rows o >= counts[n] are zero."""
    num_out = int(counts.max()) if counts.numel() else 0
    offsets = torch.arange(num_out, dtype=dtype, device=starts.device)  # (O,)
    position = (starts[:, None].to(dtype) + offsets[None, :] + 0.5 - edges[:, None]) / cell[:, None] - 0.5  # (N, O)
    low = torch.floor(position)
    frac_high = position - low
    valid = (offsets[None, :] < counts[:, None].to(dtype)).to(dtype)  # (N, O)
    # Columns 0 and M + 1 catch reads outside the grid; they are cut off at the end.
    low_index = (low + 1).clamp(0, side + 1).to(torch.int64)
    high_index = (low + 2).clamp(0, side + 1).to(torch.int64)
    weights = torch.zeros((starts.shape[0], num_out, side + 2), dtype=dtype, device=starts.device)
    weights.scatter_add_(2, low_index[..., None], ((1.0 - frac_high) * valid)[..., None])
    weights.scatter_add_(2, high_index[..., None], (frac_high * valid)[..., None])
    return weights[:, :, 1 : side + 1]


def blank_pasted_masks(masks: Tensor, image_size: tuple[int, int]) -> Tensor:
    """Zeros (N, H, W) in the masks' float dtype and device, for a paste to fill."""
    dtype = masks.dtype if masks.is_floating_point() else torch.float32
    return torch.zeros((masks.shape[0], int(image_size[0]), int(image_size[1])), dtype=dtype, device=masks.device)


def paste_masks_exact(masks: Tensor, boxes: Tensor, image_size: tuple[int, int]) -> Tensor:
    """(N, M, M) aligned mask probabilities and their (N, 4) boxes -> (N, H, W) float: each
    pixel gets the grid's bilinear value at its centre (zero outside the grid)."""
    out = blank_pasted_masks(masks, image_size)  # (N, H, W)
    if out.numel() == 0:
        return out
    im_h, im_w, dtype = out.shape[1], out.shape[2], out.dtype
    side = masks.shape[-1]
    boxes = boxes.to(device=masks.device, dtype=dtype)
    cell_w = (boxes[:, 2] - boxes[:, 0]).clamp(min=1e-3) / side  # (N,)
    cell_h = (boxes[:, 3] - boxes[:, 1]).clamp(min=1e-3) / side
    # the pixels whose centres lie within one cell of the box can read a non-zero weight
    bounds = []
    for (x1, y1, x2, y2), cw, ch in zip(boxes.tolist(), cell_w.tolist(), cell_h.tolist()):
        x0, y0 = min(max(math.floor(x1 - cw), 0), im_w), min(max(math.floor(y1 - ch), 0), im_h)
        bounds.append((x0, max(min(math.ceil(x2 + cw), im_w), x0), y0, max(min(math.ceil(y2 + ch), im_h), y0)))
    window = torch.tensor(bounds, dtype=torch.int64, device=masks.device)  # (N, 4): x0, x1, y0, y1
    col_weights = _centre_weights(window[:, 0], window[:, 1] - window[:, 0], boxes[:, 0], cell_w, side, dtype)
    row_weights = _centre_weights(window[:, 2], window[:, 3] - window[:, 2], boxes[:, 1], cell_h, side, dtype)
    masks = masks.to(dtype)
    for n, (x0, x1, y0, y1) in enumerate(bounds):
        if x1 <= x0 or y1 <= y0:
            continue
        # (h', M) @ (M, M) @ (M, w')
        out[n, y0:y1, x0:x1] = row_weights[n, : y1 - y0] @ masks[n] @ col_weights[n, : x1 - x0].t()
    return out
