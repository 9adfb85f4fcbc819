from __future__ import annotations

import numpy as np
import pytest

from maskrcnn.data.shapes import render_shapes_image
from maskrcnn.data.shapes_canvas import BACKGROUNDS, CanvasError, render_shapes_canvas


def _label_image(canvas) -> np.ndarray:
    """(H, W) int: k+1 where shape k is visible; asserts that visible parts never overlap."""
    labels = np.zeros(canvas.pixels.shape[:2], dtype=np.int32)
    for k, shape in enumerate(canvas.instances):
        region = labels[shape.y0 : shape.y1, shape.x0 : shape.x1]
        assert not region[shape.mask].any(), "two visible parts overlap"
        region[shape.mask] = k + 1
    return labels


def test_same_seed_gives_the_same_canvas_and_another_seed_does_not():
    a = render_shapes_canvas(3, 256, 320, object_scale=64)
    b = render_shapes_canvas(3, 256, 320, object_scale=64)
    c = render_shapes_canvas(4, 256, 320, object_scale=64)
    assert a.pixels.shape == (256, 320, 3) and a.pixels.dtype == np.uint8
    assert np.array_equal(a.pixels, b.pixels) and a.background == b.background
    assert [(s.kind, s.y0, s.x0, s.mask.tobytes()) for s in a.instances] == [
        (s.kind, s.y0, s.x0, s.mask.tobytes()) for s in b.instances
    ]
    assert not np.array_equal(a.pixels, c.pixels)


@pytest.mark.parametrize("background", BACKGROUNDS)
def test_visible_parts_are_solid_trimmed_crops_the_size_of_the_small_images_shapes(background):
    scale = 64
    canvas = render_shapes_canvas(0, 384, 448, object_scale=scale, background=background)
    assert canvas.background == background
    _label_image(canvas)
    for shape in canvas.instances:
        assert 0 <= shape.y0 and shape.y1 <= 384 and 0 <= shape.x0 and shape.x1 <= 448
        assert shape.mask.any(axis=1)[[0, -1]].all() and shape.mask.any(axis=0)[[0, -1]].all()  # trimmed
        assert shape.mask.sum() >= 12
        assert max(shape.mask.shape) <= 0.5 * scale + 2  # sizes follow object_scale, not the canvas
        colours = canvas.pixels[shape.y0 : shape.y1, shape.x0 : shape.x1][shape.mask]
        assert len(np.unique(colours, axis=0)) == 1  # occluded pixels were removed from the mask


def test_density_and_coverage_match_the_small_images():
    """Per area, as many shapes and as much shape area as the 128-px images (scaled to 64 px here)."""
    scale = 64
    counts, covered = [], []
    for index in range(120):
        _, instances = render_shapes_image(7, index, scale, 1, 4)
        counts.append(len(instances))
        covered.append(sum(int(m.sum()) for _, m in instances) / scale**2)
    per_area_small = np.mean(counts) / scale**2
    canvas = render_shapes_canvas(7, 768, 768, object_scale=scale)
    per_area_canvas = len(canvas.instances) / 768**2
    covered_canvas = sum(int(s.mask.sum()) for s in canvas.instances) / 768**2
    assert per_area_canvas == pytest.approx(per_area_small, rel=0.15)
    assert covered_canvas == pytest.approx(np.mean(covered), rel=0.25)
    kinds = np.bincount([s.kind for s in canvas.instances], minlength=3)
    assert kinds.min() > 0.2 * len(canvas.instances)  # all three shapes, about equally


def test_plain_background_is_one_colour_and_shapes_differ_from_it():
    canvas = render_shapes_canvas(2, 256, 256, object_scale=64, background="plain")
    labels = _label_image(canvas)
    background = canvas.pixels[labels == 0]
    assert len(np.unique(background, axis=0)) == 1
    for shape in canvas.instances:
        colour = canvas.pixels[shape.y0 : shape.y1, shape.x0 : shape.x1][shape.mask][0].astype(float)
        assert np.linalg.norm(colour - background[0]) >= 89  # 90, less rounding to uint8


def test_bad_arguments_are_named():
    with pytest.raises(CanvasError, match="object_scale"):
        render_shapes_canvas(0, 100, 100, object_scale=128)
    with pytest.raises(CanvasError, match="background"):
        render_shapes_canvas(0, 256, 256, object_scale=64, background="stripes")
    with pytest.raises(CanvasError, match="min_shapes"):
        render_shapes_canvas(0, 256, 256, object_scale=64, min_shapes=3, max_shapes=2)
