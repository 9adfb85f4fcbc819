"""`maskrcnn predict --geojson`, whole-image and tiled: one .geojson per image whose polygons are the predicted masks."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from maskrcnn.cli import main
from maskrcnn.ops.masks import rle_to_mask

shapely = pytest.importorskip("shapely")


def _rasterise(geometry: dict, height: int, width: int) -> np.ndarray:
    ys, xs = np.mgrid[0:height, 0:width]
    inside = shapely.contains_xy(shapely.geometry.shape(geometry), xs.ravel() + 0.5, ys.ravel() + 0.5)
    return inside.reshape(height, width)


@pytest.mark.parametrize("tile", [None, "48"])
def test_predict_geojson_matches_the_predicted_masks(tiny_checkpoint, tmp_path, capsys, tile):
    rng = np.random.default_rng(3)
    Image.fromarray(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)).save(tmp_path / "field.png")
    out = tmp_path / "out"
    args = ["predict", str(tmp_path / "field.png"), "--weights", str(tiny_checkpoint), "--output", str(out),
            "--geojson", "--score-threshold", "0", "--device", "cpu", "--quiet", "--no-overlays"]
    assert main(args + (["--tile", tile, "--tile-overlap", "16"] if tile else [])) == 0
    assert "geojson:" in capsys.readouterr().out
    records = json.loads((out / "predictions.json").read_text())
    collection = json.loads((out / "geojson" / "field.geojson").read_text())
    assert collection["type"] == "FeatureCollection" and "crs" not in collection  # a PNG: pixel coordinates
    kept = [r for r in records if rle_to_mask(r["segmentation"]).any()]
    assert len(kept) > 0 and len(collection["features"]) == len(kept)
    for record, feature in zip(kept, collection["features"]):
        assert feature["properties"]["score"] == record["score"]
        assert feature["properties"]["category_id"] == record["category_id"]
        mask = rle_to_mask(record["segmentation"]).astype(bool)
        drawn = _rasterise(feature["geometry"], *mask.shape)
        assert (drawn & mask).sum() / (drawn | mask).sum() >= 0.98
