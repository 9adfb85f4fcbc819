"""The pixel-exact mask paste (`model.roi_heads.mask_paste: exact`) as matrix products, for export.

Shape glossary: D detections; M the mask side; H, W the image size.

`ops/exact_paste.py` aligns each grid with `grid_sample` and pastes it inside a window
around its box (windows found in Python, weights by `scatter_add_`): right for the model,
but a traced graph would keep the example image's windows. Both steps are separable
bilinear resamplings, so here each is rows @ grid @ columns^T with weights
max(0, 1 - |source position - cell|) built in the graph, over the whole image:

- align: cell j reads the grid at j - 0.5 * M / w, clamped to [0, M - 1] (grid_sample's
  border padding);
- paste: pixel x reads the grid at (x + 0.5 - x1) / (w / M) - 0.5, and nothing outside
  the grid (zero padding); pixels more than one cell from the box get weight 0, which is
  why the model may skip them.

Same values as the model's functions up to float rounding (tests/export/test_exact_paste_graph.py).
"""

from __future__ import annotations

import torch
from torch import Tensor

MIN_BOX_SIDE = 1e-3  # as ops/exact_paste.py: a box side is at least this many pixels


def bilinear_taps(position: Tensor, side: int) -> Tensor:
    """(D, L) positions in cells -> (D, L, side) bilinear weights of cells 0..side-1 (zero
    for cells more than one away: reads outside the grid get nothing)."""
    cells = torch.arange(side, dtype=position.dtype)  # (side,)
    return (1.0 - (position[:, :, None] - cells).abs()).clamp(min=0.0)


def align_mask_grids(grids: Tensor, boxes: Tensor) -> Tensor:
    """(D, M, M) predicted grids for (D, 4) boxes in the heads' pixels -> aligned grids (ops.exact_paste)."""
    side = grids.shape[-1]
    widths = (boxes[:, 2] - boxes[:, 0]).clamp(min=MIN_BOX_SIDE)  # (D,)
    heights = (boxes[:, 3] - boxes[:, 1]).clamp(min=MIN_BOX_SIDE)
    cells = torch.arange(side, dtype=grids.dtype)  # (M,)
    x = (cells[None, :] - 0.5 * side / widths[:, None]).clamp(min=0.0, max=side - 1.0)  # (D, M) read positions
    y = (cells[None, :] - 0.5 * side / heights[:, None]).clamp(min=0.0, max=side - 1.0)
    return bilinear_taps(y, side) @ grids @ bilinear_taps(x, side).transpose(1, 2)  # (D, M, M)


def paste_masks_exact(masks: Tensor, boxes: Tensor, image_size: Tensor) -> Tensor:
    """(D, M, M) aligned grids, (D, 4) boxes in image pixels, (2,) int64 [H, W] -> (D, H, W)."""
    side = masks.shape[-1]
    cell_w = (boxes[:, 2] - boxes[:, 0]).clamp(min=MIN_BOX_SIDE) / side  # (D,)
    cell_h = (boxes[:, 3] - boxes[:, 1]).clamp(min=MIN_BOX_SIDE) / side
    rows = torch.arange(image_size[0], dtype=torch.int64).to(masks.dtype)  # (H,)
    cols = torch.arange(image_size[1], dtype=torch.int64).to(masks.dtype)  # (W,)
    row_position = (rows[None, :] + 0.5 - boxes[:, 1:2]) / cell_h[:, None] - 0.5  # (D, H)
    col_position = (cols[None, :] + 0.5 - boxes[:, 0:1]) / cell_w[:, None] - 0.5  # (D, W)
    return bilinear_taps(row_position, side) @ masks @ bilinear_taps(col_position, side).transpose(1, 2)
