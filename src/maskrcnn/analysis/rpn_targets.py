"""The RPN's training targets for one image, drawn (`maskrcnn analyze rpn-targets`).

Shape glossary: G ground-truth boxes; T anchors of the image over all levels.

The image is resized as the model's transform does at test time; every anchor gets the
label the RPN would train it with: the Matcher (IoU >= rpn.fg_iou_thresh positive,
< rpn.bg_iou_thresh negative, in between ignored; with allow_low_quality_matches each
box's best anchors are positive too), then `sample_balanced` picks
rpn.batch_size_per_image anchors with at most rpn.positive_fraction positives.
The picture shows every positive anchor (sampled: solid, not sampled: dashed), the
sampled negatives, a seeded random subset of the ignored anchors, and the boxes.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from maskrcnn.analysis.anchor_stats import load_image_boxes
from maskrcnn.analysis.errors import AnalysisError
from maskrcnn.analysis.geometry import (
    AnchorLayout,
    ResizedGeometry,
    resized_geometry,
    scale_boxes,
)
from maskrcnn.config import ModelConfig
from maskrcnn.data.images import read_image
from maskrcnn.ops.boxes import box_iou
from maskrcnn.ops.matcher import Matcher
from maskrcnn.ops.sampler import sample_balanced

COLOURS = {"positive": "#2ca02c", "negative": "#1f77b4", "ignored": "#ff7f0e", "ground truth": "#d62728"}


def label_anchors(anchors: Tensor, gt_boxes: Tensor, model_cfg: ModelConfig) -> tuple[Tensor, Tensor]:
    """(T, 4) anchors, (G, 4) boxes -> labels (T,) 1 / 0 / -1 and matched box index (T,) (-1 / -2 if none)."""
    rpn = model_cfg.rpn
    matcher = Matcher(rpn.fg_iou_thresh, rpn.bg_iou_thresh, rpn.allow_low_quality_matches)
    matched = matcher(box_iou(gt_boxes, anchors))  # (G, T) -> (T,)
    labels = torch.zeros_like(matched)
    labels[matched >= 0] = 1
    labels[matched == Matcher.BETWEEN_THRESHOLDS] = -1
    return labels, matched


def rpn_targets(image_hw: tuple[int, int], boxes: np.ndarray, model_cfg: ModelConfig, seed: int = 0) -> dict[str, Any]:
    """Labels and the sampled anchors for one image with (G, 4) xyxy boxes in original pixels."""
    height, width = image_hw
    geometry = resized_geometry(height, width, model_cfg)
    gt = scale_boxes(torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4), (height, width), geometry)
    layout = AnchorLayout(model_cfg)
    per_level = layout.anchors(geometry.padded)
    anchors = torch.cat(per_level)  # (T, 4)
    level_of = torch.cat([torch.full((len(a),), i) for i, a in enumerate(per_level)])  # (T,)
    labels, _ = label_anchors(anchors, gt, model_cfg)
    generator = torch.Generator().manual_seed(seed)
    pos, neg = sample_balanced(labels, model_cfg.rpn.batch_size_per_image, model_cfg.rpn.positive_fraction, generator)
    levels = []
    for i, name in enumerate(layout.level_names):
        on_level = level_of == i
        levels.append(
            dict(level=name, anchors=int(on_level.sum()), positive=int((labels[on_level] == 1).sum()),
                 negative=int((labels[on_level] == 0).sum()), ignored=int((labels[on_level] == -1).sum()),
                 sampled_positive=int((level_of[pos] == i).sum()), sampled_negative=int((level_of[neg] == i).sum()))
        )  # fmt: skip
    counts = dict(
        anchors=int(len(anchors)), positive=int((labels == 1).sum()), negative=int((labels == 0).sum()),
        ignored=int((labels == -1).sum()), sampled_positive=int(len(pos)), sampled_negative=int(len(neg)),
    )  # fmt: skip
    return {
        "geometry": geometry,
        "gt_boxes": gt,
        "anchors": anchors,
        "labels": labels,
        "sampled_positive": pos,
        "sampled_negative": neg,
        "counts": counts,
        "levels": levels,
    }


def draw_rpn_targets(
    image: np.ndarray, geometry: ResizedGeometry, targets: dict[str, Any], max_ignored: int = 100, seed: int = 0
) -> bytes:
    """PNG bytes of the resized image with ground truth and labelled anchors."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Rectangle
    from PIL import Image

    new_h, new_w = geometry.resized
    resized = np.asarray(Image.fromarray(image).resize((new_w, new_h), Image.BILINEAR))
    anchors, labels, counts = targets["anchors"], targets["labels"], targets["counts"]
    pos_sampled = set(targets["sampled_positive"].tolist())
    ignored = torch.where(labels == -1)[0]
    if len(ignored) > max_ignored:
        pick = torch.randperm(len(ignored), generator=torch.Generator().manual_seed(seed))[:max_ignored]
        ignored = ignored[pick]

    scale = 9.0 / max(new_h, new_w)
    fig = Figure(figsize=(max(new_w * scale, 4.0) + 3.2, max(new_h * scale, 4.0)), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.0, 0.0, 1.0 - 3.2 / (max(new_w * scale, 4.0) + 3.2), 1.0))
    ax.imshow(resized)

    def box(b: list[float], colour: str, width: float, style: str = "-", alpha: float = 1.0) -> None:
        ax.add_patch(Rectangle((b[0], b[1]), b[2] - b[0], b[3] - b[1], fill=False, edgecolor=colour,
                               linewidth=width, linestyle=style, alpha=alpha))  # fmt: skip

    for i in ignored.tolist():
        box(anchors[i].tolist(), COLOURS["ignored"], 0.6, alpha=0.5)
    for i in targets["sampled_negative"].tolist():
        box(anchors[i].tolist(), COLOURS["negative"], 0.6, alpha=0.7)
    for i in torch.where(labels == 1)[0].tolist():
        box(anchors[i].tolist(), COLOURS["positive"], 1.8, "-" if i in pos_sampled else "--")
    for b in targets["gt_boxes"].tolist():
        box(b, COLOURS["ground truth"], 2.4)
    ax.set_xlim(-0.5, new_w - 0.5)
    ax.set_ylim(new_h - 0.5, -0.5)
    ax.axis("off")
    legend = [
        Line2D([], [], color=COLOURS["ground truth"], lw=2.4, label=f"ground truth: {len(targets['gt_boxes'])}"),
        Line2D([], [], color=COLOURS["positive"], lw=1.8,
               label=f"positive: {counts['positive']}\n(sampled {counts['sampled_positive']}: solid)"),
        Line2D([], [], color=COLOURS["negative"], lw=1.0,
               label=f"negative: {counts['negative']}\n(sampled {counts['sampled_negative']}: drawn)"),
        Line2D([], [], color=COLOURS["ignored"], lw=1.0,
               label=f"ignored: {counts['ignored']}\n(drawn {len(ignored)})"),
    ]  # fmt: skip
    fig.legend(handles=legend, loc="center right", fontsize=9, frameon=False,
               title=f"{counts['anchors']} anchors", title_fontsize=10)  # fmt: skip
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def load_annotated_image(
    annotations: str | Path, image_path: str | Path | None, images_dir: str | Path | None
) -> tuple[np.ndarray, np.ndarray, str]:
    """(H, W, 3) image, its (G, 4) xyxy boxes and name: `image_path` looked up by file name in the
    COCO JSON, or the JSON's first image (read from `images_dir`, else beside the JSON) when None."""
    images, _ = load_image_boxes(annotations, images_dir)
    if not images:
        raise AnalysisError(f"{annotations}: holds no images")
    if image_path is None:
        entry = images[0]
        folder = Path(images_dir) if images_dir else Path(annotations).parent
        candidates = [folder / entry.file_name, folder / "images" / entry.file_name]
        path = next((c for c in candidates if c.is_file()), candidates[0])
    else:
        path = Path(image_path)
        matches = [im for im in images if Path(im.file_name).name == path.name]
        if not matches:
            raise AnalysisError(f"{annotations}: no image with file name {path.name!r} (for --image {path})")
        entry = matches[0]
    pixels = read_image(path)
    if pixels.shape[:2] != (entry.height, entry.width):
        raise AnalysisError(
            f"{path}: image is {pixels.shape[0]}x{pixels.shape[1]} but {annotations} says "
            f"{entry.height}x{entry.width} (height x width)"
        )
    return pixels, entry.boxes, path.name
