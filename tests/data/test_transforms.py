from __future__ import annotations

import pytest
import torch

from maskrcnn.config import AugmentConfig
from maskrcnn.data.transforms import (
    Compose,
    PhotometricJitter,
    RandomCrop,
    RandomHorizontalFlip,
    ResizeShortestEdge,
    build_transforms,
    crop,
)
from maskrcnn.structures import Targets


def _sample(height: int = 20, width: int = 30) -> tuple[torch.Tensor, Targets]:
    """Two instances: rows 4..11 x cols 2..9, and rows 0..3 x cols 20..29."""
    image = torch.arange(3 * height * width, dtype=torch.float32).reshape(3, height, width) / (3 * height * width)
    masks = torch.zeros((2, height, width), dtype=torch.uint8)
    masks[0, 4:12, 2:10] = 1
    masks[1, 0:4, 20:30] = 1
    boxes = torch.tensor([[2.0, 4.0, 10.0, 12.0], [20.0, 0.0, 30.0, 4.0]])
    return image, Targets(boxes=boxes, labels=torch.tensor([1, 2]), masks=masks)


def test_flip_moves_boxes_masks_and_pixels_together():
    image, targets = _sample()
    out_image, out = RandomHorizontalFlip(p=1.0)(image, targets)
    torch.testing.assert_close(out.boxes, torch.tensor([[20.0, 4.0, 28.0, 12.0], [0.0, 0.0, 10.0, 4.0]]))
    assert out.masks[0, 4:12, 20:28].all() and out.masks[0].sum() == 64
    assert torch.equal(out_image[:, :, 0], image[:, :, -1])
    assert out.labels.tolist() == [1, 2]


def test_flip_with_probability_zero_changes_nothing():
    image, targets = _sample()
    out_image, out = RandomHorizontalFlip(p=0.0)(image, targets)
    assert out_image is image and out is targets


def test_flip_of_empty_targets():
    image = torch.rand(3, 8, 6)
    out_image, out = RandomHorizontalFlip(p=1.0)(image, Targets.empty(8, 6))
    assert len(out) == 0 and out.masks.shape == (0, 8, 6)


def test_crop_recomputes_boxes_from_masks_and_drops_emptied_instances():
    image, targets = _sample()
    # window rows 6..15, cols 5..24: instance 0 keeps rows 6..11 x cols 5..9; instance 1 is gone
    out_image, out = crop(image, targets, top=6, left=5, height=10, width=20)
    assert out_image.shape == (3, 10, 20)
    assert torch.equal(out_image, image[:, 6:16, 5:25])
    assert out.labels.tolist() == [1]
    torch.testing.assert_close(out.boxes, torch.tensor([[0.0, 0.0, 5.0, 6.0]]))
    assert out.masks.shape == (1, 10, 20) and out.masks.sum() == 30


def test_crop_without_masks_clips_boxes():
    image, targets = _sample()
    targets = Targets(boxes=targets.boxes, labels=targets.labels, masks=None)
    _, out = crop(image, targets, top=6, left=5, height=10, width=20)
    torch.testing.assert_close(out.boxes, torch.tensor([[0.0, 0.0, 5.0, 6.0]]))
    assert out.labels.tolist() == [1]


def test_random_crop_stays_within_fraction_and_keeps_masks_consistent():
    torch.manual_seed(0)
    transform = RandomCrop(p=1.0, min_fraction=0.5)
    for _ in range(10):
        image, targets = _sample()
        out_image, out = transform(image, targets)
        height, width = out_image.shape[-2:]
        assert 10 <= height <= 20 and 15 <= width <= 30
        assert out.masks.shape[1:] == (height, width)
        assert len(out.boxes) == len(out.labels) == len(out.masks)
        assert (out.masks.flatten(1).sum(1) > 0).all()


def test_resize_shortest_edge_scales_boxes_and_masks():
    image, targets = _sample()
    out_image, out = ResizeShortestEdge([40], max_size=1000)(image, targets)
    assert out_image.shape == (3, 40, 60)
    torch.testing.assert_close(out.boxes, targets.boxes * 2)
    assert out.masks.shape == (2, 40, 60) and out.masks.dtype == torch.uint8
    assert out.masks[0].sum() == 4 * 64  # nearest: every pixel becomes 2x2


def test_resize_respects_max_size():
    image, targets = _sample()
    out_image, out = ResizeShortestEdge([100], max_size=45)(image, targets)
    assert out_image.shape == (3, 30, 45)  # long side capped: scale 1.5
    torch.testing.assert_close(out.boxes, targets.boxes * 1.5)


def test_photometric_jitter_keeps_range_and_geometry():
    torch.manual_seed(0)
    image, targets = _sample()
    out_image, out = PhotometricJitter(0.5, 0.5, 0.5)(image, targets)
    assert out_image.shape == image.shape and out is targets
    assert 0.0 <= out_image.min() and out_image.max() <= 1.0
    assert not torch.equal(out_image, image)
    same, _ = PhotometricJitter(0.0, 0.0, 0.0)(image, targets)
    torch.testing.assert_close(same, image)


def test_build_transforms_follows_the_config():
    assert build_transforms(AugmentConfig(), train=False) is None
    assert build_transforms(AugmentConfig(horizontal_flip=0.0), train=True) is None
    composed = build_transforms(AugmentConfig(horizontal_flip=0.5, random_crop=0.3, photometric=True), train=True)
    assert isinstance(composed, Compose)
    kinds = [type(t) for t in composed.transforms]
    assert kinds == [RandomCrop, RandomHorizontalFlip, PhotometricJitter]


def test_bad_crop_fraction_is_refused():
    with pytest.raises(ValueError, match="min_fraction"):
        RandomCrop(p=1.0, min_fraction=0.0)


def test_random_crop_never_loses_every_instance():
    torch.manual_seed(1)
    image = torch.rand(3, 40, 40)
    masks = torch.zeros((1, 40, 40), dtype=torch.uint8)
    masks[0, 0:2, 0:2] = 1  # a tiny corner instance that most windows miss
    targets = Targets(boxes=torch.tensor([[0.0, 0.0, 2.0, 2.0]]), labels=torch.tensor([1]), masks=masks)
    transform = RandomCrop(p=1.0, min_fraction=0.3)
    cropped = 0
    for _ in range(20):
        out_image, out = transform(image, targets)
        assert len(out) == 1
        cropped += out_image.shape[-2:] != (40, 40)
    # a single window keeps the corner ~7% of the time; ten tries ~50%
    assert cropped >= 5


def test_build_transforms_orders_geometry_before_intensity():
    from maskrcnn.data.geometric import (
        RandomRotate90,
        RandomScaleJitter,
        RandomTranspose,
        RandomVerticalFlip,
    )
    from maskrcnn.data.photometric import (
        IntensityJitter,
        RandomGaussianBlur,
        RandomGaussianNoise,
    )

    config = AugmentConfig(vertical_flip=0.5, rotate90=0.5, transpose=0.5, scale_jitter=0.5, random_crop=0.2,
                           brightness=0.1, gamma=0.2, photometric=True, blur=0.3, noise=0.3)  # fmt: skip
    kinds = [type(t) for t in build_transforms(config, train=True).transforms]
    assert kinds == [RandomCrop, RandomScaleJitter, RandomHorizontalFlip, RandomVerticalFlip, RandomRotate90,
                     RandomTranspose, IntensityJitter, PhotometricJitter, RandomGaussianBlur, RandomGaussianNoise]  # fmt: skip
    # the defaults are what they were: a horizontal flip and nothing else
    assert [type(t) for t in build_transforms(AugmentConfig(), train=True).transforms] == [RandomHorizontalFlip]


@pytest.mark.parametrize(
    "override, message",
    [
        ({"vertical_flip": 1.5}, "data.augment.vertical_flip: expected a probability"),
        ({"scale_range": [1.5, 0.5]}, "data.augment.scale_range: expected \\[min, max\\]"),
        ({"scale_range": [0.5]}, "data.augment.scale_range"),
        ({"blur_sigma": [0.0, 1.0]}, "data.augment.blur_sigma"),
        ({"noise_channels": "rgb"}, "data.augment.noise_channels"),
        ({"brightness": 1.0}, "data.augment.brightness"),
        ({"min_area": 0}, "data.augment.min_area"),
        ({"pad_value": 2.0}, "data.augment.pad_value"),
        ({"scale_target_size": -1}, "data.augment.scale_target_size"),
    ],
)
def test_bad_augment_values_name_the_key(override, message):
    from maskrcnn.config import ConfigError

    with pytest.raises(ConfigError, match=message):
        build_transforms(AugmentConfig(**override), train=True)


def test_augment_keys_load_from_yaml_overrides():
    from maskrcnn.config import load_config

    cfg = load_config(None, ["data.augment.rotate90=0.75", "data.augment.scale_range=[0.25,2]", "data.augment.noise_channels=gray"])
    assert cfg.data.augment.rotate90 == 0.75 and cfg.data.augment.scale_range == [0.25, 2.0]
    assert cfg.data.augment.noise_channels == "gray"
    assert cfg.data.augment.vertical_flip == 0.0 and cfg.data.augment.horizontal_flip == 0.5
