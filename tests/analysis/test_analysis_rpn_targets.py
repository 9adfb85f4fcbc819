"""analyze rpn-targets: anchor labels by hand and the counts of one small image."""

from __future__ import annotations

import numpy as np
import torch

from maskrcnn.analysis.rpn_targets import draw_rpn_targets, label_anchors, rpn_targets
from maskrcnn.config import load_config

TINY = [
    "model.num_classes=3", "model.backbone.name=plain", "model.backbone.norm=bn", "model.backbone.freeze_at=0",
    "model.backbone.fpn_channels=16", "model.backbone.plain_channels=[8,16,16,16,16]",
    "model.transform.min_size=[64]", "model.transform.max_size=64", "model.rpn.batch_size_per_image=16",
]  # fmt: skip


def test_labels_follow_matcher_thresholds() -> None:
    cfg = load_config(None, TINY).model  # positive >= 0.7, negative < 0.3, low-quality matches on
    gt = torch.tensor([[0.0, 0.0, 10.0, 10.0], [50.0, 50.0, 60.0, 60.0]])
    anchors = torch.tensor([
        [0.0, 0.0, 10.0, 9.0],    # IoU 0.9 with gt 0 -> positive
        [0.0, 0.0, 10.0, 5.0],    # IoU 0.5 -> ignored
        [20.0, 20.0, 30.0, 30.0],  # IoU 0 -> negative
        [50.0, 50.0, 60.0, 52.0],  # IoU 0.2 with gt 1, but its best anchor -> positive (low quality)
    ])  # fmt: skip
    labels, matched = label_anchors(anchors, gt, cfg)
    assert labels.tolist() == [1, -1, 0, 1]
    assert matched.tolist() == [0, -2, -1, 1]
    no_gt, _ = label_anchors(anchors, torch.zeros(0, 4), cfg)
    assert no_gt.tolist() == [0, 0, 0, 0]


def test_counts_and_picture_of_one_image() -> None:
    cfg = load_config(None, TINY).model
    boxes = np.array([[8.0, 8.0, 40.0, 40.0]])  # a 32x32 box: P3 anchors of size 64 cover it best
    result = rpn_targets((64, 64), boxes, cfg, seed=0)
    counts = result["counts"]
    # P2..P6 of a 64x64 input: 16x16, 8x8, 4x4, 2x2, 1x1 positions, 3 anchors each
    assert counts["anchors"] == 3 * (256 + 64 + 16 + 4 + 1)
    assert counts["positive"] + counts["negative"] + counts["ignored"] == counts["anchors"]
    assert counts["positive"] >= 1
    assert counts["sampled_positive"] == min(counts["positive"], 8)
    assert counts["sampled_positive"] + counts["sampled_negative"] == 16
    assert sum(lv["anchors"] for lv in result["levels"]) == counts["anchors"]
    again = rpn_targets((64, 64), boxes, cfg, seed=0)
    assert torch.equal(again["sampled_negative"], result["sampled_negative"])  # seeded
    image = np.zeros((64, 64, 3), dtype=np.uint8)
    assert draw_rpn_targets(image, result["geometry"], result)[:4] == b"\x89PNG"
