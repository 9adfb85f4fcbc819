"""`maskrcnn predict --geojson`, whole-image and tiled: one .geojson per image whose polygons are the predicted masks."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
from PIL import Image

from maskrcnn.cli import main
from maskrcnn.data.georeference import GeoReference
from maskrcnn.ops.masks import rle_to_mask

shapely = pytest.importorskip("shapely")


# a GeoTIFF at 2 m per pixel, top-left corner at (300000, 5000000) in EPSG:32632
GEO_TAGS = [
    (33550, "d", 3, (2.0, 2.0, 0.0), False),
    (33922, "d", 6, (0.0, 0.0, 0.0, 300000.0, 5000000.0, 0.0), False),
    (34735, "H", 8, (1, 1, 0, 1, 3072, 0, 1, 32632), False),
]
GEOREF = GeoReference(2.0, 0.0, 300000.0, 0.0, -2.0, 5000000.0, 32632)


def _rasterise(geometry: dict, height: int, width: int, georef: GeoReference | None) -> np.ndarray:
    shape = shapely.geometry.shape(geometry)
    if georef is not None:
        shape = shapely.transform(shape, georef.to_pixels)
    ys, xs = np.mgrid[0:height, 0:width]
    inside = shapely.contains_xy(shape, xs.ravel() + 0.5, ys.ravel() + 0.5)
    return inside.reshape(height, width)


@pytest.mark.parametrize("tile", [None, "48"])
def test_predict_geojson_matches_the_predicted_masks(tiny_checkpoint, tmp_path, capsys, tile):
    """Whole image: a PNG, pixel coordinates. Tiled: a GeoTIFF, map coordinates in its CRS."""
    pixels = np.random.default_rng(3).integers(0, 255, (60, 80, 3), dtype=np.uint8)
    if tile:
        image, georef = tmp_path / "field.tif", GEOREF
        tifffile.imwrite(image, pixels, photometric="rgb", extratags=GEO_TAGS)
    else:
        image, georef = tmp_path / "field.png", None
        Image.fromarray(pixels).save(image)
    out = tmp_path / "out"
    args = ["predict", str(image), "--weights", str(tiny_checkpoint), "--output", str(out),
            "--geojson", "--score-threshold", "0", "--device", "cpu", "--quiet", "--no-overlays"]
    assert main(args + (["--tile", tile, "--tile-overlap", "16"] if tile else [])) == 0
    assert "geojson:" in capsys.readouterr().out
    records = json.loads((out / "predictions.json").read_text())
    collection = json.loads((out / "geojson" / "field.geojson").read_text())
    assert collection["type"] == "FeatureCollection"
    if georef is None:
        assert "crs" not in collection
    else:
        assert collection["crs"]["properties"]["name"] == "urn:ogc:def:crs:EPSG::32632"
    kept = [r for r in records if rle_to_mask(r["segmentation"]).any()]
    assert len(kept) > 0 and len(collection["features"]) == len(kept)
    for record, feature in zip(kept, collection["features"]):
        assert feature["properties"]["score"] == record["score"]
        assert feature["properties"]["category_id"] == record["category_id"]
        mask = rle_to_mask(record["segmentation"]).astype(bool)
        drawn = _rasterise(feature["geometry"], *mask.shape, georef)
        assert (drawn & mask).sum() / (drawn | mask).sum() >= 0.98
