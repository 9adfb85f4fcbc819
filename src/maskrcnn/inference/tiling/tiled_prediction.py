"""Tiled prediction: an image of any size, cut into overlapping tiles at the model's scale.

    result = predict_tiled(detector, source, tile_size=1024, overlap=128)
    result.boxes (N, 4) x1 y1 x2 y2 image pixels; result.labels (N,); result.scores (N,)
    result.instances[i].mask (h, w) bool at (y0, x0): masks are crops, never (H, W)
    result.rles()            COCO RLE of each full-size mask, built from the crops
    result.label_image()     (H, W) uint16/uint32, 0 background, k = instance k-1

The image is read one tile at a time (`maskrcnn.data.image_source`), each tile goes
through the detector, instances come back in image coordinates and pieces cut by tile
borders are merged (`maskrcnn.inference.tiling.merge`). Instances are ordered by score, highest
first.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from maskrcnn.data.image_source import ImageSource
from maskrcnn.errors import UserError
from maskrcnn.inference.tiling.grid import TileWindow, check_tiling, tile_grid
from maskrcnn.inference.tiling.instances import (
    CroppedInstance,
    crop_to_rle,
    detections_to_crops,
)
from maskrcnn.inference.tiling.merge import SeamMerger
from maskrcnn.model.build import inner_model
from maskrcnn.model.inference_options import DetectionBudgets, InferenceOptions
from maskrcnn.model.mask_rcnn import MaskRCNN
from maskrcnn.structures import Detections, image_to_tensor

# A tile's pixels (h, w, 3) uint8 and its window -> instances in tile coordinates.
TileDetector = Callable[[np.ndarray, TileWindow], list[CroppedInstance]]


class BudgetCaps(NamedTuple):
    pre_nms_top_n: int  # RPN proposals per level before NMS
    post_nms_top_n: int  # RPN proposals per tile after NMS
    detections_per_img: int  # detections per tile


# One 1024-px tile of the demo model (benchmarks, 2 cores): budgets 300/100/30 found 30
# instances in 1.4 s; 2000/1000/300, 100 in 2.1 s; 4000/2000/500, 115 in 3.0 s (166 objects).
BUDGET_CAPS = BudgetCaps(4000, 2000, 500)


class TooManyInstancesError(UserError):
    """More instances than a label image of the chosen type can number."""


@dataclass
class TiledPrediction:
    height: int
    width: int
    instances: list[CroppedInstance]  # highest score first
    tiles: int = 0

    @property
    def boxes(self) -> np.ndarray:  # (N, 4) float32
        return np.array([i.box for i in self.instances], dtype=np.float32).reshape(-1, 4)

    @property
    def labels(self) -> np.ndarray:  # (N,) int64
        return np.array([i.label for i in self.instances], dtype=np.int64)

    @property
    def scores(self) -> np.ndarray:  # (N,) float32
        return np.array([i.score for i in self.instances], dtype=np.float32)

    def rles(self) -> list[dict]:
        return [crop_to_rle(i.mask, i.y0, i.x0, self.height, self.width) for i in self.instances]

    def dense_masks(self) -> np.ndarray:
        """(N, H, W) bool: only for images small enough to hold N full-size masks."""
        masks = np.zeros((len(self.instances), self.height, self.width), dtype=bool)
        for k, i in enumerate(self.instances):
            masks[k, i.y0 : i.y1, i.x0 : i.x1] = i.mask
        return masks

    def label_image(self, y0: int = 0, x0: int = 0, y1: int | None = None, x1: int | None = None) -> np.ndarray:
        """Rows y0..y1, columns x0..x1 of the label image (all by default): see `paint_labels`."""
        return paint_labels(self.instances, y0, x0, self.height if y1 is None else y1, self.width if x1 is None else x1)


def label_dtype(count: int) -> np.dtype:
    return np.dtype(np.uint16) if count <= np.iinfo(np.uint16).max else np.dtype(np.uint32)


def paint_labels(instances: list[CroppedInstance], y0: int, x0: int, y1: int, x1: int) -> np.ndarray:
    """(y1-y0, x1-x0) labels: k+1 where instance k (score order) covers a pixel, 0 elsewhere.

    Where instances overlap the higher-scoring one keeps the pixel (no overlaps).
    """
    out = np.zeros((y1 - y0, x1 - x0), dtype=label_dtype(len(instances)))
    for k in range(len(instances) - 1, -1, -1):  # lowest score first: higher scores paint over
        i = instances[k]
        ry0, rx0, ry1, rx1 = max(y0, i.y0), max(x0, i.x0), min(y1, i.y1), min(x1, i.x1)
        if ry1 <= ry0 or rx1 <= rx0:
            continue
        part = i.mask[ry0 - i.y0 : ry1 - i.y0, rx0 - i.x0 : rx1 - i.x0]
        out[ry0 - y0 : ry1 - y0, rx0 - x0 : rx1 - x0][part] = k + 1
    return out


def tile_budgets(model: MaskRCNN, area: float) -> DetectionBudgets:
    """The model's per-image budgets (RPN proposals before/after NMS, detections per image),
    grown with a tile's area over the model's input area (min_size x max_size).

    They are sized for the images the model was trained on; a tile at the image's own scale
    can hold many such images' worth of objects (a 1024-px tile: 64 of the demo model's
    128-px images, about one of the COCO models' 800 x 1333). Never lowered; grown at most
    to BUDGET_CAPS (the NMS cost grows with the square of the count: uncapped, the demo
    model took 78 s per 1024-px tile instead of 3 s).
    """
    transform, own = model.transform, model.budgets()
    ratio = max(1.0, area / (transform.min_size[-1] * transform.max_size))

    def grown(value: int, cap: int) -> int:
        return max(value, min(math.ceil(value * ratio), cap))

    return DetectionBudgets(
        pre_nms_top_n=grown(own.pre_nms_top_n, BUDGET_CAPS.pre_nms_top_n),
        post_nms_top_n=grown(own.post_nms_top_n, BUDGET_CAPS.post_nms_top_n),
        detections_per_img=grown(own.detections_per_img, BUDGET_CAPS.detections_per_img),
    )


class ModelTileDetector:
    """A Mask R-CNN (or test-time augmentation around one) as a TileDetector: each tile at
    `scale` (1.0: its own pixels) times the model's fixed_scale, masks as crops. The model
    is asked through `InferenceOptions`; none of its parts is changed."""

    def __init__(self, detector: nn.Module, device: torch.device, *, score_threshold: float, scale: float = 1.0) -> None:
        self.detector, self.device = detector, device
        model = inner_model(detector)
        if model is None:
            raise TypeError(f"ModelTileDetector: {type(detector).__name__} holds no MaskRCNN")
        self.model = model  # its settings: resize, budgets, mask paste and threshold
        self.score_threshold, self.scale = score_threshold, scale

    @torch.inference_mode()
    def __call__(self, pixels: np.ndarray, window: TileWindow) -> list[CroppedInstance]:
        tensor = image_to_tensor(np.ascontiguousarray(pixels), self.device)  # (3, h, w)
        area = pixels.shape[0] * pixels.shape[1] * self.scale**2
        options = InferenceOptions(
            resize_scale=self.scale * self.model.transform.own_scale(),
            paste_masks=False,  # masks (N, M, M): pasted one crop at a time below
            budgets=tile_budgets(self.model, area),
        )
        det: Detections = self.detector([tensor], options=options)[0]  # boxes in tile pixels
        keep = det.scores >= self.score_threshold
        det = Detections(
            boxes=det.boxes[keep], scores=det.scores[keep], labels=det.labels[keep],
            masks=det.masks[keep] if det.masks is not None else None,
        )
        return detections_to_crops(
            det, pixels.shape[0], pixels.shape[1], self.model.mask_threshold, self.model.mask_paste
        )


def predict_tiled(
    detector: TileDetector,
    source: ImageSource,
    *,
    tile_size: int,
    overlap: int,
    merge_threshold: float = 0.5,
    origin: tuple[int, int] = (0, 0),
    class_agnostic: bool = False,
    progress: bool = False,
) -> TiledPrediction:
    """Run `detector` on every tile of `source` and merge the pieces cut by tile borders."""
    from tqdm import tqdm

    check_tiling(tile_size, overlap)
    grid = tile_grid(source.height, source.width, tile_size, overlap, origin)
    merger = SeamMerger(source.height, source.width, merge_threshold, class_agnostic=class_agnostic)
    finished: list[CroppedInstance] = []
    bar = tqdm(total=len(grid.tiles), desc=f"tiles of {source.name}", unit="tile", disable=not progress)
    for r, row in enumerate(grid.rows):
        for window in row:
            pixels = source.read(window.y0, window.y1, window.x0, window.x1)  # (h, w, 3) uint8
            pieces = [p.shifted(window.y0, window.x0) for p in detector(pixels, window)]
            merger.add_tile(window, pieces)
            bar.update(1)
        next_top = grid.rows[r + 1][0].y0 if r + 1 < len(grid.rows) else None
        finished.extend(merger.pop_finished(next_top))
    bar.close()
    finished.sort(key=lambda i: (-i.score, i.y0, i.x0))
    return TiledPrediction(source.height, source.width, finished, tiles=len(grid.tiles))
