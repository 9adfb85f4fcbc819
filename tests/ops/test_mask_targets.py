import pytest
import torch

from maskrcnn.ops import roi_align as roi_align_module
from maskrcnn.ops.mask_targets import mask_targets_batch
from maskrcnn.ops.masks import crop_and_resize_masks


def _image(generator, height, width, num_masks, num_boxes, outside=False):
    masks = (torch.rand((num_masks, height, width), generator=generator) > 0.5).to(torch.uint8)
    corner = torch.rand((num_boxes, 2), generator=generator) * torch.tensor([width * 0.7, height * 0.7])
    size = torch.rand((num_boxes, 2), generator=generator) * torch.tensor([width * 0.5, height * 0.5]) + 0.3
    far = torch.minimum(corner + size, torch.tensor([float(width), float(height)]))
    boxes = torch.cat([corner, far], dim=1)
    boxes[0, 2:] = torch.tensor([float(width), float(height)])  # one box ends at the image's edge
    if outside:
        boxes[-1] = torch.tensor([-3.0, -2.0, width + 4.0, height * 0.5])
    indices = torch.randint(0, num_masks, (num_boxes,), generator=generator)
    return masks, boxes, indices


@pytest.mark.parametrize("host_bounds", [False, True])
def test_batch_targets_equal_each_image_cropped_alone(host_bounds, monkeypatch):
    monkeypatch.setattr(roi_align_module, "HOST_BOUNDS_EVERYWHERE", host_bounds)
    generator = torch.Generator().manual_seed(0)
    images = [
        _image(generator, 40, 50, 3, 6),
        _image(generator, 33, 21, 2, 4, outside=True),  # a box past the edge: the whole-mask path
        (torch.zeros((2, 30, 30), dtype=torch.uint8), torch.zeros((0, 4)), torch.zeros((0,), dtype=torch.int64)),
        _image(generator, 64, 48, 4, 9),
    ]
    masks, boxes, indices = (list(parts) for parts in zip(*images))
    batch = mask_targets_batch(masks, boxes, indices, 7)
    alone = torch.cat([crop_and_resize_masks(m, b, 7, mask_indices=i) for m, b, i in zip(masks, boxes, indices)])
    assert batch.shape == (19, 7, 7)
    torch.testing.assert_close(batch, alone, atol=1e-6, rtol=0)


def test_batch_targets_of_no_boxes_are_empty():
    out = mask_targets_batch([torch.zeros((1, 8, 8))], [torch.zeros((0, 4))], [torch.zeros((0,), dtype=torch.int64)], 28)
    assert out.shape == (0, 28, 28)
