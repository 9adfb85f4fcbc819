"""Which napari image layers the plugin takes, and the pixels it reads from them (no Qt needed)."""

from __future__ import annotations

import numpy as np
import pytest

from maskrcnn.data.image_source import open_image_source
from maskrcnn.napari_plugin.layer_pixels import (
    LayerPixels,
    LayerShapeError,
    layer_source,
    plane_of,
)


def test_napari_layer_planes_grey_rgb_and_multiscale():
    grey = np.arange(12, dtype=np.uint16).reshape(3, 4)
    assert plane_of(LayerPixels("g", grey, rgb=False, multiscale=False)) is grey
    rgba = np.zeros((3, 4, 4), np.uint8)
    assert plane_of(LayerPixels("c", rgba, rgb=True, multiscale=False)) is rgba
    pyramid = [np.zeros((8, 8), np.uint8), np.zeros((4, 4), np.uint8)]
    assert plane_of(LayerPixels("m", pyramid, rgb=False, multiscale=True)) is pyramid[0]  # full resolution


@pytest.mark.parametrize("shape", [(4, 64, 64), (2, 3, 16, 16), (16, 16, 3)])
def test_napari_stacks_are_refused_in_one_line(shape):
    with pytest.raises(LayerShapeError) as caught:
        plane_of(LayerPixels("stack", np.zeros(shape, np.uint8), rgb=False, multiscale=False))
    message = str(caught.value)
    assert "\n" not in message and "'stack'" in message and str(shape) in message


def test_napari_layer_pixels_are_the_pixels_a_file_reader_gives():
    rng = np.random.default_rng(0)
    deep = rng.integers(0, 4096, size=(20, 30), dtype=np.uint16)  # 12-bit values in 16 bits
    for mode in ("auto", "percentile"):
        from_layer = layer_source(LayerPixels("d", deep, rgb=False, multiscale=False), mode).read(0, 20, 0, 30)
        expected = open_image_source(deep, mode).read(0, 20, 0, 30)  # the reader of `maskrcnn predict`
        assert from_layer.shape == (20, 30, 3) and from_layer.dtype == np.uint8
        np.testing.assert_array_equal(from_layer, expected)
