"""The napari plugin (npe2 manifest `napari.yaml`, entry point `napari.manifest: maskrcnn`).

Install with the `napari` extra; napari then lists it under Plugins > maskrcnn. The widget
(`widget.py`) runs the work of `segmentation.py`, which is `maskrcnn predict --label-image`
on an image layer's pixels (`layer_pixels.py`). Nothing here is imported by the rest of
the package, so the base install never needs napari or Qt.
"""
