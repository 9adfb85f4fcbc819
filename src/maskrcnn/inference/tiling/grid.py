"""The tile grid: overlapping windows that cover an image.

Tiles are `tile_size` pixels (the image's own pixels) and neighbours share at least
`overlap` pixels. Starts step by stride = tile_size - overlap from `origin` and are clamped
into the image, so every tile is full-size when the image is (the last row and column are
pulled back to end at the image border, sharing more than `overlap` with their
neighbours). `origin` shifts the whole grid (used to check that results do not depend on
where the seams fall).
"""

from __future__ import annotations

from typing import NamedTuple

from maskrcnn.errors import UserError


class TilingError(UserError):
    """Tile size, overlap or scale that cannot make a grid."""


class TileWindow(NamedTuple):
    """One tile: rows y0..y1-1 and columns x0..x1-1 of the image; `index` in row-major order."""

    index: int
    y0: int
    x0: int
    y1: int
    x1: int

    @property
    def height(self) -> int:
        return self.y1 - self.y0

    @property
    def width(self) -> int:
        return self.x1 - self.x0


class TileGrid(NamedTuple):
    height: int
    width: int
    rows: list[list[TileWindow]]  # tiles of each row of the grid, left to right

    @property
    def tiles(self) -> list[TileWindow]:
        return [t for row in self.rows for t in row]


def check_tiling(tile_size: int, overlap: int, scale: float = 1.0) -> None:
    if tile_size < 32:
        raise TilingError(f"tile size {tile_size}: expected at least 32 pixels")
    if overlap < 0 or overlap >= tile_size:
        raise TilingError(f"tile overlap {overlap}: expected 0 <= overlap < tile size ({tile_size})")
    if not scale > 0:
        raise TilingError(f"tile scale {scale}: expected a positive factor")


def tile_starts(length: int, tile_size: int, overlap: int, origin: int = 0) -> list[int]:
    """Start offsets along one axis of `length` pixels."""
    if length <= tile_size:
        return [0]
    stride = tile_size - overlap
    first = origin % stride - (stride if origin % stride else 0)  # the grid line at or before 0
    starts: list[int] = []
    position = first
    while True:
        start = min(max(position, 0), length - tile_size)
        if not starts or start > starts[-1]:
            starts.append(start)
        if start + tile_size >= length:
            return starts
        position += stride


def tile_grid(height: int, width: int, tile_size: int, overlap: int, origin: tuple[int, int] = (0, 0)) -> TileGrid:
    check_tiling(tile_size, overlap)
    rows = []
    index = 0
    for y in tile_starts(height, tile_size, overlap, origin[0]):
        row = []
        for x in tile_starts(width, tile_size, overlap, origin[1]):
            row.append(TileWindow(index, y, x, min(y + tile_size, height), min(x + tile_size, width)))
            index += 1
        rows.append(row)
    return TileGrid(height, width, rows)
