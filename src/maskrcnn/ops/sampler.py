"""Balanced sampling of positive and negative training examples (anchors or RoIs).

Shape glossary: N candidates; P sampled positives; Q sampled negatives.
"""

from __future__ import annotations

import torch
from torch import Tensor


def sample_balanced(
    labels: Tensor,
    batch_size_per_image: int,
    positive_fraction: float,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Random positive and negative indices, as torchvision's BalancedPositiveNegativeSampler.

    labels (N,): >= 1 positive, 0 negative, -1 ignored. Takes
    num_pos = min(int(batch_size_per_image * positive_fraction), #positives) positives and
    num_neg = min(batch_size_per_image - num_pos, #negatives) negatives, each a random
    subset (randperm, drawn from `generator` when given). Returns (P,) and (Q,) int64.
    """
    if labels.dim() != 1:
        raise ValueError(f"sample_balanced expects labels of shape (N,), got {tuple(labels.shape)}")
    if not 0.0 <= positive_fraction <= 1.0:
        raise ValueError(f"positive_fraction must be in [0, 1], got {positive_fraction}")
    positive = torch.where(labels >= 1)[0]  # (#pos,)
    negative = torch.where(labels == 0)[0]  # (#neg,)
    num_pos = min(positive.numel(), int(batch_size_per_image * positive_fraction))
    num_neg = min(negative.numel(), batch_size_per_image - num_pos)
    perm_device = generator.device if generator is not None else labels.device
    pos_perm = torch.randperm(positive.numel(), generator=generator, device=perm_device)[:num_pos]
    neg_perm = torch.randperm(negative.numel(), generator=generator, device=perm_device)[:num_neg]
    return positive[pos_perm.to(labels.device)], negative[neg_perm.to(labels.device)]
