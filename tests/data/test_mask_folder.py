from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from maskrcnn.data.coco import CocoDataset, DatasetError
from maskrcnn.data.mask_folder import import_masks


def _save(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _dsb_folder(root, helpers):
    """Sample 'aa': 12x16 RGBA image with two masks (one empty mask, one of another size);
    sample 'bb': 10x10 image with one mask; sample 'cc': no image."""
    _save(root / "aa" / "images" / "aa.png", np.full((12, 16, 4), 200, np.uint8))
    _save(root / "aa" / "masks" / "m1.png", helpers.box_mask(12, 16, 1, 4, 2, 6) * 255)
    _save(root / "aa" / "masks" / "m2.png", helpers.box_mask(12, 16, 6, 12, 10, 16) * 255)
    _save(root / "aa" / "masks" / "empty.png", np.zeros((12, 16), np.uint8))
    _save(root / "aa" / "masks" / "wrong.png", np.full((5, 5), 255, np.uint8))
    _save(root / "bb" / "images" / "bb.png", np.zeros((10, 10, 3), np.uint8))
    _save(root / "bb" / "masks" / "only.png", helpers.box_mask(10, 10, 0, 10, 0, 1) * 255)
    (root / "cc" / "masks").mkdir(parents=True)


def test_dsb_layout(tmp_path, helpers):
    source = tmp_path / "stage1"
    _dsb_folder(source, helpers)
    summary = import_masks(source, tmp_path / "out.json", layout="dsb")
    assert summary["num_images"] == 2 and summary["num_annotations"] == 3
    assert summary["category"] == "nucleus"
    assert summary["skipped"] == {"empty mask": 1, "mask of another size than its image": 1,
                                  "sample without an image": 1}
    data = json.loads((tmp_path / "out.json").read_text())
    assert [i["file_name"] for i in data["images"]] == ["aa/images/aa.png", "bb/images/bb.png"]
    assert [a["bbox"] for a in data["annotations"]] == [[2, 1, 4, 3], [10, 6, 6, 6], [0, 0, 1, 10]]
    assert [a["area"] for a in data["annotations"]] == [12, 36, 10]
    dataset = CocoDataset(tmp_path / "out.json", summary["images_dir"])
    image, targets, _ = dataset[0]
    assert image.shape == (3, 12, 16) and targets.labels.tolist() == [1, 1]
    assert targets.masks[0].sum() == 12 and targets.masks[0, 1:4, 2:6].all()


def test_label_layout(tmp_path):
    labels = np.zeros((8, 9), np.uint16)
    labels[0:2, 0:3] = 5
    labels[4:8, 4:9] = 300  # 16-bit label values survive
    _save(tmp_path / "images" / "x.png", np.zeros((8, 9, 3), np.uint8))
    _save(tmp_path / "labels" / "x.png", labels)
    _save(tmp_path / "images" / "lonely.png", np.zeros((8, 9, 3), np.uint8))
    _save(tmp_path / "labels" / "orphan.png", np.zeros((8, 9), np.uint8))
    summary = import_masks(tmp_path, tmp_path / "a.json", layout="labels", category="cell")
    assert summary["num_images"] == 1 and summary["num_annotations"] == 2
    assert summary["skipped"] == {"image without a label image": 1, "label image without an image": 1}
    data = json.loads((tmp_path / "a.json").read_text())
    assert data["categories"] == [{"id": 1, "name": "cell", "supercategory": "cell"}]
    assert [a["area"] for a in data["annotations"]] == [6, 20]
    assert len(CocoDataset(tmp_path / "a.json", tmp_path / "images")) == 1


def test_label_image_of_another_size_is_named(tmp_path):
    _save(tmp_path / "images" / "x.png", np.zeros((8, 9, 3), np.uint8))
    _save(tmp_path / "labels" / "x.png", np.zeros((8, 8), np.uint8))
    with pytest.raises(DatasetError, match=r"x\.png: label image is 8x8 \(HxW\) but x\.png is 8x9"):
        import_masks(tmp_path, tmp_path / "a.json", layout="labels")


def test_bad_source_and_layout(tmp_path):
    with pytest.raises(DatasetError, match="folder not found"):
        import_masks(tmp_path / "missing", tmp_path / "a.json")
    with pytest.raises(DatasetError, match="layout must be one of"):
        import_masks(tmp_path, tmp_path / "a.json", layout="voc")
    with pytest.raises(DatasetError, match="no usable images"):
        import_masks(tmp_path, tmp_path / "a.json", layout="dsb")


def test_command_line(tmp_path, helpers, capsys):
    import argparse

    from maskrcnn.commands.import_masks import register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    source = tmp_path / "stage1"
    _dsb_folder(source, helpers)
    args = parser.parse_args(["import-masks", str(source), "--category", "cell"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "2 images, 3 instances of 'cell'" in out and "skipped 1: empty mask" in out
    assert (source / "annotations.json").is_file()
    assert "--labels-dir" in parser._subparsers._group_actions[0].choices["import-masks"].format_help()
    args = parser.parse_args(["import-masks", str(tmp_path / "nothing")])
    with pytest.raises(DatasetError, match="folder not found"):
        args.func(args)


def test_non_binary_mask_is_thresholded_at_half_its_maximum_and_said(tmp_path, caplog):
    """A 0..252 gradient instance mask: pixels above 126 are the object, in one warning line."""
    source = tmp_path / "dsb"
    gradient = np.tile((np.arange(16) * 252 // 15).astype(np.uint8), (12, 1))  # columns 0, 16, ..., 252
    _save(source / "aa" / "images" / "aa.png", np.zeros((12, 16, 3), np.uint8))
    _save(source / "aa" / "masks" / "soft.png", gradient)
    _save(source / "aa" / "masks" / "ones.png", (np.arange(16)[None, :].repeat(12, 0) < 3).astype(np.uint8))
    with caplog.at_level("WARNING"):
        summary = import_masks(source, tmp_path / "out.json")
    assert summary["thresholded_masks"] == 1 and summary["num_annotations"] == 2
    warnings = [r.getMessage() for r in caplog.records if "not binary" in r.getMessage()]
    assert len(warnings) == 1 and "1 instance mask(s)" in warnings[0] and "aa/masks/soft.png" in warnings[0]
    boxes = {a["area"]: a["bbox"] for a in json.loads((tmp_path / "out.json").read_text())["annotations"]}
    # gradient columns 8..15 hold 134..252 (> 126); columns 0..7 hold 0..117
    assert boxes == {12 * 8: [8, 0, 8, 12], 12 * 3: [0, 0, 3, 12]}  # the 0/1 mask is binary: kept as it is


def test_output_under_a_file_or_over_a_foreign_file_is_one_line(tmp_path, helpers, capsys):
    from maskrcnn.cli import main

    source = tmp_path / "stage1"
    _dsb_folder(source, helpers)
    (tmp_path / "afile").write_text("mine")
    status = main(["import-masks", str(source), "--output", str(tmp_path / "afile" / "out.json")])
    err = capsys.readouterr().err
    assert status == 1 and err.startswith("maskrcnn: error:") and len(err.strip().splitlines()) == 1
    assert "afile is a file, not a folder" in err
    foreign = tmp_path / "mine.json"
    foreign.write_text('{"images": [], "note": "the user\'s own file"}')
    status = main(["import-masks", str(source), "--output", str(foreign)])
    err = capsys.readouterr().err
    assert status == 1 and "exists and was not written by import-masks" in err
    assert "the user's own file" in foreign.read_text()
    # a file import-masks wrote itself may be written again
    assert main(["import-masks", str(source), "--output", str(tmp_path / "ours.json")]) == 0
    assert main(["import-masks", str(source), "--output", str(tmp_path / "ours.json")]) == 0
