"""`maskrcnn demo`: the whole system end to end on generated shapes, sized for a CPU.

    1. generate a seeded shapes data set (train + val) into OUTPUT/data/
    2. train the `shapes_demo` recipe (progress bar; checkpoints, metrics.jsonl, loss_curve.png)
    3. evaluate on the validation images (COCO bbox / segm AP, Data Science Bowl score)
    4. draw overlays of validation predictions and ground-truth-vs-prediction views
    5. write OUTPUT/metrics.json and print a short table of figures and file locations

Options make it longer or larger: --iters (the LR schedule's steps scale with it),
--train-images, --val-images, --image-size (the model's input size, anchor sizes and RoI level scale
with it), --set key=value for anything else (applied last).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from maskrcnn.checkpoints import load_model
from maskrcnn.commands.evaluate import format_metrics_table
from maskrcnn.config import Config, ConfigError, apply_override, load_config
from maskrcnn.data.build import ensure_shapes
from maskrcnn.data.coco import CocoDataset
from maskrcnn.devices import resolve_device
from maskrcnn.engine.train import train
from maskrcnn.evaluation.model_eval import evaluate_model
from maskrcnn.inference.predictor import Predictor
from maskrcnn.io_utils import atomic_write_json
from maskrcnn.model.build import with_test_augment
from maskrcnn.model.mask_rcnn import MaskRCNN
from maskrcnn.visualize.overlays import draw_gt_vs_pred, draw_instances
from maskrcnn.visualize.panels import (
    display_scale,
    save_image,
    side_by_side,
    with_title,
)

RECIPE = "shapes_demo"


def demo_config(
    *,
    output: str | Path,
    iters: int | None = None,
    train_images: int | None = None,
    val_images: int | None = None,
    image_size: int | None = None,
    overrides: Sequence[str] = (),
    device: str = "auto",
    seed: int = 0,
) -> Any:
    """The `shapes_demo` recipe with the demo's paths and options applied (a Config)."""
    cfg = load_config(RECIPE)
    out = Path(output)
    for name, split in (("train", cfg.data.train), ("val", cfg.data.val)):
        split.kind = "shapes"
        split.annotations = str(out / "data" / f"{name}.json")
        split.images = ""
        split.seed = split.seed + seed
    cfg.train.output_dir = str(out)
    cfg.train.device = device
    cfg.train.seed = cfg.train.seed + seed
    if iters is not None:
        if iters < 1:
            raise ConfigError(f"--iters: expected a positive number of iterations, got {iters}")
        factor = iters / max(1, cfg.solver.max_iter)
        cfg.solver.steps = [max(1, round(step * factor)) for step in cfg.solver.steps]
        cfg.solver.warmup_iters = min(cfg.solver.warmup_iters, max(0, iters // 4))
        cfg.solver.max_iter = iters
    if train_images is not None:
        cfg.data.train.num_images = train_images
    if val_images is not None:
        cfg.data.val.num_images = val_images
    if image_size is not None:
        if image_size < 32:
            raise ConfigError(f"--image-size: expected at least 32 pixels, got {image_size}")
        factor = image_size / cfg.data.train.image_size
        cfg.data.train.image_size = cfg.data.val.image_size = image_size
        cfg.model.transform.min_size = [round(s * factor) for s in cfg.model.transform.min_size]
        cfg.model.transform.max_size = round(cfg.model.transform.max_size * factor)
        cfg.model.anchors.sizes = [[s * factor for s in level] for level in cfg.model.anchors.sizes]
        # RoIs pick their FPN level by size relative to this scale: it grows with the image too.
        cfg.model.roi_heads.canonical_scale = max(1, round(cfg.model.roi_heads.canonical_scale * factor))
    for name, split in (("train", cfg.data.train), ("val", cfg.data.val)):
        if split.num_images < 1:
            raise ConfigError(f"--{name}-images: expected at least 1 image, got {split.num_images}")
    for item in overrides:
        cfg = apply_override(cfg, item)
    return cfg


def _pictures(
    model: Any, dataset: Any, *, device: Any, count: int, out_dir: Path, class_names: list[str] | None,
    score_threshold: float = 0.5, test_augment: str = "none",
) -> list[Path]:
    """Overlays of the first `count` validation images: predictions, and predictions vs ground truth."""
    predictor = Predictor(
        model, class_names=class_names, score_threshold=score_threshold, device=device, test_augment=test_augment
    )
    written: list[Path] = []
    panels: list[np.ndarray] = []
    for index in range(min(count, len(dataset))):
        image = dataset.load_image(index)  # (H, W, 3) uint8
        targets = dataset.load_targets(index)
        result = predictor(image)
        scale = display_scale(*image.shape[:2], target=384)
        stem = Path(dataset.image_info(index)["file_name"]).stem
        picture = draw_instances(
            image, result["boxes"], result["labels"], result["scores"], result["masks"], class_names, scale=scale
        )
        versus = draw_gt_vs_pred(
            image, targets.boxes, targets.masks, result["boxes"], result["scores"], result["masks"],
            gt_labels=targets.labels, pred_labels=result["labels"], class_names=class_names, scale=scale,
        )
        for suffix, array in (("pred", picture), ("vs_gt", versus)):
            path = out_dir / f"{stem}_{suffix}.png"
            save_image(path, array)
            written.append(path)
        panels.append(
            side_by_side(
                with_title(picture, f"{stem}: predictions (score >= {score_threshold:g})"),
                with_title(versus, "predictions vs ground truth"),
            )
        )
    if panels:
        sheet_path = out_dir.parent / "overlays.png"
        save_image(sheet_path, _stack_rows(panels[:4]))
        written.insert(0, sheet_path)
    return written


def _stack_rows(rows: list[np.ndarray], gap: int = 6) -> np.ndarray:
    width = max(r.shape[1] for r in rows)
    height = sum(r.shape[0] for r in rows) + gap * (len(rows) - 1)
    sheet = np.full((height, width, 3), 255, dtype=np.uint8)
    y = 0
    for row in rows:
        sheet[y : y + row.shape[0], : row.shape[1]] = row
        y += row.shape[0] + gap
    return sheet


def _print_table(metrics: dict[str, Any], files: dict[str, str]) -> None:
    print()
    print(format_metrics_table(metrics))
    print()
    timing = [
        ("data generation", metrics.get("data_time_s")),
        ("training iterations", metrics.get("train_time_s")),
        ("setup + final evaluation", metrics.get("train_other_time_s")),
        ("overlay pictures", metrics.get("pictures_time_s")),
        ("total", metrics.get("total_time_s")),
    ]
    for name, seconds in timing:
        if isinstance(seconds, (int, float)):
            print(f"{name + ' time':<32}{seconds:8.1f} s")
    print()
    for name, path in files.items():
        print(f"{name:<32}{path}")


@dataclass
class DemoPhases:
    """Seconds spent in each phase of the demo."""

    data: float = 0.0
    train_call: float = 0.0  # the training loop, plus model build, final evaluation, saving
    pictures: float = 0.0


@dataclass
class FinalModel:
    model: MaskRCNN  # read back from the run's final checkpoint
    test_augment: str  # its model.test_augment
    metrics: dict[str, Any]  # on the validation set


def evaluate_final_model(
    cfg: Config, summary: dict[str, Any], val_set: CocoDataset, device: torch.device
) -> FinalModel:
    """The trained model read back from its checkpoint, its test-time augmentation, and its
    metrics: those of the training loop's final evaluation, or evaluated now if it had none."""
    final_checkpoint = Path(summary.get("final_checkpoint") or Path(cfg.train.output_dir) / "model_final.pt")
    model, model_cfg = load_model(final_checkpoint, device=device)
    test_augment = model_cfg.model.test_augment
    metrics = dict(summary.get("last_eval") or {})
    if "segm_AP" not in metrics:
        metrics, _results = evaluate_model(
            with_test_augment(model, test_augment), val_set, device=device, batch_size=1, progress=True,
            dsb_score_threshold=cfg.evaluation.dsb_score_threshold,
        )
    return FinalModel(model, test_augment, metrics)


def demo_record(
    cfg: Config, metrics: dict[str, Any], summary: dict[str, Any], phases: DemoPhases, device: torch.device, total: float
) -> dict[str, Any]:
    """What OUTPUT/metrics.json holds: the metrics, the time of each phase and the run's settings."""
    record: dict[str, Any] = {
        k: (v if isinstance(v, int) else float(v))
        for k, v in metrics.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool)
    }
    record.update(
        {
            "train_time_s": summary.get("train_time_s"),
            "train_other_time_s": round(phases.train_call - float(summary.get("train_time_s") or 0.0), 2),
            "data_time_s": round(phases.data, 2),
            "pictures_time_s": round(phases.pictures, 2),
            "total_time_s": round(total, 2),
            "iterations": summary.get("iterations", cfg.solver.max_iter),  # run: fewer when the time budget cut the plan
            "train_images": cfg.data.train.num_images,
            "val_images": cfg.data.val.num_images,
            "image_size": cfg.data.train.image_size,
            "device": str(device),
            "torch_threads": torch.get_num_threads(),
            "recipe": RECIPE,
            "checkpoint": str(summary.get("final_checkpoint") or Path(cfg.train.output_dir) / "model_final.pt"),
        }
    )
    return record


def run_demo(
    *,
    output: str | Path = "runs/demo",
    iters: int | None = None,
    train_images: int | None = None,
    val_images: int | None = None,
    image_size: int | None = None,
    overrides: Sequence[str] = (),
    device: str = "auto",
    seed: int = 0,
    num_overlays: int = 6,
) -> dict[str, Any]:
    """Run the demo: data, training, evaluation, pictures; returns the metrics written to OUTPUT/metrics.json."""
    started = time.perf_counter()
    cfg = demo_config(
        output=output, iters=iters, train_images=train_images, val_images=val_images,
        image_size=image_size, overrides=overrides, device=device, seed=seed,
    )
    out = Path(cfg.train.output_dir)
    resolved = resolve_device(cfg.train.device)
    budget = f" within {cfg.solver.max_time_s:g} s of training" if cfg.solver.max_time_s > 0 else ""
    print(
        f"maskrcnn demo: {cfg.data.train.num_images} training + {cfg.data.val.num_images} validation shapes "
        f"images of {cfg.data.train.image_size} px, {cfg.solver.max_iter} iterations{budget} on {resolved} "
        f"(torch threads: {torch.get_num_threads()}); output in {out}/"
    )
    phases = DemoPhases()
    tick = time.perf_counter()
    train_json, _ = ensure_shapes(cfg.data.train, "data.train")
    val_json, val_images_dir = ensure_shapes(cfg.data.val, "data.val")
    phases.data = time.perf_counter() - tick
    print(f"data: {train_json} and {val_json} ({phases.data:.1f} s)")

    tick = time.perf_counter()
    summary = train(cfg)
    phases.train_call = time.perf_counter() - tick

    tick = time.perf_counter()
    val_set = CocoDataset(val_json, val_images_dir)
    final = evaluate_final_model(cfg, summary, val_set, resolved)
    pictures = _pictures(
        final.model, val_set, device=resolved, count=num_overlays, out_dir=out / "overlays",
        class_names=list(val_set.class_names), test_augment=final.test_augment,
    )
    phases.pictures = time.perf_counter() - tick

    record = demo_record(cfg, final.metrics, summary, phases, resolved, time.perf_counter() - started)
    metrics_path = out / "metrics.json"
    atomic_write_json(metrics_path, record)
    files = {
        "checkpoint": record["checkpoint"],
        "metrics": str(metrics_path),
        "training log": str(out / "metrics.jsonl"),
        "loss plot": str(out / "loss_curve.png"),
        "overlays": str(pictures[0]) if pictures else "(none)",
        "per-image overlays": f"{out / 'overlays'}/ ({max(0, len(pictures) - 1)} files)",
    }
    _print_table(record, files)
    return record
