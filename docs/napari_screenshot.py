"""Write docs/images/napari_widget.png: napari with the maskrcnn widget after a run on generated nuclei.

    python docs/napari_screenshot.py                 # a desktop session
    xvfb-run -a python docs/napari_screenshot.py     # a headless machine (Debian: apt-get install xvfb)

Needs the napari extra. The image is generated (maskrcnn.data.nuclei, seed 0, image 0,
256 x 256), the model is the shipped `nuclei_synthetic`, and the widget is opened from the
plugin's manifest as Plugins > maskrcnn opens it.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default="docs/images/napari_widget.png")
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=820)
    parser.add_argument("--zoom", type=float, default=2.0, help="times the whole-image view")
    parser.add_argument("--center-y", type=float, default=150.0, help="image row at the centre of the view")
    parser.add_argument("--center-x", type=float, default=90.0, help="image column at the centre of the view")
    args = parser.parse_args()
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # OpenGL still needs an X display (xvfb-run)

    import napari
    import npe2
    from PIL import Image
    from qtpy.QtWidgets import QApplication

    import maskrcnn.napari_plugin
    from maskrcnn.napari_plugin.sample import generated_nuclei
    from maskrcnn.napari_plugin.segmentation import Segmentation

    manager = npe2.PluginManager.instance()
    if "maskrcnn" not in manager:  # a source checkout without the installed entry point
        manager.register(npe2.PluginManifest.from_file(Path(maskrcnn.napari_plugin.__file__).parent / "napari.yaml"))
    viewer = napari.Viewer(show=False)
    viewer.window._qt_window.resize(args.width, args.height)
    [(pixels, kwargs)] = generated_nuclei()
    viewer.add_image(pixels, **kwargs)
    _dock, widget = viewer.window.add_plugin_dock_widget("maskrcnn", "Mask R-CNN instances")
    widget.run()
    app = QApplication.instance()
    while widget.worker is not None:
        app.processEvents()
        time.sleep(0.05)
    if not isinstance(widget.outcome, Segmentation):
        raise SystemExit(f"the widget failed: {widget.outcome}")
    viewer.layers.selection.active = viewer.layers[f"{kwargs['name']} instances"]  # its controls on the left
    viewer.reset_view()
    viewer.camera.center, viewer.camera.zoom = (args.center_y, args.center_x), viewer.camera.zoom * args.zoom
    shot = viewer.screenshot(canvas_only=False, flash=False)  # (H, W, 4) uint8
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(shot[:, :, :3]).save(args.output, optimize=True)
    print(f"{args.output}: {shot.shape[1]}x{shot.shape[0]}, {len(widget.outcome.scores)} instances")
    viewer.close()


if __name__ == "__main__":
    main()
