"""The napari dock widget: a checkpoint and an image layer in, a Labels and a Points layer out.

Plugins > maskrcnn > Mask R-CNN instances. The model runs in a worker thread
(`napari.qt.threading`), so the viewer stays responsive; the bar counts tiles (or shows
"busy" for a whole image). Errors a user can cause (a missing or wrong checkpoint, a 3-D
stack, a bad tile size) end as one line in napari's notifications, as `maskrcnn: error:`
lines do on the command line; anything else also logs its traceback.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, NamedTuple

import napari
import numpy as np
from magicgui.widgets import (
    ComboBox,
    Container,
    FileEdit,
    FloatSpinBox,
    Label,
    ProgressBar,
    PushButton,
    SpinBox,
)
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_info
from psygnal import Signal
from qtpy.QtCore import QObject
from qtpy.QtCore import Signal as QtSignal

from maskrcnn.commands.predict import PredictOptions
from maskrcnn.config import TEST_AUGMENT_MODES
from maskrcnn.data.intensity import INTENSITY_MODES
from maskrcnn.errors import error_message, is_user_error
from maskrcnn.napari_plugin.layer_pixels import (
    LayerPixels,
    LayerShapeError,
    NoImageLayerError,
    plane_of,
)
from maskrcnn.napari_plugin.segmentation import PredictorCache, Segmentation, segment
from maskrcnn.shipped_weights import resolve_weights, shipped_weight_names

LOG = logging.getLogger(__name__)
DEFAULT_WEIGHTS = "nuclei_synthetic"  # shipped inside the package (maskrcnn.shipped_weights)
AS_TRAINED = "as trained"  # test-time augmentation: the checkpoint's own model.test_augment
DEFAULTS = PredictOptions(weights=DEFAULT_WEIGHTS)  # the `maskrcnn predict` defaults, one owner
POINT_SIZE = 3  # pixels of the image: a dot that leaves the instance visible


class _ProgressRelay(QObject):
    """Carries (done, total) from the worker thread to the widget, queued onto the GUI thread."""

    advanced = QtSignal(int, int)


def user_message(exc: BaseException) -> str:
    """One line for a notification: the user's mistake as the CLI words it, else the exception's type."""
    if is_user_error(exc):
        return f"maskrcnn: {error_message(exc)}"
    return f"maskrcnn: unexpected error ({type(exc).__name__}): {exc}"


def weights_path(value: str | Path) -> Path:
    """The checkpoint field's file; a shipped name (the file edit makes it absolute) when no such file exists."""
    path = Path(value)
    if path.exists() or path.name not in shipped_weight_names():
        return path
    return resolve_weights(path.name)


class Failure(NamedTuple):
    """An exception carried back from the worker thread as a result."""

    error: Exception


def segment_or_failure(*args: Any) -> Segmentation | Failure:
    """`segment` in the worker thread, an exception returned rather than raised: napari would
    otherwise show a raised one with its traceback, besides the widget's own line."""
    try:
        return segment(*args)
    except Exception as exc:  # noqa: BLE001 - every error ends as one line in the viewer
        return Failure(exc)


class SegmentWidget(Container):
    """Mask R-CNN instances of the chosen image layer (the npe2 manifest's widget)."""

    finished = Signal(object)  # emitted on the GUI thread: the Segmentation, or the exception

    def __init__(self, napari_viewer: napari.Viewer) -> None:
        super().__init__(labels=True)
        self.viewer = napari_viewer
        self.cache = PredictorCache()
        self.worker: Any = None  # the run in flight
        self.outcome: Segmentation | BaseException | None = None  # the last run's
        self.weights = FileEdit(label="checkpoint", mode="r", filter="*.pt *.pth", value=resolve_weights(DEFAULT_WEIGHTS))
        self.image = ComboBox(label="image", choices=self._image_layers, nullable=False)
        self.score_threshold = FloatSpinBox(
            label="score threshold", min=0.0, max=1.0, step=0.05, value=DEFAULTS.score_threshold
        )
        self.test_augment = ComboBox(
            label="test-time augmentation", choices=(AS_TRAINED, *TEST_AUGMENT_MODES), value=AS_TRAINED,
            tooltip="mirror-image passes merged (as trained: the checkpoint's model.test_augment)",
        )
        self.tile = SpinBox(label="tile size", min=0, max=16384, step=64, value=DEFAULTS.tile,
                            tooltip="0: the whole image at once; else overlapping tiles of this many pixels")
        self.tile_overlap = SpinBox(label="tile overlap", min=0, max=4096, step=16, value=DEFAULTS.tile_overlap,
                                    tooltip="pixels neighbouring tiles share: larger than the objects")
        self.intensity = ComboBox(label="intensity", choices=INTENSITY_MODES, value=DEFAULTS.intensity,
                                  tooltip="how 16-bit / float pixels become 0..255 (as maskrcnn predict --intensity)")
        self.run_button = PushButton(text="Run")
        self.progress = ProgressBar(label="progress", min=0, max=1, value=0)
        self.status = Label(label="", value="")
        self.extend([
            self.weights, self.image, self.score_threshold, self.test_augment, self.tile, self.tile_overlap,
            self.intensity, self.run_button, self.progress, self.status,
        ])  # fmt: skip
        self.run_button.changed.connect(self.run)
        self._relay = _ProgressRelay()
        self._relay.advanced.connect(self._show_progress)
        for event in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed):
            event.connect(self._layers_changed)
        self.viewer.layers.selection.events.active.connect(self._follow_selection)
        self._follow_selection()

    def _image_layers(self, _widget: Any = None) -> list[tuple[str, napari.layers.Image]]:
        return [(layer.name, layer) for layer in self.viewer.layers if isinstance(layer, napari.layers.Image)]

    def _layers_changed(self, _event: Any = None) -> None:
        self.image.reset_choices()
        self._follow_selection()

    def _follow_selection(self, _event: Any = None) -> None:
        """Point the image field at the selected layer when it is an image."""
        active = self.viewer.layers.selection.active
        if isinstance(active, napari.layers.Image) and active in self.image.choices:
            self.image.value = active

    def options(self) -> PredictOptions:
        """The widget's fields as `maskrcnn predict` options (no files written)."""
        augment = self.test_augment.value
        return PredictOptions(
            weights=weights_path(self.weights.value),
            score_threshold=float(self.score_threshold.value),
            test_augment=None if augment == AS_TRAINED else augment,
            tile=int(self.tile.value),
            tile_overlap=int(self.tile_overlap.value),
            intensity=self.intensity.value,
            overlays=False,
            progress=False,
        )

    def run(self, _value: Any = None) -> Any:
        """Start the model on the chosen layer in a worker thread; returns the worker (None if refused)."""
        if self.worker is not None:
            return None
        layer = self.image.value
        if layer is None:
            self._fail(NoImageLayerError("no image layer: open an image first (File > Open, or drag one in)"))
            self.finished.emit(self.outcome)
            return None
        pixels = LayerPixels(layer.name, layer.data, bool(layer.rgb), bool(layer.multiscale))
        try:
            plane_of(pixels)  # a stack is refused at once, before any thread starts
        except LayerShapeError as exc:
            self._fail(exc)
            self.finished.emit(self.outcome)
            return None
        options = self.options()
        started = time.perf_counter()
        self.run_button.enabled = False
        self.status.value = "predicting..." if self.cache.holds(options) else "loading the model..."
        self._show_progress(0, 1)
        self.worker = create_worker(
            segment_or_failure, self.cache, pixels, options, self._relay.advanced.emit, _start_thread=False
        )
        self.worker.returned.connect(lambda outcome: self._finish(layer, outcome, time.perf_counter() - started))
        self.worker.finished.connect(self._done)
        self.worker.start()
        return self.worker

    def _finish(self, layer: napari.layers.Image, outcome: Segmentation | Failure, seconds: float) -> None:
        if isinstance(outcome, Failure):
            self._fail(outcome.error)
        else:
            self._show(layer, outcome, seconds)

    def _show_progress(self, done: int, total: int) -> None:
        if done == 0 and total == 1:  # a whole image: no steps to count, a busy bar
            self.progress.min, self.progress.max, self.progress.value = 0, 0, 0
            return
        self.status.value = f"tile {min(done + 1, total)} of {total}" if done < total else self.status.value
        self.progress.min, self.progress.max, self.progress.value = 0, max(total, 1), min(done, total)

    def _show(self, layer: napari.layers.Image, result: Segmentation, seconds: float) -> None:
        """Add (or replace) '<image> instances' (Labels) and '<image> scores' (Points)."""
        labels_name, points_name = f"{layer.name} instances", f"{layer.name} scores"
        for name in (labels_name, points_name):
            if name in self.viewer.layers:
                self.viewer.layers.remove(name)
        placement = {"scale": layer.scale[-2:], "translate": layer.translate[-2:]}
        self.viewer.add_labels(result.labels, name=labels_name, **placement)
        self.viewer.add_points(
            result.centres, name=points_name, size=POINT_SIZE, face_color="white", border_width=0,
            features={"score": result.scores, "class": result.class_names,
                      "label": np.arange(1, len(result.scores) + 1)},
            text={"string": "{score:.2f}", "size": 7, "color": "white", "anchor": "upper_left"},
            **placement,
        )  # fmt: skip
        tiles = f" in {result.tiles} tiles" if result.tiles else ""
        self.status.value = f"{len(result.scores)} instances{tiles}, {seconds:.1f} s"
        show_info(f"maskrcnn: {len(result.scores)} instances in '{layer.name}' (score >= {self.score_threshold.value:g})")
        self.outcome = result

    def _fail(self, exc: BaseException) -> None:
        message = user_message(exc)
        if not is_user_error(exc):
            LOG.error("maskrcnn napari plugin", exc_info=(type(exc), exc, exc.__traceback__))
        self.status.value = message
        show_error(message)
        self.outcome = exc

    def _done(self) -> None:
        self.worker = None
        self.run_button.enabled = True
        self.progress.min, self.progress.max = 0, 1
        self.progress.value = 1 if isinstance(self.outcome, Segmentation) else 0
        self.finished.emit(self.outcome)
