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

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from maskrcnn.ops.compiled import torchvision_ops

_ROW_BLOCK = 128  # rows of the IoU matrix per greedy step (128 measured best of 64..512)
# IoU tiles stay below PyTorch's parallel grain (32768 elements), so each op runs on one
# thread: on this shared 2-core machine, hundreds of 2-thread regions per call cost 5-50x
# (threads wait on the scheduler), while one thread loses < 2x on an idle machine.
_SERIAL_ELEMENTS = 32768
# On a GPU: rows of the suppression matrix computed at once (2048 x 5000 boxes: ~40 MB of
# float32 temporaries).
_DEVICE_ROWS = 2048


def _suppressed_by(rows: Tensor, cols: Tensor, iou_threshold: float) -> Tensor:
    """(R, C) bool: IoU(row box, col box) > threshold, with torchvision's float arithmetic.

    rows (5, R) and cols (5, C): coordinate-major tables x1, y1, x2, y2, area, each row
    contiguous (broadcasting contiguous vectors is 2-3x faster than strided columns).
    """
    x1r, y1r, x2r, y2r, area_r = rows.unbind(0)  # (R,) each
    x1c, y1c, x2c, y2c, area_c = cols.unbind(0)  # (C,) each
    xx1 = torch.maximum(x1r[:, None], x1c[None, :])  # (R, C)
    xx2 = torch.minimum(x2r[:, None], x2c[None, :])
    width = xx2.sub_(xx1).clamp_(min=0)
    yy1 = torch.maximum(y1r[:, None], y1c[None, :], out=xx1)
    yy2 = torch.minimum(y2r[:, None], y2c[None, :])
    inter = width.mul_(yy2.sub_(yy1).clamp_(min=0))
    union = torch.add(area_r[:, None], area_c[None, :], out=yy2).sub_(inter)
    return inter.div_(union) > iou_threshold


def _sweep(positions: Sequence[int], packed: np.ndarray, removed: int, kept: list[int]) -> int:
    """The greedy sweep over rows of packed "suppresses" bits (row r: box positions[r]).

    Each box not yet suppressed is kept (appended to `kept`) and suppresses the later boxes
    its row marks. `removed` has bit j set for box j suppressed; returns it updated.
    """
    for row, i in enumerate(positions):
        if (removed >> i) & 1:
            continue
        kept.append(i)
        removed |= int.from_bytes(packed[row].tobytes(), "little") & ~((1 << (i + 1)) - 1)  # only boxes after i
    return removed


def _greedy_keep(boxes: Tensor, iou_threshold: float) -> list[int]:
    """Greedy NMS over score-sorted (N, 4) boxes -> kept positions (ascending).

    Boxes go in blocks of _ROW_BLOCK. For a block, only its boxes not yet suppressed are
    compared, and only against later boxes not yet suppressed; the result becomes one
    Python-integer bitmask per row ("bit j: this box suppresses box j") and a plain loop
    of ORs does the greedy sweep.
    """
    num = boxes.shape[0]
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])  # (N,)
    # (5, N) x1, y1, x2, y2, area; on the CPU gathered through NumPy (torch's indexing
    # kernel opens a 2-thread region even for a few thousand elements).
    table = torch.cat([boxes, areas[:, None]], dim=1).t().contiguous()
    table_host = table.numpy() if table.device.type == "cpu" else None

    def take(positions: np.ndarray) -> Tensor:  # (5, len(positions)), each row contiguous
        if table_host is not None:
            return torch.from_numpy(table_host[:, positions])
        return table[:, torch.from_numpy(positions).to(table.device)]

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
        cols_table = take(alive)  # (5, C')
        rows_table = cols_table[:, :num_rows].contiguous()  # (5, R')
        bits = np.zeros((num_rows, padded_cols), dtype=bool)
        # columns per tile: single-threaded tiles on the CPU, whole rows on a GPU
        tile = max(1, (_SERIAL_ELEMENTS - 1) // num_rows) if table_host is not None else alive.shape[0]
        for first in range(0, cols_table.shape[1], tile):
            cols = slice(first, first + tile)
            suppress = _suppressed_by(rows_table, cols_table[:, cols].contiguous(), iou_threshold)
            bits[:, alive[cols]] = suppress.cpu().numpy()  # (R', tile) bool
        packed = np.packbits(bits, axis=1, bitorder="little")  # (R', padded_cols / 8)
        removed = _sweep(alive_rows, packed, removed, kept)
    return kept


def bit_weights(device: torch.device) -> Tensor:
    """(8,) uint8 1, 2, 4, ..., 128 made on the device (no copy from the host to wait for)."""
    return torch.pow(2, torch.arange(8, device=device)).to(torch.uint8)


def _greedy_keep_on_device(
    boxes: Tensor, iou_threshold: float, categories: Tensor | None = None, valid: Tensor | None = None
) -> list[int]:
    """Greedy NMS over score-sorted (N, 4) boxes on a GPU -> kept positions (ascending).

    The blocks of `_greedy_keep` each wait for the GPU and copy a block back (a training
    iteration made hundreds of such round trips). Here the whole "box i suppresses box j"
    matrix is computed on the device, _DEVICE_ROWS rows at a time, packed there into bytes
    (bit k of byte b: column 8b + k, numpy's little bit order) and copied to the host once;
    the greedy sweep over it is the same loop of integer ORs. `categories` (N,): a box
    suppresses only boxes of its own category (batched NMS in one pass); `valid` (N,) bool:
    boxes marked False are never kept and suppress nothing, their bits ride in the same copy.
    """
    num = boxes.shape[0]
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])  # (N,)
    table = torch.cat([boxes, areas[:, None]], dim=1).t().contiguous()  # (5, N)
    padded_cols = (num + 7) // 8 * 8
    bit_values = bit_weights(boxes.device)  # (8,)
    packed_blocks = []
    for start in range(0, num, _DEVICE_ROWS):
        rows = table[:, start:start + _DEVICE_ROWS].contiguous()  # (5, R)
        bits = torch.zeros((rows.shape[1], padded_cols), dtype=torch.uint8, device=boxes.device)  # (R, N padded)
        suppressed = _suppressed_by(rows, table, iou_threshold)  # (R, N)
        if categories is not None:
            suppressed &= categories[start:start + _DEVICE_ROWS, None] == categories[None, :]
        bits[:, :num] = suppressed
        packed_blocks.append((bits.view(rows.shape[1], -1, 8) * bit_values).sum(dim=2, dtype=torch.uint8))
    if valid is not None:  # one more row: the boxes removed before the sweep starts
        bits = torch.zeros((1, padded_cols), dtype=torch.uint8, device=boxes.device)
        bits[0, :num] = ~valid
        packed_blocks.append((bits.view(1, -1, 8) * bit_values).sum(dim=2, dtype=torch.uint8))
    packed = torch.cat(packed_blocks).cpu().numpy()  # (N [+ 1], N padded / 8): the one copy back
    removed = int.from_bytes(packed[num].tobytes(), "little") if valid is not None else 0
    kept: list[int] = []
    _sweep(range(num), packed, removed, kept)
    return kept


def _only_valid(valid: Tensor) -> Tensor:
    """(V,) indices of the boxes marked valid (on the CPU, where the count costs no wait)."""
    return torch.where(valid)[0]


def nms(
    boxes: Tensor, scores: Tensor, iou_threshold: float, valid: Tensor | None = None, categories: Tensor | None = None
) -> Tensor:
    """Greedy NMS: indices (K,) int64 of kept boxes, by decreasing score.

    A box is dropped when its IoU with a kept, higher-scored box is > iou_threshold.
    Equal scores keep their input order (stable descending sort, as torchvision).
    `valid` (N,) bool: only these boxes take part (as if the others were filtered out
    first; on a GPU without the count that filtering would wait for). `categories` (N,),
    on a GPU only: boxes of different categories never suppress each other.
    """
    if boxes.dim() != 2 or boxes.shape[-1] != 4 or scores.shape != boxes.shape[:1]:
        raise ValueError(
            f"nms expects boxes (N, 4) and scores (N,), got {tuple(boxes.shape)} and {tuple(scores.shape)}"
        )
    if boxes.shape[0] == 0:
        return torch.zeros((0,), dtype=torch.int64, device=boxes.device)
    compiled = torchvision_ops(boxes.device)
    if compiled is not None and valid is None and categories is None:  # torchvision's CUDA kernel
        return compiled.nms(boxes, scores, iou_threshold)
    if boxes.device.type == "cpu" and valid is not None:
        members = _only_valid(valid)
        return members[nms(boxes[members], scores[members], iou_threshold)]
    order = torch.sort(scores, dim=0, descending=True, stable=True)[1]  # (N,)
    sorted_boxes = boxes.index_select(0, order)
    if not sorted_boxes.is_floating_point():
        sorted_boxes = sorted_boxes.float()
    if boxes.device.type == "cpu":
        kept = _greedy_keep(sorted_boxes, iou_threshold)
    else:
        kept = _greedy_keep_on_device(
            sorted_boxes,
            iou_threshold,
            None if categories is None else categories.index_select(0, order),
            None if valid is None else valid.index_select(0, order),
        )
    kept_positions = torch.as_tensor(kept, dtype=torch.int64, device=boxes.device)
    return order.index_select(0, kept_positions)


def _nms_each_category(shifted: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float) -> Tensor:
    """`nms(shifted, scores)` computed one category at a time: the same keep list.

    With coordinates >= 0, torchvision's offsets put each category's boxes in a square of
    its own, so boxes of two categories never intersect (IoU 0, never above a threshold
    >= 0): the greedy sweep over all boxes keeps exactly what the sweeps per category
    keep. Per category, IoUs are computed only among boxes that can overlap (for RPN
    proposals of 5 levels, ~3.5x fewer pairs). The IoUs are those of the shifted boxes,
    so float rounding is torchvision's.
    """
    order = torch.sort(scores, dim=0, descending=True, stable=True)[1]  # (N,)
    sorted_boxes = shifted.index_select(0, order)
    if not sorted_boxes.is_floating_point():
        sorted_boxes = sorted_boxes.float()
    categories = idxs.index_select(0, order).numpy()  # (N,)
    kept_positions = []
    for category in np.unique(categories):
        positions = np.flatnonzero(categories == category)  # ascending: this category's score order
        kept = _greedy_keep(sorted_boxes[torch.from_numpy(positions)], iou_threshold)
        kept_positions.append(positions[kept])
    merged = np.sort(np.concatenate(kept_positions))  # back to the global score order
    return order.index_select(0, torch.from_numpy(merged).to(torch.int64))


def batched_nms(
    boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float, valid: Tensor | None = None
) -> Tensor:
    """NMS done independently per category `idxs` (N,): kept indices (K,) by decreasing score.

    Mirrors torchvision (so that float rounding, and thus the keep list, is the same): for
    up to 1000 boxes (5000 on CUDA) every category's boxes are shifted by
    idxs * (max coordinate + 1) so that categories never overlap and one NMS runs; for more,
    NMS runs per category and the union is sorted by score (on a GPU: in one pass that
    lets boxes suppress only their own category, one copy back instead of one per category).
    `valid` (N,) bool: only these boxes take part, as if the others were filtered out first.
    """
    if idxs.shape != scores.shape:
        raise ValueError(
            f"batched_nms: idxs must have the shape of scores {tuple(scores.shape)}, got {tuple(idxs.shape)}"
        )
    if boxes.shape[0] == 0:
        return torch.zeros((0,), dtype=torch.int64, device=boxes.device)
    compiled = torchvision_ops(boxes.device)
    if compiled is not None and valid is None:  # torchvision's CUDA kernels
        return compiled.batched_nms(boxes, scores, idxs, iou_threshold)
    if valid is not None and boxes.device.type == "cpu":
        members = _only_valid(valid)
        return members[batched_nms(boxes[members], scores[members], idxs[members], iou_threshold)]
    if boxes.numel() <= (4000 if boxes.device.type == "cpu" else 20000):
        # the largest coordinate of the boxes taking part, as if the others were filtered out
        max_coordinate = boxes.max() if valid is None else torch.where(valid[:, None], boxes, -torch.inf).max()
        offsets = idxs.to(boxes) * (max_coordinate + 1)  # (N,)
        shifted = boxes + offsets[:, None]  # (N, 4)
        if boxes.device.type == "cpu" and iou_threshold >= 0 and bool(boxes.min() >= 0):
            return _nms_each_category(shifted, scores, idxs, iou_threshold)
        return nms(shifted, scores, iou_threshold, valid)
    if boxes.device.type != "cpu":
        return nms(boxes, scores, iou_threshold, valid, categories=idxs)
    keep_mask = torch.zeros_like(scores, dtype=torch.bool)
    for category in torch.unique(idxs).tolist():
        members = torch.where(idxs == category)[0]
        keep_mask[members[nms(boxes[members], scores[members], iou_threshold)]] = True
    kept = torch.where(keep_mask)[0]
    return kept[torch.sort(scores[kept], descending=True, stable=True)[1]]
