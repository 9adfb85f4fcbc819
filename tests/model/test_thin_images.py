"""Images far from square: every aspect ratio the resize can represent runs; the rest get one line."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from maskrcnn.config import load_config
from maskrcnn.inference.predictor import Predictor
from maskrcnn.model.build import build_model
from maskrcnn.model.transform import ImageTransform, ResizeError, thin_image_size
from maskrcnn.structures import Targets


def demo_transform() -> ImageTransform:  # the shapes_demo model's: 128 px
    return ImageTransform(min_size=[128], max_size=128, image_mean=[0.5] * 3, image_std=[0.2] * 3, size_divisible=32)


@pytest.mark.parametrize("height, width", [(20, 3000), (3000, 20), (4000, 17)])
def test_a_side_that_rounds_to_zero_becomes_one_pixel(height, width):
    transform = demo_transform().eval()
    batch, _ = transform([torch.rand(3, height, width)])
    (expected,) = batch.image_sizes  # the long side: floor(side * float32 scale), 127 or 128
    assert min(expected) == 1 and max(expected) in (127, 128)
    assert (expected[0] == 1) == (height < width)
    box = torch.tensor([[0.0, 0.0, width, height]])
    masks = torch.ones(1, height, width, dtype=torch.uint8)
    transform.train()
    _, targets = transform([torch.rand(3, height, width)], [Targets(boxes=box, labels=torch.tensor([1]), masks=masks)])
    assert tuple(targets[0].masks.shape[-2:]) == expected
    assert torch.allclose(targets[0].boxes, torch.tensor([[0.0, 0.0, expected[1], expected[0]]]))


def test_ordinary_sizes_keep_torchvisions_path():
    for height, width in [(480, 640), (128, 129), (5, 3000), (800, 1201)]:
        scale = 128 / max(height, width)
        if min(height, width) * scale >= 1:
            assert thin_image_size(height, width, scale, 128, 128) is None


def test_too_thin_is_refused_in_one_line():
    with pytest.raises(ResizeError, match=r"10x3000 pixels.*short side would be 0\.43 px.*--tile"):
        demo_transform()([torch.rand(3, 10, 3000)])
    assert issubclass(ResizeError, ValueError)


def test_predictor_on_thin_images_gives_boxes_inside_the_image():
    cfg = load_config("shapes_demo", ["model.backbone.plain_channels=[8,16,16,16,16]", "model.backbone.fpn_channels=16",
                                      "model.roi_heads.box_head_dim=32", "model.roi_heads.mask_head_channels=16"])
    torch.manual_seed(0)
    predictor = Predictor(build_model(cfg.model), score_threshold=0.0, device="cpu")
    for shape in [(20, 3000, 3), (3000, 20, 3)]:
        out = predictor(np.random.default_rng(0).integers(0, 255, shape, dtype=np.uint8))
        assert out["masks"].shape[1:] == shape[:2]
        if len(out["boxes"]):
            assert (out["boxes"][:, [0, 2]] <= shape[1] + 1e-3).all() and (out["boxes"][:, [1, 3]] <= shape[0] + 1e-3).all()
