"""Fit a training run into `solver.max_time_s` seconds, whatever the machine's speed.

The training loop asks a `TimeBudget` after every iteration what to do:

* After `CALIBRATION_ITERS` iterations, and again every `RECHECK_FRACTION` of the run,
  it projects the finish from the mean time per iteration so far. When the planned
  `solver.max_iter` would not fit in the budget (less a margin of `PLAN_MARGIN`), it
  answers a shorter one: the loop then rebuilds the learning-rate schedule over it
  (`shortened_solver`: cosine decays to zero at the new end, multi-step milestones move
  in proportion), so a slow or busy CPU still ends its schedule instead of being cut in
  the middle of it. A later check may lengthen the plan again (a first estimate made
  while the machine was busier), never past the configured `solver.max_iter`.
* Before each further iteration, a hard stop: when the time spent plus one more iteration
  (the mean or the last one, the longer) would pass the budget, the loop stops there (still saving last.pt and
  model_final.pt and running the final evaluation, which are not part of the budget).

The plan is stored in every checkpoint (`time_budget`), so `--resume` continues the
shortened schedule, and in summary.json. The budget counts the training loop only, as
summary.json's `train_time_s` does, summed over resumed parts of a run.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from maskrcnn.config import SolverConfig

CALIBRATION_ITERS = 10  # iterations timed before the first plan
RECHECK_FRACTION = 0.1  # the plan is checked again after every such share of the run
PLAN_MARGIN = 0.97  # plan to end by this share of the budget (the rest absorbs noise)
CLOCK: Callable[[], float] = time.perf_counter  # the budget's clock (tests put a fake one here)


@dataclass
class BudgetRecord:
    """What the budget did, stored in checkpoints and summary.json."""

    max_time_s: float
    config_max_iter: int  # solver.max_iter as configured
    max_iter: int  # the iterations planned now (<= config_max_iter)
    elapsed_s: float = 0.0  # training-loop seconds spent so far, over every resumed part
    seconds_per_iter: float | None = None  # the mean the last plan was made from
    stopped_at: int | None = None  # the hard stop's iteration, when it fired

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Decision:
    """After an iteration: go on, go on over a shorter schedule, or stop now."""

    new_max_iter: int | None = None  # set: rebuild the schedule over this many iterations
    stop: bool = False


def shortened_solver(solver: SolverConfig, max_iter: int, config_max_iter: int) -> SolverConfig:
    """`solver` over `max_iter` iterations: milestones scaled from the configured length,
    the warm-up kept unless it would pass a quarter of the new length."""
    factor = max_iter / max(1, config_max_iter)
    steps = [max(1, round(step * factor)) for step in solver.steps]
    warmup = min(solver.warmup_iters, max(0, max_iter // 4))
    return dataclasses.replace(solver, max_iter=max_iter, steps=steps, warmup_iters=warmup)


class TimeBudget:
    """Plans and enforces the budget for iterations `start_iter` .. `record.max_iter`."""

    def __init__(self, record: BudgetRecord, start_iter: int, clock: Callable[[], float] = time.perf_counter) -> None:
        self.record = record
        self.start_iter = start_iter
        self.clock = clock
        self.started = clock()
        self.previous = 0.0  # clock time of the last iteration's end, from `started`
        self.spent_before = record.elapsed_s  # earlier parts of a resumed run
        self.next_check = start_iter + CALIBRATION_ITERS

    def elapsed(self) -> float:
        return self.spent_before + (self.clock() - self.started)

    def after_iteration(self, done: int) -> Decision:
        """Called with the number of completed iterations; updates `record`."""
        rec = self.record
        now = self.clock() - self.started
        last_iter, self.previous = now - self.previous, now
        rec.elapsed_s = round(self.spent_before + now, 3)
        per_iter = now / max(1, done - self.start_iter)  # the mean since this part of the run began
        if done >= rec.max_iter:
            return Decision()
        if done >= self.next_check:
            rec.seconds_per_iter = round(per_iter, 4)
            fits = done + int((PLAN_MARGIN * rec.max_time_s - rec.elapsed_s) / per_iter) if per_iter > 0 else rec.max_iter
            if fits <= done:
                return self._stop(done)
            planned = min(fits, rec.config_max_iter)
            self.next_check = done + max(1, math.ceil(RECHECK_FRACTION * planned))
            if planned != rec.max_iter:
                rec.max_iter = planned
                return Decision(new_max_iter=planned)
        # the last iteration's time too: a machine that just became slower shows there first
        if rec.elapsed_s + max(per_iter, last_iter) > rec.max_time_s:
            return self._stop(done)
        return Decision()

    def _stop(self, done: int) -> Decision:
        self.record.stopped_at = done
        self.record.max_iter = done
        return Decision(stop=True)


def start_budget(solver: SolverConfig, stored: dict[str, Any] | None, start_iter: int,
                 clock: Callable[[], float] | None = None) -> TimeBudget | None:
    """The run's budget (None when solver.max_time_s is 0), continuing a stored record
    on resume."""
    if solver.max_time_s <= 0:
        return None
    if stored:
        record = BudgetRecord(**{**stored, "max_time_s": float(solver.max_time_s)})
    else:
        record = BudgetRecord(max_time_s=float(solver.max_time_s), config_max_iter=solver.max_iter, max_iter=solver.max_iter)
    return TimeBudget(record, start_iter, clock or CLOCK)


def describe_shortening(record: BudgetRecord, done: int) -> str:
    """One line for the log when the plan is shortened after `done` iterations."""
    return (
        f"solver.max_time_s {record.max_time_s:g}: {record.seconds_per_iter:.2f} s per iteration measured by "
        f"iteration {done}, so {record.max_iter} of the {record.config_max_iter} configured iterations fit; "
        f"the learning-rate schedule now ends at iteration {record.max_iter}"
    )


def describe_stop(record: BudgetRecord) -> str:
    """One line for the log when the hard stop fires."""
    return (
        f"solver.max_time_s {record.max_time_s:g}: stopped after iteration {record.stopped_at} "
        f"({record.elapsed_s:.0f} s spent; one more iteration would pass the budget)"
    )
