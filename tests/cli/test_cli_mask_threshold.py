"""model.roi_heads.mask_threshold: the checkpoint's value binarises the masks of `predict`
and `evaluate`; --mask-threshold overrides it; a value outside [0, 1) stops in one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_model import tiny_overrides

from maskrcnn.cli import main
from maskrcnn.inference.predictor import Predictor
from maskrcnn.ops.masks import rle_to_mask

STORED_THRESHOLD = 0.55  # the tiny random model's mask probabilities lie close to 0.5


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    from maskrcnn.checkpoints import save_model
    from maskrcnn.config import load_config
    from maskrcnn.model.build import build_model

    cfg = load_config("shapes_demo", tiny_overrides() + [f"model.roi_heads.mask_threshold={STORED_THRESHOLD}"])
    torch.manual_seed(0)
    model = build_model(cfg.model)
    path = tmp_path_factory.mktemp("threshold") / "tiny.pt"
    save_model(path, model, cfg)  # no stored mapping: labels are the shapes set's category ids
    return path


@pytest.fixture(scope="module")
def shapes_set(tmp_path_factory):
    from maskrcnn.data.shapes import generate_shapes

    folder = tmp_path_factory.mktemp("shapes")
    json_path = generate_shapes(folder, 2, image_size=64, seed=5)
    return json_path, folder / "images"


def predicted_mask_areas(checkpoint: Path, image: Path, out_dir: Path, extra: list[str], capsys) -> list[int]:
    status = main(["predict", str(image), "--weights", str(checkpoint), "--output", str(out_dir), "--score-threshold",
                   "0", "--no-overlays", "--quiet", "--threads", "1", *extra])
    assert status == 0, capsys.readouterr().err
    records = json.loads((out_dir / "predictions.json").read_text())
    return [int(rle_to_mask(r["segmentation"]).sum()) for r in records]


def test_predict_binarises_at_the_checkpoints_threshold_unless_told(checkpoint, tmp_path, capsys) -> None:
    from PIL import Image

    image = tmp_path / "a.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(image)
    stored = predicted_mask_areas(checkpoint, image, tmp_path / "stored", [], capsys)
    at_half = predicted_mask_areas(checkpoint, image, tmp_path / "half", ["--mask-threshold", "0.5"], capsys)
    assert len(stored) == len(at_half) > 0
    assert sum(stored) < sum(at_half)  # 0.55, not 0.5: fewer pixels
    predictor = Predictor.from_checkpoint(checkpoint, device="cpu", score_threshold=0.0)
    assert predictor.mask_threshold == STORED_THRESHOLD
    from maskrcnn.data.images import read_image

    masks = predictor(read_image(image))["masks"]  # (N, H, W) bool
    assert [int(m.sum()) for m in masks] == stored
    assert Predictor.from_checkpoint(checkpoint, device="cpu", mask_threshold=0.3).mask_threshold == 0.3


def test_evaluate_uses_and_reports_the_threshold(checkpoint, shapes_set) -> None:
    from maskrcnn.commands.evaluate import evaluate_metrics

    json_path, images = shapes_set
    totals, thresholds = {}, {}
    for given in (None, 0.45):
        results: list[dict] = []
        metrics = evaluate_metrics(annotations=json_path, weights=checkpoint, images=images, device="cpu",
                                   mask_threshold=given, results_out=results)
        thresholds[given] = metrics["mask_threshold"]
        totals[given] = sum(int(rle_to_mask(r["segmentation"]).sum()) for r in results)
    assert thresholds == {None: STORED_THRESHOLD, 0.45: 0.45}
    assert 0 < totals[None] < totals[0.45]


def test_bad_thresholds_stop_in_one_line(checkpoint, shapes_set, tmp_path, capsys) -> None:
    json_path, images = shapes_set
    status = main(["predict", str(images), "--weights", str(checkpoint), "--output", str(tmp_path / "out"),
                   "--mask-threshold", "1.5", "--quiet"])
    err = capsys.readouterr().err
    assert status == 1 and "model.roi_heads.mask_threshold: expected a probability in [0, 1), got 1.5" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "out").exists()
    predictions = tmp_path / "p.json"
    predictions.write_text("[]")
    status = main(["evaluate", "--annotations", str(json_path), "--predictions", str(predictions),
                   "--mask-threshold", "0.6"])
    err = capsys.readouterr().err
    assert status == 1 and "--mask-threshold needs --weights" in err and len(err.strip().splitlines()) == 1
    from maskrcnn.config import ConfigError, load_config

    with pytest.raises(ConfigError, match=r"model.roi_heads.mask_threshold: expected a probability in \[0, 1\), got 1.0"):
        load_config("shapes_demo", tiny_overrides() + ["model.roi_heads.mask_threshold=1.0"])
