"""The commands of docs/export.md's accuracy section at small sizes: benchmarks/onnx_accuracy.py
runs an exported file over a generated shapes set, and `maskrcnn evaluate --predictions` on
its results gives the AP that `maskrcnn evaluate --weights` gives for the same weights."""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

import torch
from tiny_model import CLASS_NAMES, tiny_overrides

from maskrcnn.checkpoints import save_model
from maskrcnn.cli import main
from maskrcnn.config import load_config
from maskrcnn.data.shapes import generate_shapes
from maskrcnn.model.build import build_model

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "onnx_accuracy.py"


def test_onnx_results_score_as_maskrcnn_evaluate(tmp_path, monkeypatch, capsys):
    torch.set_num_threads(1)  # restored by conftest
    annotations = generate_shapes(tmp_path / "shapes", 3, image_size=64, seed=5)
    cfg = load_config("shapes_demo", tiny_overrides() + ["model.roi_heads.mask_paste=exact", "model.roi_heads.score_thresh=0.0"])
    torch.manual_seed(0)
    weights = tmp_path / "tiny.pt"
    save_model(weights, build_model(cfg.model).eval(), cfg, class_names=CLASS_NAMES, label_to_category_id={1: 1, 2: 2, 3: 3})
    keep = tmp_path / "onnx_accuracy"
    monkeypatch.setattr(sys, "argv", [
        str(SCRIPT), "--weights", str(weights), "--annotations", str(annotations), "--images", str(tmp_path / "shapes" / "images"),
        "--variants", "exact:none", "--keep", str(keep), "--threads", "1",
    ])
    runpy.run_path(str(SCRIPT), run_name="__main__")
    variant = json.loads(capsys.readouterr().out)["variants"]["exact:none"]
    assert variant["onnx_file"]["metadata_mask_paste"] == "exact"
    parity = variant["parity_per_image"]
    assert parity["predictor_detections"] == parity["onnx_detections"] == parity["matched"] == 15  # 3 images x 5
    assert variant["onnx"] == variant["maskrcnn_evaluate"]
    assert set(variant["difference_onnx_minus_evaluate"].values()) == {0.0}

    metrics_path = tmp_path / "onnx_metrics.json"
    assert main(["evaluate", "--annotations", str(annotations), "--predictions", str(keep / "exact_none_results.json"),
                 "--json", str(metrics_path), "--quiet"]) == 0
    metrics = json.loads(metrics_path.read_text())
    assert {k: round(metrics[k], 4) for k in variant["onnx"]} == variant["onnx"]
