"""Flips, rotations, transpose and zoom: pixels, masks and boxes move together."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from maskrcnn.data import geometric
from maskrcnn.data.geometric import (
    RandomRotate90,
    RandomScaleJitter,
    RandomTranspose,
    RandomVerticalFlip,
    ZoomWindow,
    hflip,
    rotate90,
    transpose,
    vflip,
    zoom,
)
from maskrcnn.ops.boxes import masks_to_boxes
from maskrcnn.structures import Targets


def _sample(height: int = 20, width: int = 30) -> tuple[torch.Tensor, Targets]:
    """A non-square image whose pixels encode their position, and three instances: an L shape,
    one touching the top and right borders, a single pixel at the bottom-left corner."""
    rows = torch.arange(height, dtype=torch.float32).view(height, 1).expand(height, width)
    cols = torch.arange(width, dtype=torch.float32).view(1, width).expand(height, width)
    image = torch.stack([rows / height, cols / width, (rows + cols) / (height + width)])
    masks = torch.zeros((3, height, width), dtype=torch.uint8)
    masks[0, 4:12, 2:5] = 1
    masks[0, 9:12, 2:10] = 1
    masks[1, 0:4, width - 10 :] = 1
    masks[2, height - 1, 0] = 1
    return image, Targets(boxes=masks_to_boxes(masks), labels=torch.tensor([1, 2, 3]), masks=masks)


def _assert_consistent(image: torch.Tensor, targets: Targets) -> None:
    assert targets.masks.shape == (len(targets), *image.shape[-2:])
    assert len(targets.labels) == len(targets.boxes) == len(targets.masks)
    assert (targets.masks.flatten(1).sum(1) > 0).all(), "an empty mask survived"
    torch.testing.assert_close(targets.boxes, masks_to_boxes(targets.masks), rtol=0, atol=0)


@pytest.fixture(params=["whole tensor", "instance by instance"])
def mask_path(request, monkeypatch):
    """Run a test with masks moved as one tensor (small masks) and instance by instance (large)."""
    if request.param == "instance by instance":
        monkeypatch.setattr(geometric, "WHOLE_TENSOR_MAX_ELEMENTS", 0)
    return request.param


def test_each_orientation_matches_torch_on_pixels_and_masks(mask_path):
    image, targets = _sample()
    cases = {
        "hflip": (hflip, lambda x: x.flip(-1)),
        "vflip": (vflip, lambda x: x.flip(-2)),
        "transpose": (transpose, lambda x: x.transpose(-2, -1)),
        "rot1": (lambda i, t: rotate90(i, t, 1), lambda x: torch.rot90(x, 1, (-2, -1))),
        "rot2": (lambda i, t: rotate90(i, t, 2), lambda x: torch.rot90(x, 2, (-2, -1))),
        "rot3": (lambda i, t: rotate90(i, t, 3), lambda x: torch.rot90(x, 3, (-2, -1))),
    }
    for name, (transform, reference) in cases.items():
        out_image, out = transform(image, targets)
        assert torch.equal(out_image, reference(image)), name
        assert torch.equal(out.masks, reference(targets.masks)), name
        assert out.labels.tolist() == [1, 2, 3], name
        _assert_consistent(out_image, out)  # boxes mapped by formula equal the tight boxes


def test_rotate90_counter_clockwise_by_hand():
    # a 2x3 image: the top-right pixel goes to the top-left after a quarter turn counter-clockwise
    image = torch.zeros(3, 2, 3)
    masks = torch.zeros((1, 2, 3), dtype=torch.uint8)
    masks[0, 0, 2] = 1
    targets = Targets(boxes=torch.tensor([[2.0, 0.0, 3.0, 1.0]]), labels=torch.tensor([1]), masks=masks)
    out_image, out = rotate90(image, targets, 1)
    assert out_image.shape == (3, 3, 2)
    assert out.masks[0, 0, 0] == 1 and out.masks.sum() == 1
    assert out.boxes.tolist() == [[0.0, 0.0, 1.0, 1.0]]


def test_four_quarter_turns_and_two_transposes_give_back_the_input(mask_path):
    image, targets = _sample()
    out_image, out = image, targets
    for _ in range(4):
        out_image, out = rotate90(out_image, out, 1)
    assert torch.equal(out_image, image) and torch.equal(out.masks, targets.masks)
    torch.testing.assert_close(out.boxes, targets.boxes)
    twice_image, twice = transpose(*transpose(image, targets))
    assert torch.equal(twice_image, image) and torch.equal(twice.boxes, targets.boxes)


def test_random_orientations_reach_all_eight():
    """horizontal flip 0.5, vertical flip 0.5 and transpose 0.5 together give the 8 orientations."""
    from maskrcnn.data.transforms import Compose, RandomHorizontalFlip

    torch.manual_seed(0)
    image = torch.arange(6, dtype=torch.float32).view(1, 2, 3).expand(3, 2, 3).contiguous()
    pipeline = Compose([RandomHorizontalFlip(0.5), RandomVerticalFlip(0.5), RandomTranspose(0.5)])
    seen = {tuple(pipeline(image, Targets.empty(2, 3))[0][0].flatten().tolist()) for _ in range(200)}
    assert len(seen) == 8
    rotations = {tuple(RandomRotate90(1.0)(image, Targets.empty(2, 3))[0][0].flatten().tolist()) for _ in range(60)}
    assert len(rotations) == 3  # 90, 180, 270; never the identity with p = 1


def test_orientations_without_masks_map_boxes():
    image, targets = _sample()
    no_masks = Targets(boxes=targets.boxes, labels=targets.labels, masks=None)
    for k in (1, 2, 3):
        _, with_masks = rotate90(image, targets, k)
        _, without = rotate90(image, no_masks, k)
        assert without.masks is None
        torch.testing.assert_close(without.boxes, with_masks.boxes)


def test_zoom_in_by_two_picks_nearest_source_pixels():
    image, targets = _sample(20, 30)
    # scaled 40x60; the window is its top 30 rows (source rows 0..14), all 60 columns
    out_image, out = zoom(image, targets, ZoomWindow(40, 60, 0, 0, 30, 60))
    assert out_image.shape == (3, 30, 60)
    expected = targets.masks[:, 0:15].repeat_interleave(2, dim=1).repeat_interleave(2, dim=2)
    kept = expected.flatten(1).amax(1) > 0
    assert out.labels.tolist() == targets.labels[kept].tolist() == [1, 2]
    assert torch.equal(out.masks, expected[kept])
    _assert_consistent(out_image, out)


def test_zoom_out_pads_and_places_the_image():
    image, targets = _sample(20, 30)
    # scaled 10x15 placed at rows 4..13, cols 6..20 of a 20x30 output padded with 0.25
    out_image, out = zoom(image, targets, ZoomWindow(10, 15, -4, -6, 20, 30), pad_value=0.25)
    assert out_image.shape == (3, 20, 30)
    assert (out_image[:, :4] == 0.25).all() and (out_image[:, 14:] == 0.25).all()
    assert (out_image[:, :, :6] == 0.25).all() and (out_image[:, :, 21:] == 0.25).all()
    # the single corner pixel (row 19, col 0) is lost at half size: nearest picks even rows/cols
    assert out.labels.tolist() == [1, 2]
    assert torch.equal(out.masks[:, 4:14, 6:21], targets.masks[:2, 1::2, 1::2])
    assert out.masks[:, :4].sum() == 0 and out.masks[:, :, 21:].sum() == 0
    _assert_consistent(out_image, out)
    # pixels follow the masks: the image's row code at the centre of instance 1's new box
    torch.testing.assert_close(out_image[0, 5, 17], image[0, 3, 22], atol=0.06, rtol=0)


def test_zoom_min_area_drops_small_instances():
    image, targets = _sample(20, 30)
    _, out = zoom(image, targets, ZoomWindow(20, 30, 0, 0, 20, 30), min_area=25)
    assert out.labels.tolist() == [1, 2]  # the L has 33 pixels, the border one 40, the corner 1
    _, none_left = zoom(image, targets, ZoomWindow(20, 30, 0, 0, 20, 30), min_area=1000)
    assert len(none_left) == 0 and none_left.masks.shape == (0, 20, 30) and none_left.boxes.shape == (0, 4)


def test_zoom_without_masks_scales_and_clips_boxes():
    image, targets = _sample(20, 30)
    no_masks = Targets(boxes=torch.tensor([[2.0, 4.0, 10.0, 12.0], [20.0, 0.0, 30.0, 4.0]]), labels=torch.tensor([1, 2]))
    # x2 zoom, window from column 20 of the scaled image: the first box falls left of it,
    # the second [40, 0, 60, 8] - 20 = [20, 0, 40, 8] is clipped to the 30 px width
    _, out = zoom(image, no_masks, ZoomWindow(40, 60, 0, 20, 20, 30))
    torch.testing.assert_close(out.boxes, torch.tensor([[20.0, 0.0, 30.0, 8.0]]))
    assert out.labels.tolist() == [2] and out.masks is None


def test_scale_jitter_to_a_target_size_for_non_square_images():
    torch.manual_seed(3)
    transform = RandomScaleJitter(1.0, (0.3, 2.0), target_size=48)
    for _ in range(20):
        image, targets = _sample(20, 30)
        out_image, out = transform(image, targets)
        if out_image.shape[-2:] != (48, 48):  # every crop lost all instances: image kept whole
            assert torch.equal(out_image, image)
            continue
        _assert_consistent(out_image, out)
        assert 0.0 <= out_image.min() and out_image.max() <= 1.0


def test_scale_jitter_keeps_the_image_size_by_default_and_zooms_both_ways():
    torch.manual_seed(0)
    transform = RandomScaleJitter(1.0, (0.5, 2.0))
    padded = cropped = 0
    for _ in range(30):
        image, targets = _sample(20, 30)
        out_image, out = transform(image, targets)
        assert out_image.shape == image.shape
        _assert_consistent(out_image, out)
        black = (out_image == 0).all(dim=0)  # (H, W); no row or column of the input is all black
        has_border = bool(black.all(dim=1).any() or black.all(dim=0).any())
        padded += has_border
        cropped += not has_border
    assert padded > 0 and cropped > 0


def test_bad_scale_range_is_refused():
    with pytest.raises(ValueError, match="scale_range"):
        RandomScaleJitter(1.0, (2.0, 1.0))
    with pytest.raises(ValueError, match="scale_range"):
        RandomScaleJitter(1.0, (0.0, 1.0))


@pytest.mark.parametrize("window", [
    ZoomWindow(30, 45, 0, 0, 30, 45),  # x1.5, the whole scaled image
    ZoomWindow(40, 60, 7, 13, 20, 30),  # x2, a window inside
    ZoomWindow(47, 53, 20, 3, 20, 30),  # x2.35 / x1.77 (LSJ of a non-square image), window at the bottom
    ZoomWindow(20, 30, 0, 0, 20, 30),  # x1: the image itself
])  # fmt: skip
def test_zoom_in_pixels_equal_interpolating_the_whole_image(window):
    image, targets = _sample(20, 30)
    image = image + 0.1 * torch.rand(image.shape, generator=torch.Generator().manual_seed(0))  # not grey, not smooth
    out_image, _ = zoom(image.clamp(0, 1), targets, window)
    sh, sw, top, left, out_h, out_w = window
    whole = F.interpolate(image.clamp(0, 1)[None], size=(sh, sw), mode="bilinear", align_corners=False)[0]
    torch.testing.assert_close(out_image, whole[:, top : top + out_h, left : left + out_w].clamp(0, 1), atol=1e-5, rtol=0)


def test_zoom_of_a_grey_image_stays_grey():
    image, targets = _sample(20, 30)
    grey = image[:1].expand(3, 20, 30).contiguous()
    for window in (ZoomWindow(40, 60, 5, 5, 20, 30), ZoomWindow(10, 15, -3, -4, 20, 30)):
        out_image, _ = zoom(grey, targets, window)
        assert torch.equal(out_image[0], out_image[1]) and torch.equal(out_image[1], out_image[2])
