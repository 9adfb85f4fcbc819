"""Run an exported ONNX file over a COCO data set and write COCO results rows, so that
`maskrcnn evaluate --predictions` scores the file exactly as it scores `maskrcnn predict`.

Images are read the way `maskrcnn evaluate --weights` reads them (data.coco.CocoDataset),
labels become category ids by the file's `maskrcnn.label_to_category_id` (label itself for
a file without one: torchvision's 91 COCO labels), masks are on above the file's
`maskrcnn.mask_threshold`, and rows go through the one writer (evaluation/results.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tqdm import tqdm

from maskrcnn.data.coco import CocoDataset
from maskrcnn.evaluation.results import coco_result_rows
from maskrcnn.ops.masks import masks_to_rles


def onnx_session(path: str | Path, threads: int = 0) -> Any:
    """An ONNX Runtime CPU session (`threads` 0: its default)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads > 0:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def onnx_coco_results(
    onnx_path: str | Path, annotations: str | Path, images: str | Path, *, threads: int = 0, progress: bool = False
) -> list[dict[str, Any]]:
    """COCO results rows (with file_name) of the file on every image of the data set."""
    session = onnx_session(onnx_path, threads)
    metadata = session.get_modelmeta().custom_metadata_map
    mapping = json.loads(metadata.get("maskrcnn.label_to_category_id", "null")) or {}
    mask_threshold = float(metadata.get("maskrcnn.mask_threshold", "0.5"))
    dataset = CocoDataset(annotations, images)
    rows: list[dict[str, Any]] = []
    for index in tqdm(range(len(dataset)), desc="onnx", disable=not progress, leave=False):
        info = dataset.image_info(index)
        boxes, labels, scores, masks = session.run(None, {"image": dataset.load_image(index)})  # (H, W, 3) uint8 in
        category_ids = [int(mapping.get(str(int(label)), label)) for label in labels]
        rles = masks_to_rles(masks > mask_threshold)  # (D, H, W) bool
        rows.extend(coco_result_rows(
            boxes, scores, category_ids, rles, image_id=int(info["image_id"]), file_name=info.get("file_name"),
        ))
    return rows
