import random

import numpy as np
import pytest
import torch

from maskrcnn.config import Config, apply_override
from maskrcnn.engine.metrics import MetricsLog, WindowAverages, read_metrics
from maskrcnn.engine.resume_state import (
    CheckpointError,
    capture_rng_state,
    check_same_model_config,
    load_training_checkpoint,
    model_checkpoint,
    restore_rng_state,
    save_checkpoint,
    weights_fingerprint,
)
from maskrcnn.visualize.loss_curve import plot_loss_curve


def draw():
    return random.random(), float(np.random.rand()), float(torch.rand(()))


def test_rng_state_round_trip_through_a_file(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    state = capture_rng_state()
    expected = draw()
    torch.save(state, tmp_path / "rng.pt")
    draw(), draw()  # move every generator on
    restore_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    assert draw() == expected


def test_training_checkpoint_is_native_format_and_loads_weights_only(tmp_path):
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: 0.5)
    ckpt = model_checkpoint(
        model, Config(), iteration=7, epoch=1, batch=2, optimizer=optimizer.state_dict(),
        scheduler=scheduler.state_dict(), scaler={}, rng=[capture_rng_state()], world_size=1,
        best_metric=None, best_iteration=None, class_names=["background", "circle"], label_to_category_id={1: 5},
    )
    save_checkpoint(tmp_path / "last.pt", ckpt)
    loaded = load_training_checkpoint(tmp_path / "last.pt")
    assert loaded["format"] == "maskrcnn" and loaded["version"] == 1
    assert loaded["config"]["model"]["num_classes"] == 91
    assert loaded["iteration"] == 7 and loaded["label_to_category_id"] == {1: 5}
    assert torch.equal(loaded["model"]["weight"], model.weight)
    assert loaded["optimizer"]["state"][0]["momentum_buffer"].shape == (2, 3)
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temporary file left


def test_load_errors_are_clear(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint to resume from"):
        load_training_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_training_checkpoint(tmp_path / "junk.pt")
    save_checkpoint(tmp_path / "model.pt", model_checkpoint(torch.nn.Linear(1, 1), Config()))
    with pytest.raises(CheckpointError, match="model-only checkpoint"):
        load_training_checkpoint(tmp_path / "model.pt")


def test_model_config_mismatch_names_the_field():
    stored = model_checkpoint(torch.nn.Linear(1, 1), Config())["config"]
    check_same_model_config(stored, Config(), "last.pt")  # same model: fine
    other = apply_override(Config(), "model.roi_heads.box_head_dim=256")
    with pytest.raises(CheckpointError, match="model.roi_heads.box_head_dim"):
        check_same_model_config(stored, other, "last.pt")


def test_fingerprint_sees_one_changed_bit():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    before = weights_fingerprint(model)
    assert weights_fingerprint(model) == before
    with torch.no_grad():
        model[0].bias[0] = torch.nextafter(model[0].bias[0], torch.tensor(10.0))
    assert weights_fingerprint(model) != before


def test_metrics_log_truncates_records_after_the_resumed_iteration(tmp_path):
    log = MetricsLog(tmp_path / "metrics.jsonl")
    log.start_fresh()
    for it in (4, 8, 12):
        log.write({"type": "train", "iteration": it, "loss_total": 1.0 / it})
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"type": "train", "itera')  # a line cut short by a kill
    log.truncate_after(8)
    assert [r["iteration"] for r in read_metrics(tmp_path / "metrics.jsonl")] == [4, 8]
    silent = MetricsLog(tmp_path / "other.jsonl", enabled=False)
    silent.write({"iteration": 1})
    assert not (tmp_path / "other.jsonl").exists()


def test_window_averages():
    avg = WindowAverages(window=2)
    for v in (1.0, 2.0, 6.0):
        avg.update({"loss": v})
    assert avg.recent() == {"loss": 4.0}
    assert avg.since_reset() == {"loss": 3.0}
    avg.reset()
    assert avg.since_reset() == {}


def test_loss_curve_png(tmp_path):
    records = [{"type": "train", "iteration": i, "loss_total": 2.0 / i, "loss_mask": 0.5 / i} for i in range(1, 6)]
    records.append({"type": "eval", "iteration": 5, "segm_AP": 0.4, "bbox_AP": 0.5, "val_loss_total": 0.6})
    assert plot_loss_curve(records, tmp_path / "curve.png")
    assert (tmp_path / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not plot_loss_curve([], tmp_path / "none.png")
    assert not (tmp_path / "none.png").exists()
