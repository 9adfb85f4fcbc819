"""Build a MaskRCNN from a `ModelConfig`: the one place that reads model config fields.

Designs (`backbone.layout`):
- "fpn": RPN on P2..P6 (one anchor size per level), RoIs pooled from P2..P5 by box size.
- "c4":  RPN and pooling on C4 (stride 16, one anchor level holding every size); with
         `roi_heads.box_head: res5` the ResNet's res5 stage runs on 14x14 RoIs
         (`roi_heads.shared_head`) and feeds both the box head (average pool) and the
         mask predictor (deconv on 7x7 -> 14x14 masks), as in the paper's C4 model.
- "dc5": RPN and pooling on the dilated C5 (stride 16, one anchor level).
"""

from __future__ import annotations

from torch import nn

from maskrcnn.config import ModelConfig
from maskrcnn.errors import UserError
from maskrcnn.model.backbone import build_backbone, build_res5_head
from maskrcnn.model.box_head import (
    BoxPredictor,
    ConvFCHead,
    Res5BoxHead,
    TwoMLPHead,
    no_shared_head,
)
from maskrcnn.model.mask_head import (
    MaskConvHead,
    MaskMLPHead,
    MaskMLPPredictor,
    MaskPredictor,
)
from maskrcnn.model.mask_rcnn import MaskRCNN
from maskrcnn.model.roi_heads import RoIHeads, RoIPooler
from maskrcnn.model.rpn import RegionProposalNetwork, RPNHead
from maskrcnn.model.test_augment import TestTimeAugmentation
from maskrcnn.model.transform import ImageTransform
from maskrcnn.ops.anchors import AnchorGenerator
from maskrcnn.ops.boxes import BoxCoder
from maskrcnn.ops.matcher import Matcher

BOX_HEADS = ("2fc", "4conv1fc", "res5")
MASK_HEADS = ("conv", "mlp")
POOLERS = {"roi_align": "align", "roi_pool": "max"}
MASK_LOSSES = ("sigmoid", "softmax")
CONV_HEAD_DIM = 256  # channels of the 4conv1fc box head's convolutions (torchvision v2)


class ModelConfigError(UserError):
    """A model config value that cannot build a model."""


def _choice(value: str, allowed: tuple[str, ...] | dict[str, str], field: str) -> None:
    if value not in allowed:
        raise ModelConfigError(f"model.{field}: unknown value {value!r}; expected one of {', '.join(allowed)}")


def check_model_config(cfg: ModelConfig, num_feature_levels: int | None = None) -> None:
    """Raise one clear error for model config values that do not fit together."""
    heads = cfg.roi_heads
    if cfg.num_classes < 2:
        raise ModelConfigError(
            f"model.num_classes: expected >= 2 (background + at least one class), got {cfg.num_classes}"
        )
    _choice(heads.box_head, BOX_HEADS, "roi_heads.box_head")
    _choice(heads.mask_head, MASK_HEADS, "roi_heads.mask_head")
    _choice(heads.pooler, POOLERS, "roi_heads.pooler")
    _choice(heads.mask_loss, MASK_LOSSES, "roi_heads.mask_loss")
    if heads.box_head == "res5" and cfg.backbone.layout != "c4":
        raise ModelConfigError(
            f"model.roi_heads.box_head: 'res5' needs model.backbone.layout 'c4', got {cfg.backbone.layout!r}"
        )
    anchors = cfg.anchors
    if len(anchors.sizes) != len(anchors.aspect_ratios):
        raise ModelConfigError(
            f"model.anchors: sizes has {len(anchors.sizes)} levels but aspect_ratios has "
            f"{len(anchors.aspect_ratios)}; give one list of each per feature level"
        )
    per_location = {len(s) * len(r) for s, r in zip(anchors.sizes, anchors.aspect_ratios)}
    if len(per_location) > 1:
        raise ModelConfigError(
            "model.anchors: every level needs the same number of anchors per location "
            f"(len(sizes[i]) * len(aspect_ratios[i])); got {sorted(per_location)}"
        )
    if num_feature_levels is not None and len(anchors.sizes) != num_feature_levels:
        hint = "e.g. sizes: [[32, 64, 128, 256, 512]] and aspect_ratios: [[0.5, 1.0, 2.0]]" if num_feature_levels == 1 else ""
        raise ModelConfigError(
            f"model.anchors: {len(anchors.sizes)} anchor levels but layout {cfg.backbone.layout!r} gives "
            f"{num_feature_levels} feature level(s); give one sizes/aspect_ratios list per level {hint}".rstrip()
        )
    if not cfg.transform.min_size:
        raise ModelConfigError("model.transform.min_size: expected at least one size")
    if heads.mask_positives_per_image < 0:
        raise ModelConfigError(
            "model.roi_heads.mask_positives_per_image: expected 0 (every foreground RoI) or a positive "
            f"number, got {heads.mask_positives_per_image}"
        )


def build_rpn(cfg: ModelConfig, in_channels: int) -> RegionProposalNetwork:
    rpn = cfg.rpn
    anchor_generator = AnchorGenerator(cfg.anchors.sizes, cfg.anchors.aspect_ratios)
    (num_anchors,) = set(anchor_generator.num_anchors_per_location())
    return RegionProposalNetwork(
        head=RPNHead(in_channels=in_channels, num_anchors=num_anchors, num_convs=rpn.num_convs, norm=rpn.conv_norm),
        anchor_generator=anchor_generator,
        box_coder=BoxCoder(tuple(rpn.box_coder_weights)),
        matcher=Matcher(rpn.fg_iou_thresh, rpn.bg_iou_thresh, rpn.allow_low_quality_matches),
        batch_size_per_image=rpn.batch_size_per_image,
        positive_fraction=rpn.positive_fraction,
        pre_nms_top_n=(rpn.pre_nms_top_n_train, rpn.pre_nms_top_n_test),
        post_nms_top_n=(rpn.post_nms_top_n_train, rpn.post_nms_top_n_test),
        nms_thresh=rpn.nms_thresh,
        score_thresh=rpn.score_thresh,
        min_size=rpn.min_size,
    )


def build_box_branch(cfg: ModelConfig, in_channels: int) -> tuple[nn.Module, nn.Module, BoxPredictor]:
    """(shared_head, box_head, box_predictor) for `roi_heads.box_head`."""
    heads = cfg.roi_heads
    if heads.box_head == "res5":
        shared_head = build_res5_head(cfg.backbone)  # (R, C4, 14, 14) -> (R, C5, 7, 7)
        box_head: nn.Module = Res5BoxHead(channels=shared_head.out_channels)
    elif heads.box_head == "4conv1fc":
        shared_head = no_shared_head()
        box_head = ConvFCHead(
            in_channels=in_channels,
            pool_size=heads.box_pool_size,
            conv_dim=CONV_HEAD_DIM,
            fc_dim=heads.box_head_dim,
            norm=heads.box_head_norm,
        )
    else:
        shared_head = no_shared_head()
        box_head = TwoMLPHead(in_channels=in_channels, pool_size=heads.box_pool_size, dim=heads.box_head_dim)
    predictor = BoxPredictor(in_features=box_head.out_features, num_classes=cfg.num_classes)
    return shared_head, box_head, predictor


def build_mask_branch(cfg: ModelConfig, in_channels: int, shared_head: nn.Module) -> tuple[nn.Module, nn.Module]:
    """(mask_head, mask_predictor); after a res5 shared head the mask head has no convs."""
    heads = cfg.roi_heads
    shared_channels = getattr(shared_head, "out_channels", None)
    if shared_channels is not None:  # C4: res5 output (R, 2048, 7, 7) -> deconv -> (R, K, 14, 14)
        in_channels = shared_channels
    if heads.mask_head == "mlp":
        head = MaskMLPHead(in_channels=in_channels, pool_size=heads.mask_pool_size // (2 if shared_channels else 1))
        mask_size = 2 * heads.mask_pool_size // (2 if shared_channels else 1)
        predictor: nn.Module = MaskMLPPredictor(
            in_features=head.out_channels, num_classes=cfg.num_classes, mask_size=mask_size
        )
        return head, predictor
    num_convs = 0 if shared_channels is not None else 4
    conv_head = MaskConvHead(
        in_channels=in_channels, channels=heads.mask_head_channels, num_convs=num_convs, norm=heads.mask_head_norm
    )
    predictor = MaskPredictor(
        in_channels=conv_head.out_channels, dim_reduced=heads.mask_head_channels, num_classes=cfg.num_classes
    )
    return conv_head, predictor


def build_roi_heads(cfg: ModelConfig, feature_names: list[str], in_channels: int) -> RoIHeads:
    heads = cfg.roi_heads
    pool = POOLERS[heads.pooler]

    def pooler(size: int) -> RoIPooler:
        return RoIPooler(
            output_size=size,
            sampling_ratio=heads.sampling_ratio,
            aligned=heads.aligned,
            canonical_scale=heads.canonical_scale,
            canonical_level=heads.canonical_level,
            pool=pool,
        )

    shared_head, box_head, box_predictor = build_box_branch(cfg, in_channels)
    mask_pooler = mask_head = mask_predictor = None
    if heads.mask_on:
        mask_pooler = pooler(heads.mask_pool_size)
        mask_head, mask_predictor = build_mask_branch(cfg, in_channels, shared_head)
    return RoIHeads(
        feature_names=feature_names,
        box_pooler=pooler(heads.box_pool_size),
        shared_head=shared_head,
        box_head=box_head,
        box_predictor=box_predictor,
        mask_pooler=mask_pooler,
        mask_head=mask_head,
        mask_predictor=mask_predictor,
        box_coder=BoxCoder(tuple(heads.box_coder_weights)),
        matcher=Matcher(heads.fg_iou_thresh, heads.bg_iou_thresh, False),
        batch_size_per_image=heads.batch_size_per_image,
        positive_fraction=heads.positive_fraction,
        mask_positives_per_image=heads.mask_positives_per_image,
        score_thresh=heads.score_thresh,
        nms_thresh=heads.nms_thresh,
        detections_per_img=heads.detections_per_img,
        mask_loss_kind=heads.mask_loss,
    )


def build_model(cfg: ModelConfig) -> MaskRCNN:
    """The full model for `cfg` (randomly initialized heads; load weights separately)."""
    check_model_config(cfg)
    backbone = build_backbone(cfg.backbone)
    check_model_config(cfg, num_feature_levels=len(backbone.feature_names))
    # FPN: pool from P2..P5 (P6 only feeds the RPN, as in the FPN paper); else the one level.
    pooled_names = backbone.feature_names[:-1] if cfg.backbone.layout == "fpn" else backbone.feature_names
    t = cfg.transform
    return MaskRCNN(
        backbone=backbone,
        rpn=build_rpn(cfg, backbone.out_channels),
        roi_heads=build_roi_heads(cfg, pooled_names, backbone.out_channels),
        transform=ImageTransform(
            min_size=t.min_size,
            max_size=t.max_size,
            image_mean=t.image_mean,
            image_std=t.image_std,
            size_divisible=t.size_divisible,
            fixed_scale=t.fixed_scale,
        ),
        mask_paste=cfg.roi_heads.mask_paste,
        mask_threshold=cfg.roi_heads.mask_threshold,
    )


def with_test_augment(model: MaskRCNN, mode: str) -> nn.Module:
    """What runs at inference: `model` itself for model.test_augment "none", else the model
    wrapped in test-time augmentation (model/test_augment.py). Checkpoints hold the model's
    state only; the wrapper adds none."""
    return model if mode == "none" else TestTimeAugmentation(model, mode)


def inner_model(model: nn.Module) -> MaskRCNN | None:
    """The MaskRCNN inside DistributedDataParallel (.module) and test-time augmentation
    (.model); None for a module that holds none (a stand-in model)."""
    while not isinstance(model, MaskRCNN):
        inner = getattr(model, "module", None)
        model = inner if inner is not None else getattr(model, "model", None)
        if not isinstance(model, nn.Module):
            return None
    return model
