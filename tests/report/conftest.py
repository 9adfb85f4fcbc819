"""Fixtures of the hand-made report case (report_case.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from report_case import SIZE, case_gt, case_results


@pytest.fixture()
def case_files(tmp_path: Path) -> dict[str, Path]:
    """The case as files: annotations, predictions (with masks), an images folder."""
    gt_path = tmp_path / "gt.json"
    gt_path.write_text(json.dumps(case_gt()))
    predictions = tmp_path / "predictions.json"
    predictions.write_text(json.dumps(case_results()))
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8)).save(images / "case.png")
    return {"annotations": gt_path, "predictions": predictions, "images": images}


@pytest.fixture()
def case_coco():
    from maskrcnn.data.coco import make_coco

    return make_coco(case_gt())
