"""Test-time augmentation's rescoring (model/test_augment.py `rescore_by_agreement`), traceable.

Shape glossary: D merged detections; D' one pass's detections; A passes.

The model's function skips a pass that found nothing (`if len(dets) == 0`): a Python branch
that a trace would freeze at the example image's answer, and a max over an empty axis where
it is not skipped. Here every pass gets one extra column of IoU 0 and score 0, which never
reaches AGREEMENT_IOU, so an empty pass adds 0 as the model's skip does, and no branch is
needed. Sorting uses `onnx_ops.argsort_descending` (stable, as the model's argsort).
Same numbers as the model's (tests/export/test_agreement.py).
"""

from __future__ import annotations

import torch
from torch import Tensor

from maskrcnn.export import onnx_ops
from maskrcnn.model.test_augment import AGREEMENT_IOU
from maskrcnn.ops.boxes import box_iou


def rescore_by_agreement(
    boxes: Tensor, labels: Tensor, per_pass: list[tuple[Tensor, Tensor, Tensor]]
) -> tuple[Tensor, Tensor, Tensor]:
    """Kept (D, 4) boxes and (D,) labels, each pass's (boxes, scores, labels) in the same frame
    -> (boxes, scores, labels) sorted by the new score: the mean over the passes of the score
    of that pass's best-overlapping same-class box (IoU >= AGREEMENT_IOU), 0 where none."""
    total = torch.zeros_like(boxes[:, 0])  # (D,)
    for pass_boxes, pass_scores, pass_labels in per_pass:
        same_class = (labels[:, None] == pass_labels[None, :]).to(boxes.dtype)  # (D, D')
        iou = box_iou(boxes, pass_boxes) * same_class  # (D, D')
        iou = torch.cat([iou, torch.zeros_like(total)[:, None]], dim=1)  # (D, D' + 1): a column that never agrees
        candidates = torch.cat([pass_scores, torch.zeros(1, dtype=pass_scores.dtype)])  # (D' + 1,)
        best, index = iou.max(dim=1)  # (D,)
        total = total + torch.where(best >= AGREEMENT_IOU, candidates[index], torch.zeros_like(best))
    scores = total / max(1, len(per_pass))
    order = onnx_ops.argsort_descending(scores)
    return boxes[order], scores[order], labels[order]
