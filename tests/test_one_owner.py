"""One owner per setting, one home per piece of work: if a second copy came back and drifted,
these would see the outputs disagree.

A tiny random model (same weights for every setting) predicts one generated image through
every path that turns its grids into masks and rows: the Predictor on the whole image, in
one tile, `maskrcnn predict` (predictions.json), `maskrcnn evaluate` (its COCO results) and
the served JSON. Each setting the model owns (mask paste, mask threshold, test-time
augmentation) must reach them all alike.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tiled_checks import assert_box_encloses_mask
from tiny_model import tiny_overrides

from maskrcnn.checkpoints import save_model
from maskrcnn.commands.evaluate import evaluate_metrics
from maskrcnn.commands.predict import PredictOptions, run_predict
from maskrcnn.config import load_config
from maskrcnn.data.shapes import generate_shapes
from maskrcnn.inference.predictor import Predictor
from maskrcnn.model.build import build_model
from maskrcnn.ops.masks import rle_to_mask
from maskrcnn.serve.results import prediction_payload

SETTINGS = [  # (mask paste, mask threshold, test-time augmentation)
    ("torchvision", None, "none"),
    ("exact", None, "none"),
    ("exact", 0.3, "none"),
    ("torchvision", 0.7, "flips"),
]


@pytest.fixture(scope="module")
def case(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("one_owner")
    cfg = load_config("shapes_demo", tiny_overrides(detections_per_img=8))
    torch.manual_seed(0)
    weights = folder / "tiny.pt"
    save_model(weights, build_model(cfg.model), cfg)
    annotations = generate_shapes(folder / "data", 1, image_size=64, seed=3)
    image_path = folder / "data" / "images" / "annotations_000000.png"
    return {"weights": weights, "annotations": annotations, "image_path": image_path, "folder": folder}


def _masks(rows: list[dict]) -> np.ndarray:
    return np.stack([rle_to_mask(r["segmentation"]) for r in rows]).astype(bool) if rows else np.zeros((0, 64, 64), bool)


def _by_score(rows: list[dict]) -> list[dict]:
    return sorted(rows, key=lambda r: -r["score"])


@pytest.mark.parametrize(("paste", "threshold", "augment"), SETTINGS, ids=lambda v: str(v))
def test_each_setting_reaches_every_output_alike(case, tmp_path, paste, threshold, augment) -> None:
    image = np.asarray(Image.open(case["image_path"]).convert("RGB"))
    predictor = Predictor.from_checkpoint(
        case["weights"], device="cpu", score_threshold=0.0, mask_paste=paste, mask_threshold=threshold,
        test_augment=augment,
    )
    assert predictor.model.mask_paste == paste and predictor.test_augment == augment
    assert predictor.mask_threshold == (0.5 if threshold is None else threshold)
    whole = predictor(image)
    order = np.argsort(-whole["scores"], kind="stable")
    assert len(order) > 0

    tiled = predictor.predict_tiled(image, tile=64, overlap=16)  # one tile: the whole image
    assert tiled.tiles == 1 and np.array_equal(tiled.dense_masks(), whole["masks"][order])
    assert_box_encloses_mask(tiled.boxes, list(tiled.dense_masks()))

    options = PredictOptions(
        weights=case["weights"], output=tmp_path / "predict", score_threshold=0.0, mask_paste=paste,
        mask_threshold=threshold, test_augment=augment, device="cpu", overlays=False, progress=False,
    )
    run_predict([case["image_path"]], options)
    predicted = json.loads((tmp_path / "predict" / "predictions.json").read_text())
    assert np.array_equal(_masks(_by_score(predicted)), whole["masks"][order])

    served = prediction_payload(whole, predictor, file_name=str(case["image_path"]), width=64, height=64,
                                score_threshold=0.0)["results"]
    assert [{k: v for k, v in r.items() if k != "category_name"} for r in served] == predicted  # the same writer

    evaluated: list[dict] = []
    evaluate_metrics(
        annotations=case["annotations"], weights=case["weights"], images=case["annotations"].parent / "images",
        device="cpu", mask_paste=paste, mask_threshold=threshold, test_augment=augment, results_out=evaluated,
    )
    evaluated = _by_score(evaluated)
    assert np.array_equal(_masks(evaluated), whole["masks"][order])
    # one writer, one rounding rule: the same boxes and scores to the last digit
    assert [r["bbox"] for r in evaluated] == [r["bbox"] for r in _by_score(predicted)]
    assert [r["score"] for r in evaluated] == [r["score"] for r in _by_score(predicted)]


def test_a_checkpoint_is_read_once_per_predictor(case, monkeypatch) -> None:
    calls: list[Path] = []
    original = torch.load

    def counting_load(path, *args, **kwargs):
        calls.append(Path(path))
        return original(path, *args, **kwargs)

    monkeypatch.setattr(torch, "load", counting_load)
    Predictor.from_checkpoint(case["weights"], device="cpu")
    assert calls == [case["weights"]]
