"""`maskrcnn demo` end to end at toy size: every promised file appears, metrics are sane."""

import json

from maskrcnn.cli import main
from maskrcnn.commands.demo import demo_config

TINY_MODEL = [
    "model.backbone.plain_channels=[8,16,16,16,16]",
    "model.backbone.fpn_channels=16",
    "model.roi_heads.box_head_dim=32",
    "model.roi_heads.mask_head_channels=16",
    "data.batch_size=2",
]


def test_demo_config_scales_with_options(tmp_path) -> None:
    base = demo_config(output=tmp_path)
    cfg = demo_config(output=tmp_path, iters=base.solver.max_iter * 2, image_size=base.data.train.image_size * 2,
                      train_images=7, overrides=["solver.lr=0.5"])
    assert cfg.solver.max_iter == base.solver.max_iter * 2
    assert cfg.solver.steps == [2 * s for s in base.solver.steps]
    assert cfg.model.transform.min_size == [2 * s for s in base.model.transform.min_size]
    assert cfg.model.anchors.sizes[0][0] == 2 * base.model.anchors.sizes[0][0]
    assert cfg.model.roi_heads.canonical_scale == 2 * base.model.roi_heads.canonical_scale
    assert cfg.data.train.num_images == 7 and cfg.solver.lr == 0.5
    assert cfg.data.train.annotations == str(tmp_path / "data" / "train.json")
    assert cfg.train.output_dir == str(tmp_path)


def test_demo_rejects_bad_options(tmp_path, capsys) -> None:
    assert main(["demo", "--output", str(tmp_path), "--iters", "0"]) == 1
    assert "--iters: expected a positive" in capsys.readouterr().err
    assert main(["demo", "--output", str(tmp_path), "--set", "solver.nope=1"]) == 1
    assert "unknown key 'solver.nope'" in capsys.readouterr().err


def test_demo_runs_end_to_end_at_toy_size(tmp_path, capsys) -> None:
    out = tmp_path / "demo"
    args = ["demo", "--output", str(out), "--iters", "2", "--train-images", "4", "--val-images", "2",
            "--image-size", "64", "--device", "cpu", "--overlays", "2", "--threads", "1"]
    for item in TINY_MODEL:
        args += ["--set", item]
    status = main(args)
    printed = capsys.readouterr().out
    assert status == 0
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("bbox_AP", "segm_AP", "segm_AP50", "train_time_s", "total_time_s"):
        assert key in metrics
    assert 0.0 <= metrics["segm_AP"] <= 1.0 and metrics["iterations"] == 2 and metrics["image_size"] == 64
    for name in ("model_final.pt", "loss_curve.png", "metrics.jsonl", "overlays.png"):
        assert (out / name).is_file(), name
    assert len(list((out / "overlays").glob("*_pred.png"))) == 2
    assert len(list((out / "overlays").glob("*_vs_gt.png"))) == 2
    assert "segm" in printed and str(out / "metrics.json") in printed


def test_demo_reports_the_iterations_its_time_budget_allowed(tmp_path, capsys) -> None:
    """The recipe trains against solver.max_time_s: metrics.json counts the iterations run,
    not the configured ones (200 tiny iterations cannot fit in 0.2 s)."""
    out = tmp_path / "demo"
    args = ["demo", "--output", str(out), "--iters", "200", "--train-images", "4", "--val-images", "2",
            "--image-size", "64", "--device", "cpu", "--overlays", "1", "--threads", "1",
            "--set", "solver.max_time_s=0.2"]
    for item in TINY_MODEL:
        args += ["--set", item]
    assert main(args) == 0
    assert "within 0.2 s of training" in capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    summary = json.loads((out / "summary.json").read_text())
    assert metrics["iterations"] == summary["iterations"] < 200
