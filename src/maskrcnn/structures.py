"""The data that flows between stages, with shapes.

Shape glossary: B images in a batch; N instances of one image; H, W an image's height
and width; h, w its size after the model's resize; Hp, Wp the padded batch size;
D detections of one image; M the mask head's side (e.g. 28).

Each stage's type says which pixels it is in:
    Targets (original pixels) -> transform -> ResizedTargets (resized pixels) -> RPN, RoI heads
    RoI heads -> RoIDetections (resized pixels, M x M masks) -> transform.postprocess
              -> Detections (original pixels, full-size H x W masks)
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace

import numpy as np
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

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "Targets":
        return Targets(
            boxes=self.boxes.to(device, non_blocking=non_blocking),
            labels=self.labels.to(device, non_blocking=non_blocking),
            masks=None if self.masks is None else self.masks.to(device, non_blocking=non_blocking),
        )

    def pin_memory(self) -> "Targets":
        """Page-locked copies (a DataLoader with pin_memory=True calls this), so that copies
        to a GPU can run while the host goes on."""
        return Targets(self.boxes.pin_memory(), self.labels.pin_memory(),
                       None if self.masks is None else self.masks.pin_memory())

    @staticmethod
    def empty(height: int, width: int) -> "Targets":
        return Targets(
            boxes=torch.zeros((0, 4)),
            labels=torch.zeros((0,), dtype=torch.int64),
            masks=torch.zeros((0, height, width), dtype=torch.uint8),
        )


@dataclass
class ResizedTargets(Targets):
    """Ground truth moved into the resized image's pixels: what the RPN and RoI heads see.

    Same fields as Targets: boxes (N, 4) scaled by the resize, masks (N, h, w) resized
    (nearest). Made only by the model's transform.
    """


@dataclass
class RoIDetections:
    """What the RoI heads found in one image, before mapping back: resized-image pixels.

    masks are the mask head's (D, M, M) probabilities of each box's own M x M grid, not
    image-sized masks; transform.postprocess pastes them and returns Detections.
    """

    boxes: Tensor  # (D, 4) float32, x1 y1 x2 y2 in resized-image pixels
    scores: Tensor  # (D,) float32, highest first
    labels: Tensor  # (D,) int64, 1..num_classes-1
    masks: Tensor | None = None  # (D, M, M) float32 mask probabilities in [0, 1]

    def __len__(self) -> int:
        return self.boxes.shape[0]


@dataclass
class Detections:
    """What the model found in one image, in that image's original pixel coordinates.

    The model's output; masks are full-size (N, H, W) probabilities (threshold at 0.5 for
    binary masks).
    """

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


def image_to_tensor(image: np.ndarray, device: torch.device | str | None = None) -> Tensor:
    """The one way an image enters the model: (H, W, 3) uint8 -> (3, H, W) float32 in [0, 1].

    The uint8 pixels are moved to `device` first (a quarter of the bytes of float32).
    """
    with warnings.catch_warnings():
        # a read-only array (np.asarray of a PIL image) is only read here: .float() copies it
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        tensor = torch.from_numpy(image)
    if device is not None:
        tensor = tensor.to(device)
    return tensor.permute(2, 0, 1).float().div_(255.0)
