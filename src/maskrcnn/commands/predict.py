"""The `maskrcnn predict` job: images in, COCO-format predictions and overlay PNGs out.

    OUTPUT/predictions.json     a list of COCO results: file_name, image_id, category_id,
                                bbox [x, y, w, h], score, segmentation (RLE, str counts)
    OUTPUT/overlays/<name>.png  one picture per image (masks, contours, boxes, captions)
    OUTPUT/labels/<name>.tif    with --label-image: one integer per instance (or .png)
    OUTPUT/geojson/<name>.geojson  with --geojson: one polygon Feature per instance
                                (map coordinates for a georeferenced GeoTIFF; docs/geojson.md)

image_id is the 1-based position of the image in the sorted input list; `maskrcnn
evaluate --predictions` maps predictions to ground truth by file_name when it can.
"""

from __future__ import annotations

import glob
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from maskrcnn.config import ImageConfig, TilingConfig
from maskrcnn.data.georeference import read_georeference
from maskrcnn.data.image_source import open_image_source
from maskrcnn.data.images import read_image
from maskrcnn.data.intensity import check_mode
from maskrcnn.errors import UserError
from maskrcnn.evaluation.results import predictor_result_rows
from maskrcnn.inference.geojson_output import require_shapely, write_geojson
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


@dataclass(frozen=True)
class PredictOptions:
    """Everything `maskrcnn predict` takes besides the images (its CLI options, same defaults)."""

    weights: str | Path
    config: str | None = None  # built-in config or YAML, for a plain torchvision state dict
    output: str | Path = "runs/predict"
    score_threshold: float = 0.5
    mask_threshold: float | None = None  # None: the checkpoint's model.roi_heads.mask_threshold
    mask_paste: str | None = None  # None: the checkpoint's model.roi_heads.mask_paste
    test_augment: str | None = None  # None: the checkpoint's model.test_augment
    device: str = "auto"
    batch_size: int = 1
    overlays: bool = True
    progress: bool = True
    precision: str = "fp32"
    tile: int = 0  # > 0: overlapping tiles of this many image pixels
    tile_overlap: int = _TILING.overlap
    tile_scale: float = _TILING.scale
    label_image: str | None = None  # "tif" | "png": also OUTPUT/labels/<name>
    geojson: bool = False  # also OUTPUT/geojson/<name>.geojson
    intensity: str = _IMAGES.intensity
    max_image_pixels: int | None = _IMAGES.max_image_pixels


@dataclass(frozen=True)
class ImageOutputs:
    """Where one input image's pictures go (None: not asked for)."""

    image_id: int  # 1-based position in the sorted input list
    path: Path
    overlay: Path | None
    label_image: Path | None
    geojson: Path | None = None


def check_options(options: PredictOptions) -> None:
    """The options that can be checked before the model loads."""
    if options.batch_size < 1:
        raise ImageListError(f"--batch-size: expected a positive integer, got {options.batch_size}")
    check_mode(options.intensity)
    if options.tile:
        check_tiling(options.tile, options.tile_overlap, options.tile_scale)
    if options.geojson:
        require_shapely()


def image_outputs(paths: list[Path], options: PredictOptions) -> list[ImageOutputs]:
    output = Path(options.output)
    names = overlay_names(paths)
    label_suffix = f".{options.label_image}" if options.label_image else ""
    return [
        ImageOutputs(
            image_id=index + 1,
            path=path,
            overlay=output / "overlays" / name if options.overlays else None,
            label_image=output / "labels" / Path(name).with_suffix(label_suffix).name if options.label_image else None,
            geojson=output / "geojson" / Path(name).with_suffix(".geojson").name if options.geojson else None,
        )
        for index, (path, name) in enumerate(zip(paths, names))
    ]


def load_predictor(options: PredictOptions) -> Predictor:
    """The Predictor that `options` ask for (also the napari plugin's, so both give one answer)."""
    return Predictor.from_checkpoint(
        options.weights, config=options.config, device=options.device, score_threshold=options.score_threshold,
        mask_threshold=options.mask_threshold, precision=options.precision, test_augment=options.test_augment,
        mask_paste=options.mask_paste,
    )


def run_predict(inputs: Sequence[str | Path], options: PredictOptions) -> dict[str, Any]:
    """Predict on every image; returns {"images", "detections", "predictions", "overlays"}.

    options.tile > 0: each image in overlapping tiles (`Predictor.predict_tiled`), overlays
    reduced to TilingConfig.overlay_max_side.
    """
    check_options(options)
    paths = collect_images(inputs)  # before loading the model: bad paths fail fast
    predictor = load_predictor(options)
    outputs = image_outputs(paths, options)
    if options.tile:
        records = [row for out in outputs for row in predict_one_tiled(predictor, out, options)]
    else:
        records = predict_whole_images(predictor, outputs, options)
    predictions_path = Path(options.output) / "predictions.json"
    atomic_write_json(predictions_path, records, indent=None)
    overlay_dir = Path(options.output) / "overlays"
    print(f"{len(paths)} image(s), {len(records)} detection(s) with score >= {options.score_threshold:g}")
    print(f"predictions: {predictions_path}")
    if options.overlays:
        print(f"overlays:    {overlay_dir}/")
    if options.label_image:
        print(f"labels:      {Path(options.output) / 'labels'}/")
    if options.geojson:
        print(f"geojson:     {Path(options.output) / 'geojson'}/")
    return {
        "images": len(paths),
        "detections": len(records),
        "predictions": str(predictions_path),
        "overlays": str(overlay_dir) if options.overlays else None,
    }


def predict_whole_images(predictor: Predictor, outputs: list[ImageOutputs], options: PredictOptions) -> list[dict[str, Any]]:
    """Whole-image prediction, options.batch_size images per model call: the COCO rows;
    overlays and label images written."""
    records: list[dict[str, Any]] = []
    bar = tqdm(total=len(outputs), desc="predict", unit="img", disable=not options.progress)
    for start in range(0, len(outputs), options.batch_size):
        chunk = outputs[start : start + options.batch_size]
        images = [read_image(o.path, intensity=options.intensity, max_pixels=options.max_image_pixels) for o in chunk]
        for out, image, result in zip(chunk, images, predictor.predict_batch(images)):
            records.extend(predictor_result_rows(
                result, image_id=out.image_id, file_name=str(out.path), category_id_of=predictor.category_id
            ))  # fmt: skip
            if out.overlay is not None:
                picture = draw_instances(
                    image, result["boxes"], result["labels"], result["scores"], result["masks"],
                    predictor.class_names, scale=display_scale(*image.shape[:2]),
                )
                save_image(out.overlay, picture)
            if out.label_image is not None or out.geojson is not None:
                crops = dense_to_tiled(result)
                if out.label_image is not None:
                    write_label_image(crops, out.label_image)
                if out.geojson is not None:
                    write_geojson(crops, out.geojson, predictor.class_name, predictor.category_id, read_georeference(out.path))
        bar.update(len(chunk))
    bar.close()
    return records


def predict_one_tiled(predictor: Predictor, out: ImageOutputs, options: PredictOptions) -> list[dict[str, Any]]:
    """Tiled prediction of one image file: its COCO rows; overlay and label image written."""
    source = open_image_source(out.path, options.intensity)  # no pixel limit: read by regions
    try:
        result = predictor.predict_tiled(
            source, tile=options.tile, overlap=options.tile_overlap, scale=options.tile_scale, progress=options.progress
        )
        result_dict = {"boxes": result.boxes, "labels": result.labels, "scores": result.scores}
        rows = predictor_result_rows(
            result_dict, image_id=out.image_id, file_name=str(out.path), category_id_of=predictor.category_id,
            rles=result.rles(),
        )
        if out.overlay is not None:
            save_image(out.overlay, draw_overlay(source, result, predictor.class_names, _TILING.overlay_max_side))
        if out.label_image is not None:
            write_label_image(result, out.label_image)
        if out.geojson is not None:
            write_geojson(result, out.geojson, predictor.class_name, predictor.category_id, read_georeference(out.path))
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
