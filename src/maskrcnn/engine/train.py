"""The training loop: `train(cfg, resume=...)`, also run by `torchrun` as DDP.

One iteration = one batch of `data.batch_size` images per process, one SGD update.
Training is iteration-based (`solver.max_iter`); the data loader is cycled pass after
pass, each pass's order a function of (`train.seed`, pass number), so a resumed run
rebuilds the order and skips the batches already used. Files in `train.output_dir`
(written by rank 0 only): config.yaml, metrics.jsonl, last.pt (every
`train.checkpoint_period` iterations and at the end), best.pt (best validation segm AP,
or box AP without masks), model_final.pt (weights + config only), loss_curve.png,
summary.json.

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
from dataclasses import dataclass
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
    restore_rng_state,
    save_checkpoint,
    unwrap_model,
    weights_fingerprint,
)
from maskrcnn.engine.metrics import MetricsLog, WindowAverages, read_metrics, run_evaluation
from maskrcnn.engine.plot import plot_loss_curve
from maskrcnn.engine.schedule import build_lr_scheduler, build_optimizer, check_solver
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
# Setting up
# ---------------------------------------------------------------------------------------


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


def _restore(path: Path, cfg: Config, info: du.DistInfo, *, model: nn.Module, optimizer: torch.optim.Optimizer,
             scheduler: Any, scaler: torch.amp.GradScaler) -> Position:
    """Load a training checkpoint into the run's parts; put back this rank's generators."""
    ckpt = load_training_checkpoint(path)
    check_same_model_config(ckpt["config"], cfg, path)
    unwrap_model(model).load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    scheduler.load_state_dict(ckpt["scheduler"])
    if scaler.is_enabled() and ckpt.get("scaler"):
        scaler.load_state_dict(ckpt["scaler"])
    position = Position(int(ckpt["iteration"]), int(ckpt["epoch"]), int(ckpt["batch"]), ckpt.get("best_metric"), ckpt.get("best_iteration"))
    if int(ckpt.get("world_size", 1)) == info.world_size:
        restore_rng_state(ckpt["rng"][info.rank])
    else:  # another number of processes shards the data differently: start a new pass
        position.epoch, position.batch = position.epoch + 1, 0
        _note(f"resumed with {info.world_size} processes (checkpoint: {ckpt.get('world_size')}); data order restarts at pass {position.epoch}")
    _note(f"resumed from {path} at iteration {position.iteration}")
    return position


# ---------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------


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
        return _train(cfg, resume=resume, info=info, device=device, model=model, train_set=train_set, val_set=val_set)
    finally:
        if created_group:
            du.cleanup_distributed()


def _train(cfg: Config, *, resume: bool, info: du.DistInfo, device: torch.device, model: nn.Module | None, train_set: Any, val_set: Any) -> dict[str, Any]:
    from maskrcnn.data.loader import build_loader

    out = Path(cfg.train.output_dir)
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
    seed = cfg.train.seed
    seed_everything(seed)
    if train_set is None:
        train_set, val_set = _build_datasets(cfg)
    cfg = _match_num_classes(cfg, train_set)
    warnings = dict(getattr(train_set, "warnings", {}) or {})
    if warnings:
        _note(f"training set: skipped/converted items {warnings}")

    if model is None:
        from maskrcnn.model.build import build_model

        model = build_model(cfg.model)
    model.to(device)
    optimizer = build_optimizer(model, cfg.solver)
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
    if resume:
        position = _restore(out / LAST_NAME, cfg, info, model=model, optimizer=optimizer, scheduler=scheduler, scaler=scaler)
        metrics_log.truncate_after(position.iteration)
    else:
        position = Position()
        if info.is_main and (out / LAST_NAME).exists():
            _note(f"{out} already holds {LAST_NAME}; starting a new run over it (resume to continue instead)")
        metrics_log.start_fresh()
    start_iter, epoch, batch_in_epoch = position.iteration, position.epoch, position.batch
    best_metric, best_iteration = position.best_metric, position.best_iteration
    if info.is_main:
        atomic_write_text(out / "config.yaml", dump_config(cfg))

    train_model: nn.Module = model
    if info.enabled:
        train_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=True
        )
    train_model.train()
    extra = _dataset_extra(train_set)
    max_iter = cfg.solver.max_iter
    batches = cycle_batches(loader, seed=seed, start_epoch=epoch, start_batch=batch_in_epoch)
    averages = WindowAverages(window=max(cfg.train.log_period, 1))
    kill_after = int(os.environ.get(KILL_AFTER_ITER_ENV, "0") or 0)
    best_key = "segm_AP" if cfg.model.roi_heads.mask_on else "bbox_AP"
    last_eval: dict[str, Any] = {}

    def training_state(done: int) -> dict[str, Any]:
        rng_states = du.all_gather_objects(capture_rng_state())  # collective: every rank calls it
        return model_checkpoint(
            model, cfg, iteration=done, epoch=epoch, batch=batch_in_epoch, optimizer=optimizer.state_dict(),
            scheduler=scheduler.state_dict(), scaler=scaler.state_dict() if amp else {}, rng=rng_states,
            world_size=info.world_size, best_metric=best_metric, best_iteration=best_iteration, **extra,
        )

    def evaluate(done: int) -> None:
        nonlocal best_metric, best_iteration, last_eval
        if not info.is_main or val_set is None:
            return
        record = run_evaluation(model, val_set, val_loader, device=device, iteration=done)
        train_model.train()
        metrics_log.write(record)
        last_eval = record
        score = record.get(best_key)
        _note(f"iteration {done}: " + ", ".join(f"{k} {record[k]:.3f}" for k in ("bbox_AP", "segm_AP", "val_loss_total") if isinstance(record.get(k), float)))
        if isinstance(score, float) and (best_metric is None or score > best_metric):
            best_metric, best_iteration = score, done
            save_checkpoint(out / BEST_NAME, model_checkpoint(model, cfg, iteration=done, best_metric=score, best_iteration=done, **extra))

    started = time.perf_counter()
    bar = tqdm(total=max_iter, initial=start_iter, desc="train", disable=not info.is_main, dynamic_ncols=True, file=sys.stderr)
    tick = time.perf_counter()
    for iteration in range(start_iter, max_iter):
        epoch, index, (images, targets, _infos) = next(batches)
        data_time = time.perf_counter() - tick
        images, targets = _to_device(images, targets, device)
        lr = optimizer.param_groups[0]["lr"]
        try:
            losses = train_step(train_model, images, targets, optimizer=optimizer, scaler=scaler, iteration=iteration, amp=amp, clip_grad_norm=cfg.solver.clip_grad_norm)
        except NonFiniteLossError as exc:
            metrics_log.write({"type": "error", "iteration": iteration, "message": str(exc)})
            bar.close()
            raise
        scheduler.step()
        batch_in_epoch = index + 1
        done = iteration + 1
        now = time.perf_counter()
        averages.update({**losses, "time_per_iter": now - tick, "data_time": data_time})
        tick = now
        recent = averages.recent()
        bar.set_postfix(loss=f"{recent['loss_total']:.3f}", mask=f"{recent.get('loss_mask', 0.0):.3f}", lr=f"{lr:.2g}", refresh=False)
        bar.update(1)
        if done % max(cfg.train.log_period, 1) == 0 or done == max_iter:
            metrics_log.write({"type": "train", "iteration": done, "epoch": epoch, "lr": lr, **averages.since_reset()})
            averages.reset()
        if done == max_iter:
            break
        if cfg.train.eval_period > 0 and done % cfg.train.eval_period == 0:
            evaluate(done)
        if cfg.train.checkpoint_period > 0 and done % cfg.train.checkpoint_period == 0:
            state = training_state(done)
            if info.is_main:
                save_checkpoint(out / LAST_NAME, state)
        if kill_after and done == kill_after:
            os.kill(os.getpid(), signal.SIGKILL)
        tick = time.perf_counter()
    bar.close()
    train_time = time.perf_counter() - started

    evaluate(max_iter)
    state = training_state(max_iter)
    fingerprints = _parameters_fingerprints(model) if info.enabled else []
    if not info.is_main:
        return {"rank": info.rank, "iterations": max_iter}
    save_checkpoint(out / LAST_NAME, state)
    save_checkpoint(out / FINAL_NAME, model_checkpoint(model, cfg, iteration=max_iter, **extra))
    plot_loss_curve(read_metrics(out / "metrics.jsonl"), out / "loss_curve.png", title=cfg.name)
    summary = {
        "output_dir": str(out),
        "iterations": max_iter,
        "resumed_from": start_iter if resume else None,
        "train_time_s": round(train_time, 2),
        "world_size": info.world_size,
        "device": str(device),
        "final_checkpoint": str(out / FINAL_NAME),
        "best_checkpoint": str(out / BEST_NAME) if best_metric is not None else None,
        f"best_{best_key}": best_metric,
        "best_iteration": best_iteration,
        "last_eval": last_eval,
        "dataset_warnings": warnings,
        "rank_weight_fingerprints": fingerprints,
    }
    atomic_write_json(out / "summary.json", summary)
    return summary


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
    args = parser.parse_args(argv)
    try:
        overrides = list(args.set) + ([f"train.output_dir={args.output}"] if args.output else [])
        cfg = load_config(args.config, overrides)
        summary = train(cfg, resume=args.resume)
    except (ConfigError, CheckpointError, NonFiniteLossError, FileNotFoundError, ValueError) as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 1
    if du.env_dist_info().is_main:
        print(f"done: {summary.get('iterations')} iterations, output in {summary.get('output_dir')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
