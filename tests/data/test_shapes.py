from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as coco_mask

from maskrcnn.data.coco import CocoDataset
from maskrcnn.data.shapes import ALL_SHAPES, generate_shapes


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_identical_files_and_another_seed_does_not(tmp_path):
    a = generate_shapes(tmp_path / "a", 4, image_size=48, seed=3)
    b = generate_shapes(tmp_path / "b", 4, image_size=48, seed=3)
    c = generate_shapes(tmp_path / "c", 4, image_size=48, seed=4)
    assert a.name == "annotations.json" and (tmp_path / "a" / "images").is_dir()
    assert _files(a.parent) == _files(b.parent)
    assert _files(a.parent) != _files(c.parent)


def test_masks_are_visible_parts_with_tight_boxes(tmp_path):
    size = 64
    json_path = generate_shapes(tmp_path, 12, image_size=size, seed=0, min_shapes=3, max_shapes=5,
                                shapes=ALL_SHAPES)
    data = json.loads(json_path.read_text())
    assert [c["name"] for c in data["categories"]] == list(ALL_SHAPES)
    assert len(data["images"]) == 12
    assert len(data["annotations"]) >= 12 * 2
    for img in data["images"]:
        pixels = np.asarray(Image.open(tmp_path / "images" / img["file_name"]))
        assert pixels.shape == (size, size, 3)
        anns = [a for a in data["annotations"] if a["image_id"] == img["id"]]
        masks = [coco_mask.decode(a["segmentation"]) for a in anns]
        if len(masks) > 1:
            assert np.stack(masks).sum(0).max() == 1  # visible parts never overlap
        for ann, mask in zip(anns, masks):
            ys, xs = np.nonzero(mask)
            assert ann["area"] == mask.sum() >= 12
            assert ann["bbox"] == [xs.min(), ys.min(), xs.max() + 1 - xs.min(), ys.max() + 1 - ys.min()]
            assert max(ann["bbox"][2:]) <= 0.5 * size + 2  # at most half the image side
            # a visible part shows one solid colour: the occluded pixels were removed
            assert len(np.unique(pixels[mask.astype(bool)], axis=0)) == 1


def test_loads_as_a_coco_dataset(tmp_path):
    json_path = generate_shapes(tmp_path, 3, image_size=32, seed=1, annotations_file="val.json")
    dataset = CocoDataset(json_path, tmp_path / "images")
    assert dataset.class_names == ["background", "circle", "square", "triangle"]
    image, targets, info = dataset[2]
    assert info["file_name"] == "val_000002.png" and image.shape == (3, 32, 32)
    assert len(targets) >= 1 and not dataset.warnings


def test_larger_set_extends_a_smaller_one(tmp_path):
    small = generate_shapes(tmp_path / "s", 2, image_size=40, seed=9)
    large = generate_shapes(tmp_path / "l", 3, image_size=40, seed=9)
    for name in ("annotations_000000.png", "annotations_000001.png"):
        assert (small.parent / "images" / name).read_bytes() == (large.parent / "images" / name).read_bytes()


def test_bad_arguments_are_named(tmp_path):
    with pytest.raises(ValueError, match="min_shapes"):
        generate_shapes(tmp_path, 1, min_shapes=3, max_shapes=2)
    with pytest.raises(ValueError, match="unknown shapes"):
        generate_shapes(tmp_path, 1, shapes=("hexagon",))
