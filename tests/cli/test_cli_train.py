"""`maskrcnn train` at toy size, and loading a plain state dict with a config file."""

import json

import numpy as np
import torch

from maskrcnn.checkpoints import checkpoint_labels
from maskrcnn.cli import main
from maskrcnn.config import dump_config
from maskrcnn.inference.predictor import Predictor


def test_train_command_writes_checkpoint_and_summary(tiny, tmp_path, capsys) -> None:
    data = tmp_path / "data"
    args = ["train", "--config", "shapes_demo", "--output", str(tmp_path / "run"), "--device", "cpu", "--threads", "1"]
    overrides = tiny["overrides"] + [
        "solver.max_iter=2", "solver.warmup_iters=1", "data.batch_size=2",
        f"data.train.annotations={data / 'train.json'}", "data.train.num_images=3", "data.train.image_size=48",
        f"data.val.annotations={data / 'val.json'}", "data.val.num_images=1", "data.val.image_size=48",
    ]
    for item in overrides:
        args += ["--set", item]
    status = main(args)
    printed = capsys.readouterr().out
    assert status == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["iterations"] == 2 and (tmp_path / "run" / "model_final.pt").is_file()
    assert "iterations" in printed and "final_checkpoint" in printed


def test_train_command_unknown_key(capsys) -> None:
    assert main(["train", "--set", "solver.lrate=1"]) == 1
    assert "unknown key 'solver.lrate'" in capsys.readouterr().err


def test_plain_state_dict_with_a_config_file(tiny, tiny_checkpoint, tmp_path) -> None:
    plain = tmp_path / "plain.pt"
    torch.save(torch.load(tiny_checkpoint, weights_only=True)["model"], plain)
    config_file = tmp_path / "tiny.yaml"
    dump_config(tiny["config"](), config_file)
    predictor = Predictor.from_checkpoint(plain, config=str(config_file), device="cpu")
    assert predictor.class_names is None and predictor.label_to_category_id is None  # nothing stored
    assert predictor.category_id(3) == 3
    predictor.score_threshold = 0.0
    assert predictor(np.zeros((20, 20, 3), np.uint8))["masks"].shape[1:] == (20, 20)


def test_coco_names_for_91_class_models_without_stored_names(tiny, tmp_path) -> None:
    plain = tmp_path / "state.pt"
    torch.save({"w": torch.zeros(1)}, plain)  # not a native checkpoint: no stored metadata
    cfg = tiny["config"]()
    cfg.model.num_classes = 91
    names, mapping = checkpoint_labels({}, cfg)  # a plain state dict holds no names
    assert names is not None and names[1] == "person" and len(names) == 91 and mapping is None
    cfg.model.num_classes = 4
    assert checkpoint_labels({}, cfg) == (None, None)
