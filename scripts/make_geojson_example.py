"""Regenerate the GeoJSON examples of docs/geojson.md with `maskrcnn predict --geojson`.

Run from the repository root: `python scripts/make_geojson_example.py` (a few seconds). One
generated nuclei image goes through the shipped `nuclei_synthetic` model twice: as a PNG
(pixel coordinates: docs/examples/nuclei_pixels.geojson, what QuPath imports) and as a GeoTIFF
georeferenced in UTM zone 33N at 0.5 m per pixel (map coordinates:
docs/examples/nuclei_utm33n.geojson, what QGIS places). docs/images/geojson_example.png draws
the pixel file's polygons, read back with shapely, over the image.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import shapely
import tifffile
from PIL import Image

from maskrcnn.data.nuclei import render_nuclei_image
from maskrcnn.shipped_weights import resolve_weights

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "docs" / "examples"
PICTURE = REPO / "docs" / "images" / "geojson_example.png"
# 0.5 m pixels; the image's top-left corner at easting 500000, northing 4649776 (EPSG:32633)
GEO_TAGS = [
    (33550, "d", 3, (0.5, 0.5, 0.0), False),
    (33922, "d", 6, (0.0, 0.0, 0.0, 500000.0, 4649776.0, 0.0), False),
    (34735, "H", 16, (1, 1, 0, 3, 1024, 0, 1, 1, 1025, 0, 1, 1, 3072, 0, 1, 32633), False),
]


def predict(image: Path, output: Path) -> Path:
    weights = resolve_weights("nuclei_synthetic")
    subprocess.run([sys.executable, "-m", "maskrcnn.cli", "predict", str(image), "--weights", str(weights),
                    "--output", str(output), "--geojson", "--no-overlays", "--quiet", "--device", "cpu"], check=True)
    return output / "geojson" / f"{image.stem}.geojson"


def draw(pixels: np.ndarray, collection: dict, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(4.2, 4.2), dpi=110)
    ax.imshow(pixels)
    for feature in collection["features"]:
        geometry = shapely.geometry.shape(feature["geometry"])
        for polygon in getattr(geometry, "geoms", [geometry]):
            for ring in [polygon.exterior, *polygon.interiors]:
                xs, ys = ring.xy
                ax.plot(xs, ys, color="yellow", linewidth=1)
    ax.set_title(f"{len(collection['features'])} polygons read back from nuclei_pixels.geojson", fontsize=8)
    ax.set_axis_off()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    pixels, _masks, _style = render_nuclei_image(7, 0, sizes=((160, 160),))
    EXAMPLES.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        Image.fromarray(pixels).save(work / "nuclei.png")
        tifffile.imwrite(work / "nuclei_utm.tif", pixels, photometric="rgb", extratags=GEO_TAGS)
        pixel_file = predict(work / "nuclei.png", work / "png")
        map_file = predict(work / "nuclei_utm.tif", work / "tif")
        (EXAMPLES / "nuclei_pixels.geojson").write_text(pixel_file.read_text())
        (EXAMPLES / "nuclei_utm33n.geojson").write_text(map_file.read_text())
    draw(pixels, json.loads((EXAMPLES / "nuclei_pixels.geojson").read_text()), PICTURE)
    print(f"wrote {EXAMPLES}/nuclei_pixels.geojson, nuclei_utm33n.geojson and {PICTURE}")


if __name__ == "__main__":
    main()
