import torch

from maskrcnn.ops.nms import batched_nms, nms
from maskrcnn.ops.nms_reference import batched_nms_reference, nms_reference


def test_nms_hand_case():
    boxes = torch.tensor(
        [
            [0.0, 0.0, 10.0, 10.0],
            [1.0, 0.0, 11.0, 10.0],  # IoU with box 0 = 90 / 110 = 0.818
            [0.0, 5.0, 10.0, 15.0],  # IoU with box 0 = 50 / 150 = 0.333
            [50.0, 50.0, 60.0, 60.0],
        ]
    )
    scores = torch.tensor([0.9, 0.8, 0.7, 0.1])
    assert nms(boxes, scores, 0.5).tolist() == [0, 2, 3]
    assert nms(boxes, scores, 0.9).tolist() == [0, 1, 2, 3]
    assert nms(boxes, scores, 0.3).tolist() == [0, 3]
    # suppression needs IoU strictly above the threshold
    assert nms(boxes, scores, 50 / 150).tolist() == [0, 2, 3]


def test_nms_suppressed_box_does_not_suppress():
    # 0 suppresses 1, 1 would suppress 2, but 1 is gone, so 2 survives.
    boxes = torch.tensor([[0.0, 0, 10, 10], [3.0, 0, 13, 10], [6.0, 0, 16, 10]])
    scores = torch.tensor([3.0, 2.0, 1.0])
    assert nms(boxes, scores, 0.4).tolist() == [0, 2]


def test_nms_ties_keep_input_order():
    boxes = torch.tensor([[0.0, 0, 10, 10], [0.0, 0, 10, 10], [20.0, 20, 30, 30]])
    scores = torch.tensor([0.5, 0.5, 0.5])
    assert nms(boxes, scores, 0.5).tolist() == [0, 2]


def test_nms_empty():
    assert nms(torch.zeros((0, 4)), torch.zeros((0,)), 0.5).shape == (0,)
    keep = batched_nms(torch.zeros((0, 4)), torch.zeros((0,)), torch.zeros((0,), dtype=torch.int64), 0.5)
    assert keep.shape == (0,) and keep.dtype == torch.int64


def test_batched_nms_keeps_other_categories():
    boxes = torch.tensor([[0.0, 0, 10, 10], [0.0, 0, 10, 10], [0.0, 0, 10, 10]])
    scores = torch.tensor([0.3, 0.9, 0.5])
    idxs = torch.tensor([0, 1, 0])
    assert batched_nms(boxes, scores, idxs, 0.5).tolist() == [1, 2]


def test_batched_nms_many_boxes_path_matches_per_class_loop():
    generator = torch.Generator().manual_seed(0)
    xy = torch.rand(1500, 2, generator=generator) * 200
    boxes = torch.cat([xy, xy + 5 + torch.rand(1500, 2, generator=generator) * 60], dim=1)
    scores = torch.rand(1500, generator=generator)
    idxs = torch.randint(0, 4, (1500,), generator=generator)
    keep = batched_nms(boxes, scores, idxs, 0.5)
    assert torch.equal(keep, batched_nms_reference(boxes, scores, idxs, 0.5))


def test_nms_matches_the_plain_greedy_loop():
    generator = torch.Generator().manual_seed(1)
    xy = torch.rand(400, 2, generator=generator) * 100
    boxes = torch.cat([xy, xy + 2 + torch.rand(400, 2, generator=generator) * 40], dim=1)
    scores = torch.rand(400, generator=generator).round(decimals=2)  # ties too
    for threshold in (0.3, 0.5, 0.7):
        assert torch.equal(nms(boxes, scores, threshold), nms_reference(boxes, scores, threshold)), threshold


def test_nms_parity_with_torchvision(parity_ops):
    for case in parity_ops["nms"]:
        keep = nms(parity_ops["nms_boxes"], parity_ops["nms_scores"], case["iou_threshold"])
        assert torch.equal(keep, case["keep"]), case["iou_threshold"]
    for case in parity_ops["batched_nms"]:
        keep = batched_nms(
            parity_ops["nms_boxes"], parity_ops["nms_scores"], parity_ops["nms_idxs"], case["iou_threshold"]
        )
        assert torch.equal(keep, case["keep"]), case["iou_threshold"]


def test_batched_nms_per_category_sweeps_equal_one_sweep_over_offset_boxes():
    # The CPU path runs the greedy sweep per category on torchvision's offset boxes; it must
    # keep exactly what one sweep over all offset boxes keeps (ties, touching boxes, a
    # threshold of 0 included), and negative coordinates must take the single sweep.
    generator = torch.Generator().manual_seed(2)
    xy = (torch.rand(700, 2, generator=generator) * 120).round()
    boxes = torch.cat([xy, xy + 1 + (torch.rand(700, 2, generator=generator) * 50).round()], dim=1)
    scores = torch.rand(700, generator=generator).round(decimals=2)  # ties
    idxs = torch.randint(0, 5, (700,), generator=generator)
    for shift in (0.0, -60.0):
        shifted_input = boxes + shift
        offsets = idxs.to(boxes) * (shifted_input.max() + 1)
        for threshold in (0.0, 0.3, 0.5, 0.7, 1.0):
            one_sweep = nms(shifted_input + offsets[:, None], scores, threshold)
            assert torch.equal(batched_nms(shifted_input, scores, idxs, threshold), one_sweep), (shift, threshold)


def test_device_sweep_keeps_what_the_block_sweep_keeps(monkeypatch):
    # The GPU path (one suppression matrix, packed on the device, one copy back) runs here
    # on CPU tensors: the same keep lists as the CPU's block path, with ties, a box count
    # that is not a multiple of 8, and row chunks smaller than the box count.
    from maskrcnn.ops import nms as nms_module

    monkeypatch.setattr(nms_module, "_DEVICE_ROWS", 64)
    generator = torch.Generator().manual_seed(3)
    xy = (torch.rand(301, 2, generator=generator) * 90).round()
    boxes = torch.cat([xy, xy + 1 + (torch.rand(301, 2, generator=generator) * 40).round()], dim=1)
    scores = torch.rand(301, generator=generator).round(decimals=2)
    sorted_boxes = boxes[torch.sort(scores, descending=True, stable=True)[1]]
    for threshold in (0.0, 0.3, 0.5, 0.7, 1.0):
        on_device = nms_module._greedy_keep_on_device(sorted_boxes, threshold)
        assert on_device == nms_module._greedy_keep(sorted_boxes, threshold), threshold
        assert len(on_device) > 1


def test_valid_mask_equals_filtering_first():
    generator = torch.Generator().manual_seed(3)
    corner = torch.rand((300, 2), generator=generator) * 100
    boxes = torch.cat([corner, corner + torch.rand((300, 2), generator=generator) * 30 + 1], dim=1)
    scores = torch.rand(300, generator=generator)
    idxs = torch.randint(0, 4, (300,), generator=generator)
    valid = torch.rand(300, generator=generator) > 0.3
    members = torch.where(valid)[0]
    assert torch.equal(nms(boxes, scores, 0.5, valid), members[nms(boxes[members], scores[members], 0.5)])
    expected = members[batched_nms(boxes[members], scores[members], idxs[members], 0.5)]
    assert torch.equal(batched_nms(boxes, scores, idxs, 0.5, valid), expected)


def test_one_copy_nms_per_image_keeps_what_batched_nms_keeps():
    from maskrcnn.ops.segment_nms import nms_per_image

    generator = torch.Generator().manual_seed(5)
    segments = [40, 25, 9]
    corner = torch.rand((3, 74, 2), generator=generator) * 60
    boxes = torch.cat([corner, corner + torch.rand((3, 74, 2), generator=generator) * 25 + 0.5], dim=2)
    scores = torch.rand((3, 74), generator=generator)
    valid = torch.rand((3, 74), generator=generator) > 0.2
    valid[2] = False  # an image with no valid candidate
    one_copy = nms_per_image(boxes, scores, valid, segments, 0.6, 30, one_copy=True)
    per_image = nms_per_image(boxes, scores, valid, segments, 0.6, 30, one_copy=False)
    assert [k.tolist() for k in one_copy] == [k.tolist() for k in per_image]
    assert one_copy[2].numel() == 0 and 0 < one_copy[0].numel() <= 30
