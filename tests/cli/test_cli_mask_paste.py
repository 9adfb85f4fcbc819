"""model.roi_heads.mask_paste: exact reaches every path that turns mask grids into masks
(the Predictor, tiles, `evaluate`), and they agree with each other."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from tiled_checks import assert_box_encloses_mask
from tiny_model import tiny_overrides

from maskrcnn import Predictor
from maskrcnn.ops.masks import rle_to_mask


def save_tiny(folder: Path, paste: str) -> Path:
    from maskrcnn.checkpoints import save_model
    from maskrcnn.config import load_config
    from maskrcnn.model.build import build_model

    cfg = load_config("shapes_demo", tiny_overrides() + [f"model.roi_heads.mask_paste={paste}"])
    torch.manual_seed(0)  # the same weights for both pastes
    model = build_model(cfg.model)
    path = folder / f"{paste}.pt"
    save_model(path, model, cfg)
    return path


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("paste")
    return {paste: save_tiny(folder, paste) for paste in ("torchvision", "exact")}


def test_whole_image_tiles_and_evaluation_give_the_same_exact_masks(checkpoints, tmp_path) -> None:
    from PIL import Image

    from maskrcnn.commands.evaluate import evaluate_metrics
    from maskrcnn.data.shapes import generate_shapes

    json_path = generate_shapes(tmp_path, 1, image_size=64, seed=3)
    image = np.asarray(Image.open(tmp_path / "images" / "annotations_000000.png").convert("RGB"))
    masks = {}
    for paste, path in checkpoints.items():
        predictor = Predictor.from_checkpoint(path, device="cpu", score_threshold=0.0)
        whole = predictor(image)
        masks[paste] = whole["masks"]  # (N, H, W) bool
        if paste == "exact":
            order = np.argsort(-whole["scores"], kind="stable")
            tiled = predictor.predict_tiled(image, tile=64, overlap=16)
            assert tiled.tiles == 1 and np.array_equal(tiled.dense_masks(), whole["masks"][order])
            assert_box_encloses_mask(tiled.boxes, list(tiled.dense_masks()))
            results: list[dict] = []
            evaluate_metrics(annotations=json_path, weights=path, images=tmp_path / "images", device="cpu",
                             results_out=results)
            evaluated = np.stack([rle_to_mask(r["segmentation"]) for r in results]).astype(bool)
            assert len(results) == len(whole["scores"]) > 0 and np.array_equal(evaluated, whole["masks"])
    assert masks["exact"].shape == masks["torchvision"].shape
    assert not np.array_equal(masks["exact"], masks["torchvision"])  # the setting changed the masks


def test_an_unknown_paste_stops_in_one_line() -> None:
    from maskrcnn.config import ConfigError, load_config

    with pytest.raises(ConfigError, match=r"model.roi_heads.mask_paste: unknown value 'nearest'; expected one of torchvision, exact"):
        load_config("shapes_demo", tiny_overrides() + ["model.roi_heads.mask_paste=nearest"])


def test_export_pastes_as_the_checkpoint_does_and_says_so(checkpoints, tmp_path, capsys) -> None:
    onnx = pytest.importorskip("onnx")
    from maskrcnn.cli import main

    for paste in ("exact", "torchvision"):
        path = tmp_path / f"{paste}.onnx"
        assert main(["export", "--weights", str(checkpoints[paste]), "--output", str(path)]) == 0
        assert f"mask paste: {paste};" in capsys.readouterr().out
        metadata = {prop.key: prop.value for prop in onnx.load(str(path), load_external_data=False).metadata_props}
        assert metadata["maskrcnn.mask_paste"] == paste


def test_mask_paste_option_switches_a_trained_checkpoint(checkpoints, tmp_path, capsys) -> None:
    """`--mask-paste exact` on a checkpoint trained with torchvision's paste gives what the
    same weights saved with mask_paste exact give (the weights serve either)."""
    import json

    from maskrcnn.cli import main
    from maskrcnn.data.shapes import generate_shapes

    json_path = generate_shapes(tmp_path, 1, image_size=64, seed=4)
    outputs = {}
    for name, path, extra in (("switched", checkpoints["torchvision"], ["--mask-paste", "exact"]),
                              ("stored", checkpoints["exact"], []), ("plain", checkpoints["torchvision"], [])):
        out_dir = tmp_path / name
        status = main(["predict", str(tmp_path / "images"), "--weights", str(path), "--output", str(out_dir),
                       "--score-threshold", "0", "--no-overlays", "--quiet", "--threads", "1", *extra])
        assert status == 0, capsys.readouterr().err
        outputs[name] = [r["segmentation"]["counts"] for r in json.loads((out_dir / "predictions.json").read_text())]
    assert outputs["switched"] == outputs["stored"] and outputs["switched"] != outputs["plain"]
    status = main(["evaluate", "--annotations", str(json_path), "--predictions", str(tmp_path / "plain" / "predictions.json"),
                   "--mask-paste", "exact"])
    err = capsys.readouterr().err
    assert status == 1 and "--mask-paste needs --weights" in err
