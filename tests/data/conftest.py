"""Shared helpers for the data tests: a tiny COCO set written to a temporary folder.

The standard set (`tiny_coco`):
  categories: id 7 "cat", id 3 "dog"  -> labels: dog 1, cat 2 (sorted by id)
  image 1 "a.png" 20x30 (HxW) RGB:
    annotation 1: cat, polygon rectangle x 2..10, y 4..12, bbox [2, 4, 8, 8]
    annotation 2: dog, compressed RLE of rows 0..3, cols 20..29, bbox [20, 0, 10, 4]
  image 2 "b.png" 30x20 grayscale:
    annotation 3: dog, uncompressed RLE of rows 10..19, cols 5..14, bbox [5, 10, 10, 10]
    annotation 4: cat, crowd (iscrowd 1), compressed RLE of rows 0..4, cols 0..4
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as coco_mask


def box_mask(height: int, width: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    """(H, W) uint8 mask with rows y0..y1-1 and columns x0..x1-1 set."""
    mask = np.zeros((height, width), np.uint8)
    mask[y0:y1, x0:x1] = 1
    return mask


def compressed_rle(mask: np.ndarray) -> dict[str, Any]:
    rle = coco_mask.encode(np.asfortranarray(mask))
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": rle["counts"].decode("ascii")}


def uncompressed_rle(mask: np.ndarray) -> dict[str, Any]:
    """Column-major run lengths, starting with a run of zeros."""
    flat = mask.flatten(order="F")
    counts, current, run = [], 0, 0
    for value in flat:
        if value == current:
            run += 1
        else:
            counts.append(run)
            current, run = value, 1
    counts.append(run)
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": counts}


def write_coco(
    root: Path,
    images: list[dict[str, Any]],
    annotations: list[dict[str, Any]],
    categories: list[dict[str, Any]],
    pixels: dict[str, np.ndarray] | None = None,
    name: str = "annotations.json",
) -> tuple[Path, Path]:
    """Write `root/name` and the given images (file name -> array) into `root/images`."""
    images_dir = root / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    for file_name, array in (pixels or {}).items():
        Image.fromarray(array).save(images_dir / file_name)
    json_path = root / name
    json_path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return json_path, images_dir


def tiny_coco_parts() -> dict[str, Any]:
    rng = np.random.default_rng(0)
    images = [
        {"id": 1, "file_name": "a.png", "height": 20, "width": 30},
        {"id": 2, "file_name": "b.png", "height": 30, "width": 20},
    ]
    annotations = [
        {"id": 1, "image_id": 1, "category_id": 7, "segmentation": [[2, 4, 10, 4, 10, 12, 2, 12]],
         "bbox": [2, 4, 8, 8], "area": 64, "iscrowd": 0},
        {"id": 2, "image_id": 1, "category_id": 3, "segmentation": compressed_rle(box_mask(20, 30, 0, 4, 20, 30)),
         "bbox": [20, 0, 10, 4], "area": 40, "iscrowd": 0},
        {"id": 3, "image_id": 2, "category_id": 3, "segmentation": uncompressed_rle(box_mask(30, 20, 10, 20, 5, 15)),
         "bbox": [5, 10, 10, 10], "area": 100, "iscrowd": 0},
        {"id": 4, "image_id": 2, "category_id": 7, "segmentation": compressed_rle(box_mask(30, 20, 0, 5, 0, 5)),
         "bbox": [0, 0, 5, 5], "area": 25, "iscrowd": 1},
    ]
    categories = [{"id": 7, "name": "cat"}, {"id": 3, "name": "dog"}]
    pixels = {
        "a.png": rng.integers(0, 256, (20, 30, 3), dtype=np.uint8),
        "b.png": rng.integers(0, 256, (30, 20), dtype=np.uint8),
    }
    return {"images": images, "annotations": annotations, "categories": categories, "pixels": pixels}


@pytest.fixture
def tiny_coco(tmp_path: Path) -> tuple[Path, Path]:
    """(annotations.json, images folder) of the standard tiny set above."""
    return write_coco(tmp_path, **tiny_coco_parts())


@pytest.fixture
def make_coco(tmp_path: Path) -> Callable[..., tuple[Path, Path]]:
    """Write a variant of the tiny set: `make_coco(edit)` where edit(parts) changes the dict."""

    def make(edit: Callable[[dict[str, Any]], None] | None = None) -> tuple[Path, Path]:
        parts = tiny_coco_parts()
        if edit is not None:
            edit(parts)
        return write_coco(tmp_path, **parts)

    return make


@pytest.fixture
def helpers() -> Any:
    """The mask/RLE/COCO writers above, for tests that build their own cases."""
    from types import SimpleNamespace

    return SimpleNamespace(
        box_mask=box_mask, compressed_rle=compressed_rle, uncompressed_rle=uncompressed_rle, write_coco=write_coco
    )
