"""`maskrcnn analyze ...` through the command line: tables, JSON files, PNGs, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from maskrcnn.cli import main

TINY = [
    "model.num_classes=3", "model.backbone.name=plain", "model.backbone.norm=bn", "model.backbone.freeze_at=0",
    "model.backbone.fpn_channels=16", "model.backbone.plain_channels=[8,16,16,16,16]",
    "model.transform.min_size=[64]", "model.transform.max_size=64",
    "model.roi_heads.box_head_dim=32", "model.roi_heads.mask_head_channels=16",
]  # fmt: skip


def sets() -> list[str]:
    return [arg for item in TINY for arg in ("--set", item)]


def test_params_unet(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "params.json"
    assert main(["analyze", "params", "--model", "unet", "--input-shape", "64,64,3", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "c5.conv2" in text and "590,080" in text and "2,158,858" in text
    data = json.loads(out.read_text())
    layers = {row["name"]: row for row in data["layers"]}
    assert layers["u6"]["trainable"] == 295040 and layers["output"]["output_shape"] == "1x10x64x64"
    assert data["total"]["total"] == 2_158_858


def test_params_and_flops_of_a_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "flops.json"
    argv = ["analyze", "flops", *sets(), "--image-size", "64x64", "--proposals", "10", "--detections", "5"]
    assert main([*argv, "--json", str(out)]) == 0
    macs = json.loads(out.read_text())["macs"]
    assert macs["box_head"] == 10 * (16 * 49 * 32 + 32 * 32 + 32 * 3 + 32 * 12)
    assert "mask_head" in capsys.readouterr().out
    out = tmp_path / "params.json"
    argv = ["analyze", "params", *sets(), "--image-size", "64x64", "--proposals", "10", "--detections", "5"]
    assert main([*argv, "--json", str(out)]) == 0
    layers = {row["name"]: row for row in json.loads(out.read_text())["layers"]}
    assert layers["roi_heads.box_head.fc6"]["output_shape"] == "10x32"
    assert layers["roi_heads.mask_predictor.mask_fcn_logits"]["output_shape"] == "5x3x28x28"


def test_receptive_field_layers_json(tmp_path: Path) -> None:
    out = tmp_path / "rf.json"
    assert main(["analyze", "receptive-field", "--layers", "conv3,pool2", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["layers"]
    assert [(r["receptive_field"], r["effective_stride"]) for r in rows] == [(3, 1), (4, 2)]


def test_rpn_targets_and_anchors_on_shapes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["analyze", "rpn-targets", "--shapes", "--shapes-size", "64", *sets(), "--output", str(tmp_path)]
    assert main([*argv, "--json", str(tmp_path / "rpn.json")]) == 0
    assert (tmp_path / "rpn_targets.png").read_bytes()[:4] == b"\x89PNG"
    counts = json.loads((tmp_path / "rpn.json").read_text())["counts"]
    assert counts["anchors"] == 3 * (256 + 64 + 16 + 4 + 1)
    annotations = tmp_path / "shapes" / "annotations.json"
    argv = ["analyze", "anchors", "--annotations", str(annotations), *sets(), "--output", str(tmp_path)]
    assert main(argv) == 0
    assert (tmp_path / "anchor_histograms.png").read_bytes()[:4] == b"\x89PNG"
    assert "suggested anchors" in capsys.readouterr().out


def test_errors_are_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["analyze", "receptive-field", "--layers", "conv3,cnv3"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("maskrcnn: error:") and "'cnv3'" in err and "\n" not in err
    assert main(["analyze", "anchors", "--annotations", str(tmp_path / "missing.json")]) == 1
    assert "missing.json" in capsys.readouterr().err
    assert main(["analyze", "flops", "--image-size", "big"]) == 1
    assert "HEIGHTxWIDTH" in capsys.readouterr().err
