"""The pixel-exact paste (model.roi_heads.mask_paste: exact): a mask covers the pixels whose
centres are in its box, not torchvision's one pixel more; aligned grids of training targets
paste back onto the ground truth."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from maskrcnn.ops.exact_paste import align_mask_grids, paste_masks_exact
from maskrcnn.ops.masks import crop_and_resize_masks, paste_masks


def reference_paste(masks: torch.Tensor, boxes: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Every pixel of the image, one grid_sample per mask: the grid's value at the pixel's centre."""
    height, width = size
    side = masks.shape[-1]
    out = []
    for mask, (x1, y1, x2, y2) in zip(masks, boxes.tolist()):
        u = ((torch.arange(width) + 0.5 - x1) / ((x2 - x1) / side) - 0.5) / (side - 1) * 2 - 1  # (W,)
        v = ((torch.arange(height) + 0.5 - y1) / ((y2 - y1) / side) - 0.5) / (side - 1) * 2 - 1  # (H,)
        grid = torch.stack((u[None, :].expand(height, width), v[:, None].expand(height, width)), dim=-1)
        out.append(F.grid_sample(mask[None, None], grid[None], align_corners=True, padding_mode="zeros")[0, 0])
    return torch.stack(out)


def test_a_full_grid_covers_exactly_the_pixels_centred_in_its_box() -> None:
    ones = torch.ones(1, 28, 28)
    box = torch.tensor([[2.3, 3.0, 12.0, 9.4]])
    exact = paste_masks_exact(ones, box, (16, 20))[0] > 0.5
    expected = torch.zeros(16, 20, dtype=torch.bool)
    expected[3:9, 2:12] = True  # centres 2.5..11.5 in [2.3, 12], 3.5..8.5 in [3, 9.4]
    assert torch.equal(exact, expected)
    torchvision = paste_masks(ones, box, (16, 20), "torchvision")[0] > 0.5
    assert torchvision.sum() > expected.sum()  # its truncated box and one extra pixel


def test_matches_a_per_pixel_reference_inside_and_across_the_image_edge() -> None:
    generator = torch.Generator().manual_seed(0)
    masks = torch.rand(5, 28, 28, generator=generator)
    boxes = torch.tensor(
        [[3.2, 4.7, 20.9, 15.1], [0.0, 0.0, 6.0, 5.0], [-4.5, 10.0, 9.0, 30.5], [25.3, 20.2, 40.0, 31.0], [7.0, 7.0, 7.5, 8.0]]
    )
    size = (28, 33)
    fast = paste_masks_exact(masks, boxes, size)
    assert torch.allclose(fast, reference_paste(masks, boxes, size), atol=1e-5)
    assert paste_masks_exact(masks[:0], boxes[:0], size).shape == (0, 28, 33)


def test_aligned_targets_paste_back_onto_the_ground_truth() -> None:
    gt = torch.zeros(1, 48, 48)
    gt[0, 12:30, 10:22] = 1.0
    box = torch.tensor([[10.0, 12.0, 22.0, 30.0]])  # the object's tight box
    targets = crop_and_resize_masks(gt, box, 28)  # what the mask head learns: half a pixel off
    aligned = paste_masks_exact(align_mask_grids(targets, box), box, (48, 48))[0] > 0.5
    unaligned = paste_masks_exact(targets, box, (48, 48))[0] > 0.5
    assert torch.equal(aligned, gt[0] > 0.5)
    assert not torch.equal(unaligned, gt[0] > 0.5)
