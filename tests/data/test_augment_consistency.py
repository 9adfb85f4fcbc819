"""After every augmentation, alone and in seeded random compositions: each box is the tight box
of its mask, no empty (or too small) mask survives, labels stay with their masks, on
non-square images with masks touching the borders."""

from __future__ import annotations

import random

import pytest
import torch

from maskrcnn.config import AugmentConfig
from maskrcnn.data import geometric
from maskrcnn.data.geometric import (
    RandomRotate90,
    RandomScaleJitter,
    RandomTranspose,
    RandomVerticalFlip,
)
from maskrcnn.data.photometric import (
    IntensityJitter,
    PhotometricJitter,
    RandomGaussianBlur,
    RandomGaussianNoise,
)
from maskrcnn.data.transforms import (
    Compose,
    RandomCrop,
    RandomHorizontalFlip,
    build_transforms,
)
from maskrcnn.ops.boxes import masks_to_boxes
from maskrcnn.structures import Targets

MIN_AREA = 4


def _scene(height: int, width: int, seed: int) -> tuple[torch.Tensor, Targets]:
    """Random rectangles and discs; the first four touch the four borders; label i+1 per instance,
    and the instance's index is written into its pixels so that a test can tell them apart."""
    generator = torch.Generator().manual_seed(seed)
    count = 9
    masks = torch.zeros((count, height, width), dtype=torch.uint8)
    rows = torch.arange(height).view(-1, 1)
    cols = torch.arange(width).view(1, -1)
    for i in range(count):
        cy = int(torch.randint(0, height, (), generator=generator))
        cx = int(torch.randint(0, width, (), generator=generator))
        cy, cx = [(0, cx), (height - 1, cx), (cy, 0), (cy, width - 1)][i] if i < 4 else (cy, cx)
        radius = int(torch.randint(2, max(3, min(height, width) // 4), (), generator=generator))
        if i % 2:
            masks[i] = ((rows - cy) ** 2 + (cols - cx) ** 2 <= radius**2).to(torch.uint8)
        else:
            masks[i] = ((rows - cy).abs() <= radius) & ((cols - cx).abs() <= radius // 2 + 1)
    image = torch.rand((3, height, width), generator=generator) * 0.3
    return image, Targets(boxes=masks_to_boxes(masks), labels=torch.arange(1, count + 1), masks=masks)


def _check(image: torch.Tensor, targets: Targets, min_area: int, what: str) -> None:
    assert image.dim() == 3 and image.shape[0] == 3, what
    assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0, what
    n = len(targets)
    assert targets.masks is not None and targets.masks.shape == (n, *image.shape[-2:]), what
    assert targets.labels.shape == (n,) and targets.boxes.shape == (n, 4), what
    assert targets.masks.dtype == torch.uint8, what
    areas = targets.masks.flatten(1).sum(1)
    assert (areas >= min_area).all(), f"{what}: a mask below the minimum area survived ({areas.tolist()})"
    torch.testing.assert_close(targets.boxes, masks_to_boxes(targets.masks), rtol=0, atol=0, msg=what)
    assert len(set(targets.labels.tolist())) == n, f"{what}: a label was duplicated"


def _all_transforms() -> dict[str, object]:
    return {
        "hflip": RandomHorizontalFlip(1.0),
        "vflip": RandomVerticalFlip(1.0),
        "rotate90": RandomRotate90(1.0),
        "transpose": RandomTranspose(1.0),
        "crop": RandomCrop(1.0, 0.4, min_area=MIN_AREA),
        "zoom_own_size": RandomScaleJitter(1.0, (0.3, 2.5), 0, 0.5, min_area=MIN_AREA),
        "zoom_lsj": RandomScaleJitter(1.0, (0.1, 2.0), 40, 0.0, min_area=MIN_AREA),
        "intensity": IntensityJitter(0.5, 0.5, 1.0),
        "photometric": PhotometricJitter(),
        "blur": RandomGaussianBlur(1.0, (0.5, 3.0)),
        "noise": RandomGaussianNoise(1.0, (0.0, 0.2)),
    }


@pytest.mark.parametrize("shape", [(24, 37), (41, 18)])
@pytest.mark.parametrize("whole_tensor_max", [geometric.WHOLE_TENSOR_MAX_ELEMENTS, 0])
def test_every_transform_alone_keeps_boxes_tight_and_masks_nonempty(shape, whole_tensor_max, monkeypatch):
    monkeypatch.setattr(geometric, "WHOLE_TENSOR_MAX_ELEMENTS", whole_tensor_max)  # 0: masks moved box by box
    torch.manual_seed(0)
    for name, transform in _all_transforms().items():
        for seed in range(8):
            image, targets = _scene(*shape, seed)
            out_image, out = transform(image, targets)
            _check(out_image, out, 1 if name in ("hflip", "vflip", "rotate90", "transpose") else MIN_AREA, name)
            if out_image.shape[-2:] == image.shape[-2:] and name in ("intensity", "photometric", "blur", "noise"):
                assert out is targets


@pytest.mark.parametrize("whole_tensor_max", [geometric.WHOLE_TENSOR_MAX_ELEMENTS, 0])
def test_random_compositions_keep_boxes_tight_and_masks_nonempty(whole_tensor_max, monkeypatch):
    monkeypatch.setattr(geometric, "WHOLE_TENSOR_MAX_ELEMENTS", whole_tensor_max)
    picker = random.Random(1234)
    transforms = _all_transforms()
    names = sorted(transforms)
    torch.manual_seed(5)
    for trial in range(60):
        chosen = picker.sample(names, picker.randint(2, 6))
        picker.shuffle(chosen)
        pipeline = Compose([transforms[n] for n in chosen])
        height, width = picker.randint(12, 48), picker.randint(12, 48)
        image, targets = _scene(height, width, seed=trial)
        out_image, out = pipeline(image, targets)
        _check(out_image, out, 1, f"trial {trial}: {chosen} on {height}x{width}")


def test_pipeline_from_config_with_everything_on():
    config = AugmentConfig(
        horizontal_flip=0.5, vertical_flip=0.5, rotate90=0.5, transpose=0.5, random_crop=0.3,
        scale_jitter=0.8, scale_range=[0.3, 2.0], pad_value=0.2, min_area=MIN_AREA, photometric=True,
        brightness=0.3, contrast=0.3, gamma=0.5, blur=0.5, noise=0.5,
    )  # fmt: skip
    pipeline = build_transforms(config, train=True)
    torch.manual_seed(11)
    for seed in range(40):
        image, targets = _scene(30 + seed % 7, 45 - seed % 5, seed)
        out_image, out = pipeline(image, targets)
        _check(out_image, out, 1, f"seed {seed}")


def test_same_seed_same_augmentation():
    pipeline = build_transforms(
        AugmentConfig(vertical_flip=0.5, rotate90=0.5, scale_jitter=1.0, brightness=0.2, gamma=0.3, blur=0.5, noise=0.5),
        train=True,
    )
    results = []
    for _ in range(2):
        torch.manual_seed(7)
        results.append([pipeline(*_scene(30, 40, seed)) for seed in range(5)])
    for (image_a, a), (image_b, b) in zip(*results):
        assert torch.equal(image_a, image_b) and torch.equal(a.masks, b.masks) and torch.equal(a.boxes, b.boxes)
