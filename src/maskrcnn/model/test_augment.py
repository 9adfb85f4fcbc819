"""Test-time augmentation: predict on flipped (and transposed) copies of each image, merge.

Shape glossary: B images; D detections of one image after merging; A orientations;
M mask side; h, w an image's size after the model's resize.

`model.test_augment` (config) picks the copies: "none" (one pass), "flips" (the image,
mirrored left-right, up-down, and both: 4 passes) or "dihedral" (those 4 and their
transposes: all 8 orientations, for images with no up or left, such as microscopy).

Merging, as detectron2's test-time augmentation merges Mask R-CNN outputs, with one
change to the scores:
- boxes: every orientation's detections, mapped back to the image, are pooled and go
  through the per-class NMS of the RoI heads again (model.roi_heads.nms_thresh), keeping
  at most detections_per_img;
- scores: the mean over the orientations of each one's best-matching score (0 where an
  orientation did not find the object: `rescore_by_agreement`). Plain NMS keeps the
  highest of the A scores, so an object that one orientation alone believed in kept its
  score; on generated nuclei that cost 0.02-0.04 of the DSB score;
- masks: the mask head runs on each orientation's own features for the merged boxes
  (mapped into that orientation), and the A (D, M, M) probability grids, mapped back,
  are averaged.

Mapping: in an image of width w, mirroring left-right sends x to w - x (continuous pixel
coordinates, so box [x1, x2] becomes [w - x2, w - x1] and a box's M x M mask grid is
mirrored with it); a transpose swaps x and y (and the grid's rows and columns).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from maskrcnn.errors import UserError
from maskrcnn.ops.boxes import box_iou
from maskrcnn.ops.nms import batched_nms
from maskrcnn.structures import Detections, RoIDetections

if TYPE_CHECKING:
    from maskrcnn.model.mask_rcnn import MaskRCNN

TEST_AUGMENT_MODES = ("none", "flips", "dihedral")
AGREEMENT_IOU = 0.5  # a pass agrees with a merged detection when it has a box this close


class TestAugmentError(UserError):
    """An unknown test-augmentation mode."""


@dataclass(frozen=True)
class Orientation:
    """Applied to an image in this order: transpose (swap rows and columns), then mirror
    left-right, then up-down."""

    transpose: bool = False
    mirror_x: bool = False
    mirror_y: bool = False


def orientations(mode: str) -> list[Orientation]:
    if mode not in TEST_AUGMENT_MODES:
        raise TestAugmentError(f"model.test_augment: expected one of {', '.join(TEST_AUGMENT_MODES)}, got {mode!r}")
    flips = [Orientation(False, x, y) for y in (False, True) for x in (False, True)]
    if mode == "none":
        return flips[:1]
    if mode == "flips":
        return flips
    return flips + [Orientation(True, o.mirror_x, o.mirror_y) for o in flips]


def orient_image(image: Tensor, o: Orientation) -> Tensor:
    """(C, H, W) -> (C, H, W), or (C, W, H) when transposed."""
    if o.transpose:
        image = image.transpose(-2, -1)
    dims = [d for d, on in ((-1, o.mirror_x), (-2, o.mirror_y)) if on]
    return image.flip(dims) if dims else image


def orient_boxes(boxes: Tensor, size: tuple[int, int], o: Orientation) -> Tensor:
    """(D, 4) x1 y1 x2 y2 in an image of `size` (h, w) -> the same boxes in the oriented image."""
    height, width = size
    if o.transpose:
        boxes = boxes[:, [1, 0, 3, 2]]
        height, width = width, height
    x1, y1, x2, y2 = boxes.unbind(-1)
    if o.mirror_x:
        x1, x2 = width - x2, width - x1
    if o.mirror_y:
        y1, y2 = height - y2, height - y1
    return torch.stack([x1, y1, x2, y2], dim=-1)


def unorient_boxes(boxes: Tensor, oriented_size: tuple[int, int], o: Orientation) -> Tensor:
    """Inverse of orient_boxes: (D, 4) boxes of the oriented image (of `oriented_size`) -> the image's."""
    height, width = oriented_size
    x1, y1, x2, y2 = boxes.unbind(-1)
    if o.mirror_x:
        x1, x2 = width - x2, width - x1
    if o.mirror_y:
        y1, y2 = height - y2, height - y1
    boxes = torch.stack([x1, y1, x2, y2], dim=-1)
    return boxes[:, [1, 0, 3, 2]] if o.transpose else boxes


def unorient_mask_grids(grids: Tensor, o: Orientation) -> Tensor:
    """(D, M, M) mask probabilities on oriented boxes -> on the same boxes in the image."""
    dims = [d for d, on in ((-1, o.mirror_x), (-2, o.mirror_y)) if on]
    if dims:
        grids = grids.flip(dims)
    return grids.transpose(-2, -1) if o.transpose else grids


@dataclass
class AugmentedPass:
    """One orientation's run of the model over the batch."""

    orientation: Orientation
    levels: list[Tensor]  # the pooled feature levels, (B, C, Hl, Wl) each
    image_sizes: list[tuple[int, int]]  # each oriented image's (h, w) after resizing
    detections: list[RoIDetections]  # per image, boxes in the oriented image, no masks yet


@torch.no_grad()
def predict_augmented(model: MaskRCNN, images: list[Tensor], mode: str) -> list[Detections]:
    """Inference on every orientation of `mode` (list of B (3, H, W) images), merged."""
    heads = model.roi_heads
    passes: list[AugmentedPass] = []
    for o in orientations(mode):
        batch, _ = model.transform([orient_image(image, o) for image in images])
        features = model.backbone(batch.tensor)  # name -> (B, C, Hl, Wl)
        proposals, _ = model.rpn(batch, list(features.values()), None)
        levels = [features[name] for name in heads.feature_names]
        detections = heads.detect_boxes(levels, proposals, batch.image_sizes)
        passes.append(AugmentedPass(o, levels, batch.image_sizes, detections))

    identity_sizes = passes[0].image_sizes  # each image's (h, w) after resizing, unoriented
    merged: list[RoIDetections] = []
    for i in range(len(images)):
        per_pass = [  # this image's detections of every pass, in the image's own frame
            RoIDetections(
                boxes=unorient_boxes(p.detections[i].boxes, p.image_sizes[i], p.orientation),
                scores=p.detections[i].scores, labels=p.detections[i].labels,
            )
            for p in passes
        ]
        boxes = torch.cat([d.boxes for d in per_pass])  # (A*D', 4)
        scores = torch.cat([d.scores for d in per_pass])
        labels = torch.cat([d.labels for d in per_pass])
        keep = batched_nms(boxes, scores, labels, heads.nms_thresh)[: heads.detections_per_img]
        kept = RoIDetections(boxes=boxes[keep], scores=scores[keep], labels=labels[keep])
        merged.append(rescore_by_agreement(kept, per_pass))

    if heads.mask_on:
        summed: list[Tensor | None] = [None] * len(images)
        for p in passes:
            oriented = [
                RoIDetections(boxes=orient_boxes(d.boxes, identity_sizes[i], p.orientation), scores=d.scores, labels=d.labels)
                for i, d in enumerate(merged)
            ]
            for i, d in enumerate(heads.predict_masks(p.levels, oriented, p.image_sizes)):
                grids = unorient_mask_grids(d.masks, p.orientation)  # (D, M, M)
                summed[i] = grids if summed[i] is None else summed[i] + grids
        merged = [
            RoIDetections(boxes=d.boxes, scores=d.scores, labels=d.labels, masks=total / len(passes))
            for d, total in zip(merged, summed)
        ]
    original_sizes = [(int(image.shape[-2]), int(image.shape[-1])) for image in images]
    return model.transform.postprocess(merged, identity_sizes, original_sizes)


def rescore_by_agreement(kept: RoIDetections, per_pass: list[RoIDetections]) -> RoIDetections:
    """Each kept detection's score becomes the mean over the A passes of the score of that
    pass's best-overlapping detection of the same class (box IoU >= AGREEMENT_IOU), 0 where
    a pass has none; sorted again. A nucleus found in every orientation keeps its score; a
    detection that only one orientation made drops to a quarter of it (flips)."""
    total = torch.zeros_like(kept.scores)  # (D,)
    for dets in per_pass:
        if len(dets) == 0 or len(kept) == 0:
            continue
        iou = box_iou(kept.boxes, dets.boxes) * (kept.labels[:, None] == dets.labels[None, :])  # (D, D')
        best, index = iou.max(dim=1)  # (D,)
        total += torch.where(best >= AGREEMENT_IOU, dets.scores[index], torch.zeros_like(best))
    scores = total / max(1, len(per_pass))
    order = scores.argsort(descending=True, stable=True)
    return RoIDetections(boxes=kept.boxes[order], scores=scores[order], labels=kept.labels[order])
