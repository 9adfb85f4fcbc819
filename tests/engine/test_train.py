"""The training loop with a tiny stand-in model (fast): files written, the schedule
applied, losses going down, and resuming after a crash giving the same weights as an
uninterrupted run."""

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from maskrcnn.config import Config, apply_override
from maskrcnn.engine.metrics import read_metrics
from maskrcnn.engine.resume_state import cycle_batches, load_training_checkpoint
from maskrcnn.engine.train import train
from maskrcnn.structures import Targets


class CountingDataset(torch.utils.data.Dataset):
    """Image i holds (i % 3) + 1 boxes; its pixels are brighter with more boxes."""

    num_classes = 2
    class_names = ["background", "thing"]
    label_to_category_id = {1: 7}

    def __init__(self, size: int = 10) -> None:
        self.size = size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, i: int):
        n = i % 3 + 1
        image = torch.full((3, 12, 12), 0.2 * n) + 0.05 * torch.rand(3, 12, 12)  # draws from torch's RNG
        boxes = torch.tensor([[1.0, 1.0, 5.0, 5.0]] * n)
        targets = Targets(boxes=boxes, labels=torch.ones(n, dtype=torch.int64), masks=torch.zeros(n, 12, 12, dtype=torch.uint8))
        return image, targets, {"image_id": i, "file_name": f"{i}.png", "height": 12, "width": 12}


class CountingModel(nn.Module):
    """Predicts the number of boxes from the image; two losses; a BatchNorm to check
    that buffers are saved and restored too. Raises at forward call `crash_at`."""

    def __init__(self, crash_at: int | None = None) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.norm = nn.BatchNorm2d(4)
        self.head = nn.Linear(4, 1)
        self.crash_at = crash_at
        self.calls = 0

    def forward(self, images, targets):
        self.calls += 1
        if self.crash_at is not None and self.calls == self.crash_at:
            raise RuntimeError("simulated crash")
        x = torch.stack([F.interpolate(im[None], size=(8, 8))[0] for im in images])  # (B, 3, 8, 8)
        feats = F.relu(self.norm(self.conv(x))).mean(dim=(2, 3))  # (B, 4)
        pred = self.head(feats).squeeze(1)  # (B,)
        count = torch.tensor([float(len(t)) for t in targets])
        noise = 1e-3 * torch.randn(())  # draws from torch's RNG like proposal sampling does
        return {"loss_count": F.mse_loss(pred, count) + noise * 0, "loss_l1": (pred - count).abs().mean() * 0.1}


def tiny_cfg(out, **overrides) -> Config:
    cfg = Config()
    values = {
        "train.output_dir": str(out), "train.device": "cpu", "train.checkpoint_period": 4, "train.log_period": 2,
        "solver.max_iter": 12, "solver.lr": 0.05, "solver.warmup_iters": 3, "solver.warmup_factor": 0.1,
        "solver.schedule": "multistep", "solver.steps": [8], "data.batch_size": 2, "model.num_classes": 2,
    }
    values.update(overrides)
    for key, value in values.items():
        cfg = apply_override(cfg, f"{key}={json.dumps(value) if not isinstance(value, str) else value}")
    return cfg


def test_train_writes_everything_and_learns(tmp_path):
    torch.set_num_threads(1)
    model = CountingModel()
    summary = train(tiny_cfg(tmp_path, **{"solver.max_iter": 30, "train.checkpoint_period": 10}), model=model, train_set=CountingDataset())
    for name in ("config.yaml", "metrics.jsonl", "last.pt", "model_final.pt", "loss_curve.png", "summary.json"):
        assert (tmp_path / name).is_file(), name
    assert summary["iterations"] == 30 and summary["best_checkpoint"] is None
    records = [r for r in read_metrics(tmp_path / "metrics.jsonl") if r["type"] == "train"]
    assert [r["iteration"] for r in records] == list(range(2, 31, 2))
    assert {"loss_count", "loss_l1", "loss_total", "lr", "time_per_iter"} <= set(records[0])
    # warm-up: the first update uses lr * warmup_factor; after step 8 lr * 0.1
    assert records[0]["lr"] == pytest.approx(0.05 * (0.1 + 0.9 * 1 / 3))  # iteration 1 (0-based) of the second record
    assert records[-1]["lr"] == pytest.approx(0.005)
    assert records[-1]["loss_count"] < 0.5 * records[0]["loss_count"]
    last = load_training_checkpoint(tmp_path / "last.pt")
    assert last["iteration"] == 30 and last["class_names"] == ["background", "thing"]
    assert torch.equal(last["model"]["head.weight"], model.head.weight.detach())
    assert "epoch" in last and last["world_size"] == 1
    final = torch.load(tmp_path / "model_final.pt", weights_only=True)
    assert final["format"] == "maskrcnn" and "optimizer" not in final
    assert final["config"]["model"]["num_classes"] == 2


def test_resume_after_a_crash_matches_an_uninterrupted_run(tmp_path):
    torch.set_num_threads(1)
    torch.manual_seed(0)
    straight = CountingModel()
    train(tiny_cfg(tmp_path / "a"), model=straight, train_set=CountingDataset())

    torch.manual_seed(0)  # same initial weights (train() seeds before building its own model)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(tiny_cfg(tmp_path / "b"), model=CountingModel(crash_at=7), train_set=CountingDataset())
    assert load_training_checkpoint(tmp_path / "b" / "last.pt")["iteration"] == 4
    resumed = CountingModel()
    summary = train(tiny_cfg(tmp_path / "b"), resume=True, model=resumed, train_set=CountingDataset())
    assert summary["resumed_from"] == 4
    for (name, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), name
    iterations = [r["iteration"] for r in read_metrics(tmp_path / "b" / "metrics.jsonl")]
    assert iterations == sorted(iterations) and len(iterations) == len(set(iterations))


def test_resume_without_a_checkpoint_is_a_clear_error(tmp_path):
    from maskrcnn.engine.resume_state import CheckpointError

    with pytest.raises(CheckpointError, match="no checkpoint to resume from"):
        train(tiny_cfg(tmp_path), resume=True, model=CountingModel(), train_set=CountingDataset())


def test_cycle_batches_skips_consumed_batches_and_changes_order_per_pass():
    from maskrcnn.data.loader import build_loader

    loader = build_loader(CountingDataset(5), batch_size=2, train=True, group_by_aspect_ratio=False, seed=3)
    stream = cycle_batches(loader, seed=3)
    ids = [(e, b, [info["image_id"] for info in batch[2]]) for e, b, batch in (next(stream) for _ in range(6))]
    assert [(e, b) for e, b, _ in ids] == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]
    first_pass = sorted(i for e, _, batch in ids if e == 0 for i in batch)
    assert first_pass == [0, 1, 2, 3, 4]
    assert [b for e, _, b in ids if e == 0] != [b for e, _, b in ids if e == 1]  # reshuffled
    resumed = cycle_batches(loader, seed=3, start_epoch=1, start_batch=1)
    assert [[info["image_id"] for info in next(resumed)[2][2]] for _ in range(2)] == [ids[4][2], ids[5][2]]
