"""`maskrcnn evaluate --weights` on a tiny generated shapes set, and predict -> evaluate."""

import json

import pytest
import torch

from maskrcnn.cli import main


@pytest.fixture(scope="module")
def shapes_set(tmp_path_factory):
    from maskrcnn.data.shapes import generate_shapes

    folder = tmp_path_factory.mktemp("shapes")
    json_path = generate_shapes(folder, 3, image_size=64, seed=5)
    return json_path, folder / "images"


@pytest.fixture(scope="module")
def unmapped_checkpoint(tiny_checkpoint, tmp_path_factory):
    """The tiny model without stored names or mapping: labels are the data set's own."""
    data = torch.load(tiny_checkpoint, weights_only=True)
    data.pop("label_to_category_id")
    data.pop("class_names")
    path = tmp_path_factory.mktemp("unmapped") / "unmapped.pt"
    torch.save(data, path)
    return path


def test_evaluate_weights_prints_table_and_writes_json(unmapped_checkpoint, shapes_set, tmp_path, capsys) -> None:
    json_path, images = shapes_set
    out_json = tmp_path / "m.json"
    status = main(["evaluate", "--weights", str(unmapped_checkpoint), "--annotations", str(json_path),
                   "--images", str(images), "--device", "cpu", "--json", str(out_json), "--quiet", "--threads", "1"])
    out = capsys.readouterr().out
    assert status == 0
    metrics = json.loads(out_json.read_text())
    for key in ("bbox_AP", "bbox_AP50", "bbox_AP75", "segm_AP", "segm_AP50", "segm_APl", "dsb_score"):
        assert key in metrics and (metrics[key] == -1 or 0.0 <= metrics[key] <= 1.0)
    header, bbox_row, segm_row = out.splitlines()[:3]
    assert header.split() == ["AP", "AP50", "AP75", "APs", "APm", "APl"]
    assert bbox_row.startswith("bbox") and segm_row.startswith("segm")


def test_evaluate_weights_with_other_categories_and_no_mapping(unmapped_checkpoint, tmp_path, capsys) -> None:
    from maskrcnn.data.shapes import generate_shapes

    json_path = generate_shapes(tmp_path, 1, image_size=32, seed=1, shapes=("circle", "square"))
    status = main(["evaluate", "--weights", str(unmapped_checkpoint), "--annotations", str(json_path),
                   "--images", str(tmp_path / "images"), "--device", "cpu", "--quiet"])
    err = capsys.readouterr().err
    assert status == 1 and "predicts 3 classes" in err and "2 categories" in err


def test_predict_then_evaluate_predictions(unmapped_checkpoint, shapes_set, tmp_path, capsys) -> None:
    json_path, images = shapes_set
    assert main(["predict", str(images), "--weights", str(unmapped_checkpoint), "--output", str(tmp_path),
                 "--score-threshold", "0", "--no-overlays", "--quiet"]) == 0
    records = json.loads((tmp_path / "predictions.json").read_text())
    assert records and {r["category_id"] for r in records} <= {1, 2, 3}
    out_json = tmp_path / "m.json"
    status = main(["evaluate", "--predictions", str(tmp_path / "predictions.json"), "--annotations", str(json_path),
                   "--json", str(out_json)])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    metrics = json.loads(out_json.read_text())
    assert metrics["num_predictions"] == len(records) and metrics["num_images"] == 3
