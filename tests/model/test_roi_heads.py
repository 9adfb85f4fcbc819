"""RoI heads: losses by hand, proposal sampling, detection post-processing, head keys."""

from __future__ import annotations

import math

import pytest
import torch

from maskrcnn.config import ModelConfig
from maskrcnn.model.box_head import ConvFCHead, TwoMLPHead
from maskrcnn.model.build import build_roi_heads
from maskrcnn.model.losses import fast_rcnn_losses, mask_loss, mask_probabilities
from maskrcnn.model.mask_head import MaskConvHead, MaskPredictor
from maskrcnn.ops.masks import crop_and_resize_masks
from maskrcnn.structures import Targets


def small_heads(num_classes: int = 3, **roi_overrides):
    cfg = ModelConfig(num_classes=num_classes)
    cfg.roi_heads.box_head_dim = 16
    cfg.roi_heads.mask_head_channels = 8
    for key, value in roi_overrides.items():
        setattr(cfg.roi_heads, key, value)
    return build_roi_heads(cfg, ["p2"], in_channels=4)


def test_fast_rcnn_losses_by_hand():
    class_logits = torch.zeros(2, 3)
    box_deltas = torch.zeros(2, 12)
    box_deltas[0, 8] = 0.5  # RoI 0, class 2, dx
    box_deltas[1, 0:4] = 7.0  # background RoI: never regressed
    classification, box = fast_rcnn_losses(class_logits, box_deltas, torch.tensor([2, 0]), torch.zeros(1, 4))
    assert classification.item() == pytest.approx(math.log(3), rel=1e-6)
    # |0.5| >= beta = 1/9: 0.5 - beta / 2, summed, over 2 sampled RoIs
    assert box.item() == pytest.approx((0.5 - 1 / 18) / 2, rel=1e-5)


def test_box_loss_is_zero_and_connected_without_foreground():
    deltas = torch.randn(3, 12, requires_grad=True)
    _, box = fast_rcnn_losses(torch.zeros(3, 3), deltas, torch.zeros(3, dtype=torch.int64), torch.zeros(0, 4))
    assert box.item() == 0.0
    box.backward()
    assert torch.equal(deltas.grad, torch.zeros(3, 12))


def test_mask_loss_uses_the_gt_class_channel():
    logits = torch.zeros(1, 3, 2, 2)
    logits[0, 1] = 10.0
    logits[0, 2] = -10.0
    targets = torch.ones(1, 2, 2)
    assert mask_loss(logits, torch.tensor([1]), targets).item() == pytest.approx(math.log1p(math.exp(-10)), rel=1e-4)
    assert mask_loss(logits, torch.tensor([2]), targets).item() == pytest.approx(10.0, rel=1e-3)
    assert mask_loss(torch.zeros(2, 3, 4, 4), torch.tensor([1, 2]), torch.rand(2, 4, 4)).item() == pytest.approx(
        math.log(2), rel=1e-6
    )


def test_softmax_mask_loss_and_empty_mask_loss():
    assert mask_loss(torch.zeros(2, 3, 4, 4), torch.tensor([1, 2]), torch.rand(2, 4, 4), kind="softmax").item() == (
        pytest.approx(math.log(3), rel=1e-6)
    )
    empty_logits = torch.zeros(0, 3, 4, 4, requires_grad=True)
    loss = mask_loss(empty_logits, torch.zeros(0, dtype=torch.int64), torch.zeros(0, 4, 4))
    assert loss.item() == 0.0 and loss.requires_grad
    with pytest.raises(ValueError, match="mask_loss"):
        mask_loss(torch.zeros(1, 3, 2, 2), torch.tensor([1]), torch.ones(1, 2, 2), kind="dice")


def test_mask_probabilities_pick_the_predicted_class():
    logits = torch.arange(3.0).view(1, 3, 1, 1).expand(2, 3, 2, 2)
    probs = mask_probabilities(logits, torch.tensor([1, 2]))
    assert torch.allclose(probs[:, 0, 0], torch.sigmoid(torch.tensor([1.0, 2.0])))


def test_mask_targets_crop_each_rois_gt():
    masks = torch.zeros(2, 20, 20, dtype=torch.uint8)
    masks[0, :, :10] = 1  # left half
    masks[1, :10, :] = 1  # top half
    # RoIAlign samples at pixel indices (not aligned): keep boxes off the 0/1 edge at 10
    boxes = torch.tensor([[0.0, 0.0, 8.0, 8.0], [0.0, 0.0, 20.0, 8.0], [10.0, 12.0, 20.0, 20.0]])
    out = crop_and_resize_masks(masks, boxes, 4, mask_indices=torch.tensor([0, 1, 1]))
    assert out.shape == (3, 4, 4)
    assert torch.allclose(out[0], torch.ones(4, 4)) and torch.allclose(out[1], torch.ones(4, 4))
    assert torch.allclose(out[2], torch.zeros(4, 4))


def test_sampling_adds_gt_and_puts_foreground_first():
    torch.manual_seed(0)
    heads = small_heads().train()
    proposals = torch.tensor([[60.0, 60.0, 90.0, 90.0], [11.0, 11.0, 41.0, 41.0], [0.0, 0.0, 5.0, 5.0]])
    target = Targets(boxes=torch.tensor([[10.0, 10.0, 40.0, 40.0]]), labels=torch.tensor([2]))
    sample = heads.sample_proposals(proposals, target)
    labels = sample.labels.tolist()
    assert labels[:2] == [2, 2] and sorted(labels[2:]) == [0, 0]  # proposal 1 and the gt
    assert sample.num_foreground == 2 and sample.foreground_labels.tolist() == [2, 2]
    assert sample.target_deltas.shape == (2, 4) and torch.all(sample.foreground_matched_gt == 0)
    gt_row = [i for i in range(2) if torch.equal(sample.boxes[i], target.boxes[0])]
    assert len(gt_row) == 1 and torch.allclose(sample.target_deltas[gt_row[0]], torch.zeros(4), atol=1e-6)

    background = heads.sample_proposals(proposals, Targets.empty(100, 100))
    assert background.labels.tolist() == [0, 0, 0] and background.target_deltas.shape == (0, 4)
    assert background.num_foreground == 0 and background.foreground_boxes.shape == (0, 4)


def test_detect_thresholds_nms_per_class_and_top_n():
    heads = small_heads(detections_per_img=2).eval()
    proposals = [torch.tensor([[10.0, 10.0, 50.0, 50.0], [12.0, 10.0, 52.0, 50.0], [60.0, 60.0, 90.0, 90.0]])]
    class_logits = torch.tensor([[0.0, 5.0, 0.0], [0.0, 4.0, 3.5], [9.0, 0.0, 0.0]])
    (det,) = heads.detect(class_logits, torch.zeros(3, 12), proposals, [(100, 100)])
    softmax = class_logits.softmax(dim=1)
    # class 1: RoIs 0 and 1 overlap (IoU 0.9) -> only RoI 0; class 2: RoI 1 (0.37);
    # RoI 2 is background (class scores 1.2e-4, below 0.05)
    assert det.labels.tolist() == [1, 2]
    assert torch.allclose(det.scores, torch.stack([softmax[0, 1], softmax[1, 2]]))
    assert torch.allclose(det.boxes, proposals[0][[0, 1]])


def test_head_parameter_names_follow_torchvision():
    assert set(TwoMLPHead(in_channels=4, pool_size=7).state_dict()) == {"fc6.weight", "fc6.bias", "fc7.weight", "fc7.bias"}
    conv_fc = set(ConvFCHead(in_channels=4, pool_size=7, norm="bn").state_dict())
    assert {"0.0.weight", "0.1.running_var", "3.1.weight", "5.weight", "5.bias"} <= conv_fc
    assert "0.0.bias" not in conv_fc
    mask = set(MaskConvHead(in_channels=4, channels=8).state_dict())
    assert mask == {f"{i}.0.{p}" for i in range(4) for p in ("weight", "bias")}
    predictor = MaskPredictor(in_channels=8, dim_reduced=8, num_classes=3)
    assert predictor(torch.zeros(2, 8, 14, 14)).shape == (2, 3, 28, 28)
