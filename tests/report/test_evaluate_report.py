"""`maskrcnn evaluate ... --report DIR` from the command line."""

from __future__ import annotations

import json

import torch

from maskrcnn.cli import main


def test_evaluate_predictions_with_report(case_files, tmp_path, capsys) -> None:
    out = tmp_path / "report"
    status = main(["evaluate", "--annotations", str(case_files["annotations"]), "--predictions",
                   str(case_files["predictions"]), "--images", str(case_files["images"]), "--report", str(out),
                   "--json", str(tmp_path / "m.json")])
    printed = capsys.readouterr().out
    assert status == 0 and f"report: {out / 'index.html'}" in printed
    metrics = json.loads((tmp_path / "m.json").read_text())
    numbers = json.loads((out / "report.json").read_text())
    for key in ("bbox_AP", "bbox_AP50", "segm_AP", "segm_AP75"):
        assert numbers["metrics"][key] == metrics[key]  # the report shows what evaluate printed
    assert numbers["metrics"]["dsb_score"] == metrics["dsb_score"]
    assert numbers["errors"]["bbox"]["counts"] == {"cls": 1, "loc": 1, "both": 0, "dupe": 1, "bkg": 1, "miss": 1}
    page = next((out / "images").glob("*.html")).read_text()
    assert "case.png" in page and "grey canvas" not in page


def test_evaluate_report_refuses_a_foreign_folder_before_evaluating(case_files, tmp_path, capsys) -> None:
    folder = tmp_path / "busy"
    folder.mkdir()
    (folder / "thesis.tex").write_text("keep me")
    status = main(["evaluate", "--annotations", str(case_files["annotations"]), "--predictions",
                   str(case_files["predictions"]), "--report", str(folder)])
    captured = capsys.readouterr()
    assert status == 1
    assert captured.err.startswith(f"maskrcnn: error: --report {folder}: the folder is not empty and holds no ")
    assert "(not a maskrcnn report)" in captured.err and captured.err.count("\n") == 1
    assert "AP50" not in captured.out  # stopped before evaluating
    assert [p.name for p in folder.iterdir()] == ["thesis.tex"]


def test_evaluate_weights_with_report(case_files, tmp_path, capsys) -> None:
    """The --weights path hands the model's results to the report (a tiny untrained model)."""
    from maskrcnn.checkpoints import save_model
    from maskrcnn.config import load_config
    from maskrcnn.model.build import build_model

    cfg = load_config("shapes_demo", [
        "model.num_classes=3", "model.transform.min_size=[64]", "model.transform.max_size=64",
        "model.backbone.plain_channels=[8,16,16,16,16]", "model.backbone.fpn_channels=16",
        "model.roi_heads.box_head_dim=32", "model.roi_heads.mask_head_channels=16",
        "model.roi_heads.detections_per_img=5", "model.roi_heads.score_thresh=0.0",
    ])
    torch.manual_seed(0)
    weights = tmp_path / "tiny.pt"
    save_model(weights, build_model(cfg.model), cfg, class_names=["background", "circle", "square"],
               label_to_category_id={1: 1, 2: 2})
    out = tmp_path / "report"
    status = main(["evaluate", "--annotations", str(case_files["annotations"]), "--weights", str(weights),
                   "--images", str(case_files["images"]), "--report", str(out), "--device", "cpu", "--quiet",
                   "--threads", "1"])
    assert status == 0, capsys.readouterr().err
    numbers = json.loads((out / "report.json").read_text())
    assert numbers["num_images"] == 1 and numbers["num_objects"] == 6
    assert numbers["num_detections"] == 5  # the model's top 5, all kept (score_thresh 0)
    assert "weights" in (out / "index.html").read_text()
