"""The training loop: `train(cfg, resume=...)`, also run by `torchrun` as DDP.

`train` reads as three steps:
    setup_run   (engine/run_setup.py) checks (config, output folder, resume, frozen layers
                over random weights), then data, model (+ train.init_weights), solver
                (the lr rule), loaders, and on resume the training state
    run_loop    the iterations, with periodic evaluation and checkpoints
    finish_run  save last.pt and model_final.pt, then the final evaluation, then report

One iteration = one batch of `data.batch_size` images per process, one SGD update.
Training is iteration-based (`solver.max_iter`); the data loader is cycled pass after
pass, each pass's order a function of (`train.seed`, pass number), so a resumed run
rebuilds the order and skips the batches already used. Files in `train.output_dir`
(written by rank 0 only): config.yaml, metrics.jsonl, last.pt (every
`train.checkpoint_period` iterations and at the end), best.pt (best validation segm AP,
or box AP without masks), model_final.pt (weights + config only), loss_curve.png,
summary.json. See docs/training.md.

Run as a module: `python -m maskrcnn.engine.train --config shapes_demo --set solver.lr=0.01`;
on several processes: `torchrun --nproc_per_node=2 -m maskrcnn.engine.train --config ...`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from maskrcnn.config import Config, load_config
from maskrcnn.engine import distributed as du
from maskrcnn.engine import time_budget
from maskrcnn.engine.metrics import WindowAverages, read_metrics, run_evaluation
from maskrcnn.engine.preemption import StopOnSignal
from maskrcnn.engine.resume_state import (
    BEST_NAME,
    FINAL_NAME,
    LAST_NAME,
    capture_rng_state,
    cycle_batches,
    model_checkpoint,
    save_checkpoint,
    weights_fingerprint,
)
from maskrcnn.engine.run_setup import (
    TrainingRun,
    note,
    seed_everything,
    setup_run,
    with_init_weights,
)
from maskrcnn.engine.schedule import AMP_DTYPES, check_solver, reschedule
from maskrcnn.engine.tensorboard_log import tensorboard_logging
from maskrcnn.engine.time_budget import (
    describe_shortening,
    describe_stop,
    shortened_solver,
    start_budget,
)
from maskrcnn.errors import UserError, error_message, is_user_error
from maskrcnn.io_utils import atomic_write_json
from maskrcnn.runtime import reuse_freed_memory
from maskrcnn.visualize.loss_curve import plot_loss_curve

__all__ = ["KILL_AFTER_ITER_ENV", "NonFiniteLossError", "seed_everything", "train", "train_step", "with_init_weights"]

# Test hook: SIGKILL this process right after the given iteration (and its checkpoint).
KILL_AFTER_ITER_ENV = "MASKRCNN_TEST_KILL_AFTER_ITER"


class NonFiniteLossError(UserError, RuntimeError):
    """A loss (or gradient norm) became NaN or infinite; training stopped before using it."""


# ---------------------------------------------------------------------------------------
# One step
# ---------------------------------------------------------------------------------------


def train_step(
    model: nn.Module,
    images: list[torch.Tensor],
    targets: list[Any],
    *,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    iteration: int,
    amp: bool = False,
    clip_grad_norm: float = 0.0,
    amp_dtype: torch.dtype = torch.float16,
) -> dict[str, float]:
    """Forward, check the losses, backward, (clip), update. Returns the losses averaged
    over processes, plus `loss_total`. Raises NonFiniteLossError naming the iteration and
    loss before any gradient is applied, so the weights stay those of the last good step."""
    device_type = images[0].device.type if images else "cpu"
    with torch.autocast(device_type=device_type, dtype=amp_dtype, enabled=amp):
        loss_dict = model(images, targets)
    names = list(loss_dict)
    local = torch.stack([loss_dict[name].detach().float().reshape(()) for name in names])  # (L,)
    averaged = du.all_reduce_mean(local)  # a NaN on any process reaches every process
    total = sum(loss_dict.values())
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(total).backward()
    # The losses' one read, after the backward pass is queued (a GPU keeps working while
    # the host waits) and before any update: a non-finite loss still stops the run first.
    loss_values = averaged.tolist()
    if not all(np.isfinite(loss_values)):
        bad = [f"{n}={v:.4g}" for n, v in zip(names, loss_values) if not np.isfinite(v)]
        raise NonFiniteLossError(
            f"iteration {iteration}: non-finite loss ({', '.join(bad)}); training stopped, "
            "the last checkpoint written before it is kept (lower solver.lr or set solver.clip_grad_norm)"
        )
    if clip_grad_norm > 0:
        scaler.unscale_(optimizer)
        params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        grad_norm = torch.nn.utils.clip_grad_norm_(params, clip_grad_norm)
        if not amp and not torch.isfinite(grad_norm):
            raise NonFiniteLossError(f"iteration {iteration}: gradient norm is {float(grad_norm)}; training stopped")
    scaler.step(optimizer)
    scaler.update()
    values = dict(zip(names, loss_values))
    values["loss_total"] = float(np.sum(np.asarray(loss_values, dtype=np.float32)))  # float32, as the tensor sum
    return values


def _to_device(images: list[torch.Tensor], targets: list[Any], device: torch.device) -> tuple[list, list]:
    # non-blocking: with the loader's page-locked batches on CUDA the host does not wait
    return [im.to(device, non_blocking=True) for im in images], [t.to(device, non_blocking=True) for t in targets]


def _parameters_fingerprints(model: nn.Module) -> list[str]:
    """Every process's parameter fingerprint (collective; DDP keeps them equal)."""
    return [str(f) for f in du.all_gather_objects(weights_fingerprint(model, parameters_only=True))]


# ---------------------------------------------------------------------------------------
# Checkpoints and evaluation during the run
# ---------------------------------------------------------------------------------------


def training_state(run: TrainingRun, done: int) -> dict[str, Any]:
    """The training checkpoint after `done` iterations (collective: every rank calls it)."""
    rng_states = du.all_gather_objects(capture_rng_state())
    p = run.position
    return model_checkpoint(
        run.model, run.cfg, iteration=done, epoch=p.epoch, batch=p.batch, optimizer=run.optimizer.state_dict(),
        scheduler=run.scheduler.state_dict(), scaler=run.scaler.state_dict() if run.amp else {}, rng=rng_states,
        world_size=run.info.world_size, best_metric=p.best_metric, best_iteration=p.best_iteration, **run.extra,
    )


def evaluate_now(run: TrainingRun, done: int) -> None:
    """Rank 0: COCO AP + validation loss on the validation set; best.pt when it improves."""
    if not run.info.is_main or run.val_set is None:
        return
    record = run_evaluation(
        run.model, run.val_set, run.val_loader, device=run.device, iteration=done,
        dsb_score_threshold=run.cfg.evaluation.dsb_score_threshold, test_augment=run.cfg.model.test_augment,
    )
    run.train_model.train()
    run.metrics_log.write(record)
    run.last_eval = record
    score = record.get(run.best_key)
    note(f"iteration {done}: " + ", ".join(f"{k} {record[k]:.3f}" for k in ("bbox_AP", "segm_AP", "val_loss_total") if isinstance(record.get(k), float)))
    p = run.position
    if isinstance(score, float) and (p.best_metric is None or score > p.best_metric):
        p.best_metric, p.best_iteration = score, done
        save_checkpoint(run.out / BEST_NAME, model_checkpoint(run.model, run.cfg, iteration=done, best_metric=score, best_iteration=done, **run.extra))


# ---------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------


def _shorten(run: TrainingRun, max_iter: int) -> None:
    """The time budget shortened the run: the config and the lr schedule end at `max_iter`."""
    configured = run.configured_solver
    run.cfg.solver = shortened_solver(configured, max_iter, configured.max_iter)
    reschedule(run.scheduler, run.cfg.solver)


def _shared_clock(device: torch.device) -> Callable[[], float]:
    """Under DDP every process must take the time budget's decisions together: the
    slowest process's clock (one all-reduce of a scalar per iteration)."""
    local = time_budget.CLOCK

    def clock() -> float:
        return float(du.all_reduce_max(torch.tensor([local()], dtype=torch.float64, device=device))[0])

    return clock


def _save_and_stop(run: TrainingRun, stop: StopOnSignal, done: int) -> None:
    """A signal asked the run to stop (engine/preemption.py): write last.pt, then end the
    run with TrainingStopped (every rank, after rank 0 has saved)."""
    state = training_state(run, done)
    if run.info.is_main:
        save_checkpoint(run.out / LAST_NAME, state)
    du.barrier()
    raise stop.stopped(run.out / LAST_NAME, done)


def run_loop(run: TrainingRun, stop: StopOnSignal | None = None) -> float:
    """Iterations position.iteration .. max_iter - 1, with periodic evaluation and
    checkpoints; returns the training time in seconds. With solver.max_time_s the run
    may be shortened (and its schedule rebuilt) or stopped early (engine/time_budget.py).
    When `stop` records a SIGTERM / SIGINT the run saves last.pt after the iteration and
    raises TrainingStopped."""
    cfg, info = run.cfg, run.info
    max_iter = cfg.solver.max_iter
    start_iter = run.position.iteration
    budget = start_budget(cfg.solver, run.extra.get("time_budget"), start_iter, clock=_shared_clock(run.device) if info.enabled else None)
    batches = cycle_batches(run.loader, seed=cfg.train.seed, start_epoch=run.position.epoch, start_batch=run.position.batch)
    averages = WindowAverages(window=max(cfg.train.log_period, 1))
    kill_after = int(os.environ.get(KILL_AFTER_ITER_ENV, "0") or 0)

    started = time.perf_counter()
    bar = tqdm(total=max_iter, initial=start_iter, desc="train", disable=not info.is_main, dynamic_ncols=True, file=sys.stderr)
    tick = time.perf_counter()
    for iteration in range(start_iter, max(max_iter, run.configured_solver.max_iter)):  # the budget may change max_iter
        epoch, index, (images, targets, _infos) = next(batches)
        data_time = time.perf_counter() - tick
        images, targets = _to_device(images, targets, run.device)
        lr = run.optimizer.param_groups[0]["lr"]
        try:
            losses = train_step(run.train_model, images, targets, optimizer=run.optimizer, scaler=run.scaler, iteration=iteration, amp=run.amp, clip_grad_norm=cfg.solver.clip_grad_norm, amp_dtype=AMP_DTYPES[cfg.solver.amp_dtype])
        except NonFiniteLossError as exc:
            run.metrics_log.write({"type": "error", "iteration": iteration, "message": str(exc)})
            bar.close()
            raise
        run.scheduler.step()
        run.position.epoch, run.position.batch = epoch, index + 1
        done = iteration + 1
        if budget is not None:
            decision = budget.after_iteration(done)
            run.extra["time_budget"] = budget.record.as_dict()
            if decision.new_max_iter is not None or decision.stop:
                max_iter = budget.record.max_iter
                _shorten(run, max_iter)
                bar.total = max_iter
                note(describe_stop(budget.record) if decision.stop else describe_shortening(budget.record, done))
        now = time.perf_counter()
        averages.update({**losses, "time_per_iter": now - tick, "data_time": data_time})
        tick = now
        recent = averages.recent()
        bar.set_postfix(loss=f"{recent['loss_total']:.3f}", mask=f"{recent.get('loss_mask', 0.0):.3f}", lr=f"{lr:.2g}", refresh=False)
        bar.update(1)
        if done % max(cfg.train.log_period, 1) == 0 or done == max_iter:
            run.metrics_log.write({"type": "train", "iteration": done, "epoch": epoch, "lr": lr, **averages.since_reset()})
            averages.reset()
        if done == max_iter:
            break
        if cfg.train.eval_period > 0 and done % cfg.train.eval_period == 0:
            evaluate_now(run, done)
        if cfg.train.checkpoint_period > 0 and done % cfg.train.checkpoint_period == 0:
            state = training_state(run, done)
            if info.is_main:
                save_checkpoint(run.out / LAST_NAME, state)
        if kill_after and done == kill_after:
            os.kill(os.getpid(), signal.SIGKILL)
        if stop is not None and stop.agreed(run.device):
            bar.close()
            _save_and_stop(run, stop, done)
        tick = time.perf_counter()
    bar.close()
    run.position.iteration = max_iter
    return time.perf_counter() - started


# ---------------------------------------------------------------------------------------
# The finish: save, then evaluate, then report
# ---------------------------------------------------------------------------------------


def finish_run(run: TrainingRun, train_time: float) -> dict[str, Any]:
    """Write last.pt and model_final.pt first, so that nothing trained is lost if the
    final evaluation fails; then evaluate, plot and write summary.json (rank 0)."""
    cfg, info, out = run.cfg, run.info, run.out
    max_iter = cfg.solver.max_iter
    state = training_state(run, max_iter)
    fingerprints = _parameters_fingerprints(run.model) if info.enabled else []
    if not info.is_main:
        return {"rank": info.rank, "iterations": max_iter}
    save_checkpoint(out / LAST_NAME, state)
    save_checkpoint(out / FINAL_NAME, model_checkpoint(run.model, cfg, iteration=max_iter, **run.extra))
    try:
        evaluate_now(run, max_iter)
    except Exception:
        note(f"the final evaluation failed; the trained weights are saved in {out / FINAL_NAME} and {out / LAST_NAME}")
        raise
    plot_loss_curve(read_metrics(out / "metrics.jsonl"), out / "loss_curve.png", title=cfg.name)
    p = run.position
    summary = {
        "output_dir": str(out),
        "iterations": max_iter,
        "resumed_from": run.resumed_from,
        "train_time_s": round(train_time, 2),
        "world_size": info.world_size,
        "device": str(run.device),
        "lr": run.lr.lr,
        "time_budget": run.extra.get("time_budget"),
        "init_weights": cfg.train.init_weights or None,
        "final_checkpoint": str(out / FINAL_NAME),
        "best_checkpoint": str(out / BEST_NAME) if p.best_metric is not None else None,
        f"best_{run.best_key}": p.best_metric,
        "best_iteration": p.best_iteration,
        "last_eval": run.last_eval,
        "dataset_warnings": run.dataset_warnings,
        "rank_weight_fingerprints": fingerprints,
    }
    atomic_write_json(out / "summary.json", summary)
    return summary


def train(
    cfg: Config,
    *,
    resume: bool = False,
    model: nn.Module | None = None,
    train_set: Any = None,
    val_set: Any = None,
) -> dict[str, Any]:
    """Train `cfg` (continue from `<output_dir>/last.pt` with `resume`). `model`,
    `train_set` and `val_set` replace the ones the config would build (for tests and
    notebooks). Returns a summary (also written to `<output_dir>/summary.json`)."""
    check_solver(cfg.solver)
    info = du.env_dist_info()
    device = du.resolve_device(cfg.train.device, info)
    if device.type == "cpu":
        reuse_freed_memory()  # 8-16 % more iterations/s for R50-FPN on the CPU (benchmarks/train.py)
    created_group = info.enabled and not (dist.is_available() and dist.is_initialized())
    info = du.init_distributed(device)
    finished = False
    try:
        with contextlib.ExitStack() as event_files:  # TensorBoard's writer stays open through finish_run
            with StopOnSignal() as stop:  # SIGTERM / SIGINT: finish the iteration, save, stop
                run = setup_run(cfg, resume=resume, info=info, device=device, model=model, train_set=train_set,
                                val_set=val_set)
                event_files.enter_context(tensorboard_logging(run))  # a no-op unless train.tensorboard
                train_time = run_loop(run, stop)
            summary = finish_run(run, train_time)
        finished = True
        return summary
    finally:
        run = None  # its DDP wrapper holds the process group: let it go before the group
        if created_group:
            du.cleanup_distributed(finished)


# ---------------------------------------------------------------------------------------
# Module entry for torchrun
# ---------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m maskrcnn.engine.train",
        description="Train Mask R-CNN (under torchrun for several processes).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--config", default=None, help="built-in config name or YAML file; none: the built-in defaults")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config field (repeatable)")
    parser.add_argument("--output", default=None, help="output folder (overrides train.output_dir)")
    parser.add_argument("--resume", action="store_true", help="continue from <output>/last.pt")
    parser.add_argument("--init-weights", default=None, metavar="FILE", help="start a new run from these weights")
    args = parser.parse_args(argv)

    try:
        overrides = list(args.set) + ([f"train.output_dir={args.output}"] if args.output else [])
        cfg = load_config(args.config, overrides)
        cfg = with_init_weights(cfg, args.init_weights, resume=args.resume)
        summary = train(cfg, resume=args.resume)
    except Exception as exc:  # noqa: BLE001 - user errors become one line; bugs keep their traceback
        if os.environ.get("MASKRCNN_DEBUG") or not is_user_error(exc):
            raise
        print(f"{parser.prog}: error: {error_message(exc)}", file=sys.stderr)
        return getattr(exc, "exit_status", 1)
    if du.env_dist_info().is_main:
        print(f"done: {summary.get('iterations')} iterations, output in {summary.get('output_dir')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
