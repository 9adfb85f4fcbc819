"""Image transform: normalize, resize, pad into one batch; and the way back.

Shape glossary: B images; N instances of one image; H, W an image's size as given;
h, w its size after resize; Hp, Wp the padded batch size (multiples of `size_divisible`);
M the side of the predicted (square) mask.

The resize is torchvision's GeneralizedRCNNTransform arithmetic, so that its checkpoints
see exactly the pixels they were trained on: the scale factor is computed in float32 as
min(min_size / short side, max_size / long side), the image goes through
`F.interpolate(scale_factor=..., recompute_scale_factor=True)` (output side =
floor(side * scale)), and boxes are scaled by the float32 ratio new side / old side.
With `fixed_scale` > 0 the factor is that number for every image (capped so the long side
stays within `max_size`): the objects keep their pixel scale whatever the image size.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from maskrcnn.errors import UserError
from maskrcnn.ops.masks import paste_masks
from maskrcnn.structures import (
    Detections,
    ImageBatch,
    ResizedTargets,
    RoIDetections,
    Targets,
)


def resize_scale_factor(height: int, width: int, min_size: float, max_size: float) -> float:
    """The factor that brings the short side to `min_size` unless the long side would pass `max_size`."""
    short_side = np.float32(min(height, width))
    long_side = np.float32(max(height, width))
    # float32 arithmetic, as torchvision's tensors (`number / tensor` is reciprocal, then
    # multiply); NumPy on the host: no tensor, nothing to read back
    one = np.float32(1.0)
    scale = min(np.float32(min_size) * (one / short_side), np.float32(max_size) * (one / long_side))
    return float(scale)


class ResizeError(UserError):
    """An image too thin for the model's resize (a side would shrink below half a pixel)."""


def thin_image_size(height: int, width: int, scale: float, min_size: int, max_size: int) -> tuple[int, int] | None:
    """(h, w) for an image whose short side would round to 0 pixels at `scale`; None otherwise.

    torchvision's arithmetic floors side * scale: a 20x3000 image at a 128-px model gives
    0.85 -> 0 rows, and interpolation fails. Such a side becomes 1 pixel (boxes are mapped
    back by the per-axis ratio, so coordinates stay right). Below half a pixel the image
    cannot be represented without distorting it more than twofold: ResizeError.
    """
    exact_h, exact_w = height * scale, width * scale
    if math.floor(exact_h) >= 1 and math.floor(exact_w) >= 1:
        return None
    if min(exact_h, exact_w) < 0.5:
        raise ResizeError(
            f"image of {height}x{width} pixels (HxW): at this model's input size (short side {min_size}, "
            f"long side at most {max_size}) its short side would be {min(exact_h, exact_w):.2f} px; "
            "predict it in tiles at its own scale (maskrcnn predict --tile 1024) or pad it to a less extreme shape"
        )
    return max(1, math.floor(exact_h)), max(1, math.floor(exact_w))


def resize_boxes(boxes: Tensor, old_size: tuple[int, int], new_size: tuple[int, int]) -> Tensor:
    """Scale (N, 4) xyxy boxes from an image of `old_size` (h, w) to one of `new_size`."""
    # float32 ratios as torchvision's, computed on the host (no copy to the device per call)
    ratio_h = float(np.float32(new_size[0]) / np.float32(old_size[0]))
    ratio_w = float(np.float32(new_size[1]) / np.float32(old_size[1]))
    x1, y1, x2, y2 = boxes.unbind(1)
    return torch.stack((x1 * ratio_w, y1 * ratio_h, x2 * ratio_w, y2 * ratio_h), dim=1)


def pad_to_batch(images: list[Tensor], size_divisible: int) -> Tensor:
    """Zero-pad (3, h, w) images at the bottom/right into one (B, 3, Hp, Wp) tensor."""
    max_h = max(img.shape[-2] for img in images)
    max_w = max(img.shape[-1] for img in images)
    stride = float(size_divisible)
    padded_h = int(math.ceil(max_h / stride) * stride)
    padded_w = int(math.ceil(max_w / stride) * stride)
    batch = images[0].new_zeros((len(images), images[0].shape[0], padded_h, padded_w))
    for i, img in enumerate(images):
        batch[i, :, : img.shape[-2], : img.shape[-1]].copy_(img)
    return batch


class ImageTransform(nn.Module):
    """Normalize, resize (random short side per image in training) and batch images."""

    def __init__(
        self,
        *,
        min_size: list[int],
        max_size: int,
        image_mean: list[float],
        image_std: list[float],
        size_divisible: int,
        fixed_scale: float = 0.0,
    ) -> None:
        super().__init__()
        if fixed_scale < 0 or not math.isfinite(fixed_scale):
            raise ValueError(f"model.transform.fixed_scale: expected 0 (off) or a positive factor, got {fixed_scale}")
        self.fixed_scale = float(fixed_scale)
        if not min_size:
            raise ValueError("model.transform.min_size: expected at least one size, got []")
        self.min_size = [int(s) for s in min_size]
        self.max_size = int(max_size)
        self.size_divisible = int(size_divisible)
        # Not part of the state dict: torchvision's checkpoints do not hold them.
        self.register_buffer("image_mean", torch.tensor(image_mean, dtype=torch.float32), persistent=False)
        self.register_buffer("image_std", torch.tensor(image_std, dtype=torch.float32), persistent=False)

    def pick_min_size(self) -> float:
        if self.training and len(self.min_size) > 1:
            index = int(torch.randint(len(self.min_size), ()).item())
            return float(self.min_size[index])
        return float(self.min_size[-1])

    def normalize(self, image: Tensor) -> Tensor:
        mean = self.image_mean.to(dtype=image.dtype, device=image.device)
        std = self.image_std.to(dtype=image.dtype, device=image.device)
        return (image - mean[:, None, None]) / std[:, None, None]

    def own_scale(self) -> float:
        """The factor every image is resized by at fixed_scale, else 1 (the model's pixel scale)."""
        return self.fixed_scale if self.fixed_scale > 0 else 1.0

    def resize(
        self, image: Tensor, target: Targets | None, scale: float | None = None
    ) -> tuple[Tensor, ResizedTargets | None]:
        """(3, H, W) -> (3, h, w); the target's boxes and masks follow. `scale`: exactly this
        factor (tiled prediction) instead of the model's resize."""
        height, width = image.shape[-2:]
        if scale is not None:
            scale = float(scale)
        elif self.fixed_scale > 0:
            # the same arithmetic with the short side's target set to fixed_scale x short side
            scale = resize_scale_factor(height, width, self.fixed_scale * min(height, width), float(self.max_size))
        else:
            scale = resize_scale_factor(height, width, self.pick_min_size(), float(self.max_size))
        size = None  # torchvision's path (scale_factor) unless a side would round to 0 pixels
        if not torch.jit.is_tracing():
            size = thin_image_size(int(height), int(width), scale, self.min_size[-1], self.max_size)
        if scale == 1.0 and size is None:
            resized = image  # a tile at the image's own scale: nothing to interpolate
        elif size is None:
            resized = F.interpolate(
                image[None], scale_factor=scale, mode="bilinear", recompute_scale_factor=True, align_corners=False
            )[0]
        else:
            resized = F.interpolate(image[None], size=size, mode="bilinear", align_corners=False)[0]
        if target is None:
            return resized, None
        new_size = (resized.shape[-2], resized.shape[-1])
        boxes = resize_boxes(target.boxes.to(torch.float32), (height, width), new_size)
        masks = target.masks
        if masks is not None:
            if masks.shape[0] == 0:
                masks = masks.new_zeros((0, *new_size))
            elif new_size != (height, width):  # nearest, as torchvision resizes target masks
                sizing = {"size": new_size} if size is not None else {"scale_factor": scale, "recompute_scale_factor": True}
                masks = F.interpolate(masks[:, None].float(), **sizing)[:, 0].to(torch.uint8)
        return resized, ResizedTargets(boxes=boxes, labels=target.labels, masks=masks)

    def forward(
        self, images: list[Tensor], targets: list[Targets] | None = None, scale: float | None = None
    ) -> tuple[ImageBatch, list[ResizedTargets] | None]:
        original_sizes = [(int(img.shape[-2]), int(img.shape[-1])) for img in images]
        resized_images: list[Tensor] = []
        resized_targets: list[ResizedTargets] = []
        for i, image in enumerate(images):
            target = targets[i] if targets is not None else None
            image, target = self.resize(self.normalize(image), target, scale)
            resized_images.append(image)
            if target is not None:
                resized_targets.append(target)
        image_sizes = [(int(img.shape[-2]), int(img.shape[-1])) for img in resized_images]
        batch = ImageBatch(
            tensor=pad_to_batch(resized_images, self.size_divisible),  # (B, 3, Hp, Wp)
            image_sizes=image_sizes,
            original_sizes=original_sizes,
        )
        return batch, (resized_targets if targets is not None else None)

    def postprocess(
        self,
        detections: list[RoIDetections],
        image_sizes: list[tuple[int, int]],
        original_sizes: list[tuple[int, int]],
        mask_paste: str | None,
    ) -> list[Detections]:
        """Boxes back to original pixels; (N, M, M) mask probabilities pasted into (N, H, W)
        the `mask_paste` way (the model's setting), or left (N, M, M) when it is None."""
        results = []
        for det, size, original in zip(detections, image_sizes, original_sizes):
            boxes = resize_boxes(det.boxes, size, original)
            masks = det.masks
            if masks is not None and mask_paste is not None:
                masks = paste_masks(masks, boxes, original, mask_paste)  # (N, H, W)
            results.append(Detections(boxes=boxes, scores=det.scores, labels=det.labels, masks=masks))
        return results
