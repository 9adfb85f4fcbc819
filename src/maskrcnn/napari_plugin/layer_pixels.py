"""A napari image layer's pixels as an ImageSource: the reader `maskrcnn predict` uses for files.

Shape glossary: H, W the image's height and width; C its channels (3 RGB, 4 RGBA).

Accepted: a 2-D grey layer (H, W) of any dtype, and an RGB(A) layer (napari's `rgb`:
(H, W, 3|4)); a multiscale layer is read at its full resolution (level 0). Dask and zarr
arrays stay lazy: tiled prediction reads them one tile at a time. Values reach 0..255
through the same intensity window as files (`maskrcnn.data.intensity`), so a layer opened
from a PNG gives the pixels `maskrcnn predict` reads from that PNG.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from maskrcnn.data.image_source import ArrayImage, ImageSource, window_for
from maskrcnn.errors import UserError


class LayerShapeError(UserError):
    """An image layer the model cannot take: a 3-D (or higher) stack, or no image at all."""


class NoImageLayerError(UserError):
    """Run with no image layer in the viewer."""


class LayerPixels(NamedTuple):
    """What the plugin needs of an image layer (napari.layers.Image), without napari itself."""

    name: str
    data: Any  # (H, W) or (H, W, C) array-like; for multiscale, a list of them (largest first)
    rgb: bool
    multiscale: bool


def plane_of(layer: LayerPixels) -> Any:
    """The (H, W) or (H, W, 3|4) array to predict on, or LayerShapeError naming the layer."""
    data = layer.data[0] if layer.multiscale else layer.data
    shape = tuple(int(n) for n in data.shape)
    if layer.rgb and len(shape) == 3 and shape[2] in (3, 4):
        return data
    if len(shape) == 2:
        return data
    kind = "a 3-D stack" if len(shape) == 3 else f"a {len(shape)}-D stack"
    raise LayerShapeError(
        f"image layer '{layer.name}': {kind} of shape {shape}; expected one 2-D image, grey (H, W) or RGB(A) "
        "(H, W, 3|4): add the plane you want as its own layer (e.g. viewer.add_image(layer.data[k]))"
    )


def layer_source(layer: LayerPixels, intensity: str) -> ImageSource:
    """An ImageSource over the layer's pixels: `read` gives (h, w, 3) uint8 RGB."""
    raw = ArrayImage(plane_of(layer), where=f"image layer '{layer.name}'")
    return ImageSource(raw, window_for(raw, intensity), name=layer.name)
