"""Predicted instances as GeoJSON polygons (`maskrcnn predict --geojson`), for QGIS and QuPath.

One FeatureCollection per image, one Feature per instance (highest score first, in the
order of predictions.json), its geometry the outline of the mask's pixels:
    a Polygon                 one connected part, its holes as inner rings
    a MultiPolygon            several parts
Coordinates follow pixel corners: the outline runs along the pixels' edges, so rasterising
the polygon back (a pixel is inside when its centre is) gives the mask exactly. Without a
georeference they are pixel coordinates, x right and y down from the image's top-left
corner (what QuPath reads); for a GeoTIFF with a georeference they are map coordinates in
its CRS (what QGIS reads), and the collection names the CRS by its EPSG code when the
file has one (the pre-RFC 7946 "crs" member, which QGIS and GDAL read).

Properties: class_name, category_id, score; and QuPath's objectType ("detection") and
classification ({"name": class_name, "color": [r, g, b]}) so that QuPath shows the class.

The polygons come from shapely (GEOS): each run of mask pixels in a row is a 1-pixel-high
rectangle, and their union is the outline; collinear points are removed. shapely is the
optional extra `maskrcnn[geo]`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from maskrcnn.data.georeference import GeoReference
from maskrcnn.evaluation.results import SCORE_DECIMALS
from maskrcnn.errors import UserError
from maskrcnn.inference.tiling.tiled_prediction import TiledPrediction
from maskrcnn.io_utils import atomic_write_json
from maskrcnn.visualize.canvas import instance_colors

COORDINATE_DECIMALS = 6  # map units; pixel coordinates are whole numbers


class MissingGeoExtraError(UserError):
    """--geojson needs shapely, which the base install leaves out."""


def require_shapely() -> Any:
    """The shapely module; a one-line error when the `geo` extra is not installed."""
    try:
        import shapely
    except ImportError:
        raise MissingGeoExtraError("--geojson needs shapely: pip install 'maskrcnn[geo]'") from None
    return shapely


def class_color(label: int) -> list[int]:
    """One colour per class (the overlays' palette): [r, g, b] 0..255."""
    return instance_colors(label + 1)[label].tolist()


def mask_to_geometry(mask: np.ndarray, y0: int = 0, x0: int = 0) -> Any:
    """(h, w) bool mask at (y0, x0) of the image -> a shapely Polygon or MultiPolygon in pixel
    corners (x right, y down); an empty mask gives an empty geometry."""
    shapely = require_shapely()
    h, w = mask.shape
    padded = np.zeros((h, w + 2), dtype=np.int8)
    padded[:, 1:-1] = mask
    rows, cols = np.nonzero(np.diff(padded, axis=1))  # run starts and ends, row by row
    starts, ends = cols[0::2], cols[1::2]  # (R,) each: a run covers columns start..end-1
    run_rows = rows[0::2]
    boxes = shapely.box(x0 + starts, y0 + run_rows, x0 + ends, y0 + run_rows + 1)  # (R,) rectangles
    outline = shapely.union_all(boxes)
    return shapely.simplify(outline, 0.0)  # drop the points between collinear edges


def _ring(coords: np.ndarray, georef: GeoReference | None) -> list[list[float]]:
    points = np.asarray(coords, dtype=np.float64)[:, :2]  # (K, 2)
    if georef is not None:
        return np.round(georef.to_map(points), COORDINATE_DECIMALS).tolist()
    return points.astype(np.int64).tolist()


def geometry_to_geojson(geometry: Any, georef: GeoReference | None = None) -> dict[str, Any]:
    """A shapely (Multi)Polygon in pixel corners -> a GeoJSON geometry (map coordinates with `georef`).

    Rings follow GeoJSON's right-hand rule in the output's numbers: outer rings
    counter-clockwise, holes clockwise (in pixel coordinates, y down, that is the other way
    round on the screen)."""
    # shapely is installed here: `geometry` is one of its objects
    from shapely.geometry.polygon import orient

    flip = georef is not None and (georef.a * georef.e - georef.b * georef.d) < 0  # map y up, pixel y down
    polygons = list(geometry.geoms) if geometry.geom_type == "MultiPolygon" else [geometry]
    rings = []
    for polygon in polygons:
        polygon = orient(polygon, sign=-1.0 if flip else 1.0)
        rings.append([_ring(polygon.exterior.coords, georef)] + [_ring(r.coords, georef) for r in polygon.interiors])
    if len(rings) == 1:
        return {"type": "Polygon", "coordinates": rings[0]}
    return {"type": "MultiPolygon", "coordinates": rings}


def prediction_features(
    result: TiledPrediction,
    class_name: Callable[[int], str],
    category_id: Callable[[int], int],
    georef: GeoReference | None = None,
) -> dict[str, Any]:
    """The FeatureCollection of one image's instances (instances with an empty mask are left out)."""
    features = []
    for instance in result.instances:
        geometry = mask_to_geometry(instance.mask, instance.y0, instance.x0)
        if geometry.is_empty:
            continue
        name = class_name(instance.label)
        features.append({
            "type": "Feature",
            "geometry": geometry_to_geojson(geometry, georef),
            "properties": {
                "class_name": name,
                "category_id": category_id(instance.label),
                "score": round(float(instance.score), SCORE_DECIMALS),
                "objectType": "detection",
                "classification": {"name": name, "color": class_color(instance.label)},
            },
        })  # fmt: skip
    collection: dict[str, Any] = {"type": "FeatureCollection", "features": features}
    if georef is not None and georef.epsg is not None:
        collection["crs"] = {"type": "name", "properties": {"name": f"urn:ogc:def:crs:EPSG::{georef.epsg}"}}
    return collection


def write_geojson(
    result: TiledPrediction,
    path: str | Path,
    class_name: Callable[[int], str],
    category_id: Callable[[int], int],
    georef: GeoReference | None = None,
) -> Path:
    """Write one image's FeatureCollection to `path` (atomically)."""
    atomic_write_json(path, prediction_features(result, class_name, category_id, georef), indent=None)
    return Path(path)
