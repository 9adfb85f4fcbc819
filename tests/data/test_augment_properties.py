"""Property: any composition of the geometric augmentations `data.augment` can build keeps
every box the tight box of its mask, and never leaves an empty or out-of-image instance
(hypothesis searches configs, images and seeds; profiles in tests/conftest.py)."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given
from hypothesis import strategies as st

from maskrcnn.config import AugmentConfig
from maskrcnn.data.transforms import build_transforms
from maskrcnn.structures import Targets

PROBABILITY = st.sampled_from([0.0, 0.5, 1.0])


@st.composite
def augment_configs(draw) -> AugmentConfig:
    low = draw(st.floats(0.2, 1.5))
    return AugmentConfig(
        horizontal_flip=draw(PROBABILITY), vertical_flip=draw(PROBABILITY), rotate90=draw(PROBABILITY),
        transpose=draw(PROBABILITY), crop_size=draw(st.sampled_from([0, 0, 5, 16, 40])),
        random_crop=draw(PROBABILITY), crop_min_fraction=draw(st.sampled_from([0.1, 0.6, 1.0])),
        scale_jitter=draw(PROBABILITY), scale_range=[low, low + draw(st.floats(0.0, 1.5))],
        scale_target_size=draw(st.sampled_from([0, 0, 7, 24])), min_area=draw(st.integers(1, 6)),
        brightness=draw(st.sampled_from([0.0, 0.3])),
    )


@st.composite
def images_with_instances(draw) -> tuple[torch.Tensor, Targets]:
    """A (3, H, W) image and up to 5 instances: a rectangle with random pixels cut out (thin,
    holed or scattered shapes too), at least one pixel each; box = the mask's tight box."""
    height, width = draw(st.integers(1, 36)), draw(st.integers(1, 36))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    masks = []
    for _ in range(draw(st.integers(0, 5))):
        y0, x0 = draw(st.integers(0, height - 1)), draw(st.integers(0, width - 1))
        y1, x1 = draw(st.integers(y0 + 1, height)), draw(st.integers(x0 + 1, width))
        mask = np.zeros((height, width), dtype=np.uint8)
        mask[y0:y1, x0:x1] = rng.random((y1 - y0, x1 - x0)) < draw(st.sampled_from([0.2, 0.7, 1.0]))
        mask[y0, x0] = 1
        masks.append(mask)
    stack = torch.from_numpy(np.stack(masks)) if masks else torch.zeros((0, height, width), dtype=torch.uint8)
    image = torch.from_numpy(rng.random((3, height, width), dtype=np.float32))
    return image, Targets(boxes=tight_boxes(stack), labels=torch.arange(1, len(masks) + 1), masks=stack)


def tight_boxes(masks: torch.Tensor) -> torch.Tensor:
    """(N, H, W) -> (N, 4) float32 x1 y1 x2 y2 of each mask's pixels (x2, y2 exclusive)."""
    boxes = []
    for mask in masks:
        ys, xs = torch.nonzero(mask, as_tuple=True)
        boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    return torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)


def check_instances(image: torch.Tensor, targets: Targets) -> None:
    height, width = image.shape[-2:]
    assert targets.masks is not None and targets.masks.shape == (len(targets), height, width)
    assert targets.boxes.shape == (len(targets), 4) and targets.labels.shape == (len(targets),)
    areas = targets.masks.flatten(1).sum(1)
    assert bool((areas >= 1).all()), f"an empty instance: {areas.tolist()}"  # (min_area drops only what a crop cut)
    assert torch.equal(targets.boxes, tight_boxes(targets.masks)), (targets.boxes.tolist(), tight_boxes(targets.masks).tolist())
    boxes = targets.boxes
    assert bool((boxes[:, :2] >= 0).all() and (boxes[:, 2] <= width).all() and (boxes[:, 3] <= height).all())


@given(augment_configs(), images_with_instances(), st.integers(0, 2**31 - 1))
def test_every_composition_keeps_boxes_tight_and_instances_inside(augment, sample, seed):
    image, targets = sample
    transforms = build_transforms(augment, train=True)
    if transforms is None:
        return
    torch.manual_seed(seed)
    out_image, out_targets = transforms(image, targets)
    assert out_image.shape[0] == 3
    check_instances(out_image, out_targets)
    assert set(out_targets.labels.tolist()) <= set(targets.labels.tolist())  # labels travel with their masks
