import math

import torch

from maskrcnn.ops.boxes import (
    BoxCoder,
    box_area,
    box_iou,
    clip_boxes,
    masks_to_boxes,
    remove_small_boxes,
)


def test_box_area_and_iou_hand_computed():
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0], [1.0, 1.0, 3.0, 4.0]])
    b = torch.tensor([[1.0, 1.0, 3.0, 3.0], [10.0, 10.0, 11.0, 11.0]])
    assert torch.equal(box_area(a), torch.tensor([4.0, 6.0]))
    iou = box_iou(a, b)
    # [0,0,2,2] vs [1,1,3,3]: inter 1, union 4 + 4 - 1 = 7
    # [1,1,3,4] vs [1,1,3,3]: inter 4, union 6 + 4 - 4 = 6
    expected = torch.tensor([[1 / 7, 0.0], [4 / 6, 0.0]])
    torch.testing.assert_close(iou, expected)


def test_box_iou_empty():
    assert box_iou(torch.zeros((0, 4)), torch.ones((3, 4))).shape == (0, 3)
    assert box_iou(torch.ones((2, 4)), torch.zeros((0, 4))).shape == (2, 0)
    assert box_area(torch.zeros((0, 4))).shape == (0,)


def test_clip_boxes_batched_shape():
    boxes = torch.tensor([[[-5.0, -1.0, 30.0, 12.0]], [[3.0, 4.0, 5.0, 6.0]]])  # (2, 1, 4)
    clipped = clip_boxes(boxes, (10, 20))  # h=10, w=20
    assert torch.equal(clipped, torch.tensor([[[0.0, 0.0, 20.0, 10.0]], [[3.0, 4.0, 5.0, 6.0]]]))
    assert clip_boxes(torch.zeros((0, 4)), (10, 20)).shape == (0, 4)


def test_remove_small_boxes():
    boxes = torch.tensor([[0.0, 0.0, 1.0, 5.0], [0.0, 0.0, 0.5, 5.0], [0.0, 0.0, 5.0, 0.99], [2, 2, 4, 4.0]])
    keep = remove_small_boxes(boxes, 1.0)
    assert keep.dtype == torch.int64
    assert keep.tolist() == [0, 3]
    assert remove_small_boxes(torch.zeros((0, 4)), 1.0).shape == (0,)


def test_masks_to_boxes_coco_convention():
    masks = torch.zeros((3, 6, 8), dtype=torch.uint8)
    masks[0, 2, 5] = 1  # single pixel
    masks[1, 1:4, 2:7] = 1
    boxes = masks_to_boxes(masks)
    assert boxes.tolist() == [[5, 2, 6, 3], [2, 1, 7, 4], [0, 0, 0, 0]]
    assert masks_to_boxes(torch.zeros((0, 6, 8))).shape == (0, 4)


def test_box_coder_known_numbers_and_round_trip():
    coder = BoxCoder((10.0, 10.0, 5.0, 5.0))
    reference = torch.tensor([[0.0, 0.0, 10.0, 20.0]])  # centre (5, 10), size 10 x 20
    gt = torch.tensor([[2.0, 4.0, 22.0, 24.0]])  # centre (12, 14), size 20 x 20
    deltas = coder.encode(gt, reference)
    expected = torch.tensor([[10 * 7 / 10, 10 * 4 / 20, 5 * math.log(2.0), 5 * math.log(1.0)]])
    torch.testing.assert_close(deltas, expected)
    decoded = coder.decode(deltas, reference)
    assert decoded.shape == (1, 1, 4)
    torch.testing.assert_close(decoded[:, 0], gt)


def test_box_coder_decode_per_class_and_clip():
    coder = BoxCoder((1.0, 1.0, 1.0, 1.0))
    reference = torch.tensor([[0.0, 0.0, 4.0, 4.0]])
    deltas = torch.tensor([[0.0, 0.0, 0.0, 0.0, 0.5, -0.25, 100.0, 0.0]])  # K = 2
    boxes = coder.decode(deltas, reference)
    assert boxes.shape == (1, 2, 4)
    assert boxes[0, 0].tolist() == [0.0, 0.0, 4.0, 4.0]
    # class 1: centre (2 + 0.5*4, 2 - 0.25*4) = (4, 1); width clamped: 4 * 1000/16 = 250
    torch.testing.assert_close(boxes[0, 1], torch.tensor([4 - 125.0, -1.0, 4 + 125.0, 3.0]))


def test_box_coder_empty():
    coder = BoxCoder((1.0, 1.0, 1.0, 1.0))
    assert coder.encode(torch.zeros((0, 4)), torch.zeros((0, 4))).shape == (0, 4)
    assert coder.decode(torch.zeros((0, 8)), torch.zeros((0, 4))).shape == (0, 2, 4)
