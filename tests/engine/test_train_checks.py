"""What the trainer checks before its first iteration, and what it keeps when something
fails after the last one: frozen layers over random weights, the lr rule, bad data /
device / output / resume settings, stale temporaries, validation categories, and a final
evaluation that fails after the checkpoints are safe."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from maskrcnn.config import Config, ConfigError, apply_override
from maskrcnn.data.build import CategoryMismatchError
from maskrcnn.data.coco import DatasetError
from maskrcnn.devices import DeviceError
from maskrcnn.engine.resume_state import load_training_checkpoint
from maskrcnn.engine.run_setup import (
    FrozenFromScratchError,
    OutputDirError,
    ResumeError,
    check_not_frozen_from_scratch,
)
from maskrcnn.engine.schedule import choose_lr
from maskrcnn.engine.train import train
from maskrcnn.structures import Targets


class TwoBoxSet(torch.utils.data.Dataset):
    num_classes = 3
    class_names = ["background", "a", "b"]
    label_to_category_id = {1: 1, 2: 2}

    def __len__(self) -> int:
        return 6

    def __getitem__(self, i: int):
        targets = Targets(boxes=torch.tensor([[0.0, 0.0, 2.0, 2.0]]), labels=torch.ones(1, dtype=torch.int64))
        return torch.full((3, 4, 4), 0.1 * i), targets, {"image_id": i, "file_name": f"{i}.png", "height": 4, "width": 4}


class BrokenValSet(TwoBoxSet):
    """A validation set whose images cannot be read (a corrupt file, say)."""

    def __getitem__(self, i: int):
        raise DatasetError(f"val/{i}.png: cannot identify image file")


class OtherCategoriesSet(TwoBoxSet):
    class_names = ["background", "cat", "dog"]
    label_to_category_id = {1: 5, 2: 90}


class Fit(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(3))
        self.calls = 0

    def forward(self, images, targets):
        self.calls += 1
        pred = torch.stack([(im.mean(dim=(1, 2)) * self.weight).sum() for im in images])  # (B,)
        return {"loss_fit": F.mse_loss(pred, torch.ones_like(pred))}


def cfg_for(out, *overrides: str) -> Config:
    cfg = Config()
    for item in (f"train.output_dir={out}", "train.device=cpu", "train.checkpoint_period=2", "train.log_period=1",
                 "solver.max_iter=4", "solver.warmup_iters=0", "solver.lr=0.01", "data.batch_size=2",
                 "model.num_classes=3", *overrides):
        cfg = apply_override(cfg, item)
    return cfg


def test_frozen_layers_over_random_weights_stop_before_anything_is_built(tmp_path):
    cfg = cfg_for(tmp_path / "run")  # the defaults: ResNet-50, frozen BatchNorm, freeze_at 2
    with pytest.raises(FrozenFromScratchError) as caught:
        train(cfg)
    message = str(caught.value)
    assert "model.backbone.norm=frozen_bn" in message and "model.backbone.freeze_at=2" in message
    assert "--set model.backbone.norm=bn --set model.backbone.freeze_at=0" in message and "--init-weights" in message
    assert not (tmp_path / "run").exists()  # stopped before the output folder or any data
    with pytest.raises(FrozenFromScratchError, match=r"^model.backbone.freeze_at=1 \(stages"):
        check_not_frozen_from_scratch(apply_override(apply_override(cfg, "model.backbone.norm=gn"), "model.backbone.freeze_at=1"))
    check_not_frozen_from_scratch(apply_override(cfg, "train.init_weights=coco.pth"))  # pretrained: fine
    check_not_frozen_from_scratch(apply_override(apply_override(cfg, "model.backbone.norm=bn"), "model.backbone.freeze_at=0"))


def test_lr_rule_is_explicit_and_printed(tmp_path, capsys):
    solver = cfg_for(tmp_path).solver
    as_given = choose_lr(solver, batch_size=2, world_size=1)
    assert as_given.lr == 0.01 and "solver.scale_lr=linear would use 0.00125" in as_given.describe()
    linear = choose_lr(apply_override(cfg_for(tmp_path), "solver.scale_lr=linear").solver, batch_size=4, world_size=2)
    assert linear.lr == pytest.approx(0.01 * 8 / 16) and "x 8 / 16" in linear.describe()
    same = choose_lr(solver, batch_size=8, world_size=2)
    assert same.lr == 0.01 and "stated for 16 images per update" in same.describe()
    with pytest.raises(ConfigError, match="solver.scale_lr"):
        choose_lr(apply_override(cfg_for(tmp_path), "solver.scale_lr=sqrt").solver, batch_size=2)

    cfg = cfg_for(tmp_path, "solver.scale_lr=linear", "solver.reference_batch_size=8")
    model = Fit()
    summary = train(cfg, model=model, train_set=TwoBoxSet())
    assert summary["lr"] == pytest.approx(0.01 * 2 / 8)
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert records[0]["lr"] == pytest.approx(0.0025)  # what the optimizer used
    assert "lr 0.0025 = solver.lr 0.01 x 2 / 8" in capsys.readouterr().err
    assert load_training_checkpoint(tmp_path / "last.pt")["config"]["solver"]["lr"] == 0.01  # the stated rate kept


@pytest.mark.parametrize(
    "override, error, message",
    [
        ("data.batch_size=0", ConfigError, r"^data.batch_size: expected at least 1 image per process, got 0$"),
        ("data.num_workers=-1", ConfigError, r"^data.num_workers"),
        ("train.device=gpu", DeviceError, r"^train.device: expected auto, cpu, cuda or cuda:N, got 'gpu'$"),
    ],
)
def test_bad_settings_are_one_clear_error(tmp_path, override, error, message):
    with pytest.raises(error, match=message):
        train(cfg_for(tmp_path, override), model=Fit(), train_set=TwoBoxSet())


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_without_cuda(tmp_path):
    with pytest.raises(DeviceError, match=r"^train.device: 'cuda' requested but this PyTorch build sees no CUDA device"):
        train(cfg_for(tmp_path, "train.device=cuda"), model=Fit(), train_set=TwoBoxSet())


def test_output_folder_under_a_regular_file(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(OutputDirError, match=r"cannot be created: .*notes.txt is a file, not a folder"):
        train(cfg_for(tmp_path / "notes.txt" / "run"), model=Fit(), train_set=TwoBoxSet())
    with pytest.raises(OutputDirError, match=r"notes.txt is a file, not a folder"):
        train(cfg_for(tmp_path / "notes.txt"), model=Fit(), train_set=TwoBoxSet())
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_resume_with_a_smaller_max_iter_is_refused(tmp_path):
    train(cfg_for(tmp_path, "solver.max_iter=6"), model=Fit(), train_set=TwoBoxSet())
    with pytest.raises(ResumeError, match=r"last.pt: the checkpoint has done 6 iterations but solver.max_iter is 4; give solver.max_iter >= 6"):
        train(cfg_for(tmp_path), resume=True, model=Fit(), train_set=TwoBoxSet())
    assert load_training_checkpoint(tmp_path / "last.pt")["iteration"] == 6  # untouched


def test_stale_temporaries_of_our_own_are_removed_and_nothing_else(tmp_path, capsys):
    tmp_path.mkdir(exist_ok=True)
    stale = [tmp_path / ".last.pt.k2j4_x9a.tmp", tmp_path / ".model_final.pt.abc12345.tmp", tmp_path / ".summary.json.q1w2e3r4.tmp"]
    kept = [tmp_path / ".mine.pt.abc12345.tmp", tmp_path / "last.pt.bak", tmp_path / ".last.pt.tmp.notes"]
    for path in stale + kept:
        path.write_bytes(b"x" * 10)
    train(cfg_for(tmp_path), model=Fit(), train_set=TwoBoxSet())
    assert not any(p.exists() for p in stale) and all(p.exists() for p in kept)
    assert "removed .last.pt.k2j4_x9a.tmp, left by a run killed while writing" in capsys.readouterr().err

    (tmp_path / ".last.pt.zzzz9999.tmp").write_bytes(b"half a checkpoint")  # kill -9 during a write
    train(cfg_for(tmp_path, "solver.max_iter=6"), resume=True, model=Fit(), train_set=TwoBoxSet())
    assert not (tmp_path / ".last.pt.zzzz9999.tmp").exists()
    assert sorted(p.name for p in tmp_path.glob(".*.tmp")) == [".mine.pt.abc12345.tmp"]


def test_final_evaluation_failure_comes_after_the_checkpoints(tmp_path, capsys):
    with pytest.raises(DatasetError, match="cannot identify image file"):
        train(cfg_for(tmp_path), model=Fit(), train_set=TwoBoxSet(), val_set=BrokenValSet())
    assert load_training_checkpoint(tmp_path / "last.pt")["iteration"] == 4
    assert torch.load(tmp_path / "model_final.pt", weights_only=True)["iteration"] == 4
    assert "the final evaluation failed; the trained weights are saved in" in capsys.readouterr().err


def test_validation_categories_that_differ_stop_before_the_first_iteration(tmp_path):
    model = Fit()
    with pytest.raises(CategoryMismatchError, match=r"data.val: its categories \(5 cat, 90 dog\) differ from data.train's \(1 a, 2 b\)"):
        train(cfg_for(tmp_path), model=model, train_set=TwoBoxSet(), val_set=OtherCategoriesSet())
    assert model.calls == 0 and not (tmp_path / "last.pt").exists()


def test_resume_after_the_final_evaluation_knows_its_best_score(tmp_path):
    from maskrcnn.engine.resume_state import model_checkpoint, save_checkpoint
    from maskrcnn.engine.run_setup import Position, _best_recorded

    save_checkpoint(tmp_path / "best.pt", model_checkpoint(Fit(), Config(), iteration=4, best_metric=0.5, best_iteration=4))
    assert _best_recorded(tmp_path, Position(iteration=4, best_metric=0.3, best_iteration=2)).best_metric == 0.5
    older = _best_recorded(tmp_path, Position(iteration=8, best_metric=0.3, best_iteration=6))  # best.pt of another run
    assert (older.best_metric, older.best_iteration) == (0.3, 6)
