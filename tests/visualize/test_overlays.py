"""Overlays: colours land where the masks are, matching is COCO-style greedy, shapes are right."""

import numpy as np
import pytest
import torch

from maskrcnn.data.coco_names import COCO_CATEGORY_NAMES
from maskrcnn.visualize.canvas import instance_colors, mask_outline
from maskrcnn.visualize.overlays import (
    FALSE_POSITIVE_COLOR,
    MATCHED_COLOR,
    draw_gt_vs_pred,
    draw_instances,
)
from maskrcnn.visualize.panels import save_image


def square_mask(size: int, x0: int, y0: int, side: int) -> np.ndarray:
    mask = np.zeros((size, size), dtype=bool)
    mask[y0 : y0 + side, x0 : x0 + side] = True
    return mask


def test_mask_outline_of_a_square_is_its_border() -> None:
    mask = square_mask(8, 2, 2, 4)
    outline = mask_outline(mask, 1)
    expected = mask.copy()
    expected[3:5, 3:5] = False  # the 2x2 interior stays out
    assert np.array_equal(outline, expected)


def test_instance_colors_are_distinct() -> None:
    colors = instance_colors(12)
    assert colors.shape == (12, 3) and colors.dtype == np.uint8
    assert len({tuple(c) for c in colors}) == 12


def test_draw_instances_tints_mask_and_keeps_background() -> None:
    image = np.full((64, 64, 3), 100, dtype=np.uint8)
    mask = square_mask(64, 20, 30, 20)
    color = np.array([[255, 0, 0]], dtype=np.uint8)
    out = draw_instances(image, [[20, 30, 40, 50]], [1], [0.9], mask[None], ["bg", "thing"], colors=color, alpha=0.5)
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    # interior of the mask: 100 * 0.5 + (255, 0, 0) * 0.5
    assert tuple(out[42, 30]) == (178, 50, 50)
    # far from the instance and its caption: unchanged
    assert tuple(out[5, 60]) == (100, 100, 100)
    # the input is not modified
    assert (image == 100).all()


def test_draw_instances_accepts_tensors_probabilities_and_scale() -> None:
    image = torch.zeros((32, 48, 3), dtype=torch.uint8)
    masks = torch.zeros((1, 32, 48))
    masks[0, 8:24, 8:24] = 0.8
    out = draw_instances(image, torch.tensor([[8.0, 8.0, 24.0, 24.0]]), torch.tensor([3]), torch.tensor([0.7]), masks, scale=2)
    assert out.shape == (64, 96, 3)
    assert out[30:34, 30:34].sum() > 0  # mask interior tinted (scaled coordinates)


def test_draw_instances_with_no_instances_returns_the_image() -> None:
    image = np.random.default_rng(0).integers(0, 255, (20, 30, 3), dtype=np.uint8)
    out = draw_instances(image, np.zeros((0, 4)), np.zeros((0,), np.int64), np.zeros((0,)), np.zeros((0, 20, 30), bool))
    assert np.array_equal(out, image)


def test_draw_instances_rejects_bad_image() -> None:
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8"):
        draw_instances(np.zeros((10, 10), np.uint8), np.zeros((0, 4)), [])
    with pytest.raises(ValueError, match="masks: expected shape"):
        draw_instances(np.zeros((10, 10, 3), np.uint8), [[0, 0, 5, 5]], [1], None, np.zeros((1, 5, 5)))


def test_draw_gt_vs_pred_colours_matched_and_false_positive() -> None:
    size = 96
    image = np.zeros((size, size, 3), dtype=np.uint8)
    gt = np.stack([square_mask(size, 10, 10, 30), square_mask(size, 60, 60, 20)])
    pred = np.stack([square_mask(size, 11, 10, 30), square_mask(size, 60, 10, 20)])
    out = draw_gt_vs_pred(
        image, [[10, 10, 40, 40], [60, 60, 80, 80]], gt, [[11, 10, 41, 40], [60, 10, 80, 30]], [0.9, 0.8], pred, alpha=1.0
    )
    assert out.shape[1] == size and out.shape[0] > size  # legend strip below
    assert tuple(out[30, 25]) == MATCHED_COLOR  # matched prediction interior
    assert tuple(out[25, 70]) == FALSE_POSITIVE_COLOR  # false-positive interior
    assert tuple(out[72, 70]) != (0, 0, 0)  # missed gt tinted red
    assert tuple(out[50, 50]) == (0, 0, 0)  # nothing there


def test_save_image_writes_png(tmp_path) -> None:
    from PIL import Image

    image = np.zeros((5, 7, 3), np.uint8)
    image[1, 2] = (1, 2, 3)
    save_image(tmp_path / "sub" / "x.png", image)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "sub" / "x.png")), image)


def test_coco_names_follow_category_ids() -> None:
    assert len(COCO_CATEGORY_NAMES) == 91
    assert sum(name != "N/A" for name in COCO_CATEGORY_NAMES[1:]) == 80
    assert COCO_CATEGORY_NAMES[1] == "person" and COCO_CATEGORY_NAMES[90] == "toothbrush"
    assert COCO_CATEGORY_NAMES[44] == "bottle" and COCO_CATEGORY_NAMES[62] == "chair"


@pytest.mark.parametrize("num_gt, num_pred", [(0, 0), (2, 0), (0, 2)])
def test_draw_gt_vs_pred_with_nothing_on_one_side(num_gt, num_pred) -> None:
    size = 40
    image = np.zeros((size, size, 3), dtype=np.uint8)
    gt_masks = np.stack([square_mask(size, 5 + 10 * i, 5, 8) for i in range(num_gt)]) if num_gt else np.zeros((0, size, size), bool)
    pred_masks = np.stack([square_mask(size, 5 + 10 * i, 25, 8) for i in range(num_pred)]) if num_pred else np.zeros((0, size, size), bool)
    gt_boxes = [[5 + 10 * i, 5, 13 + 10 * i, 13] for i in range(num_gt)]
    pred_boxes = [[5 + 10 * i, 25, 13 + 10 * i, 33] for i in range(num_pred)]
    out = draw_gt_vs_pred(image, gt_boxes, gt_masks, pred_boxes, np.full(num_pred, 0.9), pred_masks)
    assert out.shape[1] == size and out.shape[0] > size
    assert (out[:size].sum() > 0) == (num_gt + num_pred > 0)


def test_captions_that_would_cover_earlier_ones_are_left_out() -> None:
    """Ten instances on one spot: the captions take the free places around the box (above,
    inside the top edge, below), and those that find none are not drawn: before, they were
    stacked over the first caption (a dense image got a pile of captions over its instances)."""
    image = np.full((96, 96, 3), 100, dtype=np.uint8)
    boxes = [[30, 40, 60, 70]] * 10
    colors = instance_colors(10)
    one = draw_instances(image, boxes[:1], [1], [0.9], None, ["bg", "thing"], colors=colors[:1], show_boxes=False)
    ten = draw_instances(image, boxes, [1] * 10, [0.9] * 10, None, ["bg", "thing"], colors=colors, show_boxes=False)
    first_caption = (one != 100).any(axis=2)  # (H, W) pixels of the first caption
    assert first_caption.sum() > 0
    assert np.array_equal(ten[first_caption], one[first_caption])  # not drawn over
    assert (ten != 100).any(axis=2).sum() <= 4 * first_caption.sum()  # at most the four places


def test_captions_do_not_hide_small_crowded_instances() -> None:
    """A 10 x 10 grid of 12 px nuclei, 20 px apart: a caption (~70 x 14 px) above any of them
    would lie over its neighbours, so captions are drawn only where they cover at most a
    quarter of every box (before, 30 captions hid most of a crowded image's nuclei)."""
    image = np.full((200, 200, 3), 100, dtype=np.uint8)
    boxes = np.array([[x, y, x + 12, y + 12] for y in range(4, 200, 20) for x in range(4, 200, 20)], np.float32)
    count = len(boxes)
    out = draw_instances(image, boxes, [1] * count, [0.9] * count, None, ["bg", "nucleus"], show_boxes=False)
    captioned = (out != 100).any(axis=2)  # (H, W): only captions change pixels here
    for x1, y1, x2, y2 in boxes.astype(int):
        assert captioned[y1:y2, x1:x2].mean() <= 0.25 + 1e-6
    # the same instance alone is captioned
    alone = draw_instances(image, boxes[:1], [1], [0.9], None, ["bg", "nucleus"], show_boxes=False)
    assert (alone != 100).any(axis=2).sum() > 0
