"""import-masks --layout labelme | yolo: COCO -> the tool's files (written here) -> import -> the same masks."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image

from maskrcnn.cli import main as cli_main
from maskrcnn.data.coco import CocoDataset, DatasetError
from maskrcnn.data.labelme import import_labelme
from maskrcnn.data.polygon_import import PolygonError, read_class_list
from maskrcnn.data.yolo_seg import import_yolo
from maskrcnn.ops.masks import polygons_to_mask

CLASSES = ["cell", "debris"]
SIZES = {"a": (48, 64), "b": (40, 40)}  # (H, W)


def _star(cx: float, cy: float, radius: float, points: int, seed: int) -> list[float]:
    """A non-convex polygon: a star with random radii, as a flat [x1, y1, ...] list."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(points):
        angle = 2 * math.pi * k / points
        r = radius * (0.55 + 0.45 * rng.random())
        out += [round(cx + r * math.cos(angle), 2), round(cy + r * math.sin(angle), 2)]
    return out


def _coco_truth() -> dict:
    """Ground truth made here: stars and rectangles on two images, two categories."""
    objects = {
        "a": [(1, [_star(16, 16, 12, 9, 0)]), (2, [[40.0, 6.0, 58.0, 6.0, 58.0, 20.0, 40.0, 20.0]]),
              (1, [_star(30, 36, 10, 12, 1)])],
        "b": [(2, [_star(20, 20, 15, 7, 2)])],
    }
    images, annotations = [], []
    for image_id, (stem, (h, w)) in enumerate(SIZES.items(), start=1):
        images.append({"id": image_id, "file_name": f"{stem}.png", "height": h, "width": w})
        for category_id, polygons in objects[stem]:
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": category_id,
                                "segmentation": polygons, "iscrowd": 0})
    categories = [{"id": i + 1, "name": n} for i, n in enumerate(CLASSES)]
    return {"images": images, "annotations": annotations, "categories": categories}


def _write_images(folder):
    folder.mkdir(parents=True, exist_ok=True)
    for stem, (h, w) in SIZES.items():
        Image.fromarray(np.full((h, w, 3), 90, np.uint8)).save(folder / f"{stem}.png")


def _write_yolo(coco: dict, root) -> None:
    """COCO -> YOLO segmentation (what ultralytics' converter writes): class index k-1, coordinates / size."""
    _write_images(root / "images")
    (root / "labels").mkdir(parents=True)
    for image in coco["images"]:
        lines = []
        for ann in (a for a in coco["annotations"] if a["image_id"] == image["id"]):
            poly = ann["segmentation"][0]
            coords = [v / (image["width"] if k % 2 == 0 else image["height"]) for k, v in enumerate(poly)]
            lines.append(" ".join([str(ann["category_id"] - 1)] + [f"{c:.6f}" for c in coords]))
        (root / "labels" / f"{image['file_name'][:-4]}.txt").write_text("\n".join(lines) + "\n")
    (root / "data.yaml").write_text("path: .\ntrain: images\nnames:\n  0: cell\n  1: debris\n")


def _write_labelme(coco: dict, root) -> None:
    """COCO -> one LabelMe JSON per image; the 4-corner box is written as a LabelMe rectangle."""
    _write_images(root)
    for image in coco["images"]:
        shapes = []
        for ann in (a for a in coco["annotations"] if a["image_id"] == image["id"]):
            poly = ann["segmentation"][0]
            points = [[poly[k], poly[k + 1]] for k in range(0, len(poly), 2)]
            rectangle = len(points) == 4 and points[0][1] == points[1][1]
            shapes.append({"label": CLASSES[ann["category_id"] - 1], "group_id": None, "flags": {},
                           "shape_type": "rectangle" if rectangle else "polygon",
                           "points": [points[0], points[2]] if rectangle else points})
        doc = {"version": "5.4.1", "flags": {}, "shapes": shapes, "imagePath": image["file_name"],
               "imageData": None, "imageHeight": image["height"], "imageWidth": image["width"]}
        (root / f"{image['file_name'][:-4]}.json").write_text(json.dumps(doc))


def _assert_same_masks(truth: dict, imported_json, images_dir) -> None:
    data = json.loads(imported_json.read_text())
    assert [c["name"] for c in data["categories"]] == CLASSES
    assert len(data["annotations"]) == len(truth["annotations"])
    for want, got in zip(truth["annotations"], data["annotations"]):
        assert isinstance(got["segmentation"], list) and all(isinstance(p, list) for p in got["segmentation"])
        assert got["category_id"] == want["category_id"]
        image = truth["images"][want["image_id"] - 1]
        h, w = image["height"], image["width"]
        a = polygons_to_mask(want["segmentation"], h, w).astype(bool)
        b = polygons_to_mask(got["segmentation"], h, w).astype(bool)
        assert (a & b).sum() / (a | b).sum() >= 0.98
        assert got["area"] == b.sum()
    dataset = CocoDataset(imported_json, images_dir)  # the training loader reads it
    assert dataset.class_names == ["background", *CLASSES]


def test_yolo_round_trip(tmp_path):
    truth = _coco_truth()
    _write_yolo(truth, tmp_path / "yolo")
    summary = import_yolo(tmp_path / "yolo", tmp_path / "out.json")
    assert summary["num_images"] == 2 and summary["instances_per_category"] == {"cell": 2, "debris": 2}
    _assert_same_masks(truth, tmp_path / "out.json", summary["images_dir"])


def test_labelme_round_trip(tmp_path):
    truth = _coco_truth()
    _write_labelme(truth, tmp_path / "lm")
    summary = import_labelme(tmp_path / "lm", tmp_path / "out.json")
    assert summary["categories"] == CLASSES  # the labels found, sorted
    _assert_same_masks(truth, tmp_path / "out.json", summary["images_dir"])


def test_labelme_groups_circles_and_skipped_shapes(tmp_path):
    _write_images(tmp_path)
    shapes = [
        {"label": "cell", "group_id": 3, "shape_type": "polygon", "points": [[1, 1], [10, 1], [10, 10]]},
        {"label": "cell", "group_id": 3, "shape_type": "polygon", "points": [[20, 20], [30, 20], [30, 30]]},
        {"label": "cell", "group_id": None, "shape_type": "circle", "points": [[20, 30], [28, 30]]},
        {"label": "cell", "group_id": None, "shape_type": "line", "points": [[0, 0], [5, 5]]},
    ]
    doc = {"shapes": shapes, "imagePath": "b.png", "imageHeight": 40, "imageWidth": 40}
    (tmp_path / "b.json").write_text(json.dumps(doc))
    summary = import_labelme(tmp_path, tmp_path / "out" / "coco.json", classes=None)
    anns = json.loads((tmp_path / "out" / "coco.json").read_text())["annotations"]
    assert [len(a["segmentation"]) for a in anns] == [2, 1]  # the group is one object of two parts
    assert abs(anns[1]["area"] - math.pi * 64) < 0.08 * math.pi * 64  # the circle of radius 8
    assert summary["skipped"] == {"LabelMe shape of type 'line' (not an area)": 1}


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("0 0.1 0.1 0.5 0.1 0.5", "odd number of coordinates (5)"),
        ("0 0.1 0.1 0.5 0.5", "4 numbers is a YOLO box"),
        ("0 0.1 0.1 0.5 0.1 0.5 0.5 0.1", "odd number of coordinates"),
        ("0 0.1 0.1", "at least 3 points, got 1"),
        ("0 0.1 0.1 1.5 0.1 0.5 0.5", "coordinate out of range"),
        ("2 0.1 0.1 0.5 0.1 0.5 0.5", "class index 2 out of range: the class list has 2 names (0..1)"),
        ("cell 0.1 0.1 0.5 0.1 0.5 0.5", "class index 'cell' is not an integer"),
        ("0 0.1 0.1 0.2 0.2 0.3 0.3", "encloses no area"),
    ],
)
def test_yolo_bad_line_names_file_and_line(tmp_path, line, message):
    _write_yolo(_coco_truth(), tmp_path)
    (tmp_path / "labels" / "b.txt").write_text("1 0.1 0.1 0.5 0.1 0.5 0.5\n\n" + line + "\n")
    with pytest.raises(DatasetError) as info:
        import_yolo(tmp_path, tmp_path / "out.json")
    text = str(info.value)
    assert "b.txt:3: " in text and message in text and "\n" not in text
    assert not (tmp_path / "out.json").exists()


def test_yolo_class_list_missing_and_orphans(tmp_path):
    _write_yolo(_coco_truth(), tmp_path / "set")
    (tmp_path / "set" / "data.yaml").unlink()
    with pytest.raises(DatasetError, match="class list missing: give --classes"):
        import_yolo(tmp_path / "set", tmp_path / "out.json")
    (tmp_path / "names.txt").write_text("cell\ndebris\n")
    (tmp_path / "set" / "labels" / "nothing.txt").write_text("")
    (tmp_path / "set" / "labels" / "a.txt").unlink()
    summary = import_yolo(tmp_path / "set", tmp_path / "out.json", classes=tmp_path / "names.txt")
    assert summary["images_without_labels"] == 1 and summary["skipped"] == {"label file without an image": 1}
    assert summary["num_images"] == 2 and summary["num_annotations"] == 1


def test_class_lists(tmp_path):
    (tmp_path / "list.yaml").write_text("names: [a, b]\n")
    (tmp_path / "bad.yaml").write_text("names:\n  0: a\n  2: b\n")
    (tmp_path / "twice.txt").write_text("a\nb\na\n")
    assert read_class_list(tmp_path / "list.yaml") == ["a", "b"]
    with pytest.raises(DatasetError, match=r"'names' keys must be the class indices 0..1"):
        read_class_list(tmp_path / "bad.yaml")
    with pytest.raises(DatasetError, match="class name 'a' given twice"):
        read_class_list(tmp_path / "twice.txt")
    with pytest.raises(DatasetError, match="class list not found"):
        read_class_list(tmp_path / "none.txt")


def test_labelme_errors(tmp_path):
    _write_labelme(_coco_truth(), tmp_path)
    doc = json.loads((tmp_path / "b.json").read_text())
    doc["shapes"][0]["points"] = [[1, 1], [50, 1], [20, 20]]  # x 50 in a 40-wide image
    (tmp_path / "b.json").write_text(json.dumps(doc))
    with pytest.raises(PolygonError, match=r"b.json: shape 0 \('debris'\): coordinate out of range"):
        import_labelme(tmp_path, tmp_path / "out.json")
    doc["shapes"][0]["points"] = [[1, 1], [5, 1]]
    (tmp_path / "b.json").write_text(json.dumps(doc))
    with pytest.raises(PolygonError, match="at least 3 points"):
        import_labelme(tmp_path, tmp_path / "out.json")
    (tmp_path / "b.png").unlink()
    with pytest.raises(DatasetError, match=r"b.json: imagePath 'b.png': image file not found"):
        import_labelme(tmp_path, tmp_path / "out.json")
    (tmp_path / "b.json").unlink()
    (tmp_path / "classes.txt").write_text("cell\n")
    with pytest.raises(DatasetError, match=r"a.json: label 'debris' is not in the class list"):
        import_labelme(tmp_path, tmp_path / "out.json", classes=tmp_path / "classes.txt")


def test_cli_import_yolo_and_never_overwrites(tmp_path, capsys):
    _write_yolo(_coco_truth(), tmp_path)
    (tmp_path / "mine.json").write_text("{}")
    assert cli_main(["import-masks", str(tmp_path), "--layout", "yolo", "--output", str(tmp_path / "mine.json")]) == 1
    assert "was not written by import-masks" in capsys.readouterr().err
    assert cli_main(["import-masks", str(tmp_path), "--layout", "yolo"]) == 0  # data.yaml found in SOURCE
    assert "2 images, 4 instances (cell 2, debris 2)" in capsys.readouterr().out
    args = ["import-masks", str(tmp_path), "--layout", "yolo", "--classes", str(tmp_path / "data.yaml"),
            "--output", str(tmp_path / "annotations.json")]
    assert cli_main(args) == 0  # as docs/train-your-own-data.md writes it
    assert "2 images, 4 instances (cell 2, debris 2)" in capsys.readouterr().out
    assert cli_main(["import-masks", str(tmp_path), "--layout", "yolo", "--category", "x"]) == 1
    assert "--category applies to layouts dsb and labels" in capsys.readouterr().err


def test_cli_import_labelme_with_a_class_list(tmp_path, capsys):
    _write_labelme(_coco_truth(), tmp_path / "lm")
    (tmp_path / "classes.txt").write_text("debris\ncell\n")  # the list's order gives the ids
    args = ["import-masks", str(tmp_path / "lm"), "--layout", "labelme", "--classes", str(tmp_path / "classes.txt"),
            "--output", str(tmp_path / "lm" / "annotations.json")]
    assert cli_main(args) == 0
    assert "2 images, 4 instances (debris 2, cell 2)" in capsys.readouterr().out
    data = json.loads((tmp_path / "lm" / "annotations.json").read_text())
    assert data["categories"][0] == {"id": 1, "name": "debris", "supercategory": "debris"}
    assert cli_main(args) == 0  # its own file: written again
