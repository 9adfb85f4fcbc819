"""The training loop: `train(cfg, resume=...)`, also run by `torchrun` as DDP.

`train` reads as three steps:
    setup_run   checks (config, output folder, resume, frozen-from-scratch traps), then
                data, model (+ train.init_weights), solver (the lr rule), loaders, restore
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
import os
import random
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from maskrcnn.config import Config, ConfigError, apply_override, dump_config, load_config
from maskrcnn.engine import distributed as du
from maskrcnn.engine.checkpoint import (
    BEST_NAME,
    FINAL_NAME,
    LAST_NAME,
    CheckpointError,
    capture_rng_state,
    check_same_model_config,
    cycle_batches,
    load_training_checkpoint,
    model_checkpoint,
    remove_stale_temporaries,
    restore_rng_state,
    save_checkpoint,
    unwrap_model,
    weights_fingerprint,
)
from maskrcnn.engine.init_weights import format_init_report, load_init_weights
from maskrcnn.engine.metrics import MetricsLog, WindowAverages, read_metrics, run_evaluation
from maskrcnn.engine.plot import plot_loss_curve
from maskrcnn.engine.schedule import LrChoice, build_lr_scheduler, build_optimizer, check_solver, choose_lr, with_lr
from maskrcnn.io_utils import atomic_write_json, atomic_write_text
from maskrcnn.runtime import reuse_freed_memory

# Test hook: SIGKILL this process right after the given iteration (and its checkpoint).
KILL_AFTER_ITER_ENV = "MASKRCNN_TEST_KILL_AFTER_ITER"


class NonFiniteLossError(RuntimeError):
    """A loss (or gradient norm) became NaN or infinite; training stopped before using it."""


def _note(message: str) -> None:
    if du.is_main_process():
        tqdm.write(f"[train] {message}", file=sys.stderr)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


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
) -> dict[str, float]:
    """Forward, check the losses, backward, (clip), update. Returns the losses averaged
    over processes, plus `loss_total`. Raises NonFiniteLossError naming the iteration and
    loss before any gradient is applied, so the weights stay those of the last good step."""
    device_type = images[0].device.type if images else "cpu"
    with torch.autocast(device_type=device_type, dtype=torch.float16, enabled=amp):
        loss_dict = model(images, targets)
    names = list(loss_dict)
    local = torch.stack([loss_dict[name].detach().float().reshape(()) for name in names])  # (L,)
    averaged = du.all_reduce_mean(local)  # a NaN on any process reaches every process
    if not torch.isfinite(averaged).all():
        bad = [f"{n}={v:.4g}" for n, v in zip(names, averaged.tolist()) if not np.isfinite(v)]
        raise NonFiniteLossError(
            f"iteration {iteration}: non-finite loss ({', '.join(bad)}); training stopped, "
            "the last checkpoint written before it is kept (lower solver.lr or set solver.clip_grad_norm)"
        )
    total = sum(loss_dict.values())
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(total).backward()
    if clip_grad_norm > 0:
        scaler.unscale_(optimizer)
        params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        grad_norm = torch.nn.utils.clip_grad_norm_(params, clip_grad_norm)
        if not amp and not torch.isfinite(grad_norm):
            raise NonFiniteLossError(f"iteration {iteration}: gradient norm is {float(grad_norm)}; training stopped")
    scaler.step(optimizer)
    scaler.update()
    values = {name: float(v) for name, v in zip(names, averaged.tolist())}
    values["loss_total"] = float(averaged.sum())
    return values


# ---------------------------------------------------------------------------------------
# Setting up: checks first (cheap, before any data is generated), then data, model, solver
# ---------------------------------------------------------------------------------------


class FrozenFromScratchError(ConfigError):
    """A config that would train frozen layers or frozen BatchNorm from random weights."""


class ResumeError(CheckpointError):
    """A resume request that does not fit the checkpoint (e.g. a smaller solver.max_iter)."""


class OutputDirError(ValueError):
    """An output folder that cannot be created (a regular file in its place or above it)."""


def with_init_weights(cfg: Config, path: str | None, *, resume: bool) -> Config:
    """`--init-weights FILE` sets train.init_weights; it starts a new run, so it cannot be
    combined with `--resume` (which continues the run in the output folder)."""
    if not path:
        return cfg
    if resume:
        raise ConfigError(
            "--init-weights starts a new run from weights, --resume continues the run in the output folder "
            "from its last.pt: give one of them"
        )
    return apply_override(cfg, f"train.init_weights={path}")


def check_not_frozen_from_scratch(cfg: Config) -> None:
    """Frozen stages and frozen BatchNorm only make sense over pretrained weights: from
    random weights they keep a random stem (and stages) and turn every backbone norm into
    a fixed affine map, silently. Refuse, naming both fixes."""
    if cfg.train.init_weights:
        return
    backbone = cfg.model.backbone
    problems = []
    if backbone.norm == "frozen_bn":
        problems.append("model.backbone.norm=frozen_bn (BatchNorm statistics that never adapt)")
    if backbone.freeze_at > 0:
        problems.append(f"model.backbone.freeze_at={backbone.freeze_at} (stages that keep their random weights)")
    if problems:
        raise FrozenFromScratchError(
            f"{' and '.join(problems)} with random initial weights (no train.init_weights) cannot learn; "
            "train from scratch with --set model.backbone.norm=bn --set model.backbone.freeze_at=0 "
            "(or norm=gn), or start from pretrained weights with --init-weights FILE"
        )


def prepare_output_dir(out: Path) -> None:
    """Create `out`; one clear error when a regular file stands in its place or above it."""
    for folder in (out, *out.parents):
        if folder.exists() and not folder.is_dir():
            where = "is a file" if folder == out else f"cannot be created: {folder} is a file"
            raise OutputDirError(f"train.output_dir: {out} {where}, not a folder; choose another --output")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputDirError(f"train.output_dir: cannot create {out} ({exc.strerror or exc})") from None


def _build_datasets(cfg: Config) -> tuple[Any, Any]:
    """Rank 0 first (it may generate files, e.g. the shapes set), then the others."""
    from maskrcnn.data.build import build_dataset

    def build() -> tuple[Any, Any]:
        train_set = build_dataset(cfg.data.train, cfg.data.augment, train=True)
        val_set = build_dataset(cfg.data.val, None, train=False) if _has_val(cfg) else None
        return train_set, val_set

    if du.is_main_process():
        built = build()
    du.barrier()
    if not du.is_main_process():
        built = build()
    return built


def _has_val(cfg: Config) -> bool:
    return bool(cfg.data.val.annotations)


def _match_num_classes(cfg: Config, train_set: Any) -> Config:
    num_classes = getattr(train_set, "num_classes", None)
    if num_classes is None or num_classes == cfg.model.num_classes:
        return cfg
    _note(f"model.num_classes {cfg.model.num_classes} -> {num_classes} (the training set's categories + background)")
    return apply_override(cfg, f"model.num_classes={num_classes}")


def _dataset_extra(train_set: Any) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    if getattr(train_set, "class_names", None) is not None:
        extra["class_names"] = list(train_set.class_names)
    if getattr(train_set, "label_to_category_id", None) is not None:
        extra["label_to_category_id"] = {int(k): int(v) for k, v in train_set.label_to_category_id.items()}
    return extra


def _to_device(images: list[torch.Tensor], targets: list[Any], device: torch.device) -> tuple[list, list]:
    return [im.to(device, non_blocking=True) for im in images], [t.to(device) for t in targets]


def _parameters_fingerprints(model: nn.Module) -> list[str]:
    """Every process's parameter fingerprint (collective; DDP keeps them equal)."""
    return [str(f) for f in du.all_gather_objects(weights_fingerprint(model, parameters_only=True))]


@dataclass
class Position:
    """Where a run stands: completed iterations, next batch (pass, index), best score."""

    iteration: int = 0
    epoch: int = 0
    batch: int = 0
    best_metric: float | None = None
    best_iteration: int | None = None


def _read_resume_checkpoint(out: Path, cfg: Config) -> dict[str, Any]:
    """last.pt of the run in `out`, refused when solver.max_iter is below its iteration."""
    path = out / LAST_NAME
    ckpt = load_training_checkpoint(path)
    done = int(ckpt["iteration"])
    if cfg.solver.max_iter < done:
        raise ResumeError(
            f"{path}: the checkpoint has done {done} iterations but solver.max_iter is {cfg.solver.max_iter}; "
            f"give solver.max_iter >= {done} to continue this run, or start a new run in another --output"
        )
    return ckpt


def _best_recorded(out: Path, position: Position) -> Position:
    """The final evaluation may have written best.pt after last.pt: take its score if newer."""
    path = out / BEST_NAME
    if not path.is_file():
        return position
    try:
        best = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - an unreadable best.pt only loses the comparison
        return position
    iteration, metric = best.get("best_iteration"), best.get("best_metric")
    newer = position.best_iteration is None or (iteration is not None and iteration > position.best_iteration)
    if isinstance(metric, float) and iteration is not None and iteration <= position.iteration and newer:
        position.best_metric, position.best_iteration = metric, int(iteration)
    return position


def _restore(ckpt: dict[str, Any], path: Path, cfg: Config, info: du.DistInfo, *, model: nn.Module,
             optimizer: torch.optim.Optimizer, scheduler: Any, scaler: torch.amp.GradScaler) -> Position:
    """Load a training checkpoint into the run's parts; put back this rank's generators."""
    check_same_model_config(ckpt["config"], cfg, path)
    unwrap_model(model).load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    scheduler.load_state_dict(ckpt["scheduler"])
    if scaler.is_enabled() and ckpt.get("scaler"):
        scaler.load_state_dict(ckpt["scaler"])
    position = Position(int(ckpt["iteration"]), int(ckpt["epoch"]), int(ckpt["batch"]), ckpt.get("best_metric"), ckpt.get("best_iteration"))
    position = _best_recorded(path.parent, position)
    if int(ckpt.get("world_size", 1)) == info.world_size:
        restore_rng_state(ckpt["rng"][info.rank])
    else:  # another number of processes shards the data differently: start a new pass
        position.epoch, position.batch = position.epoch + 1, 0
        _note(f"resumed with {info.world_size} processes (checkpoint: {ckpt.get('world_size')}); data order restarts at pass {position.epoch}")
    _note(f"resumed from {path} at iteration {position.iteration}")
    return position


@dataclass
class TrainingRun:
    """What `setup_run` builds; the loop advances `position`."""

    cfg: Config
    info: du.DistInfo
    device: torch.device
    out: Path
    model: nn.Module  # the plain model (saved, evaluated)
    train_model: nn.Module  # the model the loop calls: DistributedDataParallel or `model`
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler
    amp: bool
    loader: Any
    val_set: Any
    val_loader: Any
    metrics_log: MetricsLog
    position: Position
    resumed_from: int | None
    lr: LrChoice
    extra: dict[str, Any] = field(default_factory=dict)  # class names etc., stored in checkpoints
    dataset_warnings: dict[str, int] = field(default_factory=dict)
    last_eval: dict[str, Any] = field(default_factory=dict)

    @property
    def best_key(self) -> str:
        return "segm_AP" if self.cfg.model.roi_heads.mask_on else "bbox_AP"


def setup_run(cfg: Config, *, resume: bool, info: du.DistInfo, device: torch.device, model: nn.Module | None,
              train_set: Any, val_set: Any) -> TrainingRun:
    """Check the config, then build data, model, solver and loaders; restore on resume."""
    from maskrcnn.data.build import check_data_config, check_same_categories, check_training_set
    from maskrcnn.data.loader import build_loader

    check_solver(cfg.solver)
    check_data_config(cfg.data)
    if model is None and not resume:
        check_not_frozen_from_scratch(cfg)
    out = Path(cfg.train.output_dir)
    if info.is_main:
        prepare_output_dir(out)
        for path in remove_stale_temporaries(out):
            _note(f"removed {path.name}, left by a run killed while writing")
    ckpt = _read_resume_checkpoint(out, cfg) if resume else None
    seed = cfg.train.seed
    seed_everything(seed)
    if train_set is None:
        train_set, val_set = _build_datasets(cfg)
    check_training_set(train_set)
    if val_set is not None:
        check_same_categories(train_set, val_set)
    cfg = _match_num_classes(cfg, train_set)
    warnings = dict(getattr(train_set, "warnings", {}) or {})
    if warnings:
        _note(f"training set: skipped/converted items {warnings}")

    if model is None:
        from maskrcnn.model.build import build_model

        model = build_model(cfg.model)
    if cfg.train.init_weights and resume:
        _note(f"train.init_weights ignored: resuming from {out / LAST_NAME}, whose weights continue the run")
    elif cfg.train.init_weights:
        report = load_init_weights(model, cfg.train.init_weights)
        _note(format_init_report(report, cfg.model.num_classes))
    model.to(device)
    lr = choose_lr(cfg.solver, batch_size=cfg.data.batch_size, world_size=info.world_size)
    _note(lr.describe())
    optimizer = build_optimizer(model, with_lr(cfg.solver, lr.lr))
    scheduler = build_lr_scheduler(optimizer, cfg.solver)
    amp = cfg.solver.amp and device.type == "cuda"
    if cfg.solver.amp and not amp:
        _note("solver.amp ignored: mixed precision is used on CUDA only")
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    seed_everything(seed + 1000 * info.rank)  # same init everywhere, own augmentation per rank

    loader = build_loader(
        train_set,
        batch_size=cfg.data.batch_size,
        train=True,
        group_by_aspect_ratio=cfg.data.group_by_aspect_ratio,
        distributed=info.enabled,
        seed=seed,
        num_workers=cfg.data.num_workers,
    )
    val_loader = None
    if val_set is not None and info.is_main:
        val_loader = build_loader(val_set, batch_size=cfg.data.batch_size, train=False, group_by_aspect_ratio=False, distributed=False, seed=seed, num_workers=cfg.data.num_workers)

    metrics_log = MetricsLog(out / "metrics.jsonl", enabled=info.is_main)
    if ckpt is not None:
        position = _restore(ckpt, out / LAST_NAME, cfg, info, model=model, optimizer=optimizer, scheduler=scheduler, scaler=scaler)
        metrics_log.truncate_after(position.iteration)
    else:
        position = Position()
        if info.is_main and (out / LAST_NAME).exists():
            _note(f"{out} already holds {LAST_NAME}; starting a new run over it (resume to continue instead)")
        metrics_log.start_fresh()
    if info.is_main:
        atomic_write_text(out / "config.yaml", dump_config(cfg))

    train_model: nn.Module = model
    if info.enabled:
        train_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=True
        )
    train_model.train()
    return TrainingRun(
        cfg=cfg, info=info, device=device, out=out, model=model, train_model=train_model, optimizer=optimizer,
        scheduler=scheduler, scaler=scaler, amp=amp, loader=loader, val_set=val_set, val_loader=val_loader,
        metrics_log=metrics_log, position=position, resumed_from=position.iteration if resume else None, lr=lr,
        extra=_dataset_extra(train_set), dataset_warnings=warnings,
    )


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
    record = run_evaluation(run.model, run.val_set, run.val_loader, device=run.device, iteration=done)
    run.train_model.train()
    run.metrics_log.write(record)
    run.last_eval = record
    score = record.get(run.best_key)
    _note(f"iteration {done}: " + ", ".join(f"{k} {record[k]:.3f}" for k in ("bbox_AP", "segm_AP", "val_loss_total") if isinstance(record.get(k), float)))
    p = run.position
    if isinstance(score, float) and (p.best_metric is None or score > p.best_metric):
        p.best_metric, p.best_iteration = score, done
        save_checkpoint(run.out / BEST_NAME, model_checkpoint(run.model, run.cfg, iteration=done, best_metric=score, best_iteration=done, **run.extra))


# ---------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------


def run_loop(run: TrainingRun) -> float:
    """Iterations position.iteration .. max_iter - 1, with periodic evaluation and
    checkpoints; returns the training time in seconds."""
    cfg, info = run.cfg, run.info
    max_iter = cfg.solver.max_iter
    start_iter = run.position.iteration
    batches = cycle_batches(run.loader, seed=cfg.train.seed, start_epoch=run.position.epoch, start_batch=run.position.batch)
    averages = WindowAverages(window=max(cfg.train.log_period, 1))
    kill_after = int(os.environ.get(KILL_AFTER_ITER_ENV, "0") or 0)

    started = time.perf_counter()
    bar = tqdm(total=max_iter, initial=start_iter, desc="train", disable=not info.is_main, dynamic_ncols=True, file=sys.stderr)
    tick = time.perf_counter()
    for iteration in range(start_iter, max_iter):
        epoch, index, (images, targets, _infos) = next(batches)
        data_time = time.perf_counter() - tick
        images, targets = _to_device(images, targets, run.device)
        lr = run.optimizer.param_groups[0]["lr"]
        try:
            losses = train_step(run.train_model, images, targets, optimizer=run.optimizer, scaler=run.scaler, iteration=iteration, amp=run.amp, clip_grad_norm=cfg.solver.clip_grad_norm)
        except NonFiniteLossError as exc:
            run.metrics_log.write({"type": "error", "iteration": iteration, "message": str(exc)})
            bar.close()
            raise
        run.scheduler.step()
        run.position.epoch, run.position.batch = epoch, index + 1
        done = iteration + 1
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
        _note(f"the final evaluation failed; the trained weights are saved in {out / FINAL_NAME} and {out / LAST_NAME}")
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
    try:
        run = setup_run(cfg, resume=resume, info=info, device=device, model=model, train_set=train_set, val_set=val_set)
        train_time = run_loop(run)
        return finish_run(run, train_time)
    finally:
        if created_group:
            du.cleanup_distributed()


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
    from maskrcnn.cli import error_message, is_user_error

    try:
        overrides = list(args.set) + ([f"train.output_dir={args.output}"] if args.output else [])
        cfg = load_config(args.config, overrides)
        cfg = with_init_weights(cfg, args.init_weights, resume=args.resume)
        summary = train(cfg, resume=args.resume)
    except Exception as exc:  # noqa: BLE001 - user errors become one line; bugs keep their traceback
        if os.environ.get("MASKRCNN_DEBUG") or not is_user_error(exc):
            raise
        print(f"{parser.prog}: error: {error_message(exc)}", file=sys.stderr)
        return 1
    if du.env_dist_info().is_main:
        print(f"done: {summary.get('iterations')} iterations, output in {summary.get('output_dir')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
