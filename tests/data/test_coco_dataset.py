from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from maskrcnn.data.coco import CocoDataset, DatasetError, load_coco_gt
from maskrcnn.data.images import ImageReadError


def test_labels_and_names_follow_sorted_category_ids(tiny_coco):
    ds = CocoDataset(*tiny_coco)
    assert ds.category_id_to_label == {3: 1, 7: 2}
    assert ds.label_to_category_id == {1: 3, 2: 7}
    assert ds.class_names == ["background", "dog", "cat"]
    assert ds.num_classes == 3
    assert len(ds) == 2
    assert ds.aspect_ratios() == pytest.approx([1.5, 20 / 30])


def test_polygon_and_compressed_rle_item(tiny_coco, helpers):
    ds = CocoDataset(*tiny_coco)
    image, targets, info = ds[0]
    assert info == {"image_id": 1, "file_name": "a.png", "height": 20, "width": 30}
    assert image.shape == (3, 20, 30) and image.dtype == torch.float32
    assert 0.0 <= image.min() and image.max() <= 1.0
    assert targets.boxes.dtype == torch.float32
    torch.testing.assert_close(targets.boxes, torch.tensor([[2.0, 4.0, 10.0, 12.0], [20.0, 0.0, 30.0, 4.0]]))
    assert targets.labels.tolist() == [2, 1]
    assert targets.masks.shape == (2, 20, 30) and targets.masks.dtype == torch.uint8
    # the RLE decodes to exactly rows 0..3, cols 20..29
    assert torch.equal(targets.masks[1], torch.from_numpy(helpers.box_mask(20, 30, 0, 4, 20, 30)))
    # the polygon rectangle covers its box interior and nothing far outside it
    polygon_mask = targets.masks[0]
    assert polygon_mask[5:11, 3:9].all()
    assert polygon_mask[:3].sum() == 0 and polygon_mask[:, 12:].sum() == 0


def test_grayscale_image_uncompressed_rle_and_crowd(tiny_coco, helpers):
    ds = CocoDataset(*tiny_coco)
    image, targets, info = ds[1]
    assert image.shape == (3, 30, 20)
    assert torch.equal(image[0], image[1]) and torch.equal(image[1], image[2])  # gray -> 3 equal channels
    assert len(targets) == 1  # the crowd region is not a training target
    assert targets.labels.tolist() == [1]
    torch.testing.assert_close(targets.boxes, torch.tensor([[5.0, 10.0, 15.0, 20.0]]))
    assert torch.equal(targets.masks[0], torch.from_numpy(helpers.box_mask(30, 20, 10, 20, 5, 15)))
    assert ds.warnings["crowd region kept out of training targets"] == 1
    # ... but it stays in the evaluation ground truth, marked as crowd
    crowd = [a for a in ds.coco.loadAnns(ds.coco.getAnnIds(imgIds=[2])) if a["iscrowd"]]
    assert len(crowd) == 1 and len(ds.coco.getAnnIds()) == 4


def test_missing_image_file_is_skipped_and_counted(make_coco):
    json_path, images_dir = make_coco()
    (images_dir / "b.png").unlink()
    ds = CocoDataset(json_path, images_dir)
    assert len(ds) == 1
    assert ds.warnings["image file missing"] == 1
    assert ds.coco.getImgIds() == [1]


def test_unreadable_image_names_the_file(make_coco):
    json_path, images_dir = make_coco()
    (images_dir / "a.png").write_bytes(b"this is not a png")
    ds = CocoDataset(json_path, images_dir)
    with pytest.raises(ImageReadError, match=r"a\.png.*image id 1"):
        ds[0]


def test_image_size_disagreeing_with_json_is_reported(make_coco):
    def edit(parts):
        parts["images"][0]["height"], parts["images"][0]["width"] = 30, 20
        parts["annotations"] = [a for a in parts["annotations"] if a["image_id"] != 1]

    ds = CocoDataset(*make_coco(edit))
    with pytest.raises(DatasetError, match=r"image id 1: .*a\.png is 20x30 \(HxW\) but the JSON says 30x20"):
        ds[0]


def test_degenerate_box_and_short_polygon_are_skipped_and_counted(make_coco):
    def edit(parts):
        parts["annotations"][0]["bbox"] = [2, 4, 0, 8]  # zero width
        parts["annotations"][1]["segmentation"] = [[1, 1, 5, 5]]  # two points
        parts["annotations"][1].pop("bbox")

    ds = CocoDataset(*make_coco(edit))
    assert ds.warnings["degenerate box (zero width or height)"] == 1
    assert ds.warnings["polygon with fewer than 3 points"] == 1
    _, targets, _ = ds[0]
    assert len(targets) == 0 and targets.masks.shape == (0, 20, 30)


def test_short_polygon_next_to_a_good_one_is_dropped_alone(make_coco):
    def edit(parts):
        parts["annotations"][0]["segmentation"].append([0, 0, 1, 1])

    ds = CocoDataset(*make_coco(edit))
    assert not ds.warnings.get("polygon with fewer than 3 points")
    assert len(ds[0][1]) == 2


def test_missing_bbox_is_computed_from_the_mask(make_coco):
    def edit(parts):
        parts["annotations"][1].pop("bbox")
        parts["annotations"][1].pop("area")

    ds = CocoDataset(*make_coco(edit))
    torch.testing.assert_close(ds[0][1].boxes[1], torch.tensor([20.0, 0.0, 30.0, 4.0]))
    assert ds.coco.anns[2]["area"] == 40


def test_out_of_range_category_stops_with_a_clear_message(make_coco):
    def edit(parts):
        parts["annotations"][0]["id"] = 17
        parts["annotations"][0]["category_id"] = 99

    with pytest.raises(DatasetError, match=r"annotations\.json: annotation id 17: category_id 99 not in categories"):
        CocoDataset(*make_coco(edit))


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda p: p.pop("images"), r"missing top-level key 'images'"),
        (lambda p: p.update(annotations={}), r"'annotations' must be a list, got dict"),
        (lambda p: p["annotations"][0].update(image_id=5), r"annotation id 1: image_id 5 not in images"),
        (lambda p: p["annotations"][0].update(bbox=[1, 2, 3]), r"annotation id 1: 'bbox' must be"),
        (lambda p: p["images"][0].update(width=-3), r"image id 1: 'width' must be a positive integer"),
        (lambda p: p["annotations"][1].update(id=1), r"annotation id 1: duplicate annotation id"),
        (lambda p: p.update(categories=[]), r"'categories' is empty"),
    ],
)
def test_bad_json_structure_is_named(make_coco, edit, message):
    json_path, images_dir = make_coco()
    data = json.loads(json_path.read_text())
    edit(data)
    json_path.write_text(json.dumps(data))
    with pytest.raises(DatasetError, match=message):
        CocoDataset(json_path, images_dir)


def test_invalid_json_and_missing_files(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    (tmp_path / "images").mkdir()
    with pytest.raises(DatasetError, match=r"bad\.json: not valid JSON"):
        CocoDataset(bad, tmp_path / "images")
    with pytest.raises(DatasetError, match=r"nope\.json: annotation file not found"):
        CocoDataset(tmp_path / "nope.json", tmp_path / "images")
    with pytest.raises(DatasetError, match=r"image folder not found"):
        CocoDataset(bad, tmp_path / "no_such_folder")


def test_skip_empty_leaves_out_images_without_targets(make_coco):
    def edit(parts):
        parts["annotations"] = [a for a in parts["annotations"] if a["image_id"] == 1]

    json_path, images_dir = make_coco(edit)
    assert len(CocoDataset(json_path, images_dir)) == 2
    ds = CocoDataset(json_path, images_dir, skip_empty=True)
    assert len(ds) == 1 and ds.warnings["image without annotations skipped"] == 1
    empty = CocoDataset(json_path, images_dir)[1][1]
    assert empty.boxes.shape == (0, 4) and empty.masks.shape == (0, 30, 20)


def test_transforms_are_applied(tiny_coco):
    def flip_everything(image, targets):
        return image.flip(-1), targets

    plain = CocoDataset(*tiny_coco)
    flipped = CocoDataset(*tiny_coco, transforms=flip_everything)
    assert torch.equal(flipped[0][0], plain[0][0].flip(-1))


def test_load_coco_gt_cleans_like_the_dataset(make_coco):
    def edit(parts):
        parts["annotations"][0]["segmentation"] = [[1, 1, 5, 5]]

    json_path, _ = make_coco(edit)
    coco, warnings = load_coco_gt(json_path)
    assert warnings["polygon with fewer than 3 points"] == 1
    assert sorted(coco.getAnnIds()) == [2, 3, 4]
    mask = coco.annToMask(coco.anns[3])
    assert mask.sum() == 100 and np.array_equal(np.nonzero(mask.any(0))[0], np.arange(5, 15))
