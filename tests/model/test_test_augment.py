"""Test-time augmentation (model.test_augment): the orientation maps invert each other and
agree with the image's own pixels, one pass reproduces the plain forward, and the merged
prediction of a mirrored image is the mirror of the image's."""

from __future__ import annotations

import pytest
import torch

from maskrcnn.config import load_config
from maskrcnn.model.build import build_model, with_test_augment
from maskrcnn.model.test_augment import (
    TestTimeAugmentation,
    orient_boxes,
    orient_image,
    orientations,
    predict_augmented,
    rescore_by_agreement,
    unorient_boxes,
    unorient_mask_grids,
)
from maskrcnn.ops.boxes import box_iou
from maskrcnn.structures import RoIDetections

ALL = orientations("dihedral")


def test_modes_list_their_orientations_and_reject_unknown_ones() -> None:
    assert len(orientations("none")) == 1 and len(orientations("flips")) == 4 and len(ALL) == 8
    assert len(set(ALL)) == 8
    with pytest.raises(ValueError, match="model.test_augment: expected one of none, flips, dihedral"):
        orientations("rotations")


@pytest.mark.parametrize("o", ALL, ids=str)
def test_boxes_and_mask_grids_follow_the_pixels(o) -> None:
    """An asymmetric 12 x 12 patch at x 20..32, y 5..17 of a 40 x 50 image: after orienting
    the image, the patch lies in orient_boxes(box) and reads as the oriented grid, which
    unorient_mask_grids turns back into the patch."""
    height, width = 40, 50
    image = torch.zeros(1, height, width)
    patch = torch.arange(144, dtype=torch.float32).reshape(12, 12)  # no symmetry
    image[0, 5:17, 20:32] = patch
    box = torch.tensor([[20.0, 5.0, 32.0, 17.0]])
    oriented = orient_image(image, o)
    x1, y1, x2, y2 = orient_boxes(box, (height, width), o)[0].long().tolist()
    grid = oriented[0, y1:y2, x1:x2]
    assert grid.shape == (12, 12) and grid.sum() == patch.sum()
    assert torch.equal(unorient_mask_grids(grid[None], o)[0], patch)
    oriented_size = tuple(oriented.shape[-2:])
    assert torch.equal(unorient_boxes(orient_boxes(box, (height, width), o), oriented_size, o), box)


def test_rescore_by_agreement_averages_over_passes() -> None:
    kept = RoIDetections(
        boxes=torch.tensor([[0.0, 0.0, 10.0, 10.0], [50.0, 50.0, 60.0, 60.0]]),
        scores=torch.tensor([0.9, 0.8]), labels=torch.tensor([1, 1]),
    )
    seen_twice = RoIDetections(boxes=kept.boxes.clone(), scores=torch.tensor([0.9, 0.8]), labels=torch.tensor([1, 1]))
    first_only = RoIDetections(boxes=kept.boxes[:1] + 1.0, scores=torch.tensor([0.7]), labels=torch.tensor([1]))
    other_class = RoIDetections(boxes=kept.boxes[1:], scores=torch.tensor([0.6]), labels=torch.tensor([2]))
    result = rescore_by_agreement(kept, [seen_twice, first_only, other_class])
    # first box: (0.9 + 0.7 (IoU 0.68) + 0) / 3; second: (0.8 + 0 + 0 (another class)) / 3
    torch.testing.assert_close(result.scores, torch.tensor([1.6 / 3, 0.8 / 3]))
    assert torch.equal(result.boxes, kept.boxes)


def _tiny_model(mode: str) -> torch.nn.Module:
    cfg = load_config("shapes_demo", [
        "model.transform.min_size=[64]", "model.transform.max_size=64",
        "model.backbone.plain_channels=[8,16,16,16,16]", "model.backbone.fpn_channels=16",
        "model.roi_heads.box_head_dim=32", "model.roi_heads.mask_head_channels=16",
        "model.roi_heads.detections_per_img=20", f"model.test_augment={mode}",
    ])
    torch.manual_seed(0)
    return with_test_augment(build_model(cfg.model).eval(), cfg.model.test_augment)


def test_one_pass_is_the_plain_forward() -> None:
    model = _tiny_model("none")
    image = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        plain = model([image])[0]
        one_pass = predict_augmented(model, [image], "none")[0]
    assert len(plain.boxes) > 0
    assert torch.equal(plain.boxes, one_pass.boxes) and torch.equal(plain.labels, one_pass.labels)
    torch.testing.assert_close(plain.scores, one_pass.scores)
    torch.testing.assert_close(plain.masks, one_pass.masks)


@pytest.mark.parametrize("mode", ["flips", "dihedral"])
def test_merged_prediction_of_a_mirrored_image_is_the_mirror(mode) -> None:
    """The orientations form a group, so mirroring the input only reorders the passes: the
    boxes and masks come out mirrored (64 px: no padding, which would break the symmetry)."""
    model = _tiny_model(mode)
    image = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        found = model([image])[0]
        mirrored = model([image.flip(-1)])[0]
    assert 0 < len(found.boxes) == len(mirrored.boxes)
    expected_boxes = orient_boxes(found.boxes, (64, 64), orientations("flips")[1])  # mirror left-right
    same_label = found.labels[:, None] == mirrored.labels[None, :]
    best, index = (box_iou(expected_boxes, mirrored.boxes) * same_label).max(dim=1)  # (D,)
    assert bool((best > 0.999).all()) and torch.equal(index.sort().values, torch.arange(len(index)))
    torch.testing.assert_close(mirrored.scores[index], found.scores, atol=1e-5, rtol=0)
    torch.testing.assert_close(mirrored.masks[index], found.masks.flip(-1), atol=1e-4, rtol=0)


def test_merged_prediction_of_a_transposed_non_square_image_is_the_transpose() -> None:
    """A 48 x 64 image and its 64 x 48 transpose (padding lies below and right of both, so
    it transposes too): with every orientation the outputs are transposes of each other.
    Boxes of the transposed passes mapped back with the unrotated image's size would not be."""
    model = _tiny_model("dihedral")
    image = torch.rand(3, 48, 64, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        found = model([image])[0]
        transposed = model([image.transpose(-2, -1)])[0]
    assert found.masks.shape[-2:] == (48, 64) and transposed.masks.shape[-2:] == (64, 48)
    assert 0 < len(found.boxes) == len(transposed.boxes)
    expected_boxes = found.boxes[:, [1, 0, 3, 2]]  # x1 y1 x2 y2 -> y1 x1 y2 x2
    same_label = found.labels[:, None] == transposed.labels[None, :]
    best, index = (box_iou(expected_boxes, transposed.boxes) * same_label).max(dim=1)  # (D,)
    assert bool((best > 0.999).all()) and torch.equal(index.sort().values, torch.arange(len(index)))
    torch.testing.assert_close(transposed.boxes[index], expected_boxes, atol=1e-3, rtol=0)
    torch.testing.assert_close(transposed.scores[index], found.scores, atol=1e-5, rtol=0)
    torch.testing.assert_close(transposed.masks[index], found.masks.transpose(-2, -1), atol=1e-4, rtol=0)


def test_config_rejects_an_unknown_mode() -> None:
    with pytest.raises(ValueError, match="model.test_augment"):
        _tiny_model("rot45")


def test_the_wrapper_follows_the_models_mode_and_adds_no_state() -> None:
    model = _tiny_model("none")
    wrapped = with_test_augment(model, "flips")
    assert isinstance(wrapped, TestTimeAugmentation) and not wrapped.training
    assert list(wrapped.model.state_dict()) == list(model.state_dict())
    assert with_test_augment(model, "none") is model
