"""`maskrcnn predict --tile` and Predictor.predict_tiled with the tiny random model."""

from __future__ import annotations

import json

import numpy as np
import tifffile
from PIL import Image
from tiled_checks import assert_box_encloses_mask

from maskrcnn import Predictor
from maskrcnn.cli import main
from maskrcnn.ops.masks import rle_to_mask


def run_cli(args, capsys):
    status = main(args)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_one_tile_equals_whole_image_prediction(tiny_checkpoint):
    # The tiny model's input is 64 px, so a 64 x 64 image is seen at scale 1 either way.
    predictor = Predictor.from_checkpoint(tiny_checkpoint, device="cpu", score_threshold=0.0)
    image = np.random.default_rng(3).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    whole = predictor(image)
    tiled = predictor.predict_tiled(image, tile=64, overlap=16)
    assert tiled.tiles == 1 and len(tiled.instances) == len(whole["scores"]) > 0
    order = np.argsort(-whole["scores"], kind="stable")
    np.testing.assert_allclose(tiled.scores, whole["scores"][order], rtol=1e-5)
    np.testing.assert_allclose(tiled.boxes, whole["boxes"][order], atol=1e-3)
    assert_box_encloses_mask(tiled.boxes, list(tiled.dense_masks()))
    assert np.array_equal(tiled.dense_masks(), whole["masks"][order])


def test_predict_tiled_sixteen_bit_tiff_writes_results_labels_and_overlay(tiny_checkpoint, tmp_path, capsys):
    rng = np.random.default_rng(0)
    data = (rng.random((300, 410)) * 4000).astype(np.uint16)
    tifffile.imwrite(tmp_path / "field.tif", data, tile=(64, 64))
    out = tmp_path / "out"
    status, stdout, err = run_cli(
        ["predict", str(tmp_path / "field.tif"), "--weights", str(tiny_checkpoint), "--output", str(out),
         "--tile", "128", "--tile-overlap", "32", "--label-image", "--score-threshold", "0.0",
         "--device", "cpu", "--quiet", "--threads", "1"], capsys)
    assert status == 0, err
    records = json.loads((out / "predictions.json").read_text())
    assert len(records) > 0 and all(r["segmentation"]["size"] == [300, 410] for r in records)
    labels = tifffile.imread(out / "labels" / "field.tif")
    assert labels.shape == (300, 410) and labels.dtype == np.uint16 and labels.max() <= len(records)
    for k, r in enumerate(records):  # label k+1 lies inside detection k's mask (no overlaps)
        assert rle_to_mask(r["segmentation"])[labels == k + 1].all()
    overlay = np.asarray(Image.open(out / "overlays" / "field.png"))
    assert overlay.shape == (300, 410, 3)
    # the same as the Python API on the same file
    predictor = Predictor.from_checkpoint(tiny_checkpoint, device="cpu", score_threshold=0.0)
    result = predictor.predict_tiled(tmp_path / "field.tif", tile=128, overlap=32)
    assert [r["segmentation"] for r in records] == result.rles()
    assert result.tiles > 1
    assert_box_encloses_mask(result.boxes, [rle_to_mask(r) for r in result.rles()])
    x, y, w, h = records[0]["bbox"]
    assert np.allclose([x, y, x + w, y + h], result.boxes[0], atol=0.01)
    assert [r["score"] for r in records] == [round(float(s), 5) for s in result.scores]


def test_whole_image_label_png_and_errors(tiny_checkpoint, tmp_path, capsys):
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    out = tmp_path / "out"
    status, _, err = run_cli(["predict", str(tmp_path / "a.png"), "--weights", str(tiny_checkpoint), "--output", str(out),
                              "--label-image", "png", "--score-threshold", "0", "--device", "cpu", "--quiet"], capsys)
    assert status == 0, err
    labels = np.asarray(Image.open(out / "labels" / "a.png"))
    records = json.loads((out / "predictions.json").read_text())
    assert labels.shape == (48, 64) and 0 < labels.max() <= len(records)

    Image.new("1", (19000, 19000)).save(tmp_path / "huge.png")
    status, _, err = run_cli(["predict", str(tmp_path / "huge.png"), "--weights", str(tiny_checkpoint),
                              "--output", str(out), "--device", "cpu", "--quiet"], capsys)
    assert status == 1 and err.count("\n") == 1 and "over the limit" in err and "--max-image-pixels" in err

    status, _, err = run_cli(["predict", str(tmp_path / "a.png"), "--weights", str(tiny_checkpoint),
                              "--tile", "128", "--tile-overlap", "128"], capsys)
    assert status == 1 and err.startswith("maskrcnn: error: tile overlap 128") and err.count("\n") == 1
