"""Balanced sampling of positive and negative training examples (anchors or RoIs).

Shape glossary: N candidates; P sampled positives; Q sampled negatives.

How it samples without waiting on a GPU. Each candidate draws a uniform random key; the
P positives taken are the P positives with the largest keys (top-k over the keys, the
others' keys pushed below every positive's), which is a uniformly random P-subset, as a
random permutation's first P would be. Only the counts (how many positives and negatives
an image has) must reach the host, to size the outputs: `sample_balanced_batch` reads
them for every image of a batch at once, one wait instead of one per image and kind.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor


class SampledIndices(NamedTuple):
    positive: Tensor  # (P,) int64 indices of sampled positives, in random order
    negative: Tensor  # (Q,) int64 indices of sampled negatives, in random order


def _check(labels: Tensor, positive_fraction: float) -> None:
    if labels.dim() != 1:
        raise ValueError(f"sample_balanced expects labels of shape (N,), got {tuple(labels.shape)}")
    if not 0.0 <= positive_fraction <= 1.0:
        raise ValueError(f"positive_fraction must be in [0, 1], got {positive_fraction}")


def _top_keys(keys: Tensor, members: Tensor, count: int) -> Tensor:
    """Indices (count,) of the `count` members (bool (N,)) with the largest keys; count <= #members."""
    if count == 0:
        return torch.zeros((0,), dtype=torch.int64, device=keys.device)
    ranked = torch.where(members, keys, -1.0)  # keys are in [0, 1): non-members rank below every member
    return ranked.topk(count, sorted=False).indices


def sample_balanced_batch(
    labels: list[Tensor],
    batch_size_per_image: int,
    positive_fraction: float,
    generator: torch.Generator | None = None,
) -> list[SampledIndices]:
    """`sample_balanced` for each image's labels, with one read of every image's counts.

    labels[i] (N_i,): >= 1 positive, 0 negative, -1 ignored. For each image takes
    num_pos = min(int(batch_size_per_image * positive_fraction), #positives) positives and
    num_neg = min(batch_size_per_image - num_pos, #negatives) negatives, each a uniformly
    random subset (keys drawn from `generator` when given, else the global RNG). Ignored
    candidates are never taken.
    """
    for image_labels in labels:
        _check(image_labels, positive_fraction)
    if not labels:
        return []
    positive_cap = int(batch_size_per_image * positive_fraction)
    is_positive = [image_labels >= 1 for image_labels in labels]
    is_negative = [image_labels == 0 for image_labels in labels]
    counts = torch.stack(
        [torch.stack([p.sum(), n.sum()]) for p, n in zip(is_positive, is_negative)]
    ).tolist()  # (B, 2): the one value the host needs, read once for the batch
    key_device = generator.device if generator is not None else labels[0].device
    samples = []
    for image_labels, positive, negative, (num_positive, num_negative) in zip(labels, is_positive, is_negative, counts):
        num_pos = min(num_positive, positive_cap)
        num_neg = min(num_negative, batch_size_per_image - num_pos)
        keys = torch.rand(image_labels.shape[0], generator=generator, device=key_device).to(image_labels.device)  # (N,)
        samples.append(SampledIndices(_top_keys(keys, positive, num_pos), _top_keys(keys, negative, num_neg)))
    return samples


def sample_balanced(
    labels: Tensor,
    batch_size_per_image: int,
    positive_fraction: float,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Random positive and negative indices, as torchvision's BalancedPositiveNegativeSampler.

    labels (N,): >= 1 positive, 0 negative, -1 ignored. Takes
    num_pos = min(int(batch_size_per_image * positive_fraction), #positives) positives and
    num_neg = min(batch_size_per_image - num_pos, #negatives) negatives, each a uniformly
    random subset (random keys, drawn from `generator` when given). Returns (P,) and (Q,)
    int64, each in random order.
    """
    (sample,) = sample_balanced_batch([labels], batch_size_per_image, positive_fraction, generator)
    return sample.positive, sample.negative
