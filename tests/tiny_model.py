"""The tiny randomly initialised shapes model shared by the CLI, serve and export tests:
config overrides on `shapes_demo`, and the class names and category ids it is saved with."""

from __future__ import annotations

CLASS_NAMES = ["background", "circle", "square", "triangle"]
LABEL_TO_CATEGORY_ID = {1: 10, 2: 20, 3: 30}


def tiny_overrides(*, max_size: int = 64, detections_per_img: int = 5) -> list[str]:
    """`shapes_demo` shrunk to a 64 px input and a few channels per layer."""
    return [
        "model.transform.min_size=[64]",
        f"model.transform.max_size={max_size}",
        "model.backbone.plain_channels=[8,16,16,16,16]",
        "model.backbone.fpn_channels=16",
        "model.roi_heads.box_head_dim=32",
        "model.roi_heads.mask_head_channels=16",
        f"model.roi_heads.detections_per_img={detections_per_img}",
        # one pass, as the ONNX graph runs (shapes_demo predicts on mirror images too;
        # tests/model/test_test_augment.py and the --test-augment CLI test cover that)
        "model.test_augment=none",
        # torchvision's mask paste, as the ONNX graph pastes (shapes_demo pastes exactly;
        # tests/ops/test_exact_paste.py and tests/cli/test_cli_mask_paste.py cover that)
        "model.roi_heads.mask_paste=torchvision",
    ]


# The engine tests' plain-CNN Mask R-CNN for 64 px shapes images (four classes, batch-norm
# backbone trained from scratch): a few tenths of a second per training step. Each test adds
# its own data, solver and train settings.
TINY_TRAINING_MODEL = [
    "model.num_classes=4",
    "model.backbone.name=plain", "model.backbone.norm=bn", "model.backbone.freeze_at=0",
    "model.backbone.plain_channels=[8,16,16,16,16]", "model.backbone.fpn_channels=16",
    "model.anchors.sizes=[[8],[16],[24],[32],[48]]",
    "model.rpn.pre_nms_top_n_train=100", "model.rpn.post_nms_top_n_train=50",
    "model.rpn.pre_nms_top_n_test=50", "model.rpn.post_nms_top_n_test=20", "model.rpn.batch_size_per_image=32",
    "model.roi_heads.box_head_dim=32", "model.roi_heads.mask_head_channels=8", "model.roi_heads.batch_size_per_image=32",
    "model.roi_heads.detections_per_img=5",
    "model.transform.min_size=[64]", "model.transform.max_size=64",
]  # fmt: skip
