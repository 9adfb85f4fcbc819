"""RoI heads: pool features for proposals, classify and refine boxes, predict masks.

Shape glossary: B images; L pooled feature levels; P proposals of one image; R RoIs of
the batch (all images, image-major); K classes including background; S pooled side;
D detections of one image; G ground-truth instances of one image; M mask side.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from maskrcnn.model.losses import fast_rcnn_losses, mask_loss, mask_probabilities
from maskrcnn.ops.boxes import BoxCoder, box_iou, clip_boxes, remove_small_boxes
from maskrcnn.ops.exact_paste import align_mask_grids
from maskrcnn.ops.mask_targets import mask_targets_batch
from maskrcnn.ops.matcher import Matcher
from maskrcnn.ops.nms import batched_nms
from maskrcnn.ops.poolers import infer_scale, multilevel_roi_align
from maskrcnn.ops.sampler import SampledIndices, sample_balanced_batch
from maskrcnn.structures import ResizedTargets, RoIDetections


@dataclass
class SampledRoIs:
    """The RoIs of one image chosen for the training losses, foreground first.

    The sampler returns the foreground (positive) RoIs before the background ones, so the
    first `num_foreground` rows of every field are the foreground: the box-regression and
    mask losses read only those. S sampled RoIs; F = num_foreground.
    """

    boxes: Tensor  # (S, 4) proposal (or gt) boxes in resized-image pixels
    labels: Tensor  # (S,) int64 gt class of each RoI; 0 background
    matched_gt: Tensor  # (S,) int64 index of the matched gt instance (0 for background)
    target_deltas: Tensor  # (F, 4) box-regression targets of the foreground RoIs
    num_foreground: int

    @property
    def foreground_boxes(self) -> Tensor:  # (F, 4)
        return self.boxes[: self.num_foreground]

    @property
    def foreground_labels(self) -> Tensor:  # (F,)
        return self.labels[: self.num_foreground]

    @property
    def foreground_matched_gt(self) -> Tensor:  # (F,)
        return self.matched_gt[: self.num_foreground]


def foreground_rows(samples: list[SampledRoIs], device: torch.device) -> Tensor:
    """(F,) int64 rows of the foreground RoIs in the batch's image-major rows, from the
    counts the host already has (each image's foreground comes first)."""
    rows, offset = [], 0
    for sample in samples:
        rows.append(torch.arange(offset, offset + sample.num_foreground, device=device))
        offset += sample.boxes.shape[0]
    return torch.cat(rows)


class RoIPooler(nn.Module):
    """RoIAlign (or RoIPool) of boxes from the level their size selects: -> (R, C, S, S).

    Level scales are inferred from feature size / largest image size, as torchvision's
    MultiScaleRoIAlign does.
    """

    def __init__(
        self,
        *,
        output_size: int,
        sampling_ratio: int,
        aligned: bool,
        canonical_scale: int = 224,
        canonical_level: int = 4,
        pool: str = "align",
    ) -> None:
        super().__init__()
        self.output_size = output_size
        self.sampling_ratio = sampling_ratio
        self.aligned = aligned
        self.canonical_scale = canonical_scale
        self.canonical_level = canonical_level
        self.pool = pool

    def forward(self, features: list[Tensor], boxes: list[Tensor], image_sizes: list[tuple[int, int]]) -> Tensor:
        largest = (max(h for h, _ in image_sizes), max(w for _, w in image_sizes))
        scales = [infer_scale((int(f.shape[-2]), int(f.shape[-1])), largest) for f in features]
        # Pool in float32 under autocast (half-precision features), as torchvision's roi_align does.
        features = [f if f.dtype in (torch.float32, torch.float64) else f.float() for f in features]
        return multilevel_roi_align(
            features,
            boxes,
            scales,
            self.output_size,
            self.sampling_ratio,
            self.aligned,
            canonical_scale=self.canonical_scale,
            canonical_level=self.canonical_level,
            pool=self.pool,
        )


class RoIHeads(nn.Module):
    """Box branch (+ mask branch) on top of the proposals.

    `shared_head` runs on pooled features before both branches (res5 in the C4 design,
    identity otherwise); `box_head` turns them into one vector per RoI.
    """

    def __init__(
        self,
        *,
        feature_names: list[str],
        box_pooler: RoIPooler,
        shared_head: nn.Module,
        box_head: nn.Module,
        box_predictor: nn.Module,
        mask_pooler: RoIPooler | None,
        mask_head: nn.Module | None,
        mask_predictor: nn.Module | None,
        box_coder: BoxCoder,
        matcher: Matcher,
        batch_size_per_image: int,
        positive_fraction: float,
        score_thresh: float,
        nms_thresh: float,
        detections_per_img: int,
        mask_loss_kind: str = "sigmoid",
        mask_positives_per_image: int = 0,
    ) -> None:
        super().__init__()
        self.feature_names = list(feature_names)
        self.box_pooler = box_pooler
        self.shared_head = shared_head
        self.box_head = box_head
        self.box_predictor = box_predictor
        self.mask_pooler = mask_pooler
        self.mask_head = mask_head
        self.mask_predictor = mask_predictor
        self.box_coder = box_coder
        self.matcher = matcher
        self.batch_size_per_image = batch_size_per_image
        self.positive_fraction = positive_fraction
        self.score_thresh = score_thresh
        self.nms_thresh = nms_thresh
        self.detections_per_img = detections_per_img
        self.mask_loss_kind = mask_loss_kind
        self.mask_positives_per_image = mask_positives_per_image  # 0: every foreground RoI

    @property
    def mask_on(self) -> bool:
        return self.mask_pooler is not None and self.mask_head is not None and self.mask_predictor is not None

    # ---- training ---------------------------------------------------------------------

    def sample_proposals(self, proposals: Tensor, targets: ResizedTargets) -> SampledRoIs:
        """Add gt boxes, match (IoU 0.5), sample 512 at 25% foreground: proposals (P, 4) -> S RoIs."""
        return self.sample_batch([proposals], [targets])[0]

    def sample_batch(self, proposals: list[Tensor], targets: list[ResizedTargets]) -> list[SampledRoIs]:
        """`sample_proposals` for every image, with one read of the batch's counts."""
        labelled = [self.label_proposals(p, t) for p, t in zip(proposals, targets)]
        samples = sample_balanced_batch(
            [sampler_labels for *_, sampler_labels in labelled], self.batch_size_per_image, self.positive_fraction
        )
        return [
            self.sampled_rois(boxes, labels, matched, target.boxes.to(boxes.dtype), sample)
            for (boxes, labels, matched, _), target, sample in zip(labelled, targets, samples)
        ]

    def label_proposals(self, proposals: Tensor, targets: ResizedTargets) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Proposals (P, 4) + gt boxes -> boxes (P+G, 4), class labels (P+G,) (0 background,
        -1 ignored), matched gt (P+G,) and the sampler's labels (1 / 0 / -1)."""
        gt_boxes = targets.boxes.to(proposals.dtype)
        boxes = torch.cat([proposals, gt_boxes])  # (P + G, 4)
        if gt_boxes.shape[0] == 0:  # background image: every RoI is background
            labels = torch.zeros(boxes.shape[0], dtype=torch.int64, device=boxes.device)
            matched = torch.zeros_like(labels)
        else:
            matched = self.matcher(box_iou(gt_boxes, boxes))  # (G, P+G) -> (P+G,)
            labels = targets.labels[matched.clamp(min=0)].to(torch.int64)
            labels = torch.where(matched == Matcher.BELOW_LOW_THRESHOLD, 0, labels)
            labels = torch.where(matched == Matcher.BETWEEN_THRESHOLDS, -1, labels)
            matched = matched.clamp(min=0)
        sampler_labels = torch.where(labels > 0, 1, torch.where(labels == 0, 0, -1))
        return boxes, labels, matched, sampler_labels

    def sampled_rois(
        self, boxes: Tensor, labels: Tensor, matched: Tensor, gt_boxes: Tensor, sample: SampledIndices
    ) -> SampledRoIs:
        """The chosen RoIs, foreground first, with their box-regression targets."""
        positive, negative = sample
        sampled = torch.cat([positive, negative])
        foreground = sampled[: positive.numel()]
        target_deltas = self.box_coder.encode(gt_boxes[matched[foreground]], boxes[foreground])  # (F, 4)
        return SampledRoIs(
            boxes=boxes[sampled],
            labels=labels[sampled],
            matched_gt=matched[sampled],
            target_deltas=target_deltas,
            num_foreground=positive.numel(),
        )

    def training_losses(
        self,
        features: list[Tensor],
        proposals: list[Tensor],
        image_sizes: list[tuple[int, int]],
        targets: list[ResizedTargets],
    ) -> dict[str, Tensor]:
        samples = self.sample_batch(proposals, targets)
        labels = torch.cat([s.labels for s in samples])  # (R,)
        target_deltas = torch.cat([s.target_deltas for s in samples])  # (F, 4), image-major like `labels > 0`
        pooled = self.shared_head(self.box_pooler(features, [s.boxes for s in samples], image_sizes))  # (R, C, S, S)
        class_logits, box_deltas = self.box_predictor(self.box_head(pooled))  # (R, K), (R, K*4)
        class_logits, box_deltas = class_logits.float(), box_deltas.float()  # float32 losses under autocast
        foreground = foreground_rows(samples, labels.device)  # (F,)
        loss_classifier, loss_box_reg = fast_rcnn_losses(class_logits, box_deltas, labels, target_deltas, foreground)
        losses = {"loss_classifier": loss_classifier, "loss_box_reg": loss_box_reg}
        if self.mask_on:
            losses["loss_mask"] = self.mask_training_loss(features, samples, image_sizes, targets)
        return losses

    def mask_training_loss(
        self,
        features: list[Tensor],
        samples: list[SampledRoIs],
        image_sizes: list[tuple[int, int]],
        targets: list[ResizedTargets],
    ) -> Tensor:
        """Mask loss on the foreground RoIs of every image."""
        assert self.mask_pooler is not None and self.mask_head is not None and self.mask_predictor is not None
        if sum(s.num_foreground for s in samples) == 0:
            # No foreground in the batch: an exact 0 that still reaches every mask parameter
            # (BatchNorm cannot run on an empty batch in training; DDP wants every
            # parameter in the graph).
            parameters = [*self.mask_head.parameters(), *self.mask_predictor.parameters()]
            return sum((p.sum() * 0.0 for p in parameters), features[0].new_zeros(()))
        samples = [self.mask_rois(s) for s in samples]
        fg_boxes = [s.foreground_boxes for s in samples]
        fg_labels = torch.cat([s.foreground_labels for s in samples])  # (F,)
        pooled = self.shared_head(self.mask_pooler(features, fg_boxes, image_sizes))
        mask_logits = self.mask_predictor(self.mask_head(pooled)).float()  # (F, K, M, M)
        mask_size = mask_logits.shape[-1]
        used = [(s, t) for s, t in zip(samples, targets) if s.num_foreground > 0]
        if any(t.masks is None for _, t in used):
            raise ValueError("training the mask head needs ResizedTargets.masks for every image with instances")
        # All images in one RoIAlign call; each RoI reads its matched gt mask by index (no
        # per-RoI copy of a full mask).
        targets_tensor = mask_targets_batch(
            [t.masks for _, t in used], [s.foreground_boxes for s, _ in used],
            [s.foreground_matched_gt for s, _ in used], mask_size,
        ).to(mask_logits.dtype)  # (F, M, M)
        return mask_loss(mask_logits, fg_labels, targets_tensor, self.mask_loss_kind)

    def mask_rois(self, sample: SampledRoIs) -> SampledRoIs:
        """The foreground RoIs the mask loss uses: all, or a random `mask_positives_per_image` of them."""
        cap = self.mask_positives_per_image
        if cap <= 0 or sample.num_foreground <= cap:
            return sample
        chosen = torch.randperm(sample.num_foreground, device=sample.boxes.device)[:cap].sort().values  # (cap,)
        return SampledRoIs(
            boxes=sample.boxes[chosen],
            labels=sample.labels[chosen],
            matched_gt=sample.matched_gt[chosen],
            target_deltas=sample.target_deltas[chosen],
            num_foreground=cap,
        )

    # ---- inference --------------------------------------------------------------------

    def detect(
        self,
        class_logits: Tensor,
        box_deltas: Tensor,
        proposals: list[Tensor],
        image_sizes: list[tuple[int, int]],
        detections_per_img: int | None = None,
    ) -> list[RoIDetections]:
        """Softmax, per-class decode, clip, drop background/low/small, per-class NMS, top-n
        (n: `detections_per_img`, None: the heads' own)."""
        top_n = self.detections_per_img if detections_per_img is None else detections_per_img
        num_classes = class_logits.shape[-1]
        boxes = self.box_coder.decode(box_deltas, torch.cat(proposals))  # (R, K*4) -> (R, K, 4)
        scores = F.softmax(class_logits, dim=-1)  # (R, K)
        per_image = [p.shape[0] for p in proposals]
        results = []
        for image_boxes, image_scores, size in zip(boxes.split(per_image), scores.split(per_image), image_sizes):
            image_boxes = clip_boxes(image_boxes, size)
            labels = torch.arange(num_classes, device=image_scores.device).view(1, -1).expand_as(image_scores)
            image_boxes = image_boxes[:, 1:].reshape(-1, 4)  # drop background: (P, K-1, 4) -> (P*(K-1), 4)
            image_scores = image_scores[:, 1:].reshape(-1)
            labels = labels[:, 1:].reshape(-1)
            keep = torch.where(image_scores > self.score_thresh)[0]
            image_boxes, image_scores, labels = image_boxes[keep], image_scores[keep], labels[keep]
            keep = remove_small_boxes(image_boxes, 1e-2)
            image_boxes, image_scores, labels = image_boxes[keep], image_scores[keep], labels[keep]
            keep = batched_nms(image_boxes, image_scores, labels, self.nms_thresh)[:top_n]
            results.append(RoIDetections(boxes=image_boxes[keep], scores=image_scores[keep], labels=labels[keep]))
        return results

    def detect_boxes(
        self,
        levels: list[Tensor],
        proposals: list[Tensor],
        image_sizes: list[tuple[int, int]],
        detections_per_img: int | None = None,
    ) -> list[RoIDetections]:
        """Inference up to the boxes: pool, box head, detect (no masks yet)."""
        pooled = self.shared_head(self.box_pooler(levels, proposals, image_sizes))
        class_logits, box_deltas = self.box_predictor(self.box_head(pooled))
        return self.detect(class_logits.float(), box_deltas.float(), proposals, image_sizes, detections_per_img)

    def predict_masks(
        self,
        features: list[Tensor],
        detections: list[RoIDetections],
        image_sizes: list[tuple[int, int]],
        align_grids: bool = False,
    ) -> list[RoIDetections]:
        """One mask-head pass over all detections of the batch -> (D, M, M) probabilities each.
        `align_grids`: resample each grid to where training put it (for the exact paste)."""
        assert self.mask_pooler is not None and self.mask_head is not None and self.mask_predictor is not None
        pooled = self.shared_head(self.mask_pooler(features, [d.boxes for d in detections], image_sizes))
        mask_logits = self.mask_predictor(self.mask_head(pooled)).float()  # (sum D, K, M, M)
        labels = torch.cat([d.labels for d in detections])
        probs = mask_probabilities(mask_logits, labels, self.mask_loss_kind)  # (sum D, M, M)
        if align_grids:
            probs = align_mask_grids(probs, torch.cat([d.boxes for d in detections]))
        return [
            RoIDetections(boxes=d.boxes, scores=d.scores, labels=d.labels, masks=m)
            for d, m in zip(detections, probs.split([len(d) for d in detections]))
        ]

    def forward(
        self,
        features: dict[str, Tensor],
        proposals: list[Tensor],
        image_sizes: list[tuple[int, int]],
        targets: list[ResizedTargets] | None = None,
    ) -> tuple[list[RoIDetections], dict[str, Tensor]]:
        """Training: ([], losses). Inference: (detections in resized-image pixels, {}), with
        the heads' own budget and unaligned grids (MaskRCNN.forward passes its settings to
        detect_boxes / predict_masks instead)."""
        levels = [features[name] for name in self.feature_names]
        if self.training:
            if targets is None:
                raise ValueError("RoI heads in training mode need targets for every image")
            return [], self.training_losses(levels, proposals, image_sizes, targets)
        detections = self.detect_boxes(levels, proposals, image_sizes)
        if self.mask_on:
            detections = self.predict_masks(levels, detections, image_sizes)
        return detections, {}
