"""The command line without a model: help, configs, input errors, predictions-file evaluation."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from maskrcnn.cli import build_parser, main


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    try:
        status = main(args)
    except SystemExit as exc:  # argparse's own exits (--help, usage errors)
        status = exc.code
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_top_level_help_lists_commands(capsys) -> None:
    status, out, _ = run_cli(["--help"], capsys)
    assert status == 0
    for command in ("demo", "train", "predict", "evaluate", "configs", "import-masks", "analyze"):
        assert command in out


@pytest.mark.parametrize("command", ["demo", "train", "predict", "evaluate", "configs"])
def test_each_command_help_shows_defaults(command, capsys) -> None:
    status, out, _ = run_cli([command, "--help"], capsys)
    assert status == 0
    assert "(default:" in out
    if command == "predict":
        assert "--score-threshold" in out and "(default: 0.5)" in out and "(default: auto)" in out
    if command == "demo":
        assert "(default: runs/demo)" in out and "--iters" in out and "--set" in out


def test_no_command_prints_help(capsys) -> None:
    status, out, _ = run_cli([], capsys)
    assert status == 0 and "usage: maskrcnn" in out


def test_configs_lists_and_prints(capsys) -> None:
    status, out, _ = run_cli(["configs"], capsys)
    assert status == 0 and "maskrcnn_resnet50_fpn" in out
    status, out, _ = run_cli(["configs", "maskrcnn_resnet50_fpn_v2", "--set", "solver.lr=0.5"], capsys)
    assert status == 0 and "fpn_norm: bn" in out and "lr: 0.5" in out


def test_unknown_config_name_is_one_clear_error(capsys) -> None:
    status, out, err = run_cli(["configs", "no_such_config"], capsys)
    assert status == 1
    assert err.startswith("maskrcnn: error: config 'no_such_config'") and "Traceback" not in err


def test_unknown_override_key_is_one_clear_error(capsys) -> None:
    status, _, err = run_cli(["configs", "maskrcnn_resnet50_fpn", "--set", "solver.learning_rate=1"], capsys)
    assert status == 1 and "unknown key 'solver.learning_rate'" in err


def test_predict_missing_file_fails_before_loading_weights(tmp_path, capsys) -> None:
    weights = tmp_path / "w.pt"  # never opened: the images are checked first
    status, _, err = run_cli(["predict", str(tmp_path / "nope.png"), "--weights", str(weights)], capsys)
    assert status == 1 and err.strip() == f"maskrcnn: error: {tmp_path / 'nope.png'}: no such file or folder"


def test_predict_folder_without_images(tmp_path, capsys) -> None:
    (tmp_path / "notes.txt").write_text("hi")
    status, _, err = run_cli(["predict", str(tmp_path), "--weights", "w.pt"], capsys)
    assert status == 1 and "folder has no image files" in err


def test_predict_glob_without_matches(tmp_path, capsys) -> None:
    status, _, err = run_cli(["predict", str(tmp_path / "*.jpg"), "--weights", "w.pt"], capsys)
    assert status == 1 and "no files match" in err


def test_predict_missing_weights(tmp_path, capsys) -> None:
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    status, _, err = run_cli(["predict", str(tmp_path), "--weights", str(tmp_path / "w.pt"), "--quiet"], capsys)
    assert status == 1 and "checkpoint file not found" in err


def test_evaluate_needs_weights_or_predictions(tmp_path, capsys) -> None:
    gt = tmp_path / "gt.json"
    gt.write_text("{}")
    status, _, err = run_cli(["evaluate", "--annotations", str(gt)], capsys)
    assert status == 1 and "either --weights" in err
    status, _, err = run_cli(["evaluate", "--annotations", str(gt), "--weights", "w.pt"], capsys)
    assert status == 1 and "--weights needs --images" in err
    status, _, err = run_cli(["evaluate", "--annotations", str(tmp_path / "missing.json"), "--predictions", "p.json"], capsys)
    assert status == 1 and "missing.json: annotations file not found" in err


def _write_gt(path: Path) -> dict:
    from maskrcnn.ops.masks import mask_to_rle

    mask = np.zeros((20, 30), np.uint8)
    mask[4:14, 5:20] = 1
    gt = {
        "images": [{"id": 7, "file_name": "pic.png", "height": 20, "width": 30}],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 3, "bbox": [5, 4, 15, 10], "area": 150,
             "iscrowd": 0, "segmentation": mask_to_rle(mask)}
        ],
        "categories": [{"id": 3, "name": "thing"}],
    }
    path.write_text(json.dumps(gt))
    return gt


def test_evaluate_predictions_file_perfect_and_by_file_name(tmp_path, capsys) -> None:
    gt = _write_gt(tmp_path / "gt.json")
    ann = gt["annotations"][0]
    # image_id 1 as `maskrcnn predict` numbers it; matched to id 7 through file_name
    preds = [{"file_name": "some/folder/pic.png", "image_id": 1, "category_id": 3, "bbox": ann["bbox"],
              "score": 0.9, "segmentation": ann["segmentation"]}]
    (tmp_path / "pred.json").write_text(json.dumps(preds))
    out_json = tmp_path / "out" / "metrics.json"
    status, out, err = run_cli(
        ["evaluate", "--annotations", str(tmp_path / "gt.json"), "--predictions", str(tmp_path / "pred.json"),
         "--json", str(out_json)], capsys)
    assert status == 0, err
    metrics = json.loads(out_json.read_text())
    assert metrics["bbox_AP"] == pytest.approx(1.0) and metrics["segm_AP"] == pytest.approx(1.0)
    assert metrics["dsb_score"] == pytest.approx(1.0)
    assert "segm" in out and "Data Science Bowl score" in out


def test_evaluate_shifted_prediction_scores_lower(tmp_path, capsys) -> None:
    gt = _write_gt(tmp_path / "gt.json")
    from maskrcnn.ops.masks import mask_to_rle

    shifted = np.zeros((20, 30), np.uint8)
    shifted[4:14, 12:27] = 1  # overlaps the truth in 8 of 15 columns: IoU 8/22
    preds = [{"image_id": 7, "category_id": 3, "bbox": [12, 4, 15, 10], "score": 0.9,
              "segmentation": mask_to_rle(shifted)}]
    (tmp_path / "pred.json").write_text(json.dumps(preds))
    status, out, err = run_cli(
        ["evaluate", "--annotations", str(tmp_path / "gt.json"), "--predictions", str(tmp_path / "pred.json")], capsys)
    assert status == 0, err
    segm_row = [line for line in out.splitlines() if line.startswith("segm")][0]
    assert float(segm_row.split()[1]) == 0.0  # AP: IoU 0.36 is below every COCO threshold


def test_evaluate_bad_predictions_file(tmp_path, capsys) -> None:
    _write_gt(tmp_path / "gt.json")
    (tmp_path / "pred.json").write_text("{not json")
    status, _, err = run_cli(
        ["evaluate", "--annotations", str(tmp_path / "gt.json"), "--predictions", str(tmp_path / "pred.json")], capsys)
    assert status == 1 and "not valid JSON" in err and "Traceback" not in err


def test_import_maskrcnn_is_light() -> None:
    code = "import sys, maskrcnn; assert 'torch' not in sys.modules, 'torch imported'; print(maskrcnn.load_config.__name__)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "load_config"


def test_console_script_reports_errors_without_traceback(tmp_path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "maskrcnn.cli", "predict", str(tmp_path / "missing.png"), "--weights", "x.pt"],
        capture_output=True, text=True, check=False,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("maskrcnn: error:") and "Traceback" not in result.stderr


def test_parser_builds_without_optional_modules() -> None:
    parser = build_parser()
    assert parser.prog == "maskrcnn"


def test_python_evaluate_api_matches_the_command(tmp_path) -> None:
    import maskrcnn

    gt = _write_gt(tmp_path / "gt.json")
    ann = gt["annotations"][0]
    preds = [{"image_id": 7, "category_id": 3, "bbox": ann["bbox"], "score": 0.4, "segmentation": ann["segmentation"]}]
    (tmp_path / "pred.json").write_text(json.dumps(preds))
    metrics = maskrcnn.evaluate(tmp_path / "gt.json", predictions=tmp_path / "pred.json", score_threshold=0.5)
    assert metrics["segm_AP"] == pytest.approx(1.0)  # AP does not depend on the threshold
    assert metrics["dsb_score"] == 0.0  # the only mask scores 0.4 < 0.5: one missed instance
    assert maskrcnn.evaluate(tmp_path / "gt.json", predictions=tmp_path / "pred.json", score_threshold=0.3)["dsb_score"] == 1.0


def test_missing_command_module_degrades_to_a_clear_error(monkeypatch, capsys) -> None:
    import maskrcnn.cli as cli

    monkeypatch.setattr(cli, "EXTERNAL_COMMANDS", (("import-masks", "maskrcnn.no_such_module"),))
    status, out, err = run_cli(["--help"], capsys)
    assert status == 0 and "import-masks" in out and "unavailable" in out
    status, _, err = run_cli(["import-masks"], capsys)
    assert status == 1 and err.startswith("maskrcnn: error: the 'import-masks' command is unavailable")


def test_command_group_without_subcommand_prints_its_help(capsys) -> None:
    status, out, _ = run_cli(["analyze"], capsys)
    assert status == 2 and out.startswith("usage: maskrcnn analyze")


def test_threads_option(capsys) -> None:
    import torch

    before = torch.get_num_threads()
    status, _, err = run_cli(["predict", "x.png", "--weights", "w.pt", "--threads", "-1"], capsys)
    assert status == 1 and "--threads: expected 0" in err
    assert torch.get_num_threads() == before


def test_inference_commands_let_openmp_threads_sleep_unless_the_user_chose():
    script = (
        "import os, sys; from maskrcnn.cli import sleep_while_waiting_for_inference as f; "
        "f(sys.argv[1]); print(os.environ.get('OMP_WAIT_POLICY'), 'torch' in sys.modules)"
    )
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}

    def policy(command: str, **extra: str) -> str:
        done = subprocess.run([sys.executable, "-c", script, command], env={**env, **extra}, capture_output=True, text=True, check=True)
        return done.stdout.strip()

    assert policy("predict") == "PASSIVE False"
    assert policy("evaluate") == "PASSIVE False"
    assert policy("train") == "None False"  # training keeps OpenMP's default
    assert policy("predict", OMP_WAIT_POLICY="ACTIVE") == "ACTIVE False"
