"""Masks -> GeoJSON polygons: rasterised back they give the masks; a GeoTIFF's map coordinates invert to the pixel polygons."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from maskrcnn.data.georeference import GeoReference, read_georeference
from maskrcnn.inference.geojson_output import (
    class_color,
    geometry_to_geojson,
    mask_to_geometry,
    prediction_features,
)
from maskrcnn.inference.tiling.instances import CroppedInstance
from maskrcnn.inference.tiling.tiled_prediction import TiledPrediction

shapely = pytest.importorskip("shapely")


def _rasterise(geojson_geometry: dict, height: int, width: int, georef: GeoReference | None = None) -> np.ndarray:
    """A pixel is inside when its centre is inside the polygon (coordinates mapped back to pixels first)."""
    geometry = shapely.geometry.shape(geojson_geometry)
    if georef is not None:
        geometry = shapely.transform(geometry, georef.to_pixels)
    ys, xs = np.mgrid[0:height, 0:width]
    return shapely.contains_xy(geometry, xs.ravel() + 0.5, ys.ravel() + 0.5).reshape(height, width)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def _masks() -> dict[str, np.ndarray]:
    ys, xs = np.mgrid[0:40, 0:50]
    ring = ((ys - 20) ** 2 + (xs - 24) ** 2 <= 15**2) & ((ys - 20) ** 2 + (xs - 24) ** 2 > 6**2)
    two_parts = ((ys - 10) ** 2 + (xs - 10) ** 2 <= 36) | ((ys >= 25) & (ys < 35) & (xs >= 30) & (xs < 47))
    blob = ((ys - 18) / 14.0) ** 2 + ((xs - 25) / 20.0) ** 2 + 0.3 * np.sin(xs / 3.0) <= 1
    diagonal = np.zeros((40, 50), bool)
    diagonal[5, 5] = diagonal[6, 6] = True  # two pixels touching at a corner only
    return {"ring": ring, "two_parts": two_parts, "blob": blob, "diagonal": diagonal}


@pytest.mark.parametrize("name", ["ring", "two_parts", "blob", "diagonal"])
def test_polygons_rasterise_back_to_the_mask(name):
    mask = _masks()[name]
    geometry = geometry_to_geojson(mask_to_geometry(mask))
    assert _iou(_rasterise(geometry, *mask.shape), mask) >= 0.98
    if name == "ring":
        assert geometry["type"] == "Polygon" and len(geometry["coordinates"]) == 2  # outer ring and the hole
    if name == "two_parts":
        assert geometry["type"] == "MultiPolygon" and len(geometry["coordinates"]) == 2
    # pixel corners: whole numbers, rings closed
    for ring in [r for poly in ([geometry["coordinates"]] if geometry["type"] == "Polygon" else geometry["coordinates"]) for r in poly]:
        assert ring[0] == ring[-1] and all(isinstance(v, int) for point in ring for v in point)


def test_a_crop_lands_at_its_offset_and_a_square_has_four_corners():
    geometry = geometry_to_geojson(mask_to_geometry(np.ones((3, 4), bool), y0=10, x0=20))
    assert geometry["type"] == "Polygon"
    assert sorted(map(tuple, geometry["coordinates"][0][:-1])) == [(20, 10), (20, 13), (24, 10), (24, 13)]


def _geotiff(path, extratags):
    tifffile.imwrite(path, np.zeros((40, 50, 3), np.uint8), extratags=extratags)


def _geokeys(epsg: int, raster_type: int = 1) -> tuple:
    # header (version 1, revision 1.0, 3 keys), then GTModelType=projected, GTRasterType, ProjectedCSType
    return (1, 1, 0, 3, 1024, 0, 1, 1, 1025, 0, 1, raster_type, 3072, 0, 1, epsg)


def test_geotiff_scale_and_tiepoint_give_map_coordinates_that_invert_to_pixels(tmp_path):
    path = tmp_path / "ortho.tif"
    _geotiff(path, [
        (33550, "d", 3, (0.5, 0.25, 0.0), False),  # 0.5 m per column, 0.25 m per row
        (33922, "d", 6, (0.0, 0.0, 0.0, 500000.0, 4649776.0, 0.0), False),
        (34735, "H", 16, _geokeys(32633), False),
    ])  # fmt: skip
    georef = read_georeference(path)
    assert georef is not None and georef.epsg == 32633
    np.testing.assert_allclose(georef.to_map(np.array([[0.0, 0.0], [50.0, 40.0]])), [[500000.0, 4649776.0], [500025.0, 4649766.0]])
    masks = _masks()
    instances = [CroppedInstance(np.zeros(4, np.float32), 1, 0.9, 0, 0, masks["ring"]),
                 CroppedInstance(np.zeros(4, np.float32), 2, 0.8, 0, 0, masks["two_parts"])]
    collection = prediction_features(TiledPrediction(40, 50, instances), lambda k: ["bg", "tree", "roof"][k], lambda k: k * 10, georef)
    assert collection["crs"]["properties"]["name"] == "urn:ogc:def:crs:EPSG::32633"
    first, second = collection["features"]
    assert first["properties"] == {"class_name": "tree", "category_id": 10, "score": 0.9,
                                   "objectType": "detection", "classification": {"name": "tree", "color": class_color(1)}}
    pixel_geometry = geometry_to_geojson(mask_to_geometry(masks["ring"]))
    for map_ring, pixel_ring in zip(first["geometry"]["coordinates"], pixel_geometry["coordinates"]):
        inverted = georef.to_pixels(np.array(map_ring))
        assert {tuple(p) for p in np.round(inverted, 6).tolist()} == {tuple(map(float, p)) for p in pixel_ring}
    assert _iou(_rasterise(second["geometry"], 40, 50, georef), masks["two_parts"]) >= 0.98
    # right-hand rule in map coordinates (y up): the outer ring counter-clockwise
    assert shapely.geometry.LinearRing(first["geometry"]["coordinates"][0]).is_ccw


def test_model_transformation_and_pixel_is_point(tmp_path):
    path = tmp_path / "t.tif"
    matrix = (2.0, 0.0, 0.0, 1000.0, 0.0, -2.0, 0.0, 2000.0, 0, 0, 0, 0, 0, 0, 0, 1)
    _geotiff(path, [(34264, "d", 16, matrix, False), (34735, "H", 16, _geokeys(3857, raster_type=2), False)])
    georef = read_georeference(path)
    # PixelIsPoint: (1000, 2000) is the centre of pixel (0, 0), so its corner lies one map unit up-left
    np.testing.assert_allclose(georef.to_map(np.array([[0.0, 0.0]])), [[999.0, 2001.0]])
    assert georef.epsg == 3857


def test_plain_images_have_no_georeference(tmp_path):
    tifffile.imwrite(tmp_path / "plain.tif", np.zeros((8, 8), np.uint8))
    assert read_georeference(tmp_path / "plain.tif") is None
    collection = prediction_features(TiledPrediction(8, 8, []), str, int, None)
    assert collection == {"type": "FeatureCollection", "features": []}


def test_the_docs_examples_are_the_same_polygons_in_pixels_and_in_map_coordinates():
    """docs/examples (scripts/make_geojson_example.py): the UTM file inverts to the pixel file."""
    import json
    from pathlib import Path

    examples = Path(__file__).resolve().parents[2] / "docs" / "examples"
    pixels = json.loads((examples / "nuclei_pixels.geojson").read_text())
    utm = json.loads((examples / "nuclei_utm33n.geojson").read_text())
    assert "crs" not in pixels and utm["crs"]["properties"]["name"] == "urn:ogc:def:crs:EPSG::32633"
    georef = GeoReference(0.5, 0.0, 500000.0, 0.0, -0.5, 4649776.0, 32633)  # the script's tags
    assert len(pixels["features"]) == len(utm["features"]) > 0
    for a, b in zip(pixels["features"], utm["features"]):
        assert a["properties"] == b["properties"]
        back = shapely.transform(shapely.geometry.shape(b["geometry"]), georef.to_pixels)
        assert back.symmetric_difference(shapely.geometry.shape(a["geometry"])).area < 1e-6
