"""Anchor boxes: a few cells per feature-map location, repeated over the grid.

Shape glossary: A anchors per location (sizes x aspect ratios); h, w feature height and
width of one level; the anchors of a level are ordered (row, column, anchor).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor


def cell_anchors(
    sizes: Sequence[float], aspect_ratios: Sequence[float], dtype: torch.dtype, device: torch.device | str
) -> Tensor:
    """Zero-centred anchors (A, 4), A = len(aspect_ratios) * len(sizes), aspect-ratio-major.

    Aspect ratio = height / width; each anchor keeps the area size**2; corners are rounded
    to integers, as torchvision's AnchorGenerator.generate_anchors.
    """
    scales = torch.as_tensor(list(sizes), dtype=dtype, device=device)  # (S,)
    ratios = torch.as_tensor(list(aspect_ratios), dtype=dtype, device=device)  # (R,)
    h_ratios = torch.sqrt(ratios)
    w_ratios = 1 / h_ratios
    widths = (w_ratios[:, None] * scales[None, :]).view(-1)  # (R*S,)
    heights = (h_ratios[:, None] * scales[None, :]).view(-1)
    base = torch.stack([-widths, -heights, widths, heights], dim=1) / 2  # (A, 4)
    return base.round()


def grid_anchors(
    cell: list[Tensor], grid_sizes: list[tuple[int, int]], strides: list[tuple[int, int]]
) -> list[Tensor]:
    """Shift each level's cell anchors (A, 4) over its (h, w) grid -> (h*w*A, 4) per level."""
    if not len(cell) == len(grid_sizes) == len(strides):
        raise ValueError(
            f"grid_anchors: {len(cell)} cell-anchor sets, {len(grid_sizes)} grid sizes and "
            f"{len(strides)} strides; expected one of each per feature level"
        )
    anchors = []
    for base, (grid_h, grid_w), (stride_h, stride_w) in zip(cell, grid_sizes, strides):
        device = base.device
        shifts_x = torch.arange(0, int(grid_w), dtype=torch.int32, device=device) * int(stride_w)  # (w,)
        shifts_y = torch.arange(0, int(grid_h), dtype=torch.int32, device=device) * int(stride_h)  # (h,)
        shift_y, shift_x = torch.meshgrid(shifts_y, shifts_x, indexing="ij")  # (h, w)
        shift_x = shift_x.reshape(-1)
        shift_y = shift_y.reshape(-1)
        shifts = torch.stack((shift_x, shift_y, shift_x, shift_y), dim=1)  # (h*w, 4)
        anchors.append((shifts.view(-1, 1, 4) + base.view(1, -1, 4)).reshape(-1, 4))  # (h*w*A, 4)
    return anchors


class AnchorGenerator:
    """Anchors for every level of a feature pyramid (one list of sizes and ratios per level)."""

    def __init__(self, sizes: list[list[float]], aspect_ratios: list[list[float]]) -> None:
        if len(sizes) != len(aspect_ratios):
            raise ValueError(
                f"anchors: {len(sizes)} levels of sizes but {len(aspect_ratios)} levels of aspect_ratios"
            )
        self.sizes = [list(map(float, s)) for s in sizes]
        self.aspect_ratios = [list(map(float, r)) for r in aspect_ratios]
        self._cells: dict[tuple[torch.dtype, str], list[Tensor]] = {}

    def num_anchors_per_location(self) -> list[int]:
        return [len(s) * len(r) for s, r in zip(self.sizes, self.aspect_ratios)]

    def _cell_anchors(self, dtype: torch.dtype, device: torch.device | str) -> list[Tensor]:
        key = (dtype, str(torch.device(device)))
        if key not in self._cells:
            # torchvision makes them in float32 and then casts; same here.
            self._cells[key] = [
                cell_anchors(s, r, torch.float32, device).to(dtype)
                for s, r in zip(self.sizes, self.aspect_ratios)
            ]
        return self._cells[key]

    def __call__(
        self,
        image_size_padded: tuple[int, int],
        feature_sizes: list[tuple[int, int]],
        device: torch.device | str,
        dtype: torch.dtype = torch.float32,
    ) -> list[Tensor]:
        """Anchors per level (h*w*A, 4) in padded-image pixels; stride = padded size // grid."""
        if len(feature_sizes) != len(self.sizes):
            raise ValueError(
                f"anchors: {len(self.sizes)} levels configured but {len(feature_sizes)} feature maps given"
            )
        pad_h, pad_w = int(image_size_padded[0]), int(image_size_padded[1])
        strides = [(pad_h // int(h), pad_w // int(w)) for h, w in feature_sizes]
        return grid_anchors(self._cell_anchors(dtype, device), list(feature_sizes), strides)
