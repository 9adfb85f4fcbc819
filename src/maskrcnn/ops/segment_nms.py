"""NMS of every image's RPN candidates, level by level, with one copy back for the batch.

Shape glossary: B images; K candidates per image, in L contiguous segments (the levels'
top-k, segment l holding k_l candidates); P_i proposals kept for image i.

`batched_nms` per image makes the host wait once per image (its suppression bits come
back to the host for the greedy sweep). Here the bits of every (image, level) segment
are computed on the device, packed and copied back together, the sweeps run on the
host, and the kept candidates go back to the device in one non-blocking copy: one wait
per batch. Boxes of different segments never suppress each other, as in batched NMS by
level; invalid candidates (too small, too low) take no part. The IoUs are those of the
unshifted boxes (torchvision's per-category NMS); equal scores may come out in another
order than a stable sort's, so inference keeps `batched_nms`.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from maskrcnn.ops.nms import (
    _DEVICE_ROWS,
    _suppressed_by,
    _sweep,
    batched_nms,
    bit_weights,
)


def nms_per_image(
    boxes: Tensor,
    scores: Tensor,
    valid: Tensor,
    segments: list[int],
    iou_threshold: float,
    keep: int,
    one_copy: bool | None = None,
) -> list[Tensor]:
    """boxes (B, K, 4), scores (B, K), valid (B, K) bool, segment sizes summing to K ->
    per image (P_i,) int64 indices into K of the kept candidates, by decreasing score,
    at most `keep`. one_copy None: the one-copy path on a GPU, `batched_nms` per image on
    the CPU (where the sweep runs on the host anyway)."""
    num_images, num = scores.shape
    if sum(segments) != num:
        raise ValueError(f"nms_per_image: segments {segments} do not add up to {num} candidates")
    if one_copy is None:
        one_copy = boxes.device.type != "cpu"
    if not one_copy or num == 0:
        levels = torch.cat([torch.full((k,), level, device=boxes.device) for level, k in enumerate(segments)])
        return [
            batched_nms(boxes[i], scores[i], levels, iou_threshold, valid[i])[:keep] for i in range(num_images)
        ]
    return _one_copy(boxes, scores, valid, segments, iou_threshold, keep)


def _packed_bits(bits: Tensor) -> Tensor:
    """(R, C) bool -> (R, ceil(C / 8)) uint8, bit k of byte b = column 8b + k (little)."""
    rows, cols = bits.shape
    padded = torch.zeros((rows, (cols + 7) // 8 * 8), dtype=torch.uint8, device=bits.device)
    padded[:, :cols] = bits
    return (padded.view(rows, -1, 8) * bit_weights(bits.device)).sum(dim=2, dtype=torch.uint8)


def _one_copy(
    boxes: Tensor, scores: Tensor, valid: Tensor, segments: list[int], iou_threshold: float, keep: int
) -> list[Tensor]:
    num_images, num = scores.shape
    sorted_index, packed = [], []  # per segment (B, k) positions by score; per (image, segment) bits
    start = 0
    for k in segments:
        order = torch.sort(scores[:, start:start + k], dim=1, descending=True, stable=True).indices  # (B, k)
        sorted_index.append(order + start)
        start += k
    sorted_index_all = torch.cat(sorted_index, dim=1)  # (B, K): candidate at each sorted place
    sorted_boxes = boxes.gather(1, sorted_index_all[..., None].expand(-1, -1, 4)).float()  # (B, K, 4)
    sorted_valid = valid.gather(1, sorted_index_all)  # (B, K)
    for i in range(num_images):
        start = 0
        for k in segments:
            segment = sorted_boxes[i, start:start + k]  # (k, 4)
            areas = (segment[:, 2] - segment[:, 0]) * (segment[:, 3] - segment[:, 1])
            table = torch.cat([segment, areas[:, None]], dim=1).t().contiguous()  # (5, k)
            for row in range(0, k, _DEVICE_ROWS):
                rows = table[:, row:row + _DEVICE_ROWS].contiguous()
                packed.append(_packed_bits(_suppressed_by(rows, table, iou_threshold)).reshape(-1))
            packed.append(_packed_bits(~sorted_valid[i, start:start + k][None]).reshape(-1))
            start += k
    host = torch.cat(packed).cpu().numpy()  # the one copy back

    chosen_places: list[int] = []  # flat places i * K + p in the sorted layout
    counts: list[int] = []
    offset = 0
    for i in range(num_images):
        start, count = 0, 0
        for k in segments:
            width = (k + 7) // 8
            bits = host[offset:offset + k * width].reshape(k, width)
            removed = int.from_bytes(host[offset + k * width:offset + (k + 1) * width].tobytes(), "little")
            offset += (k + 1) * width
            kept: list[int] = []
            _sweep(range(k), bits, removed, kept)
            chosen_places.extend(i * num + start + p for p in kept)
            count += len(kept)
            start += k
        counts.append(count)
    places = torch.as_tensor(np.asarray(chosen_places, dtype=np.int64))
    if boxes.device.type == "cuda":
        places = places.pin_memory()
    places = places.to(boxes.device, non_blocking=True)  # no wait: the host copy is pinned
    kept_sorted = torch.zeros(num_images * num, dtype=torch.bool, device=boxes.device).index_fill_(0, places, True)
    kept_mask = torch.zeros((num_images, num), dtype=torch.bool, device=boxes.device)
    kept_mask.scatter_(1, sorted_index_all, kept_sorted.view(num_images, num))  # (B, K) in candidate order
    ranked = torch.where(kept_mask, scores.float(), -torch.inf)  # (B, K)
    return [ranked[i].topk(min(keep, counts[i])).indices for i in range(num_images)]
