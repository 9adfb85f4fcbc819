"""ImageTransform: torchvision's resize arithmetic, normalization, padding, the way back."""

from __future__ import annotations

import pytest
import torch

from maskrcnn.model.transform import ImageTransform, resize_boxes, resize_scale_factor
from maskrcnn.structures import Detections, Targets

MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]


def make_transform(min_size=(800,), max_size=1333, size_divisible=32) -> ImageTransform:
    return ImageTransform(
        min_size=list(min_size), max_size=max_size, image_mean=MEAN, image_std=STD, size_divisible=size_divisible
    ).eval()


@pytest.mark.parametrize(
    ("hw", "expected"),
    [
        ((320, 320), (800, 800)),  # 800 / 320 = 2.5 exactly
        ((213, 320), (800, 1201)),  # 320 * (800 / 213) = 1201.88 -> floor
        # the long side binds: 1333 / 400 = 3.3325 is 3.33249998... in float32, and
        # 400 * that = 1332.9999 floors to 1332 (torchvision gives the same)
        ((100, 400), (333, 1332)),
    ],
)
def test_resize_sizes_follow_torchvision_arithmetic(hw, expected):
    transform = make_transform()
    batch, _ = transform([torch.rand(3, *hw)])
    assert batch.image_sizes == [expected]
    assert batch.original_sizes == [hw]


def test_scale_factor_is_float32():
    assert resize_scale_factor(100, 400, 800.0, 1333.0) == pytest.approx(3.3325, abs=1e-6)
    assert resize_scale_factor(100, 400, 800.0, 1333.0) != 1333 / 400  # float32, not float64


def test_normalization_maps_the_mean_to_zero():
    transform = make_transform(min_size=(32,), max_size=32)
    image = torch.tensor(MEAN).view(3, 1, 1).expand(3, 32, 32).clone()
    image[:, 0, 0] = torch.tensor(MEAN) + torch.tensor(STD)  # one std above the mean
    batch, _ = transform([image])
    assert batch.tensor.shape == (1, 3, 32, 32)
    assert torch.allclose(batch.tensor[0, :, 5, 5], torch.zeros(3), atol=1e-6)
    assert torch.allclose(batch.tensor[0, :, 0, 0], torch.ones(3), atol=1e-5)


def test_padding_batches_different_sizes_with_zeros():
    transform = make_transform(min_size=(40,), max_size=1000, size_divisible=32)
    images = [torch.ones(3, 40, 50), torch.ones(3, 50, 40)]  # -> 40x50 and 50x40 (scale 1 and 0.8)
    batch, _ = transform(images)
    assert batch.image_sizes == [(40, 50), (50, 40)]
    assert batch.tensor.shape == (2, 3, 64, 64)  # max 50 -> 64
    assert torch.all(batch.tensor[0, :, 40:, :] == 0) and torch.all(batch.tensor[0, :, :, 50:] == 0)
    assert torch.all(batch.tensor[1, :, :, 40:] == 0)
    assert torch.all(batch.tensor[0, :, :40, :50] != 0)


def test_targets_follow_the_resize():
    transform = make_transform(min_size=(200,), max_size=1000)
    masks = torch.zeros(1, 100, 150, dtype=torch.uint8)
    masks[0, 20:40, 10:30] = 1
    target = Targets(boxes=torch.tensor([[10.0, 20.0, 30.0, 40.0]]), labels=torch.tensor([1]), masks=masks)
    batch, (resized,) = transform.train()([torch.rand(3, 100, 150)], [target])
    assert batch.image_sizes == [(200, 300)]
    assert torch.allclose(resized.boxes, torch.tensor([[20.0, 40.0, 60.0, 80.0]]))
    assert resized.masks.shape == (1, 200, 300) and resized.masks.dtype == torch.uint8
    assert int(resized.masks.sum()) == 4 * 20 * 20  # nearest: every pixel doubled both ways
    assert resized.masks[0, 40:80, 20:60].all()


def test_empty_targets_resize():
    transform = make_transform(min_size=(64,), max_size=1000)
    batch, (resized,) = transform.train()([torch.rand(3, 32, 32)], [Targets.empty(32, 32)])
    assert resized.boxes.shape == (0, 4) and resized.masks.shape == (0, 64, 64)


def test_training_picks_a_random_min_size_per_image():
    transform = make_transform(min_size=(64, 96), max_size=1000).train()
    torch.manual_seed(0)
    sizes = {transform([torch.rand(3, 32, 32)])[0].image_sizes[0] for _ in range(20)}
    assert sizes == {(64, 64), (96, 96)}
    assert transform.eval()([torch.rand(3, 32, 32)])[0].image_sizes == [(96, 96)]  # largest at test time


def test_resize_boxes_uses_per_axis_ratios():
    boxes = torch.tensor([[10.0, 10.0, 20.0, 40.0]])
    out = resize_boxes(boxes, (100, 200), (50, 400))  # h halves, w doubles
    assert torch.equal(out, torch.tensor([[20.0, 5.0, 40.0, 20.0]]))


def test_postprocess_maps_boxes_back_and_pastes_masks():
    transform = make_transform()
    det = Detections(
        boxes=torch.tensor([[20.0, 40.0, 60.0, 80.0]]),
        scores=torch.tensor([0.9]),
        labels=torch.tensor([3]),
        masks=torch.ones(1, 28, 28),
    )
    (unpasted,) = transform.postprocess([det], [(200, 300)], [(100, 150)], None)
    assert unpasted.masks.shape == (1, 28, 28)  # None: grids left in their boxes
    (out,) = transform.postprocess([det], [(200, 300)], [(100, 150)], "torchvision")
    assert torch.allclose(out.boxes, torch.tensor([[10.0, 20.0, 30.0, 40.0]]))
    assert out.masks.shape == (1, 100, 150)
    assert out.masks[0, 25, 20] > 0.5 and out.masks[0, 5, 5] == 0 and out.masks[0, 60, 100] == 0
    empty = Detections(boxes=torch.zeros(0, 4), scores=torch.zeros(0), labels=torch.zeros(0, dtype=torch.int64),
                       masks=torch.zeros(0, 28, 28))
    (out,) = transform.postprocess([empty], [(200, 300)], [(100, 150)], "torchvision")
    assert out.masks.shape == (0, 100, 150) and out.boxes.shape == (0, 4)


def test_mean_and_std_are_not_in_the_state_dict():
    assert make_transform().state_dict() == {}


@pytest.mark.parametrize(
    ("hw", "expected"),
    [
        ((256, 256), (512, 512)),  # every image doubled, whatever its size
        ((256, 320), (512, 640)),
        ((520, 696), (1040, 1392)),
        ((1024, 1024), (1400, 1400)),  # the long side stays within max_size
    ],
)
def test_fixed_scale_keeps_the_pixel_scale(hw, expected):
    transform = ImageTransform(
        min_size=[800], max_size=1400, image_mean=MEAN, image_std=STD, size_divisible=32, fixed_scale=2.0
    ).eval()
    batch, targets = transform([torch.rand(3, *hw)], [Targets(boxes=torch.tensor([[10.0, 20.0, 30.0, 40.0]]),
                                                              labels=torch.tensor([1]), masks=None)])
    assert batch.image_sizes == [expected]
    scale = expected[0] / hw[0]
    assert torch.allclose(targets[0].boxes, torch.tensor([[10.0, 20.0, 30.0, 40.0]]) * scale, atol=1e-3)


def test_fixed_scale_must_not_be_negative():
    with pytest.raises(ValueError, match="fixed_scale"):
        ImageTransform(min_size=[800], max_size=1333, image_mean=MEAN, image_std=STD, size_divisible=32, fixed_scale=-1.0)
