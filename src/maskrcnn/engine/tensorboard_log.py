"""TensorBoard event files for a training run (`train.tensorboard: true`).

The run's metrics log is replaced by one that writes each record to metrics.jsonl as before
and, beside it, to TensorBoard (`torch.utils.tensorboard.SummaryWriter`, event files in
the run folder, so `tensorboard --logdir runs/` shows one run per folder):

    train/<name>   every number of a training record: the losses, lr, time_per_iter, data_time
    eval/<name>    every number of an evaluation record: bbox_AP, segm_AP, ..., val_loss_*
    val/<file>     at each evaluation, the first VALIDATION_PICTURES validation images with the
                   model's predictions (score >= PICTURE_SCORE_THRESHOLD) against the ground
                   truth: matched in green, missed in red, false positives in magenta
                   (visualize/overlays.draw_gt_vs_pred)

Steps are iterations. A resumed run purges the events after its checkpoint's iteration,
as metrics.jsonl drops its records after it. Only the main process writes; every process
checks that TensorBoard is installed, so that all of them stop together when it is not.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from maskrcnn.engine.metrics import MetricsLog
from maskrcnn.engine.run_setup import TrainingRun
from maskrcnn.errors import UserError
from maskrcnn.model.build import inner_model
from maskrcnn.visualize.overlays import draw_gt_vs_pred
from maskrcnn.visualize.panels import display_scale

VALIDATION_PICTURES = 3
PICTURE_SCORE_THRESHOLD = 0.5
SCALAR_SECTIONS = {"train": "train", "eval": "eval"}  # record type -> tag prefix
# numbers of a record that are settings or counts, not curves worth plotting
NOT_PLOTTED = frozenset({"type", "iteration", "dsb_score_threshold", "mask_threshold", "num_images"})


class MissingTensorBoardError(UserError):
    """train.tensorboard is on but the tensorboard package is not installed."""


def summary_writer_class() -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise MissingTensorBoardError(
            "train.tensorboard: true needs the tensorboard package: pip install 'maskrcnn[tensorboard]'"
        ) from None
    return SummaryWriter


class ValidationPictures:
    """Draws the model's predictions on the first few validation images."""

    def __init__(self, dataset: Any, device: torch.device, class_names: list[str] | None, count: int) -> None:
        self.dataset, self.device, self.class_names = dataset, device, class_names
        self.indices = list(range(min(count, len(dataset)))) if dataset is not None else []

    @torch.no_grad()
    def draw(self, model: nn.Module) -> Iterator[tuple[str, np.ndarray]]:
        """(tag, (H, W, 3) uint8 picture) per image; the model's mode and the random state are kept."""
        if not self.indices:
            return
        base = inner_model(model)
        mask_threshold = base.mask_threshold if base is not None else 0.5
        was_training = model.training
        saved_transforms = getattr(self.dataset, "transforms", None)
        self.dataset.transforms = None  # the images as evaluated, not augmented
        try:
            model.eval()
            with torch.random.fork_rng(devices=[]):
                for index in self.indices:
                    image, targets, info = self.dataset[index]
                    detections = model([image.to(self.device)])[0].to("cpu")
                    keep = detections.scores >= PICTURE_SCORE_THRESHOLD  # (N,)
                    pixels = (image.permute(1, 2, 0).clamp(0, 1) * 255).round().to(torch.uint8).numpy()  # (H, W, 3)
                    masks = detections.masks[keep] > mask_threshold if detections.masks is not None else None
                    picture = draw_gt_vs_pred(
                        pixels, targets.boxes, targets.masks, detections.boxes[keep], detections.scores[keep], masks,
                        gt_labels=targets.labels, pred_labels=detections.labels[keep], class_names=self.class_names,
                        scale=display_scale(*pixels.shape[:2], target=256),
                    )
                    yield f"val/{info.get('file_name', index)}", picture
        finally:
            self.dataset.transforms = saved_transforms
            model.train(was_training)


class TensorBoardMetricsLog(MetricsLog):
    """metrics.jsonl plus TensorBoard: each record's numbers as scalars; pictures at each evaluation."""

    def __init__(self, inner: MetricsLog, writer: Any, model: nn.Module, pictures: ValidationPictures) -> None:
        super().__init__(inner.path, enabled=inner.enabled)
        self.writer, self.model, self.pictures = writer, model, pictures

    def write(self, record: dict[str, Any]) -> None:
        super().write(record)
        section = SCALAR_SECTIONS.get(record.get("type", ""))
        step = record.get("iteration")
        if section is None or not isinstance(step, int):
            return
        for name, value in record.items():
            if name not in NOT_PLOTTED and isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(f"{section}/{name}", value, step)
        if section == "eval":
            for tag, picture in self.pictures.draw(self.model):
                self.writer.add_image(tag, picture, step, dataformats="HWC")
        self.writer.flush()


@contextlib.contextmanager
def tensorboard_logging(run: TrainingRun) -> Iterator[None]:
    """While open, run.metrics_log also writes TensorBoard events (when train.tensorboard is on)."""
    if not run.cfg.train.tensorboard:
        yield
        return
    writer_class = summary_writer_class()  # every process: a missing package stops them all
    if not run.info.is_main:
        yield
        return
    purge = run.position.iteration if run.resumed_from is not None else None
    writer = writer_class(log_dir=str(run.out), purge_step=purge)
    pictures = ValidationPictures(run.val_set, run.device, run.extra.get("class_names"), VALIDATION_PICTURES)
    plain_log = run.metrics_log
    run.metrics_log = TensorBoardMetricsLog(plain_log, writer, run.model, pictures)
    try:
        yield
    finally:
        run.metrics_log = plain_log
        writer.close()
