"""Helpers shared by the augmentations: random draws and grey-image handling.

Every draw comes from torch's global generator, which the training loop seeds and a
resumed run restores (engine/resume_state.py), so augmentations replay exactly.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor


def uniform(low: float, high: float) -> float:
    """A float drawn uniformly in [low, high] from torch's global generator."""
    return low + (high - low) * torch.rand(()).item()


def randint(low: int, high: int) -> int:
    """An integer drawn uniformly in [low, high] (both included) from torch's global generator."""
    return int(torch.randint(low, high + 1, ()).item())


def is_gray(image: Tensor) -> bool:
    """True when the three channels of a (3, H, W) image are identical."""
    return bool(torch.equal(image[0], image[1]) and torch.equal(image[1], image[2]))


def on_gray_plane(image: Tensor, operation: Callable[[Tensor], Tensor]) -> Tensor:
    """`operation` on a (3, H, W) image, done once on one plane when the image is grey.

    A third of the work, and the result is exactly grey: element-wise functions such as
    `pow` may round differently in the vectorised body and the tail of a loop, so three
    equal channels run through them at once can come out different in the last bit."""
    if image.shape[0] == 3 and is_gray(image):
        plane = operation(image[:1])  # (1, h, w): the operation may change the size
        return plane.expand(3, *plane.shape[1:]).contiguous()
    return operation(image)
