"""Each piece of work done in one place: a second copy coming back fails here.

These read the package's source: a copy of a conversion is found by its arithmetic.
"""

from pathlib import Path

import numpy as np
import torch

from maskrcnn.structures import image_to_tensor

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "maskrcnn"


def _files_containing(text: str) -> list[str]:
    return sorted(
        str(path.relative_to(PACKAGE)) for path in PACKAGE.rglob("*.py") if text in path.read_text(encoding="utf-8")
    )


def test_uint8_images_become_float_tensors_in_one_place():
    # the ONNX graph converts inside the exported file, where no Python helper can run
    assert _files_containing("div_(255") == ["structures.py"]


def test_image_to_tensor_scales_to_unit_range():
    pixels = np.array([[[0, 128, 255]]], dtype=np.uint8)  # (1, 1, 3)
    tensor = image_to_tensor(pixels)
    assert tensor.shape == (3, 1, 1) and tensor.dtype == torch.float32
    assert torch.allclose(tensor.flatten(), torch.tensor([0.0, 128 / 255, 1.0]))


def test_tiff_files_are_closed_in_one_place():
    # data/image_source.py also closes the tifffile objects it opens while probing a file
    assert _files_containing("tif.close()") == ["data/image_source.py"]


def test_prediction_files_are_matched_to_the_ground_truth_in_one_place():
    # `maskrcnn evaluate --predictions` and the report read predictions files the same way
    assert _files_containing("match_image_ids_by_file_name(") == ["evaluation/prediction_files.py"]


def test_coco_result_rows_are_written_in_one_place():
    assert _files_containing('"bbox": [round(') == ["evaluation/results.py"]
    # other outputs (GeoJSON) round scores with the writer's SCORE_DECIMALS, never their own
    score_rounding = [
        line.strip()
        for path in PACKAGE.rglob("*.py")
        for line in path.read_text(encoding="utf-8").splitlines()
        if '"score": round(' in line
    ]
    assert score_rounding and all("SCORE_DECIMALS" in line for line in score_rounding)
