"""A GeoTIFF's georeference: pixel corners -> map coordinates, and the CRS's EPSG code.

GeoTIFF stores the mapping in TIFF tags (OGC GeoTIFF 1.1), read here with tifffile:
    ModelTransformationTag (34264)   a 4 x 4 matrix, row-major: X = m0 col + m1 row + m3,
                                     Y = m4 col + m5 row + m7
    ModelPixelScaleTag (33550)       (sx, sy, sz) and
    ModelTiepointTag (33922)         (i, j, k, X, Y, Z): pixel (i, j) lies at map (X, Y);
                                     X = X0 + (col - i) sx, Y = Y0 - (row - j) sy (north up)
    GeoKeyDirectoryTag (34735)       GTRasterTypeGeoKey (1025: 1 PixelIsArea, 2 PixelIsPoint),
                                     ProjectedCSTypeGeoKey (3072), GeographicTypeGeoKey (2048)
Pixel coordinates here are those of pixel corners (x right, y down, (0, 0) the image's
top-left corner). Under PixelIsPoint the tiepoint names a pixel's centre, so the map
position of the corner is half a pixel earlier.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from maskrcnn.data.image_source import is_tiff

MODEL_PIXEL_SCALE, MODEL_TIEPOINT, MODEL_TRANSFORMATION, GEO_KEY_DIRECTORY = 33550, 33922, 34264, 34735
RASTER_TYPE_KEY, PROJECTED_CRS_KEY, GEOGRAPHIC_CRS_KEY = 1025, 3072, 2048
PIXEL_IS_POINT = 2
USER_DEFINED = 32767  # GeoTIFF's "user-defined": no EPSG code


@dataclass(frozen=True)
class GeoReference:
    """The affine map of pixel corners (col, row) to map (X, Y): X = a col + b row + c, Y = d col + e row + f."""

    a: float
    b: float
    c: float
    d: float
    e: float
    f: float
    epsg: int | None  # the CRS's EPSG code, when the file names one

    def to_map(self, points: np.ndarray) -> np.ndarray:
        """(K, 2) pixel corners (col, row) -> (K, 2) map coordinates (X, Y)."""
        col, row = points[:, 0], points[:, 1]
        return np.stack([self.a * col + self.b * row + self.c, self.d * col + self.e * row + self.f], axis=1)

    def to_pixels(self, points: np.ndarray) -> np.ndarray:
        """(K, 2) map coordinates -> (K, 2) pixel corners: the inverse map."""
        matrix = np.array([[self.a, self.b], [self.d, self.e]], dtype=np.float64)
        return np.linalg.solve(matrix, (points - np.array([self.c, self.f])).T).T


def _geo_keys(values: tuple[int, ...] | None) -> dict[int, int]:
    """GeoKeyDirectory shorts -> {key id: value} for the keys stored in the directory itself."""
    if not values or len(values) < 4:
        return {}
    keys = {}
    for n in range(int(values[3])):
        key, location, count, value = values[4 + 4 * n : 8 + 4 * n]
        if location == 0 and count == 1:  # the value is in the directory (not in another tag)
            keys[int(key)] = int(value)
    return keys


def read_georeference(path: str | Path) -> GeoReference | None:
    """The georeference of a GeoTIFF; None for any other image, or a TIFF without one."""
    import tifffile

    path = Path(path)
    if not is_tiff(path):
        return None
    with tifffile.TiffFile(path) as tif:
        tags = {tag.code: tag.value for tag in tif.pages.first.tags.values()}
    keys = _geo_keys(tags.get(GEO_KEY_DIRECTORY))
    epsg = keys.get(PROJECTED_CRS_KEY) or keys.get(GEOGRAPHIC_CRS_KEY)
    epsg = None if epsg in (None, 0, USER_DEFINED) else epsg
    shift = 0.5 if keys.get(RASTER_TYPE_KEY) == PIXEL_IS_POINT else 0.0  # tiepoint at a pixel centre
    if MODEL_TRANSFORMATION in tags:
        m = [float(v) for v in tags[MODEL_TRANSFORMATION]]
        a, b, d, e = m[0], m[1], m[4], m[5]
        c, f = m[3] - shift * (a + b), m[7] - shift * (d + e)
        return GeoReference(a, b, c, d, e, f, epsg)
    if MODEL_PIXEL_SCALE in tags and MODEL_TIEPOINT in tags:
        sx, sy = (float(v) for v in tags[MODEL_PIXEL_SCALE][:2])
        i, j, _k, x0, y0 = (float(v) for v in tags[MODEL_TIEPOINT][:5])
        i, j = i + shift, j + shift  # the corner of pixel (i, j) lies half a pixel before its centre
        return GeoReference(sx, 0.0, x0 - i * sx, 0.0, -sy, y0 + j * sy, epsg)
    return None
