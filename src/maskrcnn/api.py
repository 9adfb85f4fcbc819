"""Thin Python entry points: `maskrcnn.train(...)` and `maskrcnn.evaluate(...)`.

They do what `maskrcnn train` and `maskrcnn evaluate` do, without printing tables.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from maskrcnn.commands.evaluate import evaluate_metrics
from maskrcnn.config import Config, apply_override, load_config
from maskrcnn.engine.train import train as train_loop
from maskrcnn.engine.train import with_init_weights


def train(
    config: Any = "shapes_demo",
    *,
    overrides: Sequence[str] = (),
    resume: bool = False,
    output_dir: str | Path | None = None,
    device: str | None = None,
    init_weights: str | Path | None = None,
) -> dict[str, Any]:
    """Train from a Config, a built-in config name or a YAML path (plus `key=value`
    overrides); returns the training summary (checkpoints, times, last evaluation).
    `init_weights` starts a new run from a weights file (not with `resume`)."""
    cfg = config if isinstance(config, Config) else load_config(str(config), list(overrides))
    if isinstance(config, Config):
        for item in overrides:
            cfg = apply_override(cfg, item)
    if output_dir is not None:
        cfg = apply_override(cfg, f"train.output_dir={output_dir}")
    if device is not None:
        cfg = apply_override(cfg, f"train.device={device}")
    cfg = with_init_weights(cfg, str(init_weights) if init_weights else None, resume=resume)
    return train_loop(cfg, resume=resume)


def evaluate(
    annotations: str | Path,
    *,
    weights: str | Path | None = None,
    images: str | Path | None = None,
    predictions: str | Path | None = None,
    config: str | None = None,
    device: str = "auto",
    batch_size: int = 1,
    score_threshold: float | None = None,
    max_dets: int | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """COCO bbox/segm AP (and the Data Science Bowl score) of a checkpoint run on `images`,
    or of a COCO results file `predictions`, against the COCO JSON `annotations`.
    `score_threshold`: the DSB score's (None: the config's evaluation.dsb_score_threshold);
    `max_dets`: a COCO maxDets reported beside 100 (None: the model's detections_per_img)."""
    return evaluate_metrics(
        annotations=annotations,
        weights=weights,
        images=images,
        predictions=predictions,
        config=config,
        device=device,
        batch_size=batch_size,
        score_threshold=score_threshold,
        max_dets=max_dets,
        progress=progress,
    )
