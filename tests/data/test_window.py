"""RandomWindow (data.augment.crop_size): a fixed-size window, masks and boxes kept consistent."""

from __future__ import annotations

import torch

from maskrcnn.data.window import RandomWindow
from maskrcnn.ops.boxes import masks_to_boxes
from maskrcnn.structures import Targets


def _targets(height: int, width: int) -> Targets:
    masks = torch.zeros((3, height, width), dtype=torch.uint8)
    masks[0, 5:20, 5:30] = 1
    masks[1, height - 40 : height - 10, width - 50 : width - 5] = 1
    masks[2, height // 2 : height // 2 + 12, width // 2 : width // 2 + 12] = 1
    return Targets(boxes=masks_to_boxes(masks), labels=torch.tensor([1, 1, 1]), masks=masks)


def test_window_is_at_most_size_and_masks_match_boxes():
    torch.manual_seed(0)
    window = RandomWindow(64, min_area=4)
    for _ in range(20):
        image, targets = window(torch.rand(3, 200, 150), _targets(200, 150))
        assert image.shape == (3, 64, 64)
        assert len(targets) >= 1  # a window with no instance is drawn again
        assert targets.masks.shape[1:] == (64, 64)
        assert torch.equal(targets.boxes, masks_to_boxes(targets.masks))
        assert int(targets.masks.flatten(1).sum(1).min()) >= 4


def test_small_side_is_kept_whole_and_small_images_pass_unchanged():
    torch.manual_seed(0)
    image, targets = RandomWindow(128)(torch.rand(3, 100, 300), _targets(100, 300))
    assert image.shape == (3, 100, 128)
    original = torch.rand(3, 90, 120)
    same_image, same_targets = RandomWindow(128)(original, _targets(90, 120))
    assert same_image is original and len(same_targets) == 3
