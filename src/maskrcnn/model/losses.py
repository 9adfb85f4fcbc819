"""Every loss of the model, as plain functions: the one place where losses are normalised.

The five losses and their normalisation (torchvision's choices):
- RPN objectness: BCE, mean over the sampled anchors of the batch.
- RPN box: smooth L1 (beta 1/9) summed over positive anchors / number of sampled anchors.
- RoI classification: cross-entropy, mean over the sampled RoIs.
- RoI box: smooth L1 (beta 1/9) summed over foreground RoIs / number of sampled RoIs.
- mask: per-pixel BCE (or softmax CE), mean over foreground RoIs and their M x M pixels.

Shape glossary: B images; T anchors of one image; R sampled RoIs in the batch; K classes
including background; F foreground (positive) RoIs among them; M the mask side.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def rpn_losses(
    logits: Tensor, deltas: Tensor, labels: Tensor, target_deltas: Tensor, positive: Tensor, negative: Tensor
) -> tuple[Tensor, Tensor]:
    """BCE on sampled anchors; smooth L1 (beta 1/9) on positives, summed / number sampled.

    logits (B*T,), deltas (B*T, 4), labels (B*T,) float 0/1, target_deltas (num_pos, 4) for
    the anchors in `positive` (flat indices), `negative` flat indices.
    """
    sampled = torch.cat([positive, negative])
    if sampled.numel() == 0:  # no anchor could be sampled: keep the graph, no signal
        zero = logits.sum() * 0.0 + deltas.sum() * 0.0
        return zero, zero.clone()
    box_loss = F.smooth_l1_loss(deltas[positive], target_deltas, beta=1.0 / 9, reduction="sum") / sampled.numel()
    objectness_loss = F.binary_cross_entropy_with_logits(logits[sampled], labels[sampled])
    return objectness_loss, box_loss


def fast_rcnn_losses(
    class_logits: Tensor, box_deltas: Tensor, labels: Tensor, target_deltas: Tensor, foreground: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Cross-entropy over all sampled RoIs; smooth L1 (beta 1/9) on the gt class's deltas of
    foreground RoIs, summed and divided by the number of sampled RoIs (torchvision's choice).

    class_logits (R, K), box_deltas (R, K*4), labels (R,) int64 (0 = background),
    target_deltas (F, 4) for the foreground RoIs in order of `labels > 0`; `foreground`
    (F,) their indices when the caller knows them (found here otherwise, a count a GPU
    would make the host wait for).
    """
    classification = F.cross_entropy(class_logits, labels)
    if foreground is None:
        foreground = torch.where(labels > 0)[0]  # (F,)
    deltas = box_deltas.reshape(box_deltas.shape[0], -1, 4)  # (R, K*4) -> (R, K, 4)
    box_regression = F.smooth_l1_loss(
        deltas[foreground, labels[foreground]], target_deltas, beta=1.0 / 9, reduction="sum"
    ) / max(labels.numel(), 1)
    return classification, box_regression


def mask_loss(mask_logits: Tensor, labels: Tensor, mask_targets: Tensor, kind: str = "sigmoid") -> Tensor:
    """Mask loss over F foreground RoIs.

    mask_logits (F, K, M, M); labels (F,) int64 gt classes; mask_targets (F, M, M) float in
    [0, 1] (the gt mask cropped to the RoI and resized).
    - "sigmoid" (the paper's choice): per-pixel binary cross-entropy on the gt class's
      channel only, so classes do not compete.
    - "softmax" (the paper's multinomial ablation): per-pixel cross-entropy across the K
      channels, where a pixel's target is the gt class if its mask target is >= 0.5 and
      the background channel 0 otherwise.
    With F = 0 the loss is an exact 0 still connected to the graph.
    """
    if mask_targets.numel() == 0:
        return mask_logits.sum() * 0.0
    rows = torch.arange(labels.shape[0], device=labels.device)
    if kind == "sigmoid":
        return F.binary_cross_entropy_with_logits(mask_logits[rows, labels], mask_targets)
    if kind == "softmax":
        pixel_classes = (mask_targets >= 0.5).long() * labels[:, None, None]  # (F, M, M)
        return F.cross_entropy(mask_logits, pixel_classes)
    raise ValueError(f"model.roi_heads.mask_loss: expected 'sigmoid' or 'softmax', got {kind!r}")


def mask_probabilities(mask_logits: Tensor, labels: Tensor, kind: str = "sigmoid") -> Tensor:
    """(D, K, M, M) logits and (D,) predicted classes -> (D, M, M) probabilities of that class."""
    rows = torch.arange(labels.shape[0], device=labels.device)
    if kind == "softmax":
        return mask_logits.softmax(dim=1)[rows, labels]
    return mask_logits[rows, labels].sigmoid()
