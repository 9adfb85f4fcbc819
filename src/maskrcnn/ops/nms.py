"""Non-maximum suppression, greedy, with torchvision's exact keep lists.

The fast path here keeps exactly what the plain loop of `ops/nms_reference.py` keeps, but
computes IoUs in vectorized blocks and runs the greedy sweep over integer bit masks.

Shape glossary: N boxes (x1, y1, x2, y2); K kept boxes.

How it is fast without a compiled kernel: boxes are sorted by score (stable, descending,
as torchvision) and taken in blocks of rows. For a block, the "box i suppresses box j"
relation (IoU > threshold, j after i) is computed with vectorized tensor ops (on the CPU
in tiles small enough to run single-threaded), only for rows and columns not yet
suppressed, and packed into one Python-integer bitmask per row; the greedy sweep is then
a loop of integer ORs. (Restricting pairs to boxes of similar
area, since IoU <= min area / max area, was tried: faster only when few boxes are
suppressed, slower on proposal-like inputs, so it is not used.)
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

_ROW_BLOCK = 128  # rows of the IoU matrix per greedy step (128 measured best of 64..512)
# IoU tiles stay below PyTorch's parallel grain (32768 elements), so each op runs on one
# thread: on this shared 2-core machine, hundreds of 2-thread regions per call cost 5-50x
# (threads wait on the scheduler), while one thread loses < 2x on an idle machine.
_SERIAL_ELEMENTS = 32768


def _suppressed_by(
    rows: Tensor, cols: Tensor, areas_rows: Tensor, areas_cols: Tensor, iou_threshold: float
) -> Tensor:
    """(R, C) bool: IoU(row box, col box) > threshold, with torchvision's float arithmetic."""
    xx1 = torch.maximum(rows[:, None, 0], cols[None, :, 0])  # (R, C)
    xx2 = torch.minimum(rows[:, None, 2], cols[None, :, 2])
    width = xx2.sub_(xx1).clamp_(min=0)
    yy1 = torch.maximum(rows[:, None, 1], cols[None, :, 1], out=xx1)
    yy2 = torch.minimum(rows[:, None, 3], cols[None, :, 3])
    inter = width.mul_(yy2.sub_(yy1).clamp_(min=0))
    union = torch.add(areas_rows[:, None], areas_cols[None, :], out=yy2).sub_(inter)
    return inter.div_(union) > iou_threshold


def _greedy_keep(boxes: Tensor, iou_threshold: float) -> list[int]:
    """Greedy NMS over score-sorted (N, 4) boxes -> kept positions (ascending).

    Boxes go in blocks of _ROW_BLOCK. For a block, only its boxes not yet suppressed are
    compared, and only against later boxes not yet suppressed; the result becomes one
    Python-integer bitmask per row ("bit j: this box suppresses box j") and a plain loop
    of ORs does the greedy sweep.
    """
    num = boxes.shape[0]
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])  # (N,)
    # (N, 5) boxes and areas; on the CPU gathered through NumPy (torch's indexing kernel
    # opens a 2-thread region even for a few thousand elements).
    table = torch.cat([boxes, areas[:, None]], dim=1)
    table_host = table.numpy() if table.device.type == "cpu" else None

    def take(positions: np.ndarray) -> Tensor:
        if table_host is not None:
            return torch.from_numpy(table_host[positions])
        return table[torch.from_numpy(positions).to(table.device)]

    removed = 0  # bit j set: box j suppressed
    kept: list[int] = []
    padded_cols = (num + 7) // 8 * 8
    for start in range(0, num, _ROW_BLOCK):
        stop = min(start + _ROW_BLOCK, num)
        removed_bits = np.unpackbits(
            np.frombuffer(removed.to_bytes(padded_cols // 8, "little"), dtype=np.uint8), bitorder="little"
        )  # (padded_cols,) uint8
        alive = np.flatnonzero(removed_bits[start:num] == 0) + start  # (C',) positions >= start
        num_rows = int(np.searchsorted(alive, stop))
        if num_rows == 0:
            continue
        alive_rows = alive[:num_rows].tolist()
        cols_table = take(alive)  # (C', 5)
        row_boxes, row_areas = cols_table[:num_rows, :4], cols_table[:num_rows, 4]
        col_boxes, col_areas = cols_table[:, :4], cols_table[:, 4]
        bits = np.zeros((num_rows, padded_cols), dtype=bool)
        # columns per tile: single-threaded tiles on the CPU, whole rows on a GPU
        tile = max(1, (_SERIAL_ELEMENTS - 1) // num_rows) if table_host is not None else alive.shape[0]
        for first in range(0, col_boxes.shape[0], tile):
            cols = slice(first, first + tile)
            suppress = _suppressed_by(row_boxes, col_boxes[cols], row_areas, col_areas[cols], iou_threshold)
            bits[:, alive[cols]] = suppress.cpu().numpy()  # (R', tile) bool
        packed = np.packbits(bits, axis=1, bitorder="little")  # (R', padded_cols / 8)
        for offset, i in enumerate(alive_rows):
            if (removed >> i) & 1:
                continue
            kept.append(i)
            row = int.from_bytes(packed[offset].tobytes(), "little")
            removed |= row & ~((1 << (i + 1)) - 1)  # only boxes after i
    return kept


def nms(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Greedy NMS: indices (K,) int64 of kept boxes, by decreasing score.

    A box is dropped when its IoU with a kept, higher-scored box is > iou_threshold.
    Equal scores keep their input order (stable descending sort, as torchvision).
    """
    if boxes.dim() != 2 or boxes.shape[-1] != 4 or scores.shape != boxes.shape[:1]:
        raise ValueError(
            f"nms expects boxes (N, 4) and scores (N,), got {tuple(boxes.shape)} and {tuple(scores.shape)}"
        )
    if boxes.shape[0] == 0:
        return torch.zeros((0,), dtype=torch.int64, device=boxes.device)
    order = torch.sort(scores, dim=0, descending=True, stable=True)[1]  # (N,)
    sorted_boxes = boxes.index_select(0, order)
    if not sorted_boxes.is_floating_point():
        sorted_boxes = sorted_boxes.float()
    kept = _greedy_keep(sorted_boxes, iou_threshold)
    kept_positions = torch.as_tensor(kept, dtype=torch.int64, device=boxes.device)
    return order.index_select(0, kept_positions)


def batched_nms(boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float) -> Tensor:
    """NMS done independently per category `idxs` (N,): kept indices (K,) by decreasing score.

    Mirrors torchvision (so that float rounding, and thus the keep list, is the same): for
    up to 1000 boxes (5000 on CUDA) every category's boxes are shifted by
    idxs * (max coordinate + 1) so that categories never overlap and one NMS runs; for more,
    NMS runs per category and the union is sorted by score.
    """
    if idxs.shape != scores.shape:
        raise ValueError(
            f"batched_nms: idxs must have the shape of scores {tuple(scores.shape)}, got {tuple(idxs.shape)}"
        )
    if boxes.shape[0] == 0:
        return torch.zeros((0,), dtype=torch.int64, device=boxes.device)
    if boxes.numel() <= (4000 if boxes.device.type == "cpu" else 20000):
        max_coordinate = boxes.max()
        offsets = idxs.to(boxes) * (max_coordinate + torch.tensor(1).to(boxes))  # (N,)
        return nms(boxes + offsets[:, None], scores, iou_threshold)
    keep_mask = torch.zeros_like(scores, dtype=torch.bool)
    for category in torch.unique(idxs).tolist():
        members = torch.where(idxs == category)[0]
        keep_mask[members[nms(boxes[members], scores[members], iou_threshold)]] = True
    kept = torch.where(keep_mask)[0]
    return kept[torch.sort(scores[kept], descending=True, stable=True)[1]]
