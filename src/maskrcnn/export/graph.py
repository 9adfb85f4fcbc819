"""The inference path of a `MaskRCNN` written for export: one image in, four tensors out.

Shape glossary: H, W the input image size; h, w its size after resize; Hp, Wp padded to a
multiple of 32; A anchors per location; T_l anchors of level l; P proposals; K classes
including background; D detections; M the predicted mask side.

    image (H, W, 3) uint8 RGB
      -> boxes  (D, 4) float32 x1 y1 x2 y2 in image pixels
         labels (D,)   int64 1..K-1
         scores (D,)   float32, highest first (model's score threshold, at most 100)
         masks  (D, H, W) float32 probabilities (threshold at 0.5), or (D, M, M) inside
                each box when built with paste_masks=False

The masks are pasted the model's way (`model.mask_paste`: torchvision's, or "exact": grids
aligned and pasted pixel-exactly, export/exact_paste.py). With `test_augment` "flips" or
"dihedral" the graph runs the model's test-time augmentation (model/test_augment.py): one
box pass per orientation of the image, the detections mapped back and merged by per-class
NMS and rescored by agreement (export/agreement.py), then the mask head on every
orientation's features and the grids averaged.

`ExportableMaskRCNN` reuses the model's modules (backbone, FPN, heads: same weights, same
code) and redoes the glue between them with operations an exporter can record for any
image size: sizes as int64 tensors, one image instead of a list, the few special steps
through `export.onnx_ops` (TopK, NonMaxSuppression, RoiAlign). Called in
PyTorch it gives the model's detections (up to float rounding); the model's own forward
is left as it is (it stays the fast path).

Differences from the model's own arithmetic, all in float rounding only: per-level RPN NMS
and per-class NMS use the coordinate-offset form of batched NMS everywhere (the model uses
it up to 1000 boxes), and masks are aligned and pasted over the whole image with bilinear
weights max(0, 1 - |source - j|) (the model pastes inside each box with the same weights).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from maskrcnn.errors import UserError
from maskrcnn.export import exact_paste, onnx_ops
from maskrcnn.export.agreement import rescore_by_agreement
from maskrcnn.model.mask_rcnn import MaskRCNN
from maskrcnn.model.test_augment import (
    Orientation,
    orient_boxes,
    orient_image,
    orientations,
    unorient_boxes,
    unorient_mask_grids,
)
from maskrcnn.ops.poolers import assign_levels


class ExportError(UserError):
    """A model or option that the export cannot represent."""


class BoxPass(NamedTuple):
    """One orientation's run up to the boxes (the graph's counterpart of model.mask_rcnn.BoxPass)."""

    orientation: Orientation
    features: dict[str, Tensor]  # the pooled levels, name -> (1, C, H_l, W_l)
    size: Tensor  # (2,) int64 [h, w]: the oriented image after resize
    boxes: Tensor  # (D, 4) in the oriented, resized image
    scores: Tensor  # (D,)
    labels: Tensor  # (D,) int64


class ExportableMaskRCNN(nn.Module):
    """forward(image (H, W, 3) uint8) -> (boxes, labels, scores, masks); see the module docstring."""

    def __init__(self, model: MaskRCNN, *, paste_masks: bool = True, test_augment: str = "none") -> None:
        super().__init__()
        if model.training:
            raise ExportError("export: the model is in training mode; call model.eval() first")
        heads = model.roi_heads
        for name, pooler in (("box", heads.box_pooler), ("mask", heads.mask_pooler)):
            if pooler is not None and pooler.pool != "align":
                raise ExportError(
                    f"export: model.roi_heads.{name} pooler uses RoIPool ({pooler.pool!r}); only RoIAlign maps "
                    "onto an ONNX operator with the same result"
                )
        if not heads.mask_on:
            raise ExportError("export: the model has no mask branch; exporting box-only models is not supported")
        transform = model.transform
        self.min_size = float(transform.min_size[-1])
        self.max_size = float(transform.max_size)
        self.fixed_scale = float(transform.fixed_scale)  # > 0: every image scaled by it (recipe nuclei)
        self.size_divisible = int(transform.size_divisible)
        self.register_buffer("image_mean", transform.image_mean.detach().clone().view(3, 1, 1), persistent=False)
        self.register_buffer("image_std", transform.image_std.detach().clone().view(3, 1, 1), persistent=False)
        self.backbone = model.backbone
        self.rpn_head = model.rpn.head
        self.rpn = model.rpn
        self.roi_heads = heads
        self.paste_masks = paste_masks
        self.mask_paste = model.mask_paste  # "torchvision" or "exact"
        self.orientations = orientations(test_augment)  # [identity] for "none"
        cells = model.rpn.anchor_generator._cell_anchors(torch.float32, torch.device("cpu"))
        for level, cell in enumerate(cells):
            self.register_buffer(f"cell_anchors_{level}", cell.clone(), persistent=False)  # (A, 4)
        self.num_anchor_levels = len(cells)

    # ---- image -> padded batch --------------------------------------------------------

    def resized_size(self, image_size: Tensor) -> Tensor:
        """(2,) int64 [H, W] -> (2,) int64 [h, w], the model transform's arithmetic.

        The scale is computed in float32 (as torchvision), the product side * scale in
        float64 and floored, as F.interpolate(recompute_scale_factor=True) does in Python.
        """
        sides = image_size.to(torch.float32)
        # fixed_scale: the transform's short-side target is fixed_scale x the short side
        short_target = self.fixed_scale * sides.min() if self.fixed_scale > 0 else self.min_size
        scale = torch.minimum(short_target / sides.min(), self.max_size / sides.max())  # float32 ()
        return torch.floor(image_size.to(torch.float64) * scale.to(torch.float64)).to(torch.int64)

    def preprocess(self, image: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(3, H, W) uint8 -> padded (1, 3, Hp, Wp) float, [H, W] and [h, w] (int64 (2,)).

        The bilinear resize (F.interpolate, align_corners=False, ratio input / output size)
        and the zero padding are one product rows (Hp, H) @ image @ columns (W, Wp): plain
        MatMuls that every runtime computes alike (OpenVINO 2026.4 fails on a Resize whose
        output size is computed at run time).
        """
        original_size = torch._shape_as_tensor(image)[1:]  # (2,) [H, W]
        pixels = image.to(torch.float32) / 255.0  # (3, H, W) in [0, 1]
        normalized = (pixels - self.image_mean) / self.image_std
        size = self.resized_size(original_size)
        stride = self.size_divisible
        padded_size = torch.div(size + (stride - 1), stride, rounding_mode="floor") * stride
        zero = torch.zeros_like(size[:1])
        rows = bilinear_paste_weights(zero, size[:1], original_size[0], torch.arange(padded_size[0]))[0]  # (Hp, H)
        cols = bilinear_paste_weights(zero, size[1:], original_size[1], torch.arange(padded_size[1]))[0]  # (Wp, W)
        batch = rows @ normalized @ cols.t()  # (3, Hp, Wp), zero below h and right of w
        return batch[None], original_size, size

    # ---- RPN ------------------------------------------------------------------------------

    def level_anchors(self, level: int, feature: Tensor, padded_size: Tensor) -> Tensor:
        """(h_l * w_l * A, 4) anchors of one level, (row, column, anchor) order, float32."""
        grid = torch._shape_as_tensor(feature)[2:]  # (2,) [h_l, w_l]
        strides = torch.div(padded_size, grid, rounding_mode="floor")  # torchvision: padded // grid
        shifts_y = torch.arange(feature.shape[-2], dtype=torch.int64) * strides[0]  # (h_l,)
        shifts_x = torch.arange(feature.shape[-1], dtype=torch.int64) * strides[1]  # (w_l,)
        shift_y, shift_x = torch.meshgrid(shifts_y, shifts_x, indexing="ij")  # (h_l, w_l)
        shift_x, shift_y = shift_x.reshape(-1), shift_y.reshape(-1)
        shifts = torch.stack((shift_x, shift_y, shift_x, shift_y), dim=1).to(torch.float32)  # (h_l*w_l, 4)
        cell = getattr(self, f"cell_anchors_{level}")  # (A, 4)
        return (shifts[:, None, :] + cell[None, :, :]).reshape(-1, 4)

    def propose(self, batch: Tensor, features: list[Tensor], size: Tensor) -> Tensor:
        """Padded batch, features of every RPN level -> (P, 4) proposals in resized pixels."""
        rpn = self.rpn
        level_logits, level_deltas = self.rpn_head(features)
        padded_size = torch._shape_as_tensor(batch)[2:]
        boxes, scores, levels = [], [], []
        for level, (feature, logits, deltas) in enumerate(zip(features, level_logits, level_deltas)):
            logits = logits[0].permute(1, 2, 0).reshape(-1).float()  # (A, h, w) -> (T_l,)
            num_cell = getattr(self, f"cell_anchors_{level}").shape[0]  # A
            deltas = deltas[0].reshape(num_cell, 4, -1)  # (A*4, h, w) -> (A, 4, h*w)
            deltas = deltas.permute(2, 0, 1).reshape(-1, 4).float()  # (T_l, 4)
            top_logits, top = onnx_ops.topk_at_most(logits, rpn.pre_nms_top_n[1])
            anchors = self.level_anchors(level, feature, padded_size)[top]
            boxes.append(rpn.box_coder.decode(deltas[top], anchors).reshape(-1, 4))
            scores.append(torch.sigmoid(top_logits))
            levels.append(torch.full_like(top, level))
        boxes_all = clip_to_size(torch.cat(boxes), size)  # (sum k_l, 4)
        scores_all, levels_all = torch.cat(scores), torch.cat(levels)
        widths, heights = boxes_all[:, 2] - boxes_all[:, 0], boxes_all[:, 3] - boxes_all[:, 1]
        keep = torch.where((widths >= rpn.min_size) & (heights >= rpn.min_size) & (scores_all >= rpn.score_thresh))[0]
        boxes_all, scores_all, levels_all = boxes_all[keep], scores_all[keep], levels_all[keep]
        keep = batched_nms(boxes_all, scores_all, levels_all, rpn.nms_thresh, rpn.post_nms_top_n[1])
        return boxes_all[keep]

    # ---- RoI heads --------------------------------------------------------------------

    def pool(self, pooler: nn.Module, features: dict[str, Tensor], boxes: Tensor, size: Tensor) -> Tensor:
        """(R, 4) boxes in an image resized to size [h, w] -> (R, C, S, S), each from the level
        its size selects (FPN eq. 1).

        Each level's scale is what the model's poolers infer (ops.poolers.infer_scale):
        2 ** round(log2(H_l / h)), from the level's height and the unpadded height, so it is
        computed in the graph (a wide image's padding can make it differ from the stride),
        and the boxes are scaled by it (a power of two: exact) for RoiAlign at scale 1.
        """
        names = self.roi_heads.feature_names
        height = size[0].to(torch.float32)
        exponents = [  # 0-d float32: -2 for P2 (scale 1/4), ...
            torch.round(torch.log2(torch._shape_as_tensor(features[name])[2].to(torch.float32) / height))
            for name in names
        ]

        def align(name: str, level_boxes: Tensor, exponent: Tensor) -> Tensor:
            batch_index = torch.zeros_like(level_boxes[:, 0], dtype=torch.int64)
            return onnx_ops.roi_align(
                features[name], level_boxes * torch.pow(2.0, exponent), batch_index, pooler.output_size, 1.0,
                pooler.sampling_ratio, pooler.aligned,
            )

        if len(names) == 1:
            return align(names[0], boxes, exponents[0])
        levels = assign_levels(boxes, -exponents[0], -exponents[-1], pooler.canonical_scale, pooler.canonical_level)  # (R,)
        pooled, order = [], []
        for level, (name, exponent) in enumerate(zip(names, exponents)):
            members = torch.where(levels == level)[0]
            pooled.append(align(name, boxes[members], exponent))
            order.append(members)
        return torch.cat(pooled)[torch.argsort(torch.cat(order))]  # back to the order of `boxes`

    def detect(self, features: dict[str, Tensor], proposals: Tensor, size: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(P, 4) proposals -> boxes (D, 4) in resized pixels, scores (D,), labels (D,) int64."""
        heads = self.roi_heads
        pooled = heads.shared_head(self.pool(heads.box_pooler, features, proposals, size))
        class_logits, box_deltas = heads.box_predictor(heads.box_head(pooled))
        class_logits, box_deltas = class_logits.float(), box_deltas.float()
        num_classes = class_logits.shape[-1]
        boxes = clip_to_size(heads.box_coder.decode(box_deltas, proposals), size)  # (P, K, 4)
        scores = F.softmax(class_logits, dim=-1)  # (P, K)
        labels = torch.arange(num_classes, dtype=torch.int64).view(1, -1).expand_as(scores)
        boxes, scores, labels = boxes[:, 1:].reshape(-1, 4), scores[:, 1:].reshape(-1), labels[:, 1:].reshape(-1)
        widths, heights = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        keep = torch.where((scores > heads.score_thresh) & (widths >= 1e-2) & (heights >= 1e-2))[0]
        boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
        keep = batched_nms(boxes, scores, labels, heads.nms_thresh, heads.detections_per_img)
        return boxes[keep], scores[keep], labels[keep]

    def mask_probabilities(self, features: dict[str, Tensor], boxes: Tensor, labels: Tensor, size: Tensor) -> Tensor:
        """(D, 4) boxes in resized pixels, (D,) labels -> (D, M, M) probabilities of that class."""
        heads = self.roi_heads
        pooled = heads.shared_head(self.pool(heads.mask_pooler, features, boxes, size))
        logits = heads.mask_predictor(heads.mask_head(pooled)).float()  # (D, K, M, M)
        if heads.mask_loss_kind == "softmax":
            logits = logits.softmax(dim=1)
        side = logits.shape[-1]
        index = labels.view(-1, 1, 1, 1).expand(-1, 1, side, side)  # (D, 1, M, M)
        chosen = logits.gather(1, index)[:, 0]  # (D, M, M)
        chosen = chosen if heads.mask_loss_kind == "softmax" else chosen.sigmoid()
        # exact paste: grids resampled where training put them (the model's align_grids)
        return exact_paste.align_mask_grids(chosen, boxes) if self.mask_paste == "exact" else chosen

    # ---- all of it ----------------------------------------------------------------------

    def box_pass(self, image: Tensor, orientation: Orientation) -> BoxPass:
        """(3, H, W) uint8 -> one orientation's detections (the model's detect_boxes)."""
        batch, _, size = self.preprocess(orient_image(image, orientation))
        features = self.backbone(batch)  # name -> (1, C, H_l, W_l)
        proposals = self.propose(batch, list(features.values()), size)
        pooled_features = {name: features[name] for name in self.roi_heads.feature_names}
        boxes, scores, labels = self.detect(pooled_features, proposals, size)
        return BoxPass(orientation, pooled_features, size, boxes, scores, labels)

    def merge(self, passes: list[BoxPass]) -> tuple[Tensor, Tensor, Tensor]:
        """Every pass's detections in the image's resized frame -> merged (boxes, scores, labels),
        as model.test_augment.predict_augmented merges them."""
        per_pass = [
            (unorient_boxes(p.boxes, size_pair(p.size), p.orientation), p.scores, p.labels) for p in passes
        ]
        boxes = torch.cat([b for b, _, _ in per_pass])  # (A*D', 4)
        scores = torch.cat([s for _, s, _ in per_pass])
        labels = torch.cat([lab for _, _, lab in per_pass])
        heads = self.roi_heads
        keep = batched_nms(boxes, scores, labels, heads.nms_thresh, heads.detections_per_img)
        return rescore_by_agreement(boxes[keep], labels[keep], per_pass)

    def forward(self, image: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        image = image.permute(2, 0, 1)  # (3, H, W) uint8
        original_size = torch._shape_as_tensor(image)[1:]  # (2,) [H, W]
        passes = [self.box_pass(image, o) for o in self.orientations]
        size = passes[0].size  # the image's own (unoriented) resized size
        if len(passes) == 1:
            boxes, scores, labels = passes[0].boxes, passes[0].scores, passes[0].labels
        else:
            boxes, scores, labels = self.merge(passes)
        probabilities = None  # (D, M, M): the mean over the passes of their grids, mapped back
        for p in passes:
            oriented = orient_boxes(boxes, size_pair(size), p.orientation)
            grids = unorient_mask_grids(self.mask_probabilities(p.features, oriented, labels, p.size), p.orientation)
            probabilities = grids if probabilities is None else probabilities + grids
        if len(passes) > 1:
            probabilities = probabilities / len(passes)
        ratio = original_size.to(torch.float32) / size.to(torch.float32)  # (2,) [h ratio, w ratio]
        boxes = boxes * torch.stack((ratio[1], ratio[0], ratio[1], ratio[0]))  # back to image pixels
        if self.paste_masks and self.mask_paste == "exact":
            probabilities = exact_paste.paste_masks_exact(probabilities, boxes, original_size)  # (D, H, W)
        elif self.paste_masks:
            probabilities = paste_masks(probabilities, boxes, original_size)  # (D, H, W)
        return boxes, labels, scores, probabilities


def size_pair(size: Tensor) -> tuple[Tensor, Tensor]:
    """(2,) int64 [h, w] -> (h, w) float32 scalars, for the model's orientation helpers."""
    size = size.to(torch.float32)
    return size[0], size[1]


def clip_to_size(boxes: Tensor, size: Tensor) -> Tensor:
    """Clamp (..., 4) boxes into an image of size (2,) [h, w]: x to [0, w], y to [0, h]."""
    limits = torch.stack((size[1], size[0], size[1], size[0])).to(boxes.dtype)  # (4,)
    return torch.minimum(boxes.clamp(min=0), limits)


def batched_nms(boxes: Tensor, scores: Tensor, groups: Tensor, iou_threshold: float, max_kept: int) -> Tensor:
    """NMS within each group (N,) int64: boxes of different groups are moved apart by
    group * (largest coordinate + 1), so one NMS never lets them overlap (torchvision's form)."""
    largest = torch.cat([boxes.reshape(-1), boxes.new_zeros(1)]).max()  # 0 when there are no boxes
    offsets = groups.to(boxes.dtype) * (largest + 1.0)  # (N,)
    return onnx_ops.nms(boxes + offsets[:, None], scores, iou_threshold, max_kept)


def bilinear_paste_weights(starts: Tensor, lengths: Tensor, side: int | Tensor, positions: Tensor) -> Tensor:
    """(D, L, side) weights of the `side` source pixels for every target position (L,).

    Source d is resized bilinearly (align_corners=False) to lengths[d] pixels placed from
    starts[d]; positions outside get weight 0 (F.interpolate's sampling, as a kernel:
    weight max(0, 1 - |source coordinate - pixel|), coordinates clamped to the source).
    """
    side_f = side.to(torch.float32) if isinstance(side, Tensor) else torch.tensor(float(side))
    scale = side_f / lengths.to(torch.float32)  # (D,)
    offset = (positions[None, :] - starts[:, None]).to(torch.float32)  # (D, L)
    source = torch.minimum(((offset + 0.5) * scale[:, None] - 0.5).clamp(min=0.0), side_f - 1.0)  # (D, L)
    taps = torch.arange(side, dtype=torch.float32)  # (side,)
    weights = (1.0 - (source[:, :, None] - taps).abs()).clamp(min=0.0)  # (D, L, side)
    inside = (offset >= 0) & (offset < lengths[:, None].to(torch.float32))  # (D, L)
    return weights * inside[:, :, None].to(torch.float32)


def paste_masks(masks: Tensor, boxes: Tensor, image_size: Tensor, padding: int = 1) -> Tensor:
    """(D, M, M) probabilities, (D, 4) boxes in image pixels -> (D, H, W), torchvision's paste.

    Each mask gets `padding` zero pixels per side, its box is scaled about the centre by
    (M + 2p) / M and truncated to integers, and the mask is resized onto
    (y2 - y1 + 1, x2 - x1 + 1) pixels at (x1, y1): rows @ mask @ columns^T.
    """
    side = masks.shape[-1] + 2 * padding
    padded = F.pad(masks, (padding, padding, padding, padding))  # (D, M', M')
    scale = side / (side - 2.0 * padding)
    half_w = (boxes[:, 2] - boxes[:, 0]) * 0.5 * scale
    half_h = (boxes[:, 3] - boxes[:, 1]) * 0.5 * scale
    center_x = (boxes[:, 2] + boxes[:, 0]) * 0.5
    center_y = (boxes[:, 3] + boxes[:, 1]) * 0.5
    x1, x2 = (center_x - half_w).to(torch.int64), (center_x + half_w).to(torch.int64)  # truncation, as .long()
    y1, y2 = (center_y - half_h).to(torch.int64), (center_y + half_h).to(torch.int64)
    widths, heights = (x2 - x1 + 1).clamp(min=1), (y2 - y1 + 1).clamp(min=1)
    rows = torch.arange(image_size[0], dtype=torch.int64)  # (H,)
    cols = torch.arange(image_size[1], dtype=torch.int64)  # (W,)
    row_weights = bilinear_paste_weights(y1, heights, side, rows)  # (D, H, M')
    col_weights = bilinear_paste_weights(x1, widths, side, cols)  # (D, W, M')
    return row_weights @ padded @ col_weights.transpose(1, 2)  # (D, H, W)
