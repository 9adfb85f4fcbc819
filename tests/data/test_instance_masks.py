"""Box-by-box mask moves: extents equal masks_to_boxes; patches pasted, trimmed and filtered."""

from __future__ import annotations

import torch

from maskrcnn.data.instance_masks import Patch, mask_extents, move_masks, place_patches
from maskrcnn.ops.boxes import masks_to_boxes


def test_mask_extents_equal_masks_to_boxes_including_empty_and_border_masks():
    generator = torch.Generator().manual_seed(0)
    masks = (torch.rand((12, 17, 23), generator=generator) > 0.97).to(torch.uint8)
    masks[0] = 0  # empty
    masks[1, :, -1] = 1  # a whole border column
    masks[2, -1, -1] = 1  # the last pixel only (plus whatever was drawn)
    masks[3] = 0
    masks[3, 0, 0] = 1  # the first pixel only
    assert torch.equal(mask_extents(masks).to(torch.float32), masks_to_boxes(masks))
    assert mask_extents(masks[:0]).shape == (0, 4)


def test_place_patches_trims_and_drops():
    patches = [
        Patch(torch.tensor([[0, 0, 0], [0, 1, 1], [0, 0, 0]], dtype=torch.uint8), 2, 3),  # 2 pixels
        None,  # nothing left
        Patch(torch.zeros((2, 2), dtype=torch.uint8), 0, 0),  # empty
        Patch(torch.ones((2, 3), dtype=torch.uint8), 5, 0),  # 6 pixels
    ]
    placed = place_patches(patches, 8, 9, torch.uint8, min_area=1)
    assert placed.keep.tolist() == [True, False, False, True]
    assert placed.extents.tolist() == [[4, 3, 6, 4], [0, 5, 3, 7]]
    assert placed.masks.shape == (2, 8, 9) and placed.masks[0, 3, 4:6].tolist() == [1, 1] and placed.masks[0].sum() == 2
    assert torch.equal(placed.extents.float(), masks_to_boxes(placed.masks))
    assert place_patches(patches, 8, 9, torch.uint8, min_area=3).keep.tolist() == [False, False, False, True]


def test_move_masks_matches_the_whole_tensor_operation():
    generator = torch.Generator().manual_seed(1)
    masks = (torch.rand((5, 9, 14), generator=generator) > 0.8).to(torch.uint8)
    masks[4] = 0
    extents = mask_extents(masks)
    width = masks.shape[-1]
    mirrored = torch.stack([width - extents[:, 2], extents[:, 1], width - extents[:, 0], extents[:, 3]], 1)
    moved = move_masks(masks, extents, (9, 14), mirrored, lambda x: x.flip(-1))
    assert torch.equal(moved, masks.flip(-1))


def test_lazy_zeros_are_zero_writable_and_outlive_their_maker():
    from maskrcnn.data.instance_masks import lazy_zeros

    big = lazy_zeros((3, 700, 900), torch.uint8)  # memory-mapped
    assert big.shape == (3, 700, 900) and big.dtype == torch.uint8 and int(big.count_nonzero()) == 0
    big[1, 5:7, 8:9] = 1
    assert int(big.sum()) == 2 and torch.equal(big.clone(), big)
    small = lazy_zeros((2, 4, 4), torch.uint8)
    assert int(small.count_nonzero()) == 0 and small.shape == (2, 4, 4)


def test_results_remember_their_extents_and_they_are_right():
    generator = torch.Generator().manual_seed(2)
    masks = (torch.rand((6, 40, 30), generator=generator) > 0.9).to(torch.uint8)
    extents = mask_extents(masks)
    width = masks.shape[-1]
    mirrored = torch.stack([width - extents[:, 2], extents[:, 1], width - extents[:, 0], extents[:, 3]], 1)
    moved = move_masks(masks, extents, (40, 30), mirrored, lambda x: x.flip(-1))
    remembered = mask_extents(moved)
    assert torch.equal(remembered.float(), masks_to_boxes(moved.clone()))  # the clone carries no memory
