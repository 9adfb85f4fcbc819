"""A hand-made case for the report: one image, every error kind exactly once.

Image 100x100, classes 1 "circle" and 2 "square". Boxes are x, y, w, h.

  objects  g0 c1 [10,10,20,20]   g1 c1 [50,10,20,20]   g2 c2 [10,50,20,20]
           g3 c1 [60,60,20,20]   g4 c2 [80,30,15,15]   g5 c2 [30,80,15,15]
  d0 c1 0.95 [10,10,20,20]  matches g0                                  -> correct
  d1 c1 0.90 [11,11,20,20]  IoU 0.82 with g0, already taken by d0        -> dupe
  d2 c1 0.85 [50,10,20,20]  matches g1                                  -> correct
  d3 c1 0.80 [10,50,20,20]  IoU 1 with g2, which is class 2              -> cls (points at g2)
  d4 c1 0.75 [66,66,20,20]  IoU 196/604 = 0.32 with g3                  -> loc (points at g3)
  d5 c2 0.70 [0,85,10,10]   touches nothing                             -> bkg
  d6 c2 0.60 [30,80,15,15]  matches g5                                  -> correct
  g4: no detection near it                                               -> miss

Masks are the boxes filled, so bbox and segm give the same answers.
"""

from __future__ import annotations

import numpy as np

GT_BOXES = [
    (1, [10, 10, 20, 20]), (1, [50, 10, 20, 20]), (2, [10, 50, 20, 20]),
    (1, [60, 60, 20, 20]), (2, [80, 30, 15, 15]), (2, [30, 80, 15, 15]),
]
DETECTIONS = [
    (1, 0.95, [10, 10, 20, 20]), (1, 0.90, [11, 11, 20, 20]), (1, 0.85, [50, 10, 20, 20]),
    (1, 0.80, [10, 50, 20, 20]), (1, 0.75, [66, 66, 20, 20]), (2, 0.70, [0, 85, 10, 10]),
    (2, 0.60, [30, 80, 15, 15]),
]
SIZE = 100


def box_rle(box: list[float]) -> dict:
    from pycocotools import mask as mask_utils

    x, y, w, h = (int(v) for v in box)
    mask = np.zeros((SIZE, SIZE), dtype=np.uint8, order="F")
    mask[y : y + h, x : x + w] = 1
    rle = mask_utils.encode(mask)
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def case_gt() -> dict:
    annotations = [
        {"id": i + 1, "image_id": 1, "category_id": c, "bbox": box, "area": float(box[2] * box[3]), "iscrowd": 0,
         "segmentation": box_rle(box)}
        for i, (c, box) in enumerate(GT_BOXES)
    ]
    return {
        "images": [{"id": 1, "file_name": "case.png", "height": SIZE, "width": SIZE}],
        "annotations": annotations,
        "categories": [{"id": 1, "name": "circle"}, {"id": 2, "name": "square"}],
    }


def case_results(with_masks: bool = True) -> list[dict]:
    rows = []
    for c, score, box in DETECTIONS:
        row = {"image_id": 1, "category_id": c, "bbox": list(map(float, box)), "score": score}
        if with_masks:
            row["segmentation"] = box_rle(box)
        rows.append(row)
    return rows
