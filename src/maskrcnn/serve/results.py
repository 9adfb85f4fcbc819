"""One Predictor result -> the JSON answer of POST /predict.

    {"file_name": "cells.png", "width": 640, "height": 480, "score_threshold": 0.0,
     "results": [{"file_name", "image_id": 1, "category_id", "category_name",
                  "bbox": [x, y, w, h], "score", "segmentation": {"size": [h, w], "counts": "..."}}]}

`results` are COCO results rows, written as `maskrcnn predict` writes them (maskrcnn.evaluation.results) (plus category_name),
highest score first; the page decodes the RLE masks itself.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from maskrcnn.evaluation.results import predictor_result_rows


class NamedLabels(Protocol):
    def category_id(self, label: int) -> int: ...
    def class_name(self, label: int) -> str: ...


def keep_above(result: dict[str, np.ndarray], score_threshold: float) -> dict[str, np.ndarray]:
    keep = result["scores"] >= score_threshold  # (N,)
    return {key: value[keep] for key, value in result.items()}


def prediction_payload(
    result: dict[str, np.ndarray], labels: NamedLabels, *, file_name: str, width: int, height: int, score_threshold: float
) -> dict[str, Any]:
    kept = keep_above(result, score_threshold)
    rows = predictor_result_rows(kept, image_id=1, file_name=file_name, category_id_of=labels.category_id)
    for row, label in zip(rows, kept["labels"]):
        row["category_name"] = labels.class_name(int(label))
    return {
        "file_name": file_name,
        "width": int(width),
        "height": int(height),
        "score_threshold": float(score_threshold),
        "results": rows,
    }
