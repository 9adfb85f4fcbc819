"""Setting up a training run: the checks made before anything is built, then the data,
the model (and its starting weights), the solver, the loaders, and on resume the state.

`setup_run` returns a `TrainingRun`, which `maskrcnn.engine.train.run_loop` advances and
`finish_run` saves and reports. The checks come first and are cheap, so a mistake stops
the run with one line before any data set is generated or image read:
    solver and data values (batch size, lr rule), frozen layers over random weights,
    the output folder, and on resume the checkpoint against solver.max_iter;
then, once the data sets exist: an empty training set (saying why) and validation
categories that differ from training's.
"""

from __future__ import annotations

import copy
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from maskrcnn.config import (
    Config,
    ConfigError,
    SolverConfig,
    apply_override,
    dump_config,
)
from maskrcnn.data.build import (
    build_dataset,
    check_data_config,
    check_same_categories,
    check_training_set,
)
from maskrcnn.data.loader import build_loader
from maskrcnn.engine import distributed as du
from maskrcnn.engine.init_weights import format_init_report, load_init_weights
from maskrcnn.engine.metrics import MetricsLog
from maskrcnn.engine.resume_state import (
    BEST_NAME,
    LAST_NAME,
    CheckpointError,
    check_same_model_config,
    load_training_checkpoint,
    remove_stale_temporaries,
    restore_rng_state,
    unwrap_model,
)
from maskrcnn.engine.schedule import (
    LrChoice,
    build_lr_scheduler,
    build_optimizer,
    check_solver,
    choose_lr,
    with_lr,
)
from maskrcnn.engine.time_budget import shortened_solver
from maskrcnn.errors import UserError
from maskrcnn.io_utils import atomic_write_text
from maskrcnn.model.build import build_model


def note(message: str) -> None:
    if du.is_main_process():
        tqdm.write(f"[train] {message}", file=sys.stderr)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class FrozenFromScratchError(ConfigError):
    """A config that would train frozen layers or frozen BatchNorm from random weights."""


class ResumeError(CheckpointError):
    """A resume request that does not fit the checkpoint (e.g. a smaller solver.max_iter)."""


class OutputDirError(UserError):
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
    note(f"model.num_classes {cfg.model.num_classes} -> {num_classes} (the training set's categories + background)")
    return apply_override(cfg, f"model.num_classes={num_classes}")


def _dataset_extra(train_set: Any) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    if getattr(train_set, "class_names", None) is not None:
        extra["class_names"] = list(train_set.class_names)
    if getattr(train_set, "label_to_category_id", None) is not None:
        extra["label_to_category_id"] = {int(k): int(v) for k, v in train_set.label_to_category_id.items()}
    return extra


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
    """The final evaluation writes best.pt after last.pt (same iteration): take its score,
    so a run resumed with a larger solver.max_iter compares against it."""
    path = out / BEST_NAME
    if not path.is_file():
        return position
    try:
        best = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - an unreadable best.pt only loses the comparison
        return position
    iteration, metric = best.get("best_iteration"), best.get("best_metric")
    if isinstance(metric, float) and iteration == position.iteration and position.best_iteration != iteration:
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
        note(f"resumed with {info.world_size} processes (checkpoint: {ckpt.get('world_size')}); data order restarts at pass {position.epoch}")
    note(f"resumed from {path} at iteration {position.iteration}")
    return position


def _stored_budget(ckpt: dict[str, Any] | None, cfg: Config) -> dict[str, Any] | None:
    """The time budget's record in the checkpoint being resumed, when it still applies
    (a budget is set and solver.max_iter is the one the record planned from)."""
    stored = (ckpt or {}).get("time_budget")
    if not stored or cfg.solver.max_time_s <= 0:
        return None
    if int(stored.get("config_max_iter", -1)) != cfg.solver.max_iter:
        note(f"solver.max_iter {cfg.solver.max_iter} differs from the {stored.get('config_max_iter')} the time budget "
             "planned from: a new plan starts")
        return None
    note(f"time budget: continuing the plan of {stored['max_iter']} iterations ({stored['elapsed_s']:.0f} s spent)")
    return dict(stored)


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
    configured_solver: SolverConfig  # as configured: a time budget shortens cfg.solver from it
    extra: dict[str, Any] = field(default_factory=dict)  # class names etc., stored in checkpoints
    dataset_warnings: dict[str, int] = field(default_factory=dict)
    last_eval: dict[str, Any] = field(default_factory=dict)

    @property
    def best_key(self) -> str:
        return "segm_AP" if self.cfg.model.roi_heads.mask_on else "bbox_AP"


@dataclass
class SolverParts:
    """The optimizer, its schedule and (CUDA) loss scaler, and the base lr they use."""

    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler
    amp: bool
    lr: LrChoice


def check_run_config(cfg: Config, *, builds_model: bool, resume: bool) -> None:
    """The checks that need nothing but the config (before any file is touched)."""
    check_solver(cfg.solver)
    check_data_config(cfg.data)
    if builds_model and not resume:
        check_not_frozen_from_scratch(cfg)


def _prepare_output(out: Path) -> None:
    """Rank 0: the output folder exists, and no temporary of a killed write is left in it."""
    prepare_output_dir(out)
    for path in remove_stale_temporaries(out):
        note(f"removed {path.name}, left by a run killed while writing")


def _data(cfg: Config, train_set: Any, val_set: Any) -> tuple[Any, Any]:
    """The data sets (built from the config unless given), checked before any iteration."""
    if train_set is None:
        train_set, val_set = _build_datasets(cfg)
    check_training_set(train_set)
    if val_set is not None:
        check_same_categories(train_set, val_set)
    warnings = dict(getattr(train_set, "warnings", {}) or {})
    if warnings:
        note(f"training set: skipped/converted items {warnings}")
    return train_set, val_set


def _model(cfg: Config, model: nn.Module | None, *, resume: bool, out: Path) -> nn.Module:
    """The model (built from the config unless given) with its starting weights."""
    if model is None:
        model = build_model(cfg.model)
    if cfg.train.init_weights and resume:
        note(f"train.init_weights ignored: resuming from {out / LAST_NAME}, whose weights continue the run")
    elif cfg.train.init_weights:
        report = load_init_weights(model, cfg.train.init_weights)
        note(format_init_report(report, cfg.model.num_classes))
    return model


def _solver(cfg: Config, model: nn.Module, info: du.DistInfo, device: torch.device) -> SolverParts:
    """SGD at the base lr the lr rule gives (printed), its schedule, the AMP scaler."""
    lr = choose_lr(cfg.solver, batch_size=cfg.data.batch_size, world_size=info.world_size)
    note(lr.describe())
    optimizer = build_optimizer(model, with_lr(cfg.solver, lr.lr))
    amp = cfg.solver.amp and device.type == "cuda"
    if cfg.solver.amp and not amp:
        note("solver.amp ignored: mixed precision is used on CUDA only")
    scaler = torch.amp.GradScaler("cuda", enabled=amp and cfg.solver.amp_dtype == "float16")  # bf16: no scaling
    return SolverParts(optimizer, build_lr_scheduler(optimizer, cfg.solver), scaler, amp, lr)


def _loaders(cfg: Config, info: du.DistInfo, train_set: Any, val_set: Any, pin_memory: bool = False) -> tuple[Any, Any]:
    """The training loader (a distributed sampler under DDP) and rank 0's validation loader."""
    data = cfg.data
    loader = build_loader(
        train_set,
        batch_size=data.batch_size,
        train=True,
        group_by_aspect_ratio=data.group_by_aspect_ratio,
        distributed=info.enabled,
        seed=cfg.train.seed,
        num_workers=data.num_workers,
        pin_memory=pin_memory,
    )
    val_loader = None
    if val_set is not None and info.is_main:
        val_loader = build_loader(val_set, batch_size=data.batch_size, train=False, group_by_aspect_ratio=False,
                                  distributed=False, seed=cfg.train.seed, num_workers=data.num_workers)
    return loader, val_loader


def setup_run(cfg: Config, *, resume: bool, info: du.DistInfo, device: torch.device, model: nn.Module | None,
              train_set: Any, val_set: Any) -> TrainingRun:
    """Check the config, then build data, model, solver and loaders; restore on resume.
    (The order of the seeded steps is part of a run's identity: resuming relies on it.)"""
    check_run_config(cfg, builds_model=model is None, resume=resume)
    out = Path(cfg.train.output_dir)
    if info.is_main:
        _prepare_output(out)
    ckpt = _read_resume_checkpoint(out, cfg) if resume else None
    budget = _stored_budget(ckpt, cfg)
    configured_solver = cfg.solver
    if cfg.solver.max_time_s > 0:
        cfg = copy.deepcopy(cfg)  # the time budget may shorten cfg.solver: not the caller's object
    if budget is not None:  # continue the schedule the time budget shortened
        cfg.solver = shortened_solver(cfg.solver, int(budget["max_iter"]), cfg.solver.max_iter)
    seed_everything(cfg.train.seed)
    train_set, val_set = _data(cfg, train_set, val_set)
    cfg = _match_num_classes(cfg, train_set)
    model = _model(cfg, model, resume=resume, out=out).to(device)
    if cfg.train.channels_last:
        model = model.to(memory_format=torch.channels_last)  # 4-D weights; convolutions then keep NHWC
    solver = _solver(cfg, model, info, device)
    seed_everything(cfg.train.seed + 1000 * info.rank)  # same init everywhere, own augmentation per rank
    loader, val_loader = _loaders(cfg, info, train_set, val_set, pin_memory=device.type == "cuda")

    metrics_log = MetricsLog(out / "metrics.jsonl", enabled=info.is_main)
    if ckpt is not None:
        position = _restore(ckpt, out / LAST_NAME, cfg, info, model=model, optimizer=solver.optimizer,
                            scheduler=solver.scheduler, scaler=solver.scaler)
        metrics_log.truncate_after(position.iteration)
    else:
        position = Position()
        if info.is_main and (out / LAST_NAME).exists():
            note(f"{out} already holds {LAST_NAME}; starting a new run over it (resume to continue instead)")
        metrics_log.start_fresh()
    if info.is_main:
        atomic_write_text(out / "config.yaml", dump_config(cfg))
    extra = _dataset_extra(train_set)
    if budget is not None:
        extra["time_budget"] = budget

    train_model: nn.Module = model
    if info.enabled:
        train_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=True
        )
    train_model.train()
    return TrainingRun(
        cfg=cfg, info=info, device=device, out=out, model=model, train_model=train_model,
        optimizer=solver.optimizer, scheduler=solver.scheduler, scaler=solver.scaler, amp=solver.amp,
        loader=loader, val_set=val_set, val_loader=val_loader, metrics_log=metrics_log, position=position,
        resumed_from=position.iteration if resume else None, lr=solver.lr,
        configured_solver=configured_solver, extra=extra, dataset_warnings=dict(getattr(train_set, "warnings", {}) or {}),
    )
