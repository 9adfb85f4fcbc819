"""train.tensorboard: a tiny run writes event files with the losses, lr, iteration time, the
evaluation metrics and validation pictures; without the package, one clear line."""

from __future__ import annotations

import sys
from types import SimpleNamespace

import pytest
import torch
from tiny_model import TINY_TRAINING_MODEL

from maskrcnn.config import load_config
from maskrcnn.engine.tensorboard_log import MissingTensorBoardError, tensorboard_logging
from maskrcnn.engine.train import train
from maskrcnn.errors import error_message

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")

TINY = [
    *TINY_TRAINING_MODEL,
    "model.roi_heads.score_thresh=0.0", "model.test_augment=none",
    "data.train.kind=shapes", "data.train.num_images=4", "data.train.image_size=64", "data.batch_size=2",
    "data.val.kind=shapes", "data.val.num_images=2", "data.val.image_size=64", "data.val.seed=5",
    "solver.lr=0.01", "solver.max_iter=2", "solver.warmup_iters=1",
    "train.device=cpu", "train.checkpoint_period=2", "train.log_period=1", "train.eval_period=0",
]


def _config(tmp_path, *extra):
    data = tmp_path / "data"
    return load_config(None, TINY + [f"data.train.annotations={data}/train.json", f"data.val.annotations={data}/val.json",
                                     f"train.output_dir={tmp_path / 'run'}", *extra])


def test_tiny_run_writes_scalars_and_pictures(tmp_path):
    torch.manual_seed(0)
    train(_config(tmp_path, "train.tensorboard=true"))
    events = sorted((tmp_path / "run").glob("events.out.tfevents.*"))
    assert len(events) == 1
    acc = event_accumulator.EventAccumulator(str(tmp_path / "run"), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    scalars = set(acc.Tags()["scalars"])
    for tag in ("train/loss_total", "train/loss_classifier", "train/loss_box_reg", "train/loss_mask",
                "train/loss_objectness", "train/loss_rpn_box_reg", "train/lr", "train/time_per_iter",
                "eval/bbox_AP", "eval/segm_AP", "eval/val_loss_total"):
        assert tag in scalars, f"{tag} missing from {sorted(scalars)}"
    assert [e.step for e in acc.Scalars("train/loss_total")] == [1, 2]
    assert [e.step for e in acc.Scalars("eval/segm_AP")] == [2]  # the final evaluation
    jsonl_lr = acc.Scalars("train/lr")[0].value
    assert 0 < jsonl_lr <= 0.01
    pictures = acc.Tags()["images"]
    assert len(pictures) == 2 and all(tag.startswith("val/") for tag in pictures)
    image = acc.Images(pictures[0])[-1]
    assert image.step == 2 and image.width >= 64 and image.encoded_image_string[:4] == b"\x89PNG"


def test_off_by_default_leaves_the_metrics_log_alone():
    assert load_config(None).train.tensorboard is False
    plain_log = object()
    run = SimpleNamespace(cfg=load_config(None), metrics_log=plain_log)
    with tensorboard_logging(run):
        assert run.metrics_log is plain_log


def test_missing_package_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if tensorboard were not installed
    with pytest.raises(MissingTensorBoardError) as info:
        train(_config(tmp_path, "train.tensorboard=true", "solver.max_iter=1"))
    assert error_message(info.value) == (
        "train.tensorboard: true needs the tensorboard package: pip install 'maskrcnn[tensorboard]'"
    )
