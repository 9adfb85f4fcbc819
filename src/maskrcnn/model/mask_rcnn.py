"""Mask R-CNN: transform -> backbone -> RPN -> RoI heads -> back to original pixels.

Shape glossary: B images; H, W an image's size as given; Hp, Wp the padded batch size;
N instances (targets) or detections of one image.

Input: a list of B images, each (3, H, W) float in [0, 1] (sizes may differ).
Training (with targets): a dict of five scalar losses. Inference: a list of B
`Detections` (boxes xyxy in original pixels, scores, labels, masks (N, H, W) probabilities).

The model owns its inference settings (how masks are pasted, the mask threshold that
whoever binarises reads) and passes them down as arguments; a caller's per-call requests
(`InferenceOptions`: a fixed resize, larger budgets, unpasted masks) come in through
`forward`. Inference runs in three public steps, `detect_boxes` -> `predict_masks` ->
`postprocess`, which test-time augmentation (model/test_augment.py) wraps from outside.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from maskrcnn.model.inference_options import (
    DEFAULT_OPTIONS,
    DetectionBudgets,
    InferenceOptions,
)
from maskrcnn.model.roi_heads import RoIHeads
from maskrcnn.model.rpn import RegionProposalNetwork
from maskrcnn.model.transform import ImageTransform
from maskrcnn.structures import Detections, RoIDetections, Targets

LOSS_NAMES = ("loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg", "loss_mask")


@dataclass
class BoxPass:
    """One inference pass up to the boxes: what the mask head and postprocess need next."""

    levels: list[Tensor]  # the pooled feature levels, (B, C, Hl, Wl) each
    image_sizes: list[tuple[int, int]]  # each image's (h, w) after resizing
    original_sizes: list[tuple[int, int]]  # each image's (H, W) as given
    detections: list[RoIDetections]  # per image, boxes in resized pixels, no masks yet


class MaskRCNN(nn.Module):
    def __init__(
        self,
        *,
        backbone: nn.Module,
        rpn: RegionProposalNetwork,
        roi_heads: RoIHeads,
        transform: ImageTransform,
        mask_paste: str = "torchvision",
        mask_threshold: float = 0.5,
    ) -> None:
        super().__init__()
        self.transform = transform
        self.backbone = backbone
        self.rpn = rpn
        self.roi_heads = roi_heads
        # model.roi_heads.mask_paste: "exact" aligns the grids and pastes pixel-exactly (ops/exact_paste.py)
        self.mask_paste = mask_paste
        # model.roi_heads.mask_threshold: masks stay probabilities here; whoever binarises reads this
        self.mask_threshold = mask_threshold

    @property
    def num_classes(self) -> int:
        """Classes including background, as the box predictor outputs them."""
        return int(self.roi_heads.box_predictor.cls_score.out_features)

    def budgets(self) -> DetectionBudgets:
        """The model's own inference budgets (model.rpn.*_nms_top_n_test, roi_heads.detections_per_img)."""
        return DetectionBudgets(self.rpn.pre_nms_top_n[1], self.rpn.post_nms_top_n[1], self.roi_heads.detections_per_img)

    def forward(
        self, images: list[Tensor], targets: list[Targets] | None = None, options: InferenceOptions = DEFAULT_OPTIONS
    ) -> dict[str, Tensor] | list[Detections]:
        check_images(images)
        if not self.training:
            boxes = self.detect_boxes(images, options)
            detections = self.predict_masks(boxes.levels, boxes.detections, boxes.image_sizes)
            return self.postprocess(detections, boxes.image_sizes, boxes.original_sizes, options)
        if targets is None:
            raise ValueError("MaskRCNN in training mode needs targets (one Targets per image)")
        check_targets(targets, images, self.num_classes, need_masks=self.roi_heads.mask_on)
        batch, resized_targets = self.transform(images, targets)
        features = self.backbone(batch.tensor)  # name -> (B, C, Hl, Wl)
        gt_boxes = [t.boxes for t in resized_targets]
        proposals, rpn_losses = self.rpn(batch, list(features.values()), gt_boxes)
        _, head_losses = self.roi_heads(features, proposals, batch.image_sizes, resized_targets)
        return {**rpn_losses, **head_losses}

    def detect_boxes(self, images: list[Tensor], options: InferenceOptions = DEFAULT_OPTIONS) -> BoxPass:
        """Inference up to the boxes: transform, backbone, RPN, box head (no masks yet)."""
        budgets = options.budgets or self.budgets()
        batch, _ = self.transform(images, scale=options.resize_scale)
        features = self.backbone(batch.tensor)  # name -> (B, C, Hl, Wl)
        budget = (budgets.pre_nms_top_n, budgets.post_nms_top_n)
        proposals, _ = self.rpn(batch, list(features.values()), None, budget)
        levels = [features[name] for name in self.roi_heads.feature_names]
        detections = self.roi_heads.detect_boxes(levels, proposals, batch.image_sizes, budgets.detections_per_img)
        return BoxPass(levels, batch.image_sizes, batch.original_sizes, detections)

    def predict_masks(
        self, levels: list[Tensor], detections: list[RoIDetections], image_sizes: list[tuple[int, int]]
    ) -> list[RoIDetections]:
        """(D, M, M) mask probabilities for each image's detections (aligned for the exact paste)."""
        if not self.roi_heads.mask_on:
            return detections
        return self.roi_heads.predict_masks(levels, detections, image_sizes, align_grids=self.mask_paste == "exact")

    def postprocess(
        self,
        detections: list[RoIDetections],
        image_sizes: list[tuple[int, int]],
        original_sizes: list[tuple[int, int]],
        options: InferenceOptions = DEFAULT_OPTIONS,
    ) -> list[Detections]:
        """Boxes back to each image's pixels; masks pasted the model's way unless options say not to."""
        paste = self.mask_paste if options.paste_masks else None
        return self.transform.postprocess(detections, image_sizes, original_sizes, paste)


def check_images(images: list[Tensor]) -> None:
    """One clear error for inputs that are not a non-empty list of (3, H, W) float tensors."""
    if not isinstance(images, (list, tuple)) or len(images) == 0:
        raise ValueError(f"images: expected a non-empty list of (3, H, W) float tensors, got {type(images).__name__}")
    for i, image in enumerate(images):
        if not isinstance(image, Tensor):
            raise TypeError(f"images[{i}]: expected a torch.Tensor, got {type(image).__name__}")
        if image.dim() != 3 or image.shape[0] != 3:
            raise ValueError(
                f"images[{i}]: expected shape (3, H, W) (RGB, channels first), got {tuple(image.shape)}"
            )
        if not image.is_floating_point():
            raise TypeError(
                f"images[{i}]: expected a float tensor with values in [0, 1], got dtype {image.dtype} "
                "(convert uint8 images with image.float() / 255)"
            )
        if image.shape[1] == 0 or image.shape[2] == 0:
            raise ValueError(f"images[{i}]: empty image of shape {tuple(image.shape)}")


def check_targets(targets: list[Targets], images: list[Tensor], num_classes: int, need_masks: bool) -> None:
    """One clear error for targets whose boxes, labels or masks are not what the model expects."""
    if len(targets) != len(images):
        raise ValueError(f"targets: expected one Targets per image ({len(images)}), got {len(targets)}")
    for i, (target, image) in enumerate(zip(targets, images)):
        boxes, labels = target.boxes, target.labels
        if boxes.dim() != 2 or boxes.shape[-1] != 4:
            raise ValueError(f"targets[{i}].boxes: expected shape (N, 4) x1 y1 x2 y2, got {tuple(boxes.shape)}")
        if not boxes.is_floating_point():
            raise TypeError(f"targets[{i}].boxes: expected a float tensor, got dtype {boxes.dtype}")
        if labels.dim() != 1 or labels.shape[0] != boxes.shape[0]:
            raise ValueError(
                f"targets[{i}].labels: expected shape ({boxes.shape[0]},) to match the boxes, got {tuple(labels.shape)}"
            )
        if labels.dtype != torch.int64:
            raise TypeError(f"targets[{i}].labels: expected dtype torch.int64, got {labels.dtype}")
        if need_masks:
            masks = target.masks
            expected = (boxes.shape[0], image.shape[-2], image.shape[-1])
            if masks is None:
                raise ValueError(f"targets[{i}].masks: the mask head needs masks of shape {expected}, got None")
            if tuple(masks.shape) != expected:
                raise ValueError(
                    f"targets[{i}].masks: expected shape (N, H, W) = {expected} (one mask per box, image size), "
                    f"got {tuple(masks.shape)}"
                )
    check_target_values(targets, num_classes)


def check_target_values(targets: list[Targets], num_classes: int) -> None:
    """Labels in 1..num_classes-1 and boxes with x2 > x1, y2 > y1: one clear error naming
    the first bad one. Every image's verdict reaches the host in one read (a GPU waits
    for it once per batch, not once per image and check)."""
    flags = [
        torch.stack([
            ((t.labels < 1) | (t.labels >= num_classes)).any(),
            ((t.boxes[:, 2] <= t.boxes[:, 0]) | (t.boxes[:, 3] <= t.boxes[:, 1])).any(),
        ])
        for t in targets
    ]
    if not flags or not any(torch.stack(flags).flatten().tolist()):  # the one read
        return
    for i, target in enumerate(targets):
        boxes, labels = target.boxes, target.labels
        if labels.numel() > 0:
            low, high = int(labels.min()), int(labels.max())
            if low < 1 or high >= num_classes:
                bad = low if low < 1 else high
                raise ValueError(
                    f"targets[{i}].labels: label {bad} is out of range; expected 1..{num_classes - 1} "
                    f"(num_classes = {num_classes} including background 0)"
                )
        if boxes.numel() > 0:
            degenerate = (boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])
            if bool(degenerate.any()):
                j = int(torch.where(degenerate)[0][0])
                raise ValueError(
                    f"targets[{i}].boxes[{j}] = {boxes[j].tolist()}: expected x2 > x1 and y2 > y1 (xyxy pixels)"
                )
