"""The solver: SGD over the trainable parameters; learning-rate schedule with a linear
warm-up, then multi-step or cosine decay.

The schedule is a pure function of the iteration, so a resumed run recomputes the same
learning rate from the stored iteration alone. `lr_factor(i)` multiplies the base rate for
the update made at iteration `i` (0-based: the first update uses `lr_factor(0)`).

The base rate: `solver.lr` is stated for `solver.reference_batch_size` images per update.
A run's batch is `data.batch_size` x processes; `solver.scale_lr: linear` scales the rate
by batch / reference (Goyal et al. 2017), `none` uses `solver.lr` as given. `choose_lr`
returns the rate used and a sentence saying how it was chosen (the trainer prints it).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from maskrcnn.config import ConfigError, SolverConfig

SCHEDULES = ("multistep", "cosine")
LR_SCALING = ("none", "linear")


def warmup_factor_at(iteration: int, *, warmup_iters: int, warmup_factor: float) -> float:
    """Linear ramp from `warmup_factor` at iteration 0 to 1.0 at `warmup_iters`."""
    if iteration >= warmup_iters or warmup_iters <= 0:
        return 1.0
    alpha = iteration / warmup_iters
    return warmup_factor * (1.0 - alpha) + alpha


def multistep_factor(iteration: int, *, steps: Sequence[int], gamma: float) -> float:
    """`gamma ** k` where k is the number of milestones already reached (`step <= iteration`)."""
    passed = sum(1 for step in steps if iteration >= step)
    return gamma**passed


def cosine_factor(iteration: int, *, max_iter: int) -> float:
    """Half a cosine from 1 at iteration 0 to 0 at `max_iter`."""
    if max_iter <= 0:
        return 1.0
    progress = min(max(iteration / max_iter, 0.0), 1.0)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def lr_factor(
    iteration: int,
    *,
    max_iter: int,
    warmup_iters: int,
    warmup_factor: float,
    schedule: str,
    steps: Sequence[int] = (),
    gamma: float = 0.1,
) -> float:
    """Multiplier of the base learning rate at `iteration` (warm-up times decay)."""
    if schedule == "multistep":
        decay = multistep_factor(iteration, steps=steps, gamma=gamma)
    elif schedule == "cosine":
        decay = cosine_factor(iteration, max_iter=max_iter)
    else:
        raise ConfigError(f"solver.schedule: expected one of {list(SCHEDULES)}, got {schedule!r}")
    return decay * warmup_factor_at(iteration, warmup_iters=warmup_iters, warmup_factor=warmup_factor)


AMP_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16}  # solver.amp_dtype


def check_solver(solver: SolverConfig) -> None:
    """Raise one clear ConfigError for a solver setting that cannot work."""
    if solver.schedule not in SCHEDULES:
        raise ConfigError(f"solver.schedule: expected one of {list(SCHEDULES)}, got {solver.schedule!r}")
    if solver.max_iter < 1:
        raise ConfigError(f"solver.max_iter: expected a positive number of iterations, got {solver.max_iter}")
    if solver.amp_dtype not in AMP_DTYPES:
        raise ConfigError(f"solver.amp_dtype: expected one of {list(AMP_DTYPES)}, got {solver.amp_dtype!r}")
    if solver.lr <= 0:
        raise ConfigError(f"solver.lr: expected a positive learning rate, got {solver.lr}")
    if solver.warmup_iters < 0:
        raise ConfigError(f"solver.warmup_iters: expected >= 0, got {solver.warmup_iters}")
    if not 0.0 < solver.warmup_factor <= 1.0:
        raise ConfigError(f"solver.warmup_factor: expected a value in (0, 1], got {solver.warmup_factor}")
    if list(solver.steps) != sorted(solver.steps):
        raise ConfigError(f"solver.steps: expected increasing iterations, got {solver.steps}")
    if solver.clip_grad_norm < 0:
        raise ConfigError(f"solver.clip_grad_norm: expected >= 0 (0 disables), got {solver.clip_grad_norm}")
    if solver.max_time_s < 0 or not math.isfinite(solver.max_time_s):
        raise ConfigError(f"solver.max_time_s: expected seconds >= 0 (0: no time budget), got {solver.max_time_s}")
    if solver.scale_lr not in LR_SCALING:
        raise ConfigError(f"solver.scale_lr: expected one of {list(LR_SCALING)}, got {solver.scale_lr!r}")
    if solver.reference_batch_size < 1:
        raise ConfigError(
            f"solver.reference_batch_size: expected the number of images per update solver.lr is stated for "
            f"(>= 1), got {solver.reference_batch_size}"
        )


@dataclass(frozen=True)
class LrChoice:
    """The base learning rate a run uses, and how it follows from the config."""

    lr: float
    stated_lr: float
    reference_batch_size: int
    batch_size: int  # images per process
    world_size: int
    rule: str

    @property
    def total_batch(self) -> int:
        return self.batch_size * self.world_size

    def describe(self) -> str:
        batch = f"{self.total_batch} images per update ({self.batch_size} x {self.world_size} process{'es' if self.world_size > 1 else ''})"
        if self.total_batch == self.reference_batch_size:
            return f"lr {self.lr:g}: solver.lr, stated for {self.reference_batch_size} images per update = this run's {batch}"
        if self.rule == "linear":
            return (
                f"lr {self.lr:g} = solver.lr {self.stated_lr:g} x {self.total_batch} / {self.reference_batch_size} "
                f"(solver.scale_lr=linear: {batch}, solver.reference_batch_size {self.reference_batch_size})"
            )
        scaled = self.stated_lr * self.total_batch / self.reference_batch_size
        return (
            f"lr {self.lr:g} as given (solver.scale_lr=none): solver.lr is stated for {self.reference_batch_size} "
            f"images per update, this run has {batch}; --set solver.scale_lr=linear would use {scaled:g}"
        )


def choose_lr(solver: SolverConfig, *, batch_size: int, world_size: int = 1) -> LrChoice:
    """The base rate for `batch_size` images per process on `world_size` processes."""
    check_solver(solver)
    total = batch_size * world_size
    lr = solver.lr * total / solver.reference_batch_size if solver.scale_lr == "linear" else solver.lr
    return LrChoice(lr, solver.lr, solver.reference_batch_size, batch_size, world_size, solver.scale_lr)


def with_lr(solver: SolverConfig, lr: float) -> SolverConfig:
    """A copy of `solver` with another base rate (the config itself keeps the stated one)."""
    return dataclasses.replace(solver, lr=lr)


def lr_lambda_from_solver(solver: SolverConfig) -> Callable[[int], float]:
    """A function of the iteration for `torch.optim.lr_scheduler.LambdaLR`."""
    check_solver(solver)

    def factor(iteration: int) -> float:
        return lr_factor(
            iteration,
            max_iter=solver.max_iter,
            warmup_iters=solver.warmup_iters,
            warmup_factor=solver.warmup_factor,
            schedule=solver.schedule,
            steps=solver.steps,
            gamma=solver.gamma,
        )

    return factor


def reschedule(scheduler: torch.optim.lr_scheduler.LambdaLR, solver: SolverConfig) -> None:
    """Make `scheduler` follow `solver` from its current iteration on (a run shortened by
    its time budget): new factor functions, and the rate of the next update set now."""
    factor = lr_lambda_from_solver(solver)
    scheduler.lr_lambdas = [factor] * len(scheduler.optimizer.param_groups)
    for group, base_lr in zip(scheduler.optimizer.param_groups, scheduler.base_lrs):
        group["lr"] = base_lr * factor(scheduler.last_epoch)
    scheduler._last_lr = [group["lr"] for group in scheduler.optimizer.param_groups]


def build_lr_scheduler(optimizer: torch.optim.Optimizer, solver: SolverConfig) -> torch.optim.lr_scheduler.LambdaLR:
    """LambdaLR stepped once per iteration; its state is saved in training checkpoints."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda_from_solver(solver))


def build_optimizer(model: torch.nn.Module, solver: SolverConfig) -> torch.optim.SGD:
    """SGD with momentum and weight decay over the parameters that require gradients.

    Frozen parameters (frozen backbone stages, frozen BatchNorm) are left out, so they
    receive neither updates nor weight decay.
    """
    check_solver(solver)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ConfigError("model: no trainable parameters (is every stage frozen? see model.backbone.freeze_at)")
    return torch.optim.SGD(params, lr=solver.lr, momentum=solver.momentum, weight_decay=solver.weight_decay)
