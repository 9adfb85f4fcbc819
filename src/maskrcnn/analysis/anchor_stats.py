"""Ground-truth box statistics against a config's anchors (`maskrcnn analyze anchors`).

Shape glossary: N boxes of the data set; G boxes of one image; A_l anchors of level l;
K clusters.

- Histograms of box area and aspect ratio (h / w, torchvision's convention for anchor
  aspect ratios), and for 10, 20, ..., 100 bins the mode bin: its range, count, the mean
  and variance of the values inside it, and its share of all boxes.
- Suggested anchors: k-means on box (w, h) with 1 - IoU as the distance (boxes and
  centroids aligned at a common centre; mean update; seeded initialization).
- Coverage: for each box (after the config's test-time resize), the best IoU any anchor of
  each level reaches; the shares reaching 0.5 and 0.7, per level and over all levels, and
  the list of boxes whose best anchor stays below `reach_iou`.
Crowd annotations (iscrowd = 1) and boxes of zero width or height are left out.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from maskrcnn.analysis.errors import AnalysisError
from maskrcnn.analysis.geometry import AnchorLayout, resized_geometry, scale_boxes
from maskrcnn.analysis.table import format_table
from maskrcnn.config import ModelConfig
from maskrcnn.data.coco import load_coco_json
from maskrcnn.data.images import image_size
from maskrcnn.ops.boxes import box_iou

BIN_COUNTS = tuple(range(10, 101, 10))
IOU_LEVELS = (0.5, 0.7)
BOX_CHUNK = 64  # boxes per IoU block: keeps (chunk, A_l) IoU matrices small


@dataclass
class ImageBoxes:
    image_id: int
    file_name: str
    height: int
    width: int
    boxes: np.ndarray  # (G, 4) x1 y1 x2 y2, original pixels
    annotation_ids: list[int]


def load_image_boxes(annotations: str | Path, images_dir: str | Path | None = None) -> tuple[list[ImageBoxes], int]:
    """Boxes per image from a COCO JSON; returns (images, number of annotations left out)."""
    data = load_coco_json(annotations)
    by_image: dict[int, list[dict[str, Any]]] = {img["id"]: [] for img in data["images"]}
    for ann in data["annotations"]:
        by_image[ann["image_id"]].append(ann)
    images, skipped = [], 0
    for img in data["images"]:
        height, width = img.get("height"), img.get("width")
        if height is None or width is None:
            if images_dir is None:
                raise AnalysisError(
                    f"{annotations}: image id {img['id']} has no height/width; pass --images DIR to read its size"
                )

            height, width = image_size(Path(images_dir) / img["file_name"])
        boxes, ids = [], []
        for ann in by_image[img["id"]]:
            bbox = ann.get("bbox")
            if ann.get("iscrowd", 0) or bbox is None or bbox[2] <= 0 or bbox[3] <= 0:
                skipped += 1
                continue
            x, y, w, h = (float(v) for v in bbox)
            boxes.append([x, y, x + w, y + h])
            ids.append(int(ann.get("id", -1)))
        images.append(
            ImageBoxes(int(img["id"]), img["file_name"], int(height), int(width),
                       np.asarray(boxes, dtype=np.float64).reshape(-1, 4), ids)
        )  # fmt: skip
    return images, skipped


def histogram_stats(values: np.ndarray, bin_counts: tuple[int, ...] = BIN_COUNTS) -> list[dict[str, Any]]:
    """For each number of bins: the mode bin's range, count, mean, variance and share of values."""
    values = np.asarray(values, dtype=np.float64)
    out = []
    for bins in bin_counts:
        if values.size == 0:
            out.append(dict(bins=bins, low=None, high=None, count=0, mean=None, variance=None, share=0.0))
            continue
        counts, edges = np.histogram(values, bins=bins)
        mode = int(np.argmax(counts))
        low, high = edges[mode], edges[mode + 1]
        inside = values[(values >= low) & ((values < high) if mode < bins - 1 else (values <= high))]
        out.append(
            dict(bins=bins, low=float(low), high=float(high), count=int(counts[mode]), mean=float(inside.mean()),
                 variance=float(inside.var()), share=float(counts[mode] / values.size))
        )  # fmt: skip
    return out


def wh_iou(wh: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """IoU of (N, 2) and (K, 2) box sizes placed at a common centre -> (N, K)."""
    inter = np.minimum(wh[:, None, 0], centroids[None, :, 0]) * np.minimum(wh[:, None, 1], centroids[None, :, 1])
    union = (wh[:, 0] * wh[:, 1])[:, None] + (centroids[:, 0] * centroids[:, 1])[None, :] - inter
    return inter / union


def kmeans_iou(wh: np.ndarray, k: int, seed: int = 0, max_iter: int = 300) -> tuple[np.ndarray, np.ndarray]:
    """k-means with distance 1 - IoU on (N, 2) sizes -> centroids (K, 2) sorted by area, assignment (N,)."""
    if len(wh) == 0:
        raise AnalysisError("anchors: no boxes to cluster (the annotations hold no usable boxes)")
    k = min(k, len(np.unique(wh, axis=0)))
    rng = np.random.default_rng(seed)
    unique = np.unique(wh, axis=0)
    centroids = unique[rng.choice(len(unique), size=k, replace=False)]
    assignment = np.full(len(wh), -1)
    for _ in range(max_iter):
        new_assignment = np.argmax(wh_iou(wh, centroids), axis=1)
        if np.array_equal(new_assignment, assignment):
            break
        assignment = new_assignment
        for j in range(k):
            members = wh[assignment == j]
            if len(members):
                centroids[j] = members.mean(axis=0)
    order = np.argsort(centroids[:, 0] * centroids[:, 1])
    remap = np.empty(k, dtype=int)
    remap[order] = np.arange(k)
    return centroids[order], remap[assignment]


def suggest_anchors(centroids: np.ndarray, num_levels: int, ratios_per_level: int) -> dict[str, Any]:
    """Sizes: centroid sqrt(w*h) sorted, split into `num_levels` groups (geometric mean each);
    ratios: centroid h/w sorted, split into `ratios_per_level` groups (geometric mean each)."""
    sizes = np.sort(np.sqrt(centroids[:, 0] * centroids[:, 1]))
    ratios = np.sort(centroids[:, 1] / centroids[:, 0])
    size_groups = [g for g in np.array_split(sizes, num_levels) if len(g)]
    ratio_groups = [g for g in np.array_split(ratios, ratios_per_level) if len(g)]
    return {
        "sizes": [[round(float(np.exp(np.log(g).mean())), 1)] for g in size_groups],
        "aspect_ratios": [round(float(np.exp(np.log(g).mean())), 2) for g in ratio_groups],
    }


def best_anchor_ious(boxes: torch.Tensor, anchors: list[torch.Tensor]) -> torch.Tensor:
    """(G, 4) boxes, per-level (A_l, 4) anchors -> (G, L) best IoU of each box on each level."""
    out = torch.zeros(boxes.shape[0], len(anchors))
    for level, level_anchors in enumerate(anchors):
        for start in range(0, boxes.shape[0], BOX_CHUNK):
            chunk = boxes[start : start + BOX_CHUNK]
            out[start : start + BOX_CHUNK, level] = box_iou(chunk, level_anchors).max(dim=1).values
    return out


def anchor_coverage(
    images: list[ImageBoxes], model_cfg: ModelConfig, reach_iou: float, min_size: int | None = None
) -> dict[str, Any]:
    """Best-anchor IoU of every box after the config's resize: shares per level, boxes not reached."""
    layout = AnchorLayout(model_cfg)
    best_rows, not_reached = [], []
    resized_boxes = []
    for image in sorted(images, key=lambda im: resized_geometry(im.height, im.width, model_cfg, min_size).padded):
        if len(image.boxes) == 0:
            continue
        geometry = resized_geometry(image.height, image.width, model_cfg, min_size)
        boxes = scale_boxes(torch.from_numpy(image.boxes), (image.height, image.width), geometry)
        resized_boxes.append(boxes)
        best = best_anchor_ious(boxes, layout.anchors(geometry.padded))  # (G, L)
        best_rows.append(best)
        overall, level = best.max(dim=1)
        for j in torch.where(overall < reach_iou)[0].tolist():
            x1, y1, x2, y2 = image.boxes[j].tolist()
            rx1, ry1, rx2, ry2 = boxes[j].tolist()
            not_reached.append(
                dict(image_id=image.image_id, file_name=image.file_name, annotation_id=image.annotation_ids[j],
                     bbox=[x1, y1, x2 - x1, y2 - y1], resized_wh=[round(rx2 - rx1, 1), round(ry2 - ry1, 1)],
                     best_iou=round(float(overall[j]), 4), best_level=layout.level_names[int(level[j])])
            )  # fmt: skip
    best_all = torch.cat(best_rows) if best_rows else torch.zeros(0, len(layout.level_names))
    total = best_all.shape[0]
    levels = []
    best_level = best_all.argmax(dim=1) if total else torch.zeros(0, dtype=torch.int64)
    for i, name in enumerate(layout.level_names):
        row: dict[str, Any] = dict(level=name, sizes=model_cfg.anchors.sizes[i])
        for t in IOU_LEVELS:
            row[f"share_iou_{t}"] = float((best_all[:, i] >= t).float().mean()) if total else 0.0
        row["best_level_share"] = float((best_level == i).float().mean()) if total else 0.0
        levels.append(row)
    overall = best_all.max(dim=1).values if total else torch.zeros(0)
    summary = {f"share_iou_{t}": float((overall >= t).float().mean()) if total else 0.0 for t in IOU_LEVELS}
    return {
        "boxes": total,
        "levels": levels,
        "all_levels": summary,
        "reach_iou": reach_iou,
        "not_reached": not_reached,
        "resized_boxes": torch.cat(resized_boxes) if resized_boxes else torch.zeros(0, 4),
    }


def plot_histograms(
    areas: np.ndarray, ratios: np.ndarray, anchor_sizes: list[float], anchor_ratios: list[float], title: str
) -> bytes:
    """PNG bytes: box area and aspect-ratio histograms (log-spaced bins) with the config's anchors marked."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator, NullFormatter, ScalarFormatter

    fig = Figure(figsize=(11, 4.2), dpi=100)
    FigureCanvasAgg(fig)
    ax_area, ax_ratio = fig.subplots(1, 2)
    for ax, values, marks, label, mark_label in (
        (ax_area, areas, [s * s for s in anchor_sizes], "box area (pixels², log scale)", "anchor area"),
        (ax_ratio, ratios, anchor_ratios, "aspect ratio h / w (log scale)", "anchor ratio"),
    ):
        positive = values[values > 0]
        if positive.size:
            low, high = positive.min(), positive.max()
            bins = np.geomspace(low, high if high > low else low * 1.01, 51)
            ax.hist(positive, bins=bins, color="#4C72B0", edgecolor="white", linewidth=0.4)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        for i, mark in enumerate(marks):
            ax.axvline(mark, color="#DD8452", linestyle="--", linewidth=1.2, label=mark_label if i == 0 else None)
        if ax is ax_ratio and marks:
            ax.set_xticks(sorted({*marks, 1.0}))  # label the anchor ratios themselves
        ax.set_xlabel(label)
        ax.set_ylabel("boxes")
        ax.grid(alpha=0.3)
        if marks:
            ax.legend(loc="upper right")
    fig.suptitle(title)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def analyze_anchors(
    annotations: str | Path,
    model_cfg: ModelConfig,
    *,
    images_dir: str | Path | None = None,
    clusters: int | None = None,
    seed: int = 0,
    reach_iou: float | None = None,
    original_pixels: bool = False,
    min_size: int | None = None,
) -> tuple[dict[str, Any], bytes]:
    """The whole `analyze anchors` report as a JSON-ready dict, and the histogram PNG bytes."""
    images, skipped = load_image_boxes(annotations, images_dir)
    reach = model_cfg.rpn.fg_iou_thresh if reach_iou is None else reach_iou
    coverage = anchor_coverage(images, model_cfg, reach, min_size)
    resized = coverage.pop("resized_boxes").double().numpy()
    if original_pixels:
        boxes = np.concatenate([im.boxes for im in images]) if images else np.zeros((0, 4))
    else:
        boxes = resized
    if len(boxes) == 0:
        raise AnalysisError(f"{annotations}: no usable boxes (none, or all crowd / zero-sized)")
    wh = boxes[:, 2:] - boxes[:, :2]
    areas, ratios = wh[:, 0] * wh[:, 1], wh[:, 1] / wh[:, 0]
    sizes, aspect = model_cfg.anchors.sizes, model_cfg.anchors.aspect_ratios
    k = clusters or sum(len(s) for s in sizes) * len(aspect[0])
    resized_wh = resized[:, 2:] - resized[:, :2]
    centroids, assignment = kmeans_iou(resized_wh, k, seed)
    mean_iou = float(wh_iou(resized_wh, centroids).max(axis=1).mean())
    space = "original pixels" if original_pixels else "pixels after the config's resize"
    result = {
        "annotations": str(annotations),
        "images": len(images),
        "boxes": int(len(boxes)),
        "left_out_annotations": skipped,
        "space": space,
        "area": {"mean": float(areas.mean()), "variance": float(areas.var()), "mode_bins": histogram_stats(areas)},
        "aspect_ratio": {"mean": float(ratios.mean()), "variance": float(ratios.var()),
                         "mode_bins": histogram_stats(ratios)},  # fmt: skip
        "kmeans": {
            "k": int(len(centroids)),
            "seed": seed,
            "mean_best_iou": mean_iou,
            "centroids": [
                dict(w=round(float(w), 1), h=round(float(h), 1), size=round(float(np.sqrt(w * h)), 1),
                     ratio=round(float(h / w), 3), boxes=int((assignment == j).sum()))
                for j, (w, h) in enumerate(centroids)
            ],  # fmt: skip
            "suggested": suggest_anchors(centroids, len(sizes), len(aspect[0])),
        },
        "config_anchors": {"sizes": sizes, "aspect_ratios": aspect},
        "coverage": coverage,
    }
    flat_sizes = [] if original_pixels else [float(s) for level in sizes for s in level]
    title = f"{Path(annotations).name}: {len(boxes)} boxes, {space}"
    png = plot_histograms(areas, ratios, flat_sizes, sorted({float(r) for level in aspect for r in level}), title)
    return result, png


def format_anchor_report(result: dict[str, Any], max_listed: int = 20) -> str:
    parts = [f"{result['annotations']}: {result['images']} images, {result['boxes']} boxes "
             f"({result['left_out_annotations']} crowd/empty annotations left out); sizes in {result['space']}"]  # fmt: skip
    for key, label in (("area", "box area"), ("aspect_ratio", "aspect ratio h/w")):
        stats = result[key]
        rows = [[m["bins"], f"[{m['low']:.4g}, {m['high']:.4g}]", m["count"], m["mean"], m["variance"],
                 f"{100 * m['share']:.1f}%"] for m in stats["mode_bins"] if m["count"]]  # fmt: skip
        parts.append(format_table(
            ["bins", "mode bin", "count", "mean", "variance", "share"], rows,
            title=f"\n{label}: mean {stats['mean']:.4g}, variance {stats['variance']:.4g}; mode bin per bin count",
        ))  # fmt: skip
    km = result["kmeans"]
    parts.append(format_table(
        ["cluster", "w", "h", "size", "ratio h/w", "boxes"],
        [[j, c["w"], c["h"], c["size"], c["ratio"], c["boxes"]] for j, c in enumerate(km["centroids"])],
        title=f"\nk-means (1 - IoU), k={km['k']}, seed {km['seed']}: mean best IoU {km['mean_best_iou']:.3f} "
              "(resized pixels)",
    ))  # fmt: skip
    parts.append(f"suggested anchors: sizes {km['suggested']['sizes']}, aspect_ratios {km['suggested']['aspect_ratios']}"
                 f"\nconfig anchors:    sizes {result['config_anchors']['sizes']}, "
                 f"aspect_ratios {result['config_anchors']['aspect_ratios'][0]}")  # fmt: skip
    cov = result["coverage"]
    rows = [[lv["level"], str(lv["sizes"]), f"{100 * lv['share_iou_0.5']:.1f}%", f"{100 * lv['share_iou_0.7']:.1f}%",
             f"{100 * lv['best_level_share']:.1f}%"] for lv in cov["levels"]]  # fmt: skip
    rows.append(["all", "", f"{100 * cov['all_levels']['share_iou_0.5']:.1f}%",
                 f"{100 * cov['all_levels']['share_iou_0.7']:.1f}%", ""])  # fmt: skip
    parts.append(format_table(["level", "sizes", "IoU>=0.5", "IoU>=0.7", "best level"], rows,
                              title=f"\nshare of {cov['boxes']} boxes whose best anchor reaches IoU"))  # fmt: skip
    missed = cov["not_reached"]
    parts.append(f"\n{len(missed)} boxes that no anchor reaches with IoU >= {cov['reach_iou']}"
                 + (f" (first {max_listed}; all in --json)" if len(missed) > max_listed else "") + ":")  # fmt: skip
    if missed:
        parts.append(format_table(
            ["image", "annotation", "bbox x,y,w,h", "resized w x h", "best IoU", "level"],
            [[m["file_name"], m["annotation_id"], ",".join(f"{v:.0f}" for v in m["bbox"]),
              f"{m['resized_wh'][0]:.0f} x {m['resized_wh'][1]:.0f}", m["best_iou"], m["best_level"]]
             for m in missed[:max_listed]],
        ))  # fmt: skip
    return "\n".join(parts)
