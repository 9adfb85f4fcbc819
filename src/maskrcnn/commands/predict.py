"""The `maskrcnn predict` job: images in, COCO-format predictions and overlay PNGs out.

    OUTPUT/predictions.json     a list of COCO results: file_name, image_id, category_id,
                                bbox [x, y, w, h], score, segmentation (RLE, str counts)
    OUTPUT/overlays/<name>.png  one picture per image (masks, contours, boxes, captions)
    OUTPUT/labels/<name>.tif    with --label-image: one integer per instance (or .png)

image_id is the 1-based position of the image in the sorted input list; `maskrcnn
evaluate --predictions` maps predictions to ground truth by file_name when it can.
"""

from __future__ import annotations

import glob
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from maskrcnn.config import ImageConfig, TilingConfig
from maskrcnn.data.image_source import open_image_source
from maskrcnn.data.images import read_image
from maskrcnn.data.intensity import check_mode
from maskrcnn.errors import UserError
from maskrcnn.evaluation.results import predictor_result_rows
from maskrcnn.inference.predictor import Predictor
from maskrcnn.inference.tiling.grid import check_tiling
from maskrcnn.inference.tiling.instances import CroppedInstance, trim
from maskrcnn.inference.tiling.outputs import draw_overlay, write_label_image
from maskrcnn.inference.tiling.tiled_prediction import TiledPrediction
from maskrcnn.io_utils import atomic_write_json
from maskrcnn.visualize.overlays import draw_instances
from maskrcnn.visualize.panels import display_scale, save_image

_TILING, _IMAGES = TilingConfig(), ImageConfig()
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif")
GLOB_CHARACTERS = set("*?[")


class ImageListError(UserError):
    """An image argument that names nothing readable: no such path, no matches, no images."""


def _is_image_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS


def collect_images(inputs: Sequence[str | Path]) -> list[Path]:
    """Expand files, folders (their image files, not recursive) and glob patterns, in order."""
    found: list[Path] = []
    for item in inputs:
        text = str(item)
        path = Path(text)
        if path.is_file():
            found.append(path)  # any extension: the image reader gives the clear error if needed
        elif path.is_dir():
            images = sorted(p for p in path.iterdir() if _is_image_file(p))
            if not images:
                raise ImageListError(f"{text}: folder has no image files (looked for {', '.join(IMAGE_EXTENSIONS)})")
            found.extend(images)
        elif GLOB_CHARACTERS & set(text):
            matches = [Path(m) for m in sorted(glob.glob(text, recursive=True))]
            images = [m for m in matches if _is_image_file(m)]
            if not images:
                what = "no files match" if not matches else f"{len(matches)} match(es) but none is an image file"
                raise ImageListError(f"{text}: {what}")
            found.extend(images)
        else:
            raise ImageListError(f"{text}: no such file or folder")
    unique: dict[Path, Path] = {}  # resolved path -> the path as given; the same file once
    for p in found:
        unique.setdefault(p.resolve(), p)
    return list(unique.values())


def overlay_names(paths: Sequence[Path]) -> list[str]:
    """One PNG name per image: its stem, with _2, _3 ... when stems repeat."""
    seen: dict[str, int] = {}
    names = []
    for path in paths:
        count = seen.get(path.stem, 0) + 1
        seen[path.stem] = count
        names.append(f"{path.stem}.png" if count == 1 else f"{path.stem}_{count}.png")
    return names


def run_predict(
    inputs: Sequence[str | Path],
    *,
    weights: str | Path,
    config: str | None = None,
    output: str | Path = "runs/predict",
    score_threshold: float = 0.5,
    mask_threshold: float | None = None,
    device: str = "auto",
    batch_size: int = 1,
    overlays: bool = True,
    progress: bool = True,
    precision: str = "fp32",
    test_augment: str | None = None,
    mask_paste: str | None = None,
    tile: int = 0,
    tile_overlap: int = _TILING.overlap,
    tile_scale: float = _TILING.scale,
    label_image: str | None = None,
    intensity: str = _IMAGES.intensity,
    max_image_pixels: int | None = _IMAGES.max_image_pixels,
) -> dict[str, Any]:
    """Predict on every image; returns {"images", "detections", "predictions", "overlays"}.

    tile > 0: each image in overlapping tiles (`Predictor.predict_tiled`), overlays reduced
    to TilingConfig.overlay_max_side. label_image "tif"/"png": also OUTPUT/labels/<name>.
    """
    from tqdm import tqdm


    if batch_size < 1:
        raise ImageListError(f"--batch-size: expected a positive integer, got {batch_size}")
    check_mode(intensity)
    if tile:
        check_tiling(tile, tile_overlap, tile_scale)
    paths = collect_images(inputs)  # before loading the model: bad paths fail fast
    predictor = Predictor.from_checkpoint(
        weights, config=config, device=device, score_threshold=score_threshold, mask_threshold=mask_threshold,
        precision=precision, test_augment=test_augment, mask_paste=mask_paste,
    )
    output = Path(output)
    overlay_dir = output / "overlays"
    names = overlay_names(paths)
    records: list[dict[str, Any]] = []
    overlay_paths = [overlay_dir / n if overlays else None for n in names]
    label_paths = [output / "labels" / Path(n).with_suffix(f".{label_image}").name if label_image else None for n in names]
    if tile:
        for index, path in enumerate(paths):
            records.extend(predict_one_tiled(
                predictor, path, index=index, tile=tile, overlap=tile_overlap, scale=tile_scale, intensity=intensity,
                progress=progress, overlay_path=overlay_paths[index], label_path=label_paths[index],
            ))
    else:
        bar = tqdm(total=len(paths), desc="predict", unit="img", disable=not progress)
        for start in range(0, len(paths), batch_size):
            chunk = paths[start : start + batch_size]
            images = [read_image(p, intensity=intensity, max_pixels=max_image_pixels) for p in chunk]
            results = predictor.predict_batch(images)
            for index, (path, image, result) in enumerate(zip(chunk, images, results), start=start):
                records.extend(
                    predictor_result_rows(result, image_id=index + 1, file_name=str(path), category_id_of=predictor.category_id)
                )
                if overlay_paths[index] is not None:
                    picture = draw_instances(
                        image, result["boxes"], result["labels"], result["scores"], result["masks"],
                        predictor.class_names, scale=display_scale(*image.shape[:2]),
                    )
                    save_image(overlay_paths[index], picture)
                if label_paths[index] is not None:
                    write_label_image(dense_to_tiled(result), label_paths[index])
            bar.update(len(chunk))
        bar.close()
    predictions_path = output / "predictions.json"
    atomic_write_json(predictions_path, records, indent=None)
    summary = {
        "images": len(paths),
        "detections": len(records),
        "predictions": str(predictions_path),
        "overlays": str(overlay_dir) if overlays else None,
    }
    print(f"{len(paths)} image(s), {len(records)} detection(s) with score >= {score_threshold:g}")
    print(f"predictions: {predictions_path}")
    if overlays:
        print(f"overlays:    {overlay_dir}/")
    if label_image:
        print(f"labels:      {output / 'labels'}/")
    return summary


def predict_one_tiled(
    predictor: Any, path: Path, *, index: int, tile: int, overlap: int, scale: float, intensity: str,
    progress: bool, overlay_path: Path | None, label_path: Path | None,
) -> list[dict[str, Any]]:
    """Tiled prediction of one image file: its COCO rows; overlay and label image written."""
    source = open_image_source(path, intensity)  # no pixel limit: read by regions
    try:
        result = predictor.predict_tiled(source, tile=tile, overlap=overlap, scale=scale, progress=progress)
        result_dict = {"boxes": result.boxes, "labels": result.labels, "scores": result.scores}
        rows = predictor_result_rows(
            result_dict, image_id=index + 1, file_name=str(path), category_id_of=predictor.category_id, rles=result.rles()
        )
        if overlay_path is not None:
            save_image(overlay_path, draw_overlay(source, result, predictor.class_names, _TILING.overlay_max_side))
        if label_path is not None:
            write_label_image(result, label_path)
    finally:
        source.close()
    return rows


def dense_to_tiled(result: dict[str, np.ndarray]) -> Any:
    """A Predictor result with (N, H, W) masks as a TiledPrediction (crops), for the label image writer."""
    masks = result["masks"]
    height, width = masks.shape[1:]
    instances = [
        trim(CroppedInstance(box, int(label), float(score), 0, 0, mask))
        for box, label, score, mask in zip(result["boxes"], result["labels"], result["scores"], masks)
    ]
    return TiledPrediction(height, width, instances)
