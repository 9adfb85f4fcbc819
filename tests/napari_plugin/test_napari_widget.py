"""The napari widget on generated nuclei gives the label image `maskrcnn predict --label-image` writes.

Headless: Qt offscreen, napari's `make_napari_viewer`, pytest-qt's `qtbot` (conftest.py).
The widget is opened the way a user opens it (Plugins > maskrcnn), runs in its worker
thread, and its layers are compared with the command's files, array for array.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from maskrcnn.cli import main
from maskrcnn.data.images import read_label_image
from maskrcnn.data.nuclei import render_nuclei_image
from maskrcnn.napari_plugin.segmentation import Segmentation
from maskrcnn.napari_plugin.widget import SegmentWidget
from maskrcnn.shipped_weights import resolve_weights

WEIGHTS = resolve_weights("nuclei_synthetic")
RUN_TIMEOUT_MS = 120_000


def nuclei_pixels(height: int, width: int) -> np.ndarray:
    """(height, width, 3) uint8: the top-left corner of generated nuclei image 0 (seed 0, fluorescence)."""
    pixels, _, _ = render_nuclei_image(0, 0, ((256, 256),))
    return np.ascontiguousarray(pixels[:height, :width])


def cli_label_image(image: Path, output: Path, *extra: str) -> tuple[np.ndarray, list[dict]]:
    """`maskrcnn predict IMAGE --label-image png`: (labels (H, W), predictions.json rows)."""
    status = main([
        "predict", str(image), "--weights", str(WEIGHTS), "--output", str(output), "--label-image", "png",
        "--no-overlays", "--quiet", *extra,
    ])  # fmt: skip
    assert status == 0
    return read_label_image(output / "labels" / f"{image.stem}.png"), json.loads((output / "predictions.json").read_text())


def open_widget(viewer) -> SegmentWidget:
    """Plugins > maskrcnn > Mask R-CNN instances, as napari's menu opens it."""
    import npe2

    from maskrcnn.napari_plugin import __file__ as package_init

    manager = npe2.PluginManager.instance()
    if "maskrcnn" not in manager:  # an install without the entry point (e.g. a source checkout on PYTHONPATH)
        manager.register(npe2.PluginManifest.from_file(Path(package_init).parent / "napari.yaml"))
    _dock, widget = viewer.window.add_plugin_dock_widget("maskrcnn", "Mask R-CNN instances")
    return widget


def run(widget: SegmentWidget, qtbot) -> Segmentation | BaseException:
    with qtbot.waitSignal(widget.finished, timeout=RUN_TIMEOUT_MS) as blocker:
        widget.run()
    return blocker.args[0]


def test_napari_widget_gives_the_label_image_of_maskrcnn_predict(napari_viewer, qtbot, tmp_path):
    pixels = nuclei_pixels(128, 128)
    image = tmp_path / "nuclei.png"
    Image.fromarray(pixels).save(image)
    expected, rows = cli_label_image(image, tmp_path / "cli")
    assert expected.max() >= 5  # the shipped model finds nuclei here: the comparison means something

    layer = napari_viewer.add_image(np.asarray(Image.open(image)), name="nuclei", rgb=True)
    widget = open_widget(napari_viewer)
    assert widget.image.value is layer and Path(widget.weights.value) == WEIGHTS  # the shipped model by default
    outcome = run(widget, qtbot)
    assert isinstance(outcome, Segmentation), outcome

    labels = napari_viewer.layers["nuclei instances"]
    points = napari_viewer.layers["nuclei scores"]
    assert labels.data.shape == expected.shape
    np.testing.assert_array_equal(labels.data, expected)
    assert len(points.data) == len(rows) == expected.max()
    np.testing.assert_allclose(points.features["score"], [row["score"] for row in rows], atol=1e-4)
    assert list(points.features["label"]) == list(range(1, len(rows) + 1))
    assert widget.progress.value == widget.progress.max == 1

    # a higher threshold keeps the best-scoring instances only: the same label image, cut to them
    widget.score_threshold.value = 0.9
    strict = run(widget, qtbot)
    assert isinstance(strict, Segmentation), strict
    kept = len(strict.scores)
    assert 0 < kept < len(rows) and all(strict.scores >= 0.9)
    high = napari_viewer.layers["nuclei instances"].data
    np.testing.assert_array_equal(high, np.where(expected <= kept, expected, 0))
    assert len(napari_viewer.layers) == 3  # the layers of the first run were replaced, not added to


def test_napari_widget_tiled_16bit_grey_matches_maskrcnn_predict_tile(napari_viewer, qtbot, tmp_path):
    grey = nuclei_pixels(160, 160).mean(axis=2)  # (H, W)
    deep = np.rint(grey * 4095 / 255).astype(np.uint16)  # 12-bit camera values in a 16-bit file
    image = tmp_path / "deep.png"
    Image.fromarray(deep).save(image)
    expected, rows = cli_label_image(image, tmp_path / "cli", "--tile", "96", "--tile-overlap", "32")
    assert expected.max() >= 5

    napari_viewer.add_image(deep, name="deep")
    widget = open_widget(napari_viewer)
    widget.tile.value, widget.tile_overlap.value = 96, 32
    outcome = run(widget, qtbot)
    assert isinstance(outcome, Segmentation), outcome
    assert outcome.tiles == 4  # 160 px in 96-px tiles sharing 32: two by two
    np.testing.assert_array_equal(napari_viewer.layers["deep instances"].data, expected)
    assert len(rows) == len(outcome.scores)
    assert (widget.progress.value, widget.progress.max) == (1, 1)
    assert "4 tiles" in widget.status.value


def last_error(before: int) -> list[str]:
    from napari.utils.notifications import NotificationSeverity, notification_manager

    return [
        str(n.message) for n in notification_manager.records[before:] if n.severity == NotificationSeverity.ERROR
    ]


def test_napari_widget_reports_a_3d_stack_and_a_bad_checkpoint_in_one_line(napari_viewer, qtbot, tmp_path):
    from napari.utils.notifications import notification_manager

    napari_viewer.add_image(np.zeros((4, 64, 64), np.uint8), name="stack")
    widget = open_widget(napari_viewer)
    before = len(notification_manager.records)
    outcome = run(widget, qtbot)
    [message] = last_error(before)
    assert "\n" not in message and "stack" in message and "(4, 64, 64)" in message
    assert str(outcome) in message and len(napari_viewer.layers) == 1

    napari_viewer.add_image(np.zeros((64, 64), np.uint8), name="plane")
    widget.image.value = napari_viewer.layers["plane"]
    not_a_model = tmp_path / "notes.pt"
    not_a_model.write_text("not a checkpoint")
    for weights, words in ((not_a_model, "notes.pt"), (tmp_path / "missing.pt", "missing.pt")):
        widget.weights.value = weights
        before = len(notification_manager.records)
        run(widget, qtbot)
        [message] = last_error(before)
        assert message.startswith("maskrcnn: ") and "\n" not in message and words in message
        assert "unexpected" not in message  # a user's mistake, worded as the CLI words it
    assert widget.run_button.enabled and len(napari_viewer.layers) == 2
    widget.weights.value = "nuclei_synthetic"  # a shipped name, as train.init_weights takes it
    assert Path(widget.options().weights) == WEIGHTS
