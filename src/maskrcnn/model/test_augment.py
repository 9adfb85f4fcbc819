"""Test-time augmentation: predict on flipped (and transposed) copies of each image, merge.

Shape glossary: B images; D detections of one image after merging; A orientations;
M mask side; h, w an image's size after the model's resize.

`TestTimeAugmentation` wraps a MaskRCNN (built by model/build.py `with_test_augment`;
the model never imports it) and runs the model's own inference steps on each copy.
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

import torch
from torch import Tensor, nn

from maskrcnn.config import check_test_augment
from maskrcnn.model.inference_options import DEFAULT_OPTIONS, InferenceOptions
from maskrcnn.model.mask_rcnn import BoxPass, MaskRCNN
from maskrcnn.ops.boxes import box_iou
from maskrcnn.ops.nms import batched_nms
from maskrcnn.structures import Detections, RoIDetections, Targets

AGREEMENT_IOU = 0.5  # a pass agrees with a merged detection when it has a box this close


@dataclass(frozen=True)
class Orientation:
    """Applied to an image in this order: transpose (swap rows and columns), then mirror
    left-right, then up-down."""

    transpose: bool = False
    mirror_x: bool = False
    mirror_y: bool = False


def orientations(mode: str) -> list[Orientation]:
    check_test_augment(mode)
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
    boxes: BoxPass  # boxes in the oriented images, no masks yet


class TestTimeAugmentation(nn.Module):
    """A MaskRCNN that, in eval mode, predicts on every orientation of `mode` and merges
    them; in training mode it is the model itself. Its state is the model's."""

    def __init__(self, model: MaskRCNN, mode: str) -> None:
        super().__init__()
        orientations(mode)  # a clear error for an unknown mode
        self.model = model
        self.mode = mode
        self.train(model.training)

    def forward(
        self, images: list[Tensor], targets: list[Targets] | None = None, options: InferenceOptions = DEFAULT_OPTIONS
    ) -> dict[str, Tensor] | list[Detections]:
        if self.model.training:  # the model's own mode decides: the wrapper holds no state
            return self.model(images, targets)
        return predict_augmented(self.model, images, self.mode, options)


@torch.no_grad()
def predict_augmented(
    model: MaskRCNN, images: list[Tensor], mode: str, options: InferenceOptions = DEFAULT_OPTIONS
) -> list[Detections]:
    """Inference on every orientation of `mode` (list of B (3, H, W) images), merged."""
    passes = [
        AugmentedPass(o, model.detect_boxes([orient_image(image, o) for image in images], options))
        for o in orientations(mode)
    ]
    detections_per_img = (options.budgets or model.budgets()).detections_per_img
    nms_thresh = model.roi_heads.nms_thresh
    identity_sizes = passes[0].boxes.image_sizes  # each image's (h, w) after resizing, unoriented
    merged: list[RoIDetections] = []
    for i in range(len(images)):
        per_pass = [  # this image's detections of every pass, in the image's own frame
            RoIDetections(
                boxes=unorient_boxes(p.boxes.detections[i].boxes, p.boxes.image_sizes[i], p.orientation),
                scores=p.boxes.detections[i].scores, labels=p.boxes.detections[i].labels,
            )
            for p in passes
        ]
        boxes = torch.cat([d.boxes for d in per_pass])  # (A*D', 4)
        scores = torch.cat([d.scores for d in per_pass])
        labels = torch.cat([d.labels for d in per_pass])
        keep = batched_nms(boxes, scores, labels, nms_thresh)[:detections_per_img]
        kept = RoIDetections(boxes=boxes[keep], scores=scores[keep], labels=labels[keep])
        merged.append(rescore_by_agreement(kept, per_pass))

    if model.roi_heads.mask_on:
        summed: list[Tensor | None] = [None] * len(images)
        for p in passes:
            oriented = [
                RoIDetections(boxes=orient_boxes(d.boxes, identity_sizes[i], p.orientation), scores=d.scores, labels=d.labels)
                for i, d in enumerate(merged)
            ]
            for i, d in enumerate(model.predict_masks(p.boxes.levels, oriented, p.boxes.image_sizes)):
                grids = unorient_mask_grids(d.masks, p.orientation)  # (D, M, M)
                summed[i] = grids if summed[i] is None else summed[i] + grids
        merged = [
            RoIDetections(boxes=d.boxes, scores=d.scores, labels=d.labels, masks=total / len(passes))
            for d, total in zip(merged, summed)
        ]
    return model.postprocess(merged, identity_sizes, passes[0].boxes.original_sizes, options)


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
