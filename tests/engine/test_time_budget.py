"""solver.max_time_s: the plan shortens a run that would not fit (and rebuilds its lr
schedule), the hard stop ends one that slows down, and --resume continues the shortened
plan. A fake clock makes every figure exact: no test here depends on the machine's speed."""

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from maskrcnn.config import Config, ConfigError, SolverConfig, apply_override
from maskrcnn.engine import time_budget
from maskrcnn.engine.metrics import read_metrics
from maskrcnn.engine.resume_state import load_training_checkpoint
from maskrcnn.engine.schedule import check_solver
from maskrcnn.engine.time_budget import (
    BudgetRecord,
    TimeBudget,
    shortened_solver,
    start_budget,
)
from maskrcnn.engine.train import train
from maskrcnn.structures import Targets


class FakeClock:
    """Advances `step` seconds at every reading (`slow_after` readings: `slow_step`);
    raises `Interrupted` at reading `interrupt_at` (a crash mid-run)."""

    def __init__(self, step: float = 1.0, slow_after: int | None = None, slow_step: float = 0.0,
                 interrupt_at: int | None = None) -> None:
        self.now, self.readings = 0.0, 0
        self.step, self.slow_after, self.slow_step, self.interrupt_at = step, slow_after, slow_step, interrupt_at

    def __call__(self) -> float:
        self.readings += 1
        if self.interrupt_at is not None and self.readings == self.interrupt_at:
            raise Interrupted(f"clock reading {self.readings}")
        if self.readings > 1:
            slow = self.slow_after is not None and self.readings > self.slow_after
            self.now += self.slow_step if slow else self.step
        return self.now


class Interrupted(RuntimeError):
    pass


def budget(max_time_s: float, max_iter: int, clock: FakeClock) -> TimeBudget:
    return TimeBudget(BudgetRecord(max_time_s=max_time_s, config_max_iter=max_iter, max_iter=max_iter), 0, clock)


def test_a_run_that_fits_is_left_alone():
    tb = budget(100.0, 50, FakeClock(step=1.0))  # 50 iterations of 1 s in a 100 s budget
    decisions = [tb.after_iteration(done) for done in range(1, 51)]
    assert all(d.new_max_iter is None and not d.stop for d in decisions)
    assert tb.record.max_iter == 50 and tb.record.elapsed_s == 50.0 and tb.record.stopped_at is None


def test_calibration_shortens_the_plan_to_what_fits():
    tb = budget(40.0, 100, FakeClock(step=2.0))  # 2 s per iteration: 100 would take 200 s
    decisions = [tb.after_iteration(done) for done in range(1, 11)]
    assert all(d.new_max_iter is None for d in decisions[:9])
    # after 10 iterations (20 s): 10 + (0.97 * 40 - 20) / 2 = 19.4 -> 19 iterations in all
    assert decisions[9].new_max_iter == 19 and tb.record.seconds_per_iter == 2.0
    rest = [tb.after_iteration(done) for done in range(11, 20)]
    assert not any(d.stop or d.new_max_iter for d in rest) and tb.record.elapsed_s == 38.0


def test_hard_stop_when_iterations_slow_down_between_checks():
    # 1 s per iteration during calibration, then 10 s: the plan (28 iterations fit) is
    # checked again only at iteration 12, too late; the hard stop sees the slow iteration
    tb = budget(29.0, 20, FakeClock(step=1.0, slow_after=11, slow_step=10.0))
    decisions = [tb.after_iteration(done) for done in range(1, 12)]
    assert not any(d.stop or d.new_max_iter for d in decisions[:10])
    assert decisions[10].stop  # 20 s spent + a 10 s iteration > 29 s
    assert tb.record.stopped_at == 11 and tb.record.max_iter == 11 and tb.record.elapsed_s == 20.0


def test_a_plan_with_no_room_left_stops():
    tb = budget(10.0, 100, FakeClock(step=1.2))  # 12 s spent after 10 iterations: over already
    decisions = [tb.after_iteration(done) for done in range(1, 11)]
    assert [d.stop for d in decisions].index(True) == 7  # 9.6 s + 1.2 s > 10 s after 8 iterations
    assert tb.record.stopped_at == 8


def test_shortened_solver_moves_milestones_and_caps_warmup():
    solver = SolverConfig(max_iter=400, steps=[300, 360], warmup_iters=100)
    short = shortened_solver(solver, 100, 400)
    assert (short.max_iter, short.steps, short.warmup_iters) == (100, [75, 90], 25)
    assert shortened_solver(solver, 400, 400) == solver


def test_budget_is_off_at_zero_and_negative_is_a_config_error():
    assert start_budget(SolverConfig(max_time_s=0.0), None, 0) is None
    with pytest.raises(ConfigError, match="solver.max_time_s"):
        check_solver(SolverConfig(max_time_s=-1.0))


# --- the training loop, with a tiny stand-in model --------------------------------------


class ToyDataset(torch.utils.data.Dataset):
    num_classes = 2

    def __len__(self) -> int:
        return 8

    def __getitem__(self, i: int):
        n = i % 3 + 1
        image = torch.full((3, 8, 8), 0.2 * n) + 0.05 * torch.rand(3, 8, 8)
        targets = Targets(boxes=torch.tensor([[1.0, 1.0, 5.0, 5.0]] * n), labels=torch.ones(n, dtype=torch.int64),
                          masks=torch.zeros(n, 8, 8, dtype=torch.uint8))
        return image, targets, {"image_id": i, "file_name": f"{i}.png", "height": 8, "width": 8}


class ToyModel(nn.Module):
    """Predicts the number of boxes from the image's brightness."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(3, 1)

    def forward(self, images, targets):
        pred = self.head(torch.stack([im.mean(dim=(1, 2)) for im in images])).squeeze(1)  # (B,)
        count = torch.tensor([float(len(t)) for t in targets])
        return {"loss_count": F.mse_loss(pred, count)}


def toy_cfg(out, **overrides) -> Config:
    cfg = Config()
    values = {
        "train.output_dir": str(out), "train.device": "cpu", "train.checkpoint_period": 4, "train.log_period": 1,
        "solver.max_iter": 30, "solver.max_time_s": 20.0, "solver.lr": 0.05, "solver.warmup_iters": 3,
        "solver.schedule": "cosine", "data.batch_size": 2, "model.num_classes": 2,
    }
    values.update(overrides)
    for key, value in values.items():
        cfg = apply_override(cfg, f"{key}={json.dumps(value)}")
    return cfg


def run(out, clock: FakeClock, *, resume: bool = False) -> tuple[dict, ToyModel]:
    torch.manual_seed(0)
    model = ToyModel()
    time_budget.CLOCK = clock
    try:
        return train(toy_cfg(out), resume=resume, model=model, train_set=ToyDataset()), model
    finally:
        time_budget.CLOCK = time_budget.time.perf_counter


def test_training_is_shortened_and_its_schedule_ends_at_the_new_length(tmp_path):
    torch.set_num_threads(1)
    summary, _ = run(tmp_path, FakeClock(step=1.0))  # 1 s per iteration, 30 planned, 20 s budget
    # after 10 iterations: 10 + int(0.97 * 20 - 10) = 19
    assert summary["iterations"] == 19
    assert summary["time_budget"]["max_iter"] == 19 and summary["time_budget"]["config_max_iter"] == 30
    assert summary["time_budget"]["stopped_at"] is None
    lrs = [r["lr"] for r in read_metrics(tmp_path / "metrics.jsonl") if r["type"] == "train"]
    assert len(lrs) == 19
    # the cosine over 19 iterations: the last update's rate is 0.05 * (1 + cos(pi * 18/19)) / 2
    assert lrs[-1] == pytest.approx(0.05 * 0.5 * (1 + torch.cos(torch.tensor(torch.pi * 18 / 19)).item()), rel=1e-5)
    last = load_training_checkpoint(tmp_path / "last.pt")
    assert last["iteration"] == 19 and last["time_budget"]["max_iter"] == 19
    assert torch.load(tmp_path / "model_final.pt", weights_only=True)["config"]["solver"]["max_iter"] == 19


def test_resume_continues_the_shortened_plan_with_the_same_weights(tmp_path):
    torch.set_num_threads(1)
    _, straight = run(tmp_path / "a", FakeClock(step=1.0))
    with pytest.raises(Interrupted):  # one reading at the start, one per iteration: dies in iteration 14
        run(tmp_path / "b", FakeClock(step=1.0, interrupt_at=15))
    assert load_training_checkpoint(tmp_path / "b" / "last.pt")["iteration"] == 12
    summary, resumed = run(tmp_path / "b", FakeClock(step=1.0), resume=True)
    assert summary["resumed_from"] == 12 and summary["iterations"] == 19
    assert summary["time_budget"]["elapsed_s"] == 19.0  # 12 s before the crash + 7 after
    for (name, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), name


def test_a_later_check_lengthens_the_plan_again_up_to_the_configured_length():
    # 3 s per iteration while calibrating (busy machine), then 0.5 s
    tb = budget(60.0, 100, FakeClock(step=3.0, slow_after=11, slow_step=0.5))
    decisions = [tb.after_iteration(done) for done in range(1, 21)]
    assert decisions[9].new_max_iter == 19  # 10 + int((58.2 - 30) / 3)
    lengthened = [d.new_max_iter for d in decisions[10:] if d.new_max_iter]
    assert lengthened and lengthened[-1] > 19 and tb.record.max_iter <= 100
