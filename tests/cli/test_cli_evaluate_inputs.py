"""`maskrcnn evaluate` on inputs that used to score silently or fail late (issue 15)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from maskrcnn.cli import main
from maskrcnn.ops.masks import mask_to_rle


def run_cli(args, capsys):
    status = main(args)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def run_cli_in_subprocess(args, timeout=120):
    """For inputs on which pycocotools hung before they were checked (a cut-short RLE): a
    regression then fails on the timeout instead of hanging the test run."""
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "maskrcnn.cli", *map(str, args)],
                            capture_output=True, text=True, timeout=timeout, check=False)
    return result.returncode, result.stdout, result.stderr


def one_line_error(status, err, *needles):
    assert status == 1, err
    assert err.startswith("maskrcnn: error:") and len(err.strip().splitlines()) == 1, err
    for needle in needles:
        assert needle in err, (needle, err)


@pytest.fixture(scope="module")
def shapes_set(tmp_path_factory):
    from maskrcnn.data.shapes import generate_shapes

    folder = tmp_path_factory.mktemp("shapes")
    json_path = generate_shapes(folder, 2, image_size=48, seed=3)
    return json_path, folder / "images"


def _gt(path, categories=(3,), file_names=("pic.png", "other.png")):
    mask = np.zeros((20, 30), np.uint8)
    mask[4:14, 5:20] = 1
    gt = {
        "images": [{"id": 7 + i, "file_name": name, "height": 20, "width": 30} for i, name in enumerate(file_names)],
        "annotations": [{"id": 1, "image_id": 7, "category_id": categories[0], "bbox": [5, 4, 15, 10], "area": 150,
                         "iscrowd": 0, "segmentation": mask_to_rle(mask)}],
        "categories": [{"id": c, "name": f"c{c}"} for c in categories],
    }
    path.write_text(json.dumps(gt))
    return gt


def _prediction(gt, **changes):
    ann = gt["annotations"][0]
    row = {"image_id": 7, "category_id": ann["category_id"], "bbox": list(ann["bbox"]), "score": 0.9,
           "segmentation": dict(ann["segmentation"])}
    row.update(changes)
    return row


def _evaluate_predictions(tmp_path, rows, capsys, *extra, subprocess=False):
    (tmp_path / "pred.json").write_text(json.dumps(rows))
    args = ["evaluate", "--annotations", str(tmp_path / "gt.json"), "--predictions", str(tmp_path / "pred.json"), *extra]
    return run_cli_in_subprocess(args) if subprocess else run_cli(args, capsys)


def test_weights_with_every_image_missing_is_one_line(tiny_checkpoint, shapes_set, tmp_path, capsys):
    json_path, _ = shapes_set
    (tmp_path / "empty").mkdir()
    status, out, err = run_cli(["evaluate", "--weights", str(tiny_checkpoint), "--annotations", str(json_path),
                                "--images", str(tmp_path / "empty"), "--device", "cpu", "--quiet"], capsys)
    one_line_error(status, err, "none of its 2 images was found", "--images")
    assert "0.000" not in out


def test_weights_whose_categories_differ_from_the_ground_truth(tiny_checkpoint, tmp_path, capsys):
    # the tiny checkpoint maps its labels 1, 2, 3 to category ids 10, 20, 30
    from maskrcnn.data.shapes import generate_shapes

    json_path = generate_shapes(tmp_path, 1, image_size=32, seed=1)
    data = json.loads(json_path.read_text())
    old_to_new = dict(zip(sorted(c["id"] for c in data["categories"]), (1, 5, 90)))
    for category in data["categories"]:
        category["id"] = old_to_new[category["id"]]
    for ann in data["annotations"]:
        ann["category_id"] = old_to_new[ann["category_id"]]
    json_path.write_text(json.dumps(data))
    status, out, err = run_cli(["evaluate", "--weights", str(tiny_checkpoint), "--annotations", str(json_path),
                                "--images", str(tmp_path / "images"), "--device", "cpu", "--quiet"], capsys)
    one_line_error(status, err, "category ids [10, 20, 30] differ from", "[1, 5, 90]")
    assert out == ""


def test_predictions_for_other_files_are_refused(tmp_path, capsys):
    gt = _gt(tmp_path / "gt.json")
    rows = [_prediction(gt, file_name="run/pic.png", image_id=1),  # matched by name: fine
            _prediction(gt, file_name="run/elsewhere.png", image_id=7)]  # id 7 exists, but is another file
    status, out, err = _evaluate_predictions(tmp_path, rows, capsys)
    one_line_error(status, err, "result 1", "'run/elsewhere.png' is not an image of", "image_id 7 is 'pic.png'")
    status, out, err = _evaluate_predictions(tmp_path, rows[:1], capsys)
    assert status == 0 and "segm" in out, err


def test_ambiguous_base_name_is_refused(tmp_path, capsys):
    gt = _gt(tmp_path / "gt.json", file_names=("a/pic.png", "b/pic.png"))
    status, _, err = _evaluate_predictions(tmp_path, [_prediction(gt, file_name="pic.png")], capsys)
    one_line_error(status, err, "result 0", "matches several images")
    status, out, err = _evaluate_predictions(tmp_path, [_prediction(gt, file_name="/data/b/pic.png", image_id=1)], capsys)
    assert status == 0, err
    assert json.loads((tmp_path / "pred.json").read_text())[0]["image_id"] == 1  # the user's file is untouched


@pytest.mark.parametrize(
    "changes, needle",
    [
        ({"score": float("nan")}, "'score' must be a finite number, got nan"),
        ({"score": "high"}, "'score' must be a finite number"),
        ({"bbox": [5, 4, -15, 10]}, "width and height must not be negative"),
        ({"bbox": [5, 4, float("inf"), 10]}, "'bbox' must be [x, y, width, height] finite numbers"),
        ({"bbox": [5, 4, 15]}, "'bbox' must be"),
        ({"segmentation": {"size": [20, 30], "counts": "abc"}}, "segmentation: RLE counts invalid"),
    ],
)
def test_unusable_prediction_is_refused_naming_it(tmp_path, capsys, changes, needle):
    gt = _gt(tmp_path / "gt.json")
    rows = [_prediction(gt), _prediction(gt, **changes)]
    status, out, err = _evaluate_predictions(tmp_path, rows, capsys)
    one_line_error(status, err, "pred.json: result 1:", needle)
    assert out == ""


def test_predicted_rle_cut_short_is_refused(tmp_path, capsys):
    gt = _gt(tmp_path / "gt.json")
    cut = dict(gt["annotations"][0]["segmentation"])
    cut["counts"] = cut["counts"][:3]  # ends on a whole number: runs stop short of 20 * 30
    status, out, err = _evaluate_predictions(tmp_path, [_prediction(gt, segmentation=cut)], capsys, subprocess=True)
    one_line_error(status, err, "pred.json: result 0:", "segmentation: RLE counts do not add up")


def test_ground_truth_rle_cut_short_is_skipped_with_a_warning(tmp_path, capsys):
    gt = _gt(tmp_path / "gt.json")
    rows = [_prediction(gt)]
    gt["annotations"][0]["segmentation"]["counts"] = gt["annotations"][0]["segmentation"]["counts"][:3]
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    status, out, err = _evaluate_predictions(tmp_path, rows, capsys, "--json", str(tmp_path / "m.json"), subprocess=True)
    assert status == 0, err
    assert "RLE counts do not add up to the image size: 1" in err  # the skipped object is said, not silent
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["segm_AP"] == -1.0  # no ground truth left to score against
    assert metrics["dsb_score"] == 0.5  # pic.png: one false positive (0); other.png: nothing at all (1)


def test_json_path_under_a_file_fails_before_computing(tmp_path, capsys, monkeypatch):
    import maskrcnn.commands.evaluate as evaluation

    gt = _gt(tmp_path / "gt.json")
    (tmp_path / "pred.json").write_text(json.dumps([_prediction(gt)]))
    (tmp_path / "afile").write_text("x")
    computed = []
    original = evaluation.evaluate_metrics
    monkeypatch.setattr(evaluation, "evaluate_metrics", lambda **kw: computed.append(1) or original(**kw))
    for target, needle in ((tmp_path / "afile" / "m.json", "is a file, not a folder"),
                           (tmp_path, "it is a folder")):
        status, out, err = run_cli(["evaluate", "--annotations", str(tmp_path / "gt.json"), "--predictions",
                                    str(tmp_path / "pred.json"), "--json", str(target)], capsys)
        one_line_error(status, err, str(target), needle)
        assert out == "" and not computed
    assert (tmp_path / "afile").read_text() == "x"


def test_dsb_score_threshold_option_and_config_key(tiny_checkpoint, shapes_set, tmp_path, capsys):
    """--dsb-score-threshold sets the DSB score's threshold; without it, the checkpoint's
    evaluation.dsb_score_threshold does (0.5 by default)."""
    json_path, images = shapes_set
    data = torch.load(tiny_checkpoint, weights_only=True)
    data["config"].setdefault("evaluation", {})["dsb_score_threshold"] = 0.25
    data["label_to_category_id"] = {1: 1, 2: 2, 3: 3}  # the shapes set's category ids
    ckpt = tmp_path / "t.pt"
    torch.save(data, ckpt)
    common = ["evaluate", "--weights", str(ckpt), "--annotations", str(json_path), "--images", str(images),
              "--device", "cpu", "--quiet", "--threads", "1"]
    status, out, err = run_cli([*common, "--json", str(tmp_path / "a.json")], capsys)
    assert status == 0, err
    assert json.loads((tmp_path / "a.json").read_text())["dsb_score_threshold"] == 0.25
    assert "masks scoring >= 0.25" in out
    status, out, err = run_cli([*common, "--dsb-score-threshold", "0.75", "--json", str(tmp_path / "b.json")], capsys)
    assert status == 0, err
    assert json.loads((tmp_path / "b.json").read_text())["dsb_score_threshold"] == 0.75
    status, _, err = run_cli([*common, "--dsb-score-threshold", "2"], capsys)
    one_line_error(status, err, "--dsb-score-threshold", "[0, 1]")


def test_old_score_threshold_spelling_still_sets_the_dsb_threshold_with_a_note(capsys):
    """In `predict`, --score-threshold filters detections; `evaluate` calls its DSB threshold
    --dsb-score-threshold and takes the old spelling with a one-line deprecation note."""
    from maskrcnn.cli import build_parser

    parser = build_parser()
    args = parser.parse_args(["evaluate", "--annotations", "gt.json", "--score-threshold", "0.3"])
    assert args.dsb_score_threshold == 0.3
    err = capsys.readouterr().err
    assert err.strip() == "maskrcnn: note: --score-threshold is deprecated here, use --dsb-score-threshold"
    args = parser.parse_args(["evaluate", "--annotations", "gt.json", "--dsb-score-threshold", "0.4"])
    assert args.dsb_score_threshold == 0.4 and capsys.readouterr().err == ""
    assert parser.parse_args(["evaluate", "--annotations", "gt.json"]).dsb_score_threshold is None
    evaluate_help = parser._subparsers._group_actions[0].choices["evaluate"].format_help()
    assert "--dsb-score-threshold" in evaluate_help and "--score-threshold" not in evaluate_help.replace("--dsb-score", "")
