"""`maskrcnn predict` and Predictor.from_checkpoint with a tiny random model."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from maskrcnn import Predictor
from maskrcnn.cli import main
from maskrcnn.ops.masks import rle_to_mask


def run_cli(args, capsys):
    status = main(args)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_predict_writes_coco_results_and_overlays(tiny, tiny_checkpoint, image_folder, tmp_path, capsys) -> None:
    out_dir = tmp_path / "out"
    status, out, err = run_cli(
        ["predict", str(image_folder), "--weights", str(tiny_checkpoint), "--output", str(out_dir),
         "--score-threshold", "0", "--batch-size", "2", "--device", "cpu", "--quiet", "--threads", "1"], capsys)
    assert status == 0, err
    records = json.loads((out_dir / "predictions.json").read_text())
    sizes = {"a.png": (48, 64), "b.jpg": (64, 40), "c.png": (50, 50)}
    assert {r["file_name"].rsplit("/", 1)[-1] for r in records} <= set(sizes)
    assert len(records) > 0 and "3 image(s)" in out
    for r in records:
        assert set(r) == {"file_name", "image_id", "category_id", "bbox", "score", "segmentation"}
        assert r["category_id"] in set(tiny["label_to_category_id"].values())
        assert r["image_id"] in (1, 2, 3)
        x, y, w, h = r["bbox"]
        assert w >= 0 and h >= 0 and 0 <= r["score"] <= 1
        assert isinstance(r["segmentation"]["counts"], str)
        height, width = sizes[r["file_name"].rsplit("/", 1)[-1]]
        assert r["segmentation"]["size"] == [height, width]
        assert rle_to_mask(r["segmentation"]).shape == (height, width)
    overlays = sorted(p.name for p in (out_dir / "overlays").iterdir())
    assert overlays == ["a.png", "b.png", "c.png"]
    assert Image.open(out_dir / "overlays" / "b.png").size[0] >= 40  # drawn (scaled up) per image


def test_predict_threshold_one_gives_no_detections(tiny_checkpoint, image_folder, tmp_path, capsys) -> None:
    status, _, err = run_cli(
        ["predict", str(image_folder / "a.png"), "--weights", str(tiny_checkpoint), "--output", str(tmp_path),
         "--score-threshold", "1.01", "--no-overlays", "--quiet"], capsys)
    assert status == 0, err
    assert json.loads((tmp_path / "predictions.json").read_text()) == []
    assert not (tmp_path / "overlays").exists()


def test_predictor_from_checkpoint_carries_names_and_mapping(tiny, tiny_checkpoint) -> None:
    predictor = Predictor.from_checkpoint(tiny_checkpoint, device="cpu")
    assert predictor.class_names == tiny["class_names"]
    assert predictor.label_to_category_id == tiny["label_to_category_id"]
    predictor.score_threshold = 0.0
    out = predictor(np.zeros((30, 40, 3), np.uint8))
    assert out["masks"].shape[1:] == (30, 40) and out["boxes"].shape[1] == 4
    assert (out["scores"][:-1] >= out["scores"][1:]).all()  # highest first


def test_unreadable_image_is_one_clear_error(tiny_checkpoint, tmp_path, capsys) -> None:
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png at all")
    status, _, err = run_cli(["predict", str(bad), "--weights", str(tiny_checkpoint), "--quiet"], capsys)
    assert status == 1 and err.startswith("maskrcnn: error:") and "broken.png" in err and "Traceback" not in err


def test_not_a_checkpoint(tmp_path, image_folder, capsys) -> None:
    fake = tmp_path / "fake.pt"  # an image saved under a checkpoint's name
    Image.new("RGB", (4, 4)).save(fake, format="PNG")
    status, _, err = run_cli(["predict", str(image_folder), "--weights", str(fake), "--quiet"], capsys)
    assert status == 1 and err.startswith("maskrcnn: error:") and "fake.pt" in err


def test_state_dict_needs_a_config_and_must_fit_it(tiny_checkpoint, tmp_path, image_folder, capsys) -> None:
    state_dict = torch.load(tiny_checkpoint, weights_only=True)["model"]
    plain = tmp_path / "plain.pt"
    torch.save(state_dict, plain)
    status, _, err = run_cli(["predict", str(image_folder), "--weights", str(plain), "--quiet"], capsys)
    assert status == 1 and "config" in err and "Traceback" not in err
    # shapes_demo has wider layers than the tiny model: the first mismatched keys are named
    status, _, err = run_cli(
        ["predict", str(image_folder), "--weights", str(plain), "--config", "shapes_demo", "--quiet"], capsys)
    assert status == 1 and err.startswith("maskrcnn: error:") and "backbone" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_predictions_json_is_the_predictors_output(tiny, tiny_checkpoint, image_folder, tmp_path, capsys) -> None:
    """Each row of predictions.json is one Predictor detection of that image: bbox x, y, w, h
    of its x1 y1 x2 y2 box, its score, its category id and its mask, in the same order."""
    from maskrcnn.data.images import read_image

    out_dir = tmp_path / "out"
    status, _, err = run_cli(
        ["predict", str(image_folder), "--weights", str(tiny_checkpoint), "--output", str(out_dir),
         "--score-threshold", "0", "--no-overlays", "--device", "cpu", "--quiet", "--threads", "1"], capsys)
    assert status == 0, err
    records = json.loads((out_dir / "predictions.json").read_text())
    predictor = Predictor.from_checkpoint(tiny_checkpoint, device="cpu", score_threshold=0.0)
    compared = 0
    for image_id, path in enumerate(sorted(p for p in image_folder.iterdir() if p.suffix != ".txt"), start=1):
        expected = predictor(read_image(path))
        rows = [r for r in records if r["image_id"] == image_id]
        assert all(r["file_name"] == str(path) for r in rows)
        assert len(rows) == len(expected["scores"]) > 0
        for row, box, score, label, mask in zip(
            rows, expected["boxes"], expected["scores"], expected["labels"], expected["masks"]
        ):
            x1, y1, x2, y2 = (float(v) for v in box)
            assert row["bbox"] == pytest.approx([x1, y1, x2 - x1, y2 - y1], abs=0.006)  # rounded to 0.01
            assert row["score"] == pytest.approx(float(score), abs=1e-5)
            assert row["category_id"] == tiny["label_to_category_id"][int(label)]
            assert np.array_equal(rle_to_mask(row["segmentation"]).astype(bool), mask)
            compared += 1
    assert compared == len(records)


def test_test_augment_option_reaches_the_model(tiny_checkpoint, image_folder, tmp_path, capsys) -> None:
    """`--test-augment flips` predicts what a flips Predictor predicts, and not what one pass does."""
    from maskrcnn.data.images import read_image

    out_dir = tmp_path / "out"
    status, _, err = run_cli(
        ["predict", str(image_folder / "a.png"), "--weights", str(tiny_checkpoint), "--output", str(out_dir),
         "--score-threshold", "0", "--no-overlays", "--quiet", "--threads", "1", "--test-augment", "flips"], capsys)
    assert status == 0, err
    scores = [r["score"] for r in json.loads((out_dir / "predictions.json").read_text())]
    image = read_image(image_folder / "a.png")
    flips = Predictor.from_checkpoint(tiny_checkpoint, device="cpu", score_threshold=0.0, test_augment="flips")
    one_pass = Predictor.from_checkpoint(tiny_checkpoint, device="cpu", score_threshold=0.0)
    assert flips.test_augment == "flips" and one_pass.test_augment == "none"
    assert scores == pytest.approx([float(s) for s in flips(image)["scores"]], abs=1e-5) and len(scores) > 0
    assert scores != pytest.approx([float(s) for s in one_pass(image)["scores"]], abs=1e-5)
