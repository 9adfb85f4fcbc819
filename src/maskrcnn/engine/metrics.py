"""Training metrics: running averages for the progress bar, `metrics.jsonl`, and the
evaluation made during training (COCO AP + validation loss).

`metrics.jsonl` holds one JSON object per line. Training records:
    {"type": "train", "iteration": 20, "loss_total": 1.9, "loss_classifier": 0.4, ...,
     "lr": 0.01, "time_per_iter": 0.35, "data_time": 0.02}
where the loss values are averaged over the iterations since the previous record and
over all processes. Evaluation records:
    {"type": "eval", "iteration": 200, "bbox_AP": 0.61, "segm_AP": 0.58, ...,
     "val_loss_total": 0.9, "val_loss_mask": 0.2, ...}
"""

from __future__ import annotations

import json
import math
import time
from collections import defaultdict, deque
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from maskrcnn.evaluation.coco_metrics import DEFAULT_DSB_SCORE_THRESHOLD
from maskrcnn.evaluation.model_eval import evaluate_model
from maskrcnn.io_utils import atomic_write_text
from maskrcnn.model.build import with_test_augment


class WindowAverages:
    """Per-name averages: over the last `window` values (for display) and since `reset`."""

    def __init__(self, window: int = 20) -> None:
        self.window = window
        self._recent: dict[str, deque[float]] = defaultdict(lambda: deque(maxlen=self.window))
        self._sums: dict[str, float] = defaultdict(float)
        self._counts: dict[str, int] = defaultdict(int)

    def update(self, values: dict[str, float]) -> None:
        for name, value in values.items():
            self._recent[name].append(float(value))
            self._sums[name] += float(value)
            self._counts[name] += 1

    def recent(self) -> dict[str, float]:
        """Mean of the last `window` values of each name."""
        return {name: sum(vals) / len(vals) for name, vals in self._recent.items() if vals}

    def since_reset(self) -> dict[str, float]:
        """Mean of every value given since the last `reset` (names with values only)."""
        return {name: self._sums[name] / n for name, n in self._counts.items() if n}

    def reset(self) -> None:
        self._sums.clear()
        self._counts.clear()


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN/inf; keep the fact readable
    return value


class MetricsLog:
    """Appends records to `<output_dir>/metrics.jsonl`; a no-op when `enabled` is False
    (every process but rank 0)."""

    def __init__(self, path: str | Path, *, enabled: bool = True) -> None:
        self.path = Path(path)
        self.enabled = enabled

    def start_fresh(self) -> None:
        """A new run: an empty file."""
        if self.enabled:
            atomic_write_text(self.path, "")

    def truncate_after(self, iteration: int) -> None:
        """A resumed run: drop records written after the checkpoint it resumes from,
        so the file never holds two records for the same iteration."""
        if not self.enabled:
            return
        if not self.path.is_file():
            atomic_write_text(self.path, "")
            return
        kept = []
        for line in self.path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a kill
            if isinstance(record, dict) and record.get("iteration", 0) <= iteration:
                kept.append(line)
        atomic_write_text(self.path, "".join(f"{line}\n" for line in kept))

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        line = json.dumps({k: _json_safe(v) for k, v in record.items()})
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line + "\n")
            f.flush()


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """All complete records of a metrics.jsonl file (a cut-short last line is skipped)."""
    records = []
    for line in Path(path).read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


# ---------------------------------------------------------------------------------------
# Evaluation during training
# ---------------------------------------------------------------------------------------

_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


@torch.no_grad()
def validation_loss(model: nn.Module, loader: Iterable, device: torch.device) -> dict[str, float]:
    """Mean training losses over the validation batches, without learning anything.

    The losses exist only in training mode, so the model runs in training mode under
    no_grad, but with every BatchNorm switched to eval mode: it normalizes with its
    running statistics and does not update them (frozen BatchNorm never updates). The
    random proposal/RoI sampling of training mode draws from torch's generator: call this
    inside `torch.random.fork_rng` to leave the training run's random stream untouched.
    Images run one at a time: training mode matches every anchor against every object,
    and two dense 2000 px images at once took 10 GB (the nuclei recipe's doubled 1000 px
    images); the figure is the mean over images.
    """
    was_training = model.training
    model.train()
    norms = [m for m in model.modules() if isinstance(m, _BATCH_NORMS)]
    for norm in norms:
        norm.eval()
    sums: dict[str, float] = {}
    images_seen = 0
    try:
        for images, targets, _infos in loader:
            for image, target in zip(images, targets):
                losses = model([image.to(device)], [target.to(device)])
                for name, value in losses.items():
                    sums[name] = sums.get(name, 0.0) + float(value)
                images_seen += 1
    finally:
        model.train(was_training)
    if not images_seen:
        return {}
    means = {f"val_{name}": total / images_seen for name, total in sums.items()}
    means["val_loss_total"] = sum(sums.values()) / images_seen
    return means


def run_evaluation(
    model: nn.Module,
    dataset: Any,
    loader: Iterable | None,
    *,
    device: torch.device,
    iteration: int,
    dsb_score_threshold: float | None = None,
    test_augment: str = "none",
) -> dict[str, Any]:
    """COCO bbox/segm AP on `dataset` plus the validation loss, as one metrics record.
    It runs the plain model being trained, not the prepared one of `maskrcnn predict` /
    `maskrcnn evaluate` (see evaluate_model: the figures can differ slightly).
    Runs under a forked random generator so that evaluating (or not) never changes the
    training run that follows. `dsb_score_threshold`: the config's
    evaluation.dsb_score_threshold (None: its default); COCO maxDets follows the model's
    detections_per_img (see evaluate_model)."""
    if dsb_score_threshold is None:
        dsb_score_threshold = DEFAULT_DSB_SCORE_THRESHOLD
    devices = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    started = time.perf_counter()
    with torch.random.fork_rng(devices=devices):
        metrics, _results = evaluate_model(
            with_test_augment(model, test_augment), dataset, device=device, batch_size=1, progress=False, dsb_score_threshold=dsb_score_threshold
        )
        losses = validation_loss(model, loader, device) if loader is not None else {}
    record: dict[str, Any] = {"type": "eval", "iteration": iteration}
    record.update({k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))})
    record.update(losses)
    record["eval_time_s"] = round(time.perf_counter() - started, 3)
    return record
