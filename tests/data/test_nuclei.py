"""The synthetic nuclei generator: seeded, consistent masks and boxes, DSB-like sizes and counts."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pycocotools import mask as coco_mask

from maskrcnn.config import load_config
from maskrcnn.data.build import build_dataset
from maskrcnn.data.nuclei import (
    IMAGE_SIZES,
    MAX_NUCLEI,
    generate_nuclei,
    nuclei_sizes,
    render_nuclei_image,
)


def test_same_seed_same_image_other_seed_other_image():
    first, masks_first, style_first = render_nuclei_image(3, 5, nuclei_sizes(360))
    again, masks_again, style_again = render_nuclei_image(3, 5, nuclei_sizes(360))
    other, _, _ = render_nuclei_image(4, 5, nuclei_sizes(360))
    assert np.array_equal(first, again) and style_first == style_again
    assert len(masks_first) == len(masks_again) and all(np.array_equal(a, b) for a, b in zip(masks_first, masks_again))
    assert first.shape != other.shape or not np.array_equal(first, other)


@pytest.mark.parametrize("index", range(8))
def test_masks_are_disjoint_visible_and_sized_like_nuclei(index):
    pixels, masks, style = render_nuclei_image(0, index, nuclei_sizes(520))
    assert pixels.dtype == np.uint8 and pixels.ndim == 3 and pixels.shape[2] == 3
    assert (pixels.shape[0], pixels.shape[1]) in {s for s in IMAGE_SIZES} | {s[::-1] for s in IMAGE_SIZES}
    assert style in ("fluorescence", "brightfield", "histology")
    assert 1 <= len(masks) <= MAX_NUCLEI
    stacked = np.stack(masks)  # (N, H, W)
    assert stacked.sum(axis=0).max() == 1  # one nucleus per pixel, as DSB annotations
    areas = stacked.reshape(len(masks), -1).sum(axis=1)
    assert areas.min() >= 15
    # equivalent diameters of whole nuclei stay in the DSB range (border-cut ones are smaller)
    assert np.median(2 * np.sqrt(areas / np.pi)) <= 60


def test_styles_differ_fluorescence_dark_brightfield_light():
    means = {}
    for index in range(40):
        pixels, _, style = render_nuclei_image(0, index, nuclei_sizes(256))
        means.setdefault(style, []).append(pixels.mean())
    assert {"fluorescence", "brightfield"} <= set(means)
    assert max(means["fluorescence"]) < 128 < min(means["brightfield"])


def test_generate_writes_coco_with_tight_boxes_and_loads(tmp_path):
    json_path = generate_nuclei(tmp_path, 3, max_side=256, seed=0, annotations_file="train.json")
    coco = json.loads(json_path.read_text())
    assert coco["categories"] == [{"id": 1, "name": "nucleus", "supercategory": "cell"}]
    assert [im["file_name"] for im in coco["images"]] == [f"train_{i:06d}.png" for i in range(3)]
    assert all((im["height"], im["width"]) == (256, 256) for im in coco["images"])
    for ann in coco["annotations"][:50]:
        mask = coco_mask.decode(ann["segmentation"])
        ys, xs = np.nonzero(mask)
        assert ann["bbox"] == [float(xs.min()), float(ys.min()), float(xs.max() + 1 - xs.min()), float(ys.max() + 1 - ys.min())]
        assert ann["area"] == float(mask.sum())
    again = generate_nuclei(tmp_path / "again", 3, max_side=256, seed=0, annotations_file="train.json")
    assert (tmp_path / "images" / "train_000001.png").read_bytes() == (again.parent / "images" / "train_000001.png").read_bytes()


def test_kind_nuclei_builds_a_training_set(tmp_path):
    cfg = load_config("nuclei", [f"data.train.annotations={tmp_path}/train.json", "data.train.num_images=2", "data.train.image_size=256"])
    dataset = build_dataset(cfg.data.train, cfg.data.augment, train=True)
    assert len(dataset) == 2 and dataset.num_classes == 2
    image, targets, _ = dataset[0]
    assert image.shape[0] == 3 and max(image.shape[1:]) <= cfg.data.augment.crop_size
    assert len(targets) > 0 and targets.masks.shape[1:] == image.shape[1:]
