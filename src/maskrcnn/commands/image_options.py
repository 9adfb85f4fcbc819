"""`maskrcnn predict` options for large and deep images (registered by cli.py; no heavy imports)."""

from __future__ import annotations

import argparse
from typing import Any

from maskrcnn.config import ImageConfig, TilingConfig


def add_image_options(parser: argparse.ArgumentParser) -> None:
    tiling, image = TilingConfig(), ImageConfig()
    group = parser.add_argument_group("large images and deep images (docs/big-images.md)")
    group.add_argument("--tile", type=int, default=0, metavar="PX",
                       help=f"predict in overlapping tiles of PX image pixels at the model's scale (0: whole image; "
                            f"e.g. {tiling.tile_size})")
    group.add_argument("--tile-overlap", type=int, default=tiling.overlap, metavar="PX",
                       help="pixels shared by neighbouring tiles (larger than the objects is best)")
    group.add_argument("--tile-scale", type=float, default=tiling.scale, metavar="F",
                       help="resize factor applied to every tile before the model (1: the image's own pixels)")
    group.add_argument("--label-image", nargs="?", const="tif", default=None, choices=("tif", "png"),
                       help="also write labels/<name>.tif|png: one integer per instance, 0 background")
    group.add_argument("--geojson", action="store_true",
                       help="also write geojson/<name>.geojson: one polygon per instance, map coordinates for a "
                            "georeferenced GeoTIFF (needs maskrcnn[geo]; docs/geojson.md)")
    group.add_argument("--intensity", default=image.intensity, choices=("auto", "dtype", "range", "percentile"),
                       help="how 16-bit / float images become 0..255 (maskrcnn.data.intensity)")
    group.add_argument("--max-image-pixels", type=int, default=image.max_image_pixels, metavar="N",
                       help="refuse larger images without --tile (whole-image prediction would not fit in memory)")


def image_option_values(args: argparse.Namespace) -> dict[str, Any]:
    """The PredictOptions fields of these options."""
    return {
        "tile": args.tile,
        "tile_overlap": args.tile_overlap,
        "tile_scale": args.tile_scale,
        "label_image": args.label_image,
        "geojson": args.geojson,
        "intensity": args.intensity,
        "max_image_pixels": args.max_image_pixels,
    }
