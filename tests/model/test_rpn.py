"""RPN: head output order, losses by hand, proposal selection, anchor labels, training."""

from __future__ import annotations

import math

import pytest
import torch

from maskrcnn.model.losses import rpn_losses
from maskrcnn.model.rpn import RegionProposalNetwork, RPNHead, flatten_head_outputs
from maskrcnn.ops.anchors import AnchorGenerator
from maskrcnn.ops.boxes import BoxCoder
from maskrcnn.ops.matcher import Matcher
from maskrcnn.structures import ImageBatch


def make_rpn(*, pre=(2000, 1000), post=(2000, 1000), sizes=((16,),), channels=8) -> RegionProposalNetwork:
    generator = AnchorGenerator([list(s) for s in sizes], [[0.5, 1.0, 2.0]] * len(sizes))
    return RegionProposalNetwork(
        head=RPNHead(in_channels=channels, num_anchors=3),
        anchor_generator=generator,
        box_coder=BoxCoder((1.0, 1.0, 1.0, 1.0)),
        matcher=Matcher(0.7, 0.3, True),
        batch_size_per_image=256,
        positive_fraction=0.5,
        pre_nms_top_n=pre,
        post_nms_top_n=post,
        nms_thresh=0.7,
    )


def test_head_keys_are_torchvisions():
    keys = set(RPNHead(in_channels=4, num_anchors=3, num_convs=2).state_dict())
    assert keys == {
        "conv.0.0.weight", "conv.0.0.bias", "conv.1.0.weight", "conv.1.0.bias",
        "cls_logits.weight", "cls_logits.bias", "bbox_pred.weight", "bbox_pred.bias",
    }


def test_flatten_order_is_row_col_anchor():
    a, h, w = 2, 2, 3
    hh, ww, aa = torch.meshgrid(torch.arange(h), torch.arange(w), torch.arange(a), indexing="ij")
    logits = torch.zeros(1, a, h, w)
    deltas = torch.zeros(1, a * 4, h, w)
    for ai in range(a):
        for hi in range(h):
            for wi in range(w):
                logits[0, ai, hi, wi] = 100 * ai + 10 * hi + wi
                for c in range(4):
                    deltas[0, ai * 4 + c, hi, wi] = 1000 * ai + 100 * c + 10 * hi + wi
    flat_logits, flat_deltas = flatten_head_outputs([logits], [deltas])
    expected = (100 * aa + 10 * hh + ww).reshape(-1).float()  # index (row*W + col)*A + anchor
    assert torch.equal(flat_logits[0], expected)
    expected_dh = (1000 * aa + 200 + 10 * hh + ww).reshape(-1).float()  # delta component c = 2
    assert torch.equal(flat_deltas[0, :, 2], expected_dh)


def test_losses_by_hand():
    logits = torch.tensor([0.0, 2.0, -1.0])
    deltas = torch.tensor([[0.1, 0.0, 0.0, 0.0], [5.0, 5.0, 5.0, 5.0], [1.0, 1.0, 1.0, 1.0]])
    labels = torch.tensor([1.0, 0.0, 1.0])
    objectness, box = rpn_losses(
        logits, deltas, labels, torch.zeros(1, 4), positive=torch.tensor([0]), negative=torch.tensor([1])
    )
    assert objectness.item() == pytest.approx((math.log(2) + math.log(1 + math.e**2)) / 2, rel=1e-6)
    # |0.1| < beta = 1/9: 0.5 * 0.1^2 / beta = 0.045, summed, divided by 2 sampled anchors
    assert box.item() == pytest.approx(0.045 / 2, rel=1e-5)


def test_select_proposals_top_k_per_level_and_nms_per_level():
    rpn = make_rpn(pre=(1, 1), post=(10, 10)).eval()
    box = [10.0, 10.0, 50.0, 50.0]
    boxes = torch.tensor([[box, box, box, box]])  # (1, T=4, 4): two levels of two anchors
    logits = torch.tensor([[5.0, 1.0, 3.0, 4.0]])
    out_boxes, out_scores = rpn.select_proposals(boxes, logits, [(100, 100)], [2, 2], rpn.budget())
    # top-1 of level 0 (logit 5) and of level 1 (logit 4); the same box survives NMS in each level
    assert torch.allclose(out_scores[0], torch.sigmoid(torch.tensor([5.0, 4.0])))
    assert out_boxes[0].shape == (2, 4)


def test_select_proposals_clips_and_drops_empty_boxes():
    rpn = make_rpn(post=(10, 10)).eval()
    boxes = torch.tensor([[[-10.0, -10.0, 30.0, 30.0], [120.0, 10.0, 150.0, 50.0], [20.0, 60.0, 60.0, 99.0]]])
    logits = torch.tensor([[1.0, 2.0, 0.5]])
    out_boxes, out_scores = rpn.select_proposals(boxes, logits, [(80, 100)], [3], rpn.budget())
    # the second box lies right of the image: zero width after clipping, removed
    assert torch.allclose(out_boxes[0], torch.tensor([[0.0, 0.0, 30.0, 30.0], [20.0, 60.0, 60.0, 80.0]]))
    assert torch.allclose(out_scores[0], torch.sigmoid(torch.tensor([1.0, 0.5])))


def test_anchor_labels():
    rpn = make_rpn()
    anchors = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 20.0], [50.0, 50.0, 60.0, 60.0]])
    labels, matched = rpn.label_anchors(anchors, torch.tensor([[0.0, 0.0, 10.0, 10.0]]))
    assert labels.tolist() == [1.0, -1.0, 0.0]  # IoU 1, 0.5 (between 0.3 and 0.7), 0
    labels, matched = rpn.label_anchors(anchors, torch.zeros(0, 4))
    assert labels.tolist() == [0.0, 0.0, 0.0] and matched.tolist() == [0, 0, 0]


def test_training_forward_and_empty_image():
    torch.manual_seed(0)
    rpn = make_rpn(sizes=((16,), (32,))).train()
    images = ImageBatch(tensor=torch.zeros(2, 3, 64, 64), image_sizes=[(64, 64), (60, 50)], original_sizes=[(64, 64)] * 2)
    features = [torch.randn(2, 8, 16, 16, requires_grad=True), torch.randn(2, 8, 8, 8, requires_grad=True)]
    gt = [torch.tensor([[8.0, 8.0, 40.0, 30.0]]), torch.zeros(0, 4)]
    proposals, losses = rpn(images, features, gt)
    assert set(losses) == {"loss_objectness", "loss_rpn_box_reg"}
    assert all(torch.isfinite(v) for v in losses.values()) and losses["loss_rpn_box_reg"] > 0
    sum(losses.values()).backward()
    assert features[0].grad is not None
    assert len(proposals) == 2 and proposals[1][:, 2].max() <= 50 and proposals[1][:, 3].max() <= 60

    _, losses = rpn(images, features, [torch.zeros(0, 4), torch.zeros(0, 4)])
    assert losses["loss_rpn_box_reg"].item() == 0.0 and losses["loss_objectness"] > 0
