"""Region Proposal Network: objectness and box deltas for every anchor, then proposals.

Shape glossary: B images; L feature levels; A anchors per location of a level;
Hl, Wl a level's feature size; T = sum over levels of Hl*Wl*A anchors of one image;
G ground-truth boxes of one image; P proposals kept for one image.

Anchor order is (level, row, column, anchor) everywhere, as torchvision's, so head
outputs, anchors, labels and proposals line up index by index.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from maskrcnn.model.losses import rpn_losses
from maskrcnn.model.norm import make_norm
from maskrcnn.ops.anchors import AnchorGenerator
from maskrcnn.ops.boxes import BoxCoder, clip_boxes, large_enough
from maskrcnn.ops.matcher import Matcher
from maskrcnn.ops.sampler import sample_balanced_batch
from maskrcnn.ops.segment_nms import nms_per_image
from maskrcnn.structures import ImageBatch


class RPNHead(nn.Module):
    """`num_convs` shared 3x3 conv (+norm) + ReLU, then 1x1 convs to A logits and 4A deltas.

    Parameter names are torchvision's: `conv.{i}.0` (conv), `conv.{i}.1` (norm, if any),
    `cls_logits`, `bbox_pred`.
    """

    def __init__(self, *, in_channels: int, num_anchors: int, num_convs: int = 1, norm: str = "none") -> None:
        super().__init__()
        blocks = []
        for _ in range(num_convs):
            layers: list[nn.Module] = [
                nn.Conv2d(in_channels, in_channels, kernel_size=3, padding=1, bias=norm == "none")
            ]
            if norm != "none":
                layers.append(make_norm(norm, in_channels))
            layers.append(nn.ReLU(inplace=True))
            blocks.append(nn.Sequential(*layers))
        self.conv = nn.Sequential(*blocks)
        self.cls_logits = nn.Conv2d(in_channels, num_anchors, kernel_size=1)
        self.bbox_pred = nn.Conv2d(in_channels, num_anchors * 4, kernel_size=1)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, std=0.01)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, features: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        """Per level: (B, C, Hl, Wl) -> logits (B, A, Hl, Wl), deltas (B, A*4, Hl, Wl)."""
        logits, deltas = [], []
        for feature in features:
            hidden = self.conv(feature)
            logits.append(self.cls_logits(hidden))
            deltas.append(self.bbox_pred(hidden))
        return logits, deltas


def flatten_head_outputs(logits: list[Tensor], deltas: list[Tensor]) -> tuple[Tensor, Tensor]:
    """Per-level head outputs -> (B, T) logits and (B, T, 4) deltas in (level, row, col, anchor) order."""
    flat_logits, flat_deltas = [], []
    for level_logits, level_deltas in zip(logits, deltas):
        b, a, h, w = level_logits.shape
        flat_logits.append(level_logits.permute(0, 2, 3, 1).reshape(b, h * w * a))  # (B, A, H, W) -> (B, H*W*A)
        level_deltas = level_deltas.view(b, a, 4, h, w).permute(0, 3, 4, 1, 2)  # (B, A*4, H, W) -> (B, H, W, A, 4)
        flat_deltas.append(level_deltas.reshape(b, h * w * a, 4))
    return torch.cat(flat_logits, dim=1), torch.cat(flat_deltas, dim=1)


class RegionProposalNetwork(nn.Module):
    """Head + anchors -> proposals per image (and the two RPN losses in training)."""

    def __init__(
        self,
        *,
        head: RPNHead,
        anchor_generator: AnchorGenerator,
        box_coder: BoxCoder,
        matcher: Matcher,
        batch_size_per_image: int,
        positive_fraction: float,
        pre_nms_top_n: tuple[int, int],  # (training, testing), per level
        post_nms_top_n: tuple[int, int],  # (training, testing), per image
        nms_thresh: float,
        score_thresh: float = 0.0,
        min_size: float = 1e-3,
    ) -> None:
        super().__init__()
        self.head = head
        self.anchor_generator = anchor_generator
        self.box_coder = box_coder
        self.matcher = matcher
        self.batch_size_per_image = batch_size_per_image
        self.positive_fraction = positive_fraction
        self.pre_nms_top_n = pre_nms_top_n
        self.post_nms_top_n = post_nms_top_n
        self.nms_thresh = nms_thresh
        self.score_thresh = score_thresh
        self.min_size = min_size

    def anchors(self, images: ImageBatch, features: list[Tensor]) -> tuple[Tensor, list[int]]:
        """(T, 4) anchors of one image (the same for every image) and T per level."""
        padded_size = (int(images.tensor.shape[-2]), int(images.tensor.shape[-1]))
        feature_sizes = [(int(f.shape[-2]), int(f.shape[-1])) for f in features]
        per_level = self.anchor_generator(padded_size, feature_sizes, features[0].device, torch.float32)
        return torch.cat(per_level, dim=0), [int(a.shape[0]) for a in per_level]

    def budget(self) -> tuple[int, int]:
        """(proposals per level before NMS, per image after NMS) of the current mode."""
        mode = 0 if self.training else 1
        return self.pre_nms_top_n[mode], self.post_nms_top_n[mode]

    def select_proposals(
        self,
        boxes: Tensor,
        logits: Tensor,
        image_sizes: list[tuple[int, int]],
        anchors_per_level: list[int],
        budget: tuple[int, int],
    ) -> tuple[list[Tensor], list[Tensor]]:
        """Per level top-k on logits, sigmoid, clip, drop small/low boxes, NMS per level, top-n.

        boxes (B, T, 4) decoded, logits (B, T) -> per image (P, 4) boxes and (P,) scores;
        `budget`: (k per level before NMS, n per image after).
        """
        pre_n, post_n = budget
        logits = logits.detach()
        top_indices = []
        offset = 0
        for level_logits in logits.split(anchors_per_level, dim=1):
            k = min(pre_n, level_logits.shape[1])
            _, index = level_logits.topk(k, dim=1)  # (B, k)
            top_indices.append(index + offset)
            offset += level_logits.shape[1]
        index = torch.cat(top_indices, dim=1)  # (B, K), levels in contiguous segments
        batch_index = torch.arange(logits.shape[0], device=logits.device)[:, None]
        scores = torch.sigmoid(logits[batch_index, index])  # (B, K)
        boxes = boxes[batch_index, index]  # (B, K, 4)

        boxes = torch.stack([clip_boxes(b, size) for b, size in zip(boxes, image_sizes)])  # (B, K, 4)
        # small and low-scored boxes take no part in NMS (filtered inside it: on a GPU no
        # count to wait for)
        valid = large_enough(boxes.view(-1, 4), self.min_size).view(scores.shape) & (scores >= self.score_thresh)
        # training on a GPU: one copy back for the whole batch; otherwise NMS image by image
        keeps = nms_per_image(
            boxes, scores, valid, [t.shape[1] for t in top_indices], self.nms_thresh, post_n,
            one_copy=None if self.training else False,
        )
        return [b[keep] for b, keep in zip(boxes, keeps)], [s[keep] for s, keep in zip(scores, keeps)]

    def label_anchors(self, anchors: Tensor, gt_boxes: Tensor) -> tuple[Tensor, Tensor]:
        """(T,) labels 1 positive / 0 negative / -1 ignored, and (T,) matched gt index (clamped at 0)."""
        if gt_boxes.shape[0] == 0:  # background image: every anchor is negative
            zeros = torch.zeros(anchors.shape[0], dtype=torch.int64, device=anchors.device)
            return zeros.float(), zeros
        matched = self.matcher.match_boxes(gt_boxes, anchors)  # IoU (G, T) -> (T,), in chunks when large
        labels = torch.where(matched == Matcher.BETWEEN_THRESHOLDS, -1.0, (matched >= 0).float())
        return labels, matched.clamp(min=0)

    def losses(
        self, anchors: Tensor, logits: Tensor, deltas: Tensor, gt_boxes: list[Tensor]
    ) -> dict[str, Tensor]:
        """anchors (T, 4), logits (B, T), deltas (B, T, 4), gt_boxes per image (G, 4)."""
        num_anchors = anchors.shape[0]
        labelled = [self.label_anchors(anchors, boxes) for boxes in gt_boxes]  # per image (T,), (T,)
        samples = sample_balanced_batch(
            [labels for labels, _ in labelled], self.batch_size_per_image, self.positive_fraction
        )  # one read of the batch's counts
        all_labels, positives, negatives, target_deltas = [], [], [], []
        for i, (boxes, (labels, matched), (pos, neg)) in enumerate(zip(gt_boxes, labelled, samples)):
            if pos.numel() > 0:
                target_deltas.append(self.box_coder.encode(boxes[matched[pos]], anchors[pos]))
            all_labels.append(labels)
            positives.append(pos + i * num_anchors)
            negatives.append(neg + i * num_anchors)
        positive = torch.cat(positives)
        targets = torch.cat(target_deltas) if target_deltas else deltas.new_zeros((0, 4))
        objectness, box_reg = rpn_losses(
            logits.reshape(-1),
            deltas.reshape(-1, 4),
            torch.cat(all_labels).clamp(min=0.0),
            targets,
            positive,
            torch.cat(negatives),
        )
        return {"loss_objectness": objectness, "loss_rpn_box_reg": box_reg}

    def forward(
        self,
        images: ImageBatch,
        features: list[Tensor],
        gt_boxes: list[Tensor] | None = None,
        budget: tuple[int, int] | None = None,
    ) -> tuple[list[Tensor], dict[str, Tensor]]:
        """features per level (B, C, Hl, Wl) -> proposals per image (P, 4) (+ losses in training).
        `budget`: proposals per level before / per image after NMS (None: this mode's own)."""
        level_logits, level_deltas = self.head(features)
        anchors, anchors_per_level = self.anchors(images, features)  # (T, 4)
        logits, deltas = flatten_head_outputs(level_logits, level_deltas)  # (B, T), (B, T, 4)
        logits, deltas = logits.float(), deltas.float()  # boxes and losses in float32, also under autocast
        num_images = logits.shape[0]
        decoded = self.box_coder.decode(
            deltas.detach().reshape(-1, 4), anchors.repeat(num_images, 1)
        ).view(num_images, -1, 4)  # (B*T, 1, 4) -> (B, T, 4)
        proposals, _ = self.select_proposals(
            decoded, logits, images.image_sizes, anchors_per_level, budget or self.budget()
        )
        losses: dict[str, Tensor] = {}
        if self.training:
            if gt_boxes is None:
                raise ValueError("RPN in training mode needs the ground-truth boxes of every image")
            losses = self.losses(anchors, logits, deltas, gt_boxes)
        return proposals, losses
