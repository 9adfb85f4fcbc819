"""The plugin's work, without Qt: an image layer in, a label image and one point per instance out.

Shape glossary: H, W the image's height and width; N the instances found.

It is `maskrcnn predict --label-image` on pixels instead of a file: the same
`PredictOptions`, the same checks, the same Predictor (`load_predictor`), whole-image or
tiled prediction as the command runs them, and the label image the command writes
(k = the k-th instance by score, 0 background, higher scores keep overlapping pixels).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from maskrcnn.commands.predict import (
    PredictOptions,
    check_options,
    dense_to_tiled,
    load_predictor,
)
from maskrcnn.data.image_source import ImageSource
from maskrcnn.errors import UserError
from maskrcnn.inference.predictor import Predictor
from maskrcnn.inference.tiling.grid import tile_grid
from maskrcnn.inference.tiling.tiled_prediction import TiledPrediction
from maskrcnn.napari_plugin.layer_pixels import LayerPixels, layer_source

# Called as tiles are read: (tiles started, tiles in all); whole-image prediction: (0, 1), (1, 1).
ProgressCallback = Callable[[int, int], None]


class WholeImageTooLargeError(UserError):
    """An image layer over the whole-image pixel limit with tiling off."""


@dataclass(frozen=True)
class Segmentation:
    """What the widget shows: a Labels layer and a Points layer of scores."""

    labels: np.ndarray  # (H, W) uint16 (uint32 past 65535 instances); 0 background, k = instance k-1
    centres: np.ndarray  # (N, 2) float64 row, column of each instance's mask centroid
    scores: np.ndarray  # (N,) float32, highest first
    class_names: list[str]  # (N,) the class of each instance
    tiles: int  # tiles predicted; 0 for a whole-image prediction


class PredictorCache:
    """The last Predictor loaded, kept while the file and the test-time augmentation stay the same
    (loading takes seconds; the score threshold is the Predictor's to change per call)."""

    def __init__(self) -> None:
        self._key: tuple[str, int, str | None] | None = None
        self._predictor: Predictor | None = None

    @staticmethod
    def key(options: PredictOptions) -> tuple[str, int, str | None]:
        path = Path(options.weights)
        return str(path.resolve()), path.stat().st_mtime_ns if path.is_file() else -1, options.test_augment

    def holds(self, options: PredictOptions) -> bool:
        """Whether `get(options)` would reuse the loaded model."""
        return self._predictor is not None and self.key(options) == self._key

    def get(self, options: PredictOptions) -> Predictor:
        key = self.key(options)
        if self._predictor is None or key != self._key:
            self._predictor, self._key = None, None  # a failed load leaves no stale model behind
            self._predictor, self._key = load_predictor(options), key
        self._predictor.score_threshold = float(options.score_threshold)
        return self._predictor


class _CountingSource(ImageSource):
    """An ImageSource that reports each tile read (tiled prediction reads each tile once)."""

    def __init__(self, source: ImageSource, total: int, on_tile: ProgressCallback) -> None:
        super().__init__(source.raw, source.window, source.name)
        self.total, self.on_tile, self.started = total, on_tile, 0

    def read(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        self.on_tile(self.started, self.total)
        self.started += 1
        return super().read(y0, y1, x0, x1)


def instance_centres(result: TiledPrediction) -> np.ndarray:
    """(N, 2) row, column of each instance's mask centroid (its box centre if the mask is empty)."""
    centres = np.zeros((len(result.instances), 2), dtype=np.float64)
    for k, instance in enumerate(result.instances):
        rows, cols = np.nonzero(instance.mask)
        if rows.size:
            centres[k] = (instance.y0 + rows.mean(), instance.x0 + cols.mean())
        else:
            x1, y1, x2, y2 = (float(v) for v in instance.box)
            centres[k] = ((y1 + y2) / 2, (x1 + x2) / 2)
    return centres


def predict_source(
    predictor: Predictor, source: ImageSource, options: PredictOptions, on_progress: ProgressCallback | None = None
) -> TiledPrediction:
    """Instances of the whole source, as `maskrcnn predict` finds them with the same options."""
    report = on_progress or (lambda done, total: None)
    if options.tile:
        grid = tile_grid(source.height, source.width, options.tile, options.tile_overlap)
        counting = _CountingSource(source, len(grid.tiles), report)
        result = predictor.predict_tiled(counting, tile=options.tile, overlap=options.tile_overlap, scale=options.tile_scale)
        report(len(grid.tiles), len(grid.tiles))
        return result
    pixels = source.height * source.width
    if options.max_image_pixels is not None and pixels > options.max_image_pixels:
        raise WholeImageTooLargeError(
            f"image layer '{source.name}': {source.width}x{source.height} pixels ({pixels / 1e6:.1f} Mpx) is over "
            f"the limit of {options.max_image_pixels / 1e6:.1f} Mpx for whole-image prediction; set a tile size "
            "(e.g. 1024)"
        )
    report(0, 1)
    image = source.read(0, source.height, 0, source.width)  # (H, W, 3) uint8, as read_image gives
    result = dense_to_tiled(predictor.predict_batch([image])[0])
    report(1, 1)
    return result


def segment(
    cache: PredictorCache, layer: LayerPixels, options: PredictOptions, on_progress: ProgressCallback | None = None
) -> Segmentation:
    """Predict on the layer's pixels and shape the result for napari's Labels and Points layers.

    Checks come first (the options, then the layer's shape), so a wrong setting fails before the model loads.
    """
    check_options(options)
    source = layer_source(layer, options.intensity)
    predictor = cache.get(options)
    result = predict_source(predictor, source, options, on_progress)
    return Segmentation(
        labels=result.label_image(),
        centres=instance_centres(result),
        scores=result.scores,
        class_names=[predictor.class_name(int(label)) for label in result.labels],
        tiles=result.tiles,
    )
