import json

import numpy as np
import pytest
import torch

from maskrcnn.ops import masks as masks_module
from maskrcnn.ops.masks import (
    crop_and_resize_masks,
    mask_to_rle,
    masks_to_rles,
    paste_masks_in_image,
    paste_masks_to_rles,
    polygons_to_mask,
    rle_to_mask,
)
from maskrcnn.ops.masks_reference import paste_masks_reference
from maskrcnn.ops.roi_align import roi_align


def test_polygon_rectangle_to_mask():
    # the rectangle x in [2, 6], y in [1, 4] covers pixel columns 2..5 and rows 1..3
    mask = polygons_to_mask([[2.0, 1.0, 6.0, 1.0, 6.0, 4.0, 2.0, 4.0]], 6, 8)
    expected = np.zeros((6, 8), dtype=np.uint8)
    expected[1:4, 2:6] = 1
    assert mask.dtype == np.uint8 and mask.shape == (6, 8)
    assert np.array_equal(mask, expected)
    assert polygons_to_mask([], 6, 8).sum() == 0


def test_rle_round_trip_compressed_and_uncompressed():
    mask = np.zeros((5, 7), dtype=np.uint8)
    mask[1:3, 2:6] = 1
    mask[4, 0] = 1
    rle = mask_to_rle(mask)
    assert rle["size"] == [5, 7] and isinstance(rle["counts"], str)
    json.dumps(rle)  # JSON-ready
    assert np.array_equal(rle_to_mask(rle), mask)
    assert np.array_equal(rle_to_mask({"size": [5, 7], "counts": rle["counts"].encode()}, 5, 7), mask)
    # uncompressed: column-major run lengths starting with background
    column_major = mask.flatten(order="F")
    counts, value, run = [], 0, 0
    for pixel in column_major:
        if pixel == value:
            run += 1
        else:
            counts.append(run)
            value, run = pixel, 1
    counts.append(run)
    assert np.array_equal(rle_to_mask({"size": [5, 7], "counts": counts}), mask)


def test_rle_size_mismatch_is_a_clear_error():
    rle = mask_to_rle(np.ones((3, 4), dtype=np.uint8))
    with pytest.raises(ValueError, match="does not match"):
        rle_to_mask(rle, 4, 4)


def test_masks_to_rles_tensor_and_empty():
    masks = torch.zeros((2, 4, 5), dtype=torch.bool)
    masks[0, 1, 1] = True
    masks[1, :, 4] = True
    rles = masks_to_rles(masks)
    assert len(rles) == 2
    for rle, mask in zip(rles, masks):
        assert np.array_equal(rle_to_mask(rle), mask.numpy().astype(np.uint8))
    assert masks_to_rles(np.zeros((0, 4, 5), dtype=np.uint8)) == []
    assert mask_to_rle(masks[0])["size"] == [4, 5]


def test_crop_and_resize_masks_hand_values():
    mask = torch.zeros((1, 8, 8), dtype=torch.uint8)
    mask[0, :, :4] = 1  # left half set
    # box covering columns 0..8; 2x2 output -> bins 4 px wide; left bin fully inside ones
    targets = crop_and_resize_masks(mask, torch.tensor([[0.0, 0.0, 8.0, 8.0]]), 2)
    assert targets.shape == (1, 2, 2) and targets.dtype == torch.float32
    # left bin: samples at x = 0.5,1.5,2.5,3.5 -> 1, 1, 1, interpolated 0.5 -> mean 0.875
    torch.testing.assert_close(targets[0], torch.tensor([[0.875, 0.0], [0.875, 0.0]]))
    assert crop_and_resize_masks(torch.zeros((0, 8, 8)), torch.zeros((0, 4)), 28).shape == (0, 28, 28)


def test_crop_and_resize_masks_with_indices_equals_copied_masks():
    generator = torch.Generator().manual_seed(0)
    gt_masks = (torch.rand((3, 40, 50), generator=generator) > 0.5).to(torch.uint8)
    boxes = torch.tensor([[2.0, 3.0, 30.0, 20.0], [10.0, 0.0, 49.0, 39.0], [5.0, 5.0, 6.0, 6.0], [0.0, 0, 50, 40]])
    indices = torch.tensor([2, 0, 0, 1])
    by_index = crop_and_resize_masks(gt_masks, boxes, 7, mask_indices=indices)
    copied = crop_and_resize_masks(gt_masks[indices], boxes, 7)
    assert by_index.shape == (4, 7, 7)
    torch.testing.assert_close(by_index, copied)
    assert not torch.equal(by_index[0], crop_and_resize_masks(gt_masks[:1], boxes[:1], 7)[0])
    no_indices = torch.zeros(0, dtype=torch.int64)
    empty = crop_and_resize_masks(torch.zeros((0, 40, 50)), torch.zeros((0, 4)), 7, mask_indices=no_indices)
    assert empty.shape == (0, 7, 7)


def test_paste_constant_mask():
    masks = torch.ones((1, 28, 28))
    # box 28 x 28 at (10, 20) expands by 30/28 about the centre: [9, 19, 39, 49] -> 31 x 31 px
    pasted = paste_masks_in_image(masks, torch.tensor([[10.0, 20.0, 38.0, 48.0]]), (60, 70))
    assert pasted.shape == (1, 60, 70)
    # the zero padding ring fades the border; the centre is exactly 1 and outside is 0
    assert pasted[0, 34, 24] == 1.0
    assert pasted[0, :19].sum() == 0 and pasted[0, 50:].sum() == 0
    assert pasted[0, :, :9].sum() == 0 and pasted[0, :, 40:].sum() == 0
    # the first resized pixel samples the zero padding (source index clamped to 0)
    assert pasted[0, 19, 9:40].sum() == 0 and pasted[0, 19:50, 9].sum() == 0
    assert (pasted[0, 20:49, 10:39] > 0).all()
    torch.testing.assert_close(pasted[0, 20, 24], torch.tensor(1.5 * 30 / 31 - 0.5))


def test_paste_matches_interpolate_reference_and_empty():
    generator = torch.Generator().manual_seed(0)
    masks = torch.rand((12, 28, 28), generator=generator)
    corner = torch.rand((12, 2), generator=generator) * 90 - 10
    boxes = torch.cat([corner, corner + torch.rand((12, 2), generator=generator) * 60], dim=1)
    pasted = paste_masks_in_image(masks, boxes, (70, 90))
    torch.testing.assert_close(pasted, paste_masks_reference(masks, boxes, (70, 90)), atol=1e-5, rtol=0)
    assert paste_masks_in_image(torch.zeros((0, 28, 28)), torch.zeros((0, 4)), (70, 90)).shape == (0, 70, 90)


def _full_mask_targets(gt_masks, boxes, mask_size, mask_indices):
    """The targets read from float copies of the whole masks (what the cropped path must equal)."""
    rois = torch.cat([mask_indices.float()[:, None], boxes], 1)
    return roi_align(gt_masks[:, None].float(), rois, (mask_size, mask_size), 1.0, sampling_ratio=-1, aligned=False)[:, 0]


def test_mask_targets_read_from_crops_equal_the_full_masks():
    generator = torch.Generator().manual_seed(0)
    for trial in range(120):
        height, width = torch.randint(5, 60, (2,), generator=generator).tolist()
        num_gt = int(torch.randint(1, 6, (1,), generator=generator))
        gt_masks = (torch.rand(num_gt, height, width, generator=generator) > 0.5).to(torch.uint8)
        num = int(torch.randint(1, 10, (1,), generator=generator))
        corner = torch.rand(num, 2, generator=generator) * torch.tensor([width, height])
        extent = torch.rand(num, 2, generator=generator) * torch.tensor([width, height])
        if trial % 3 == 0:
            extent = extent * 0.02  # boxes under one pixel: RoIAlign grows them
        boxes = torch.cat([corner, torch.minimum(corner + extent, torch.tensor([float(width), float(height)]))], 1)
        if trial % 4 == 0:
            boxes[:, 2], boxes[:, 3] = width, height  # reaching the image's far edges
        indices = torch.randint(0, num_gt, (num,), generator=generator)
        side = int(torch.randint(2, 29, (1,), generator=generator))
        cropped = crop_and_resize_masks(gt_masks, boxes, side, mask_indices=indices)
        torch.testing.assert_close(cropped, _full_mask_targets(gt_masks, boxes, side, indices), atol=1e-5, rtol=0)


def test_mask_targets_crop_only_what_the_boxes_reach():
    gt_masks = torch.zeros((3, 400, 500), dtype=torch.uint8)
    gt_masks[1, 100:130, 200:240] = 1
    boxes = torch.tensor([[198.0, 99.0, 241.0, 131.0], [205.0, 102.0, 236.0, 128.0]])
    crops, crop_index, moved = masks_module._crop_masks_to_boxes(gt_masks, boxes, torch.tensor([1, 1]), torch.float32)
    assert crops.shape[0] == 1 and crops.shape[1] < 40 and crops.shape[2] < 50  # not (3, 400, 500)
    assert crop_index.tolist() == [0, 0] and moved[0, :2].tolist() == [0.0, 0.0]
    expected = _full_mask_targets(gt_masks, boxes, 7, torch.tensor([1, 1]))
    torch.testing.assert_close(crop_and_resize_masks(gt_masks, boxes, 7, mask_indices=torch.tensor([1, 1])), expected)


@pytest.mark.parametrize("chunk_size", [1, 3, 64])
def test_paste_to_rles_in_chunks_equals_the_full_paste(chunk_size):
    generator = torch.Generator().manual_seed(3)
    masks = torch.rand(7, 28, 28, generator=generator)  # (N, M, M)
    corners = torch.rand(7, 2, generator=generator) * torch.tensor([50.0, 40.0]) - 5  # some leave the image
    sides = torch.rand(7, 2, generator=generator) * 30 + 2
    boxes = torch.cat([corners, corners + sides], dim=1)  # (N, 4)
    expected = masks_to_rles((paste_masks_in_image(masks, boxes, (45, 60)) > 0.5).to(torch.uint8))
    got = paste_masks_to_rles(masks, boxes, (45, 60), 0.5, chunk_size=chunk_size)
    assert got == expected
    assert sum(rle_to_mask(r).sum() for r in got) > 0  # not all empty: the comparison means something
