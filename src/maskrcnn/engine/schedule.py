"""The solver: SGD over the trainable parameters; learning-rate schedule with a linear
warm-up, then multi-step or cosine decay.

The schedule is a pure function of the iteration, so a resumed run recomputes the same
learning rate from the stored iteration alone. `lr_factor(i)` multiplies `solver.lr` for
the update made at iteration `i` (0-based: the first update uses `lr_factor(0)`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from maskrcnn.config import ConfigError, SolverConfig

SCHEDULES = ("multistep", "cosine")


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


def check_solver(solver: SolverConfig) -> None:
    """Raise one clear ConfigError for a solver setting that cannot work."""
    if solver.schedule not in SCHEDULES:
        raise ConfigError(f"solver.schedule: expected one of {list(SCHEDULES)}, got {solver.schedule!r}")
    if solver.max_iter < 1:
        raise ConfigError(f"solver.max_iter: expected a positive number of iterations, got {solver.max_iter}")
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
