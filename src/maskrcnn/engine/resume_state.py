"""Resuming without losing anything: training checkpoints in the native checkpoint
format, the random generators, and the data position.

A training checkpoint is a native model checkpoint (the dict `maskrcnn.checkpoints`
reads: {"format": "maskrcnn", "version": 1, "config": ..., "model": state_dict,
"weights_sha256": ...}) with the training state added beside it:

    iteration        completed iterations (the next update is number `iteration`)
    epoch, batch     loader position: the next batch is batch `batch` of pass `epoch`
    optimizer, scheduler, scaler   their state dicts (scaler: {} when AMP is off)
    rng              one entry per process: python, numpy, torch CPU (and CUDA) states
    world_size       number of processes that wrote it
    best_metric, best_iteration    the best validation score so far (for best.pt)
    class_names, label_to_category_id   so predictions map back to dataset categories

Everything is stored as tensors and plain Python values, so the file loads with
`torch.load(..., weights_only=True)`. Files are written atomically: a run killed during
a save leaves the previous file whole, and a temporary `.last.pt.<random>.tmp` that the
next run in the same folder removes (`remove_stale_temporaries`).
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from maskrcnn.checkpoints import FORMAT as CHECKPOINT_FORMAT
from maskrcnn.checkpoints import (
    CheckpointError,  # noqa: F401 - one error type for every checkpoint problem
    native_checkpoint,
    state_dict_sha256,
    verify_checksum,
)
from maskrcnn.config import Config, config_to_dict
from maskrcnn.io_utils import DiskFullError, atomic_torch_save

LAST_NAME = "last.pt"
BEST_NAME = "best.pt"
FINAL_NAME = "model_final.pt"
# Files the trainer writes atomically into its output folder (their temporaries are
# `.<name>.<random>.tmp`, see maskrcnn.io_utils).
OUTPUT_NAMES = (LAST_NAME, BEST_NAME, FINAL_NAME, "config.yaml", "metrics.jsonl", "summary.json", "loss_curve.png")


def unwrap_model(model: nn.Module) -> nn.Module:
    """The plain model inside a DistributedDataParallel (or the model itself)."""
    return model.module if hasattr(model, "module") and isinstance(model.module, nn.Module) else model


def capture_rng_state() -> dict[str, Any]:
    """This process's random generators: python, numpy, torch CPU and (if present) CUDA."""
    kind, keys, pos, has_gauss, cached_gaussian = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gaussian),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Put back generators saved by `capture_rng_state`."""
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    np_state = state["numpy"]
    np.random.set_state(
        (
            np_state["kind"],
            np_state["keys"].numpy().astype(np.uint32),
            np_state["pos"],
            np_state["has_gauss"],
            np_state["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)


def model_checkpoint(model: nn.Module, cfg: Config, **extra: Any) -> dict[str, Any]:
    """The native checkpoint dict: format tag, config, CPU state dict and its checksum, then `extra`."""
    state_dict = {k: v.detach().cpu() for k, v in unwrap_model(model).state_dict().items()}
    return native_checkpoint(state_dict, cfg, **extra)


def save_checkpoint(path: str | Path, checkpoint: dict[str, Any]) -> None:
    """Write atomically (temporary file, fsync, rename). A full disk raises DiskFullError
    (one line: the folder, the space needed) and leaves the previous file as it was."""
    try:
        atomic_torch_save(checkpoint, path)
    except DiskFullError as exc:
        if Path(path).name != LAST_NAME or not Path(path).is_file():
            raise
        raise DiskFullError(exc.situation, "free some space, then continue the run from it with --resume") from None


def remove_stale_temporaries(folder: str | Path, names: tuple[str, ...] = OUTPUT_NAMES) -> list[Path]:
    """Delete `.<name>.<random>.tmp` files that a killed run left in `folder` for one of
    `names` (only the trainer's own pattern: nothing else is touched). Returns them."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    pattern = re.compile(r"^\.(" + "|".join(re.escape(n) for n in names) + r")\.[A-Za-z0-9_]+\.tmp$")
    removed = []
    for path in sorted(folder.iterdir()):
        if pattern.match(path.name) and path.is_file():
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def load_training_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a training checkpoint, with one clear error when it is not one."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no checkpoint to resume from (train without resume to start a new run)")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same message
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not a maskrcnn checkpoint (expected a dict with format={CHECKPOINT_FORMAT!r})")
    missing = [k for k in ("model", "config", "iteration", "optimizer", "scheduler", "rng") if k not in checkpoint]
    if missing:
        raise CheckpointError(f"{path}: a model-only checkpoint, not a training checkpoint (missing {missing})")
    verify_checksum(checkpoint, path)
    return checkpoint


def check_same_model_config(checkpoint_config: dict[str, Any], cfg: Config, path: str | Path) -> None:
    """Resuming needs the same model; name the first differing `model.*` fields."""
    current = config_to_dict(cfg)["model"]
    stored = checkpoint_config.get("model", {})
    differences: list[str] = []

    def compare(a: Any, b: Any, where: str) -> None:
        if isinstance(a, dict) and isinstance(b, dict):
            for key in sorted(set(a) | set(b)):
                compare(a.get(key), b.get(key), f"{where}.{key}")
        elif a != b:
            differences.append(f"{where}: checkpoint {a!r}, config {b!r}")

    compare(stored, current, "model")
    if differences:
        shown = "; ".join(differences[:3])
        raise CheckpointError(f"{path}: the checkpoint's model differs from the config ({shown})")


def weights_fingerprint(model: nn.Module, *, parameters_only: bool = False) -> str:
    """SHA-256 over the state dict (names, shapes and exact bytes) to compare replicas.

    `parameters_only` leaves out buffers: under DDP, BatchNorm running statistics are
    updated by each process from its own batch (rank 0's are broadcast at the start of
    every forward and saved), so only the parameters are identical across processes."""
    module = unwrap_model(model)
    return state_dict_sha256(dict(module.named_parameters()) if parameters_only else module.state_dict())


# ---------------------------------------------------------------------------------------
# The data position: the order of each pass is a function of (seed, pass), so a
# resumed run rebuilds it and skips the batches already used
# ---------------------------------------------------------------------------------------


def epoch_batches(loader: DataLoader, epoch: int, seed: int) -> list[list[int]]:
    """The batches (dataset indices) of pass `epoch`, without loading any image.

    Samplers with `set_epoch` (DistributedSampler, grouped samplers) get it; samplers
    that draw from torch's global generator draw from one seeded with (seed, epoch) and
    the caller's generator is left untouched."""
    if loader.batch_sampler is None:
        raise ValueError("training loader: expected a loader with a batch sampler (batch_size set)")
    for part in (loader.sampler, loader.batch_sampler, getattr(loader.batch_sampler, "sampler", None)):
        if hasattr(part, "set_epoch"):
            part.set_epoch(epoch)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed * 1_000_003 + epoch)
        return [list(batch) for batch in loader.batch_sampler]


def cycle_batches(loader: DataLoader, *, seed: int, start_epoch: int = 0, start_batch: int = 0) -> Iterator[tuple[int, int, Any]]:
    """Yield (epoch, batch index within the epoch, batch) forever, from a position."""
    for earlier in range(start_epoch):  # replay orders of samplers that keep their own state
        epoch_batches(loader, earlier, seed)
    epoch, skip = start_epoch, start_batch
    while True:
        batches = epoch_batches(loader, epoch, seed)
        if not batches:
            raise ValueError("data.train: the training set gives no batches (is it empty?)")
        remaining = batches[skip:]
        if remaining:
            part = DataLoader(
                loader.dataset,
                batch_sampler=remaining,
                collate_fn=loader.collate_fn,
                num_workers=loader.num_workers,
                pin_memory=loader.pin_memory,
                worker_init_fn=loader.worker_init_fn,
                generator=torch.Generator().manual_seed(seed * 7919 + epoch * 104729 + skip),
            )
            for offset, batch in enumerate(part):
                yield epoch, skip + offset, batch
        epoch, skip = epoch + 1, 0
