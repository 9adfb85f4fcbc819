"""The data that flows between stages, with shapes.

Shape glossary: B images in a batch; N instances of one image; H, W an image's height
and width; Hp, Wp the padded batch size.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor


@dataclass
class ImageBatch:
    """Normalized images padded to one size (a multiple of `size_divisible`)."""

    tensor: Tensor  # (B, 3, Hp, Wp) float, normalized
    image_sizes: list[tuple[int, int]]  # (h, w) of each image after resize, before padding
    original_sizes: list[tuple[int, int]]  # (h, w) of each image as given

    def __len__(self) -> int:
        return self.tensor.shape[0]

    def to(self, device: torch.device | str) -> "ImageBatch":
        return replace(self, tensor=self.tensor.to(device))


@dataclass
class Targets:
    """Ground truth of one image, in that image's pixel coordinates."""

    boxes: Tensor  # (N, 4) float32, x1 y1 x2 y2
    labels: Tensor  # (N,) int64, 1..num_classes-1 (0 is background)
    masks: Tensor | None = None  # (N, H, W) uint8 {0, 1}

    def __len__(self) -> int:
        return self.boxes.shape[0]

    def to(self, device: torch.device | str) -> "Targets":
        return Targets(
            boxes=self.boxes.to(device),
            labels=self.labels.to(device),
            masks=None if self.masks is None else self.masks.to(device),
        )

    @staticmethod
    def empty(height: int, width: int) -> "Targets":
        return Targets(
            boxes=torch.zeros((0, 4)),
            labels=torch.zeros((0,), dtype=torch.int64),
            masks=torch.zeros((0, height, width), dtype=torch.uint8),
        )


@dataclass
class Detections:
    """What the model found in one image, in that image's original pixel coordinates."""

    boxes: Tensor  # (N, 4) float32, x1 y1 x2 y2
    scores: Tensor  # (N,) float32, highest first
    labels: Tensor  # (N,) int64, 1..num_classes-1
    masks: Tensor | None = None  # (N, H, W) float32 mask probabilities in [0, 1]

    def __len__(self) -> int:
        return self.boxes.shape[0]

    def to(self, device: torch.device | str) -> "Detections":
        return Detections(
            boxes=self.boxes.to(device),
            scores=self.scores.to(device),
            labels=self.labels.to(device),
            masks=None if self.masks is None else self.masks.to(device),
        )
