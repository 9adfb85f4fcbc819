"""Annotations that pycocotools would crash, hang or read garbage on are caught first.

Reproductions of issue 15: a polygon with a NaN coordinate (training grew to 23 GB; under
a memory limit pycocotools segfaults), coordinates of 1e9 (segfault), a compressed RLE cut
short or not RLE code at all ("abc"), a bbox with NaN. The loading of such files runs in
a subprocess under a 3 GiB address-space limit, so a regression can never take the
machine or the test process with it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from pycocotools import mask as coco_mask

from maskrcnn.data.coco import CocoDataset, DatasetError, load_coco_gt
from maskrcnn.data.validate import (
    RleCountsError,
    box_outside,
    decode_counts_string,
    polygons_outside,
    rle_problem,
)

NAN = float("nan")


def _fortran_runs(mask: np.ndarray) -> list[int]:
    """Run lengths of a mask read column by column, starting with zeros (by hand)."""
    runs, current, length = [], 0, 0
    for value in mask.flatten(order="F"):
        if value == current:
            length += 1
        else:
            runs.append(length)
            current, length = value, 1
    runs.append(length)
    return runs


def test_counts_string_decodes_like_pycocotools_encodes():
    rng = np.random.default_rng(0)
    for _ in range(50):
        height, width = (int(v) for v in rng.integers(1, 60, 2))
        mask = (rng.random((height, width)) < rng.random()).astype(np.uint8)
        counts = coco_mask.encode(np.asfortranarray(mask))["counts"]
        assert decode_counts_string(counts) == _fortran_runs(mask)


def test_counts_string_errors():
    with pytest.raises(RleCountsError, match="inside a number"):
        decode_counts_string("abc")  # 'a', 'b', 'c' all say "more characters follow"
    with pytest.raises(RleCountsError, match="not RLE code"):
        decode_counts_string("12~")
    with pytest.raises(RleCountsError, match="negative"):
        decode_counts_string("@")  # '@' = 16: the sign bit, no continuation -> the run -32


def test_rle_problem_checks_size_and_length():
    mask = np.zeros((20, 30), np.uint8)
    mask[3:9, 4:20] = 1
    counts = coco_mask.encode(np.asfortranarray(mask))["counts"].decode()
    assert rle_problem({"size": [20, 30], "counts": counts}, 20, 30) is None
    cut_short = [rle_problem({"size": [20, 30], "counts": counts[:end]}, 20, 30) for end in range(len(counts))]
    assert None not in cut_short  # every cut is caught: inside a number, or runs short of 20 * 30
    assert "RLE counts do not add up to the image size" in cut_short
    assert rle_problem({"size": [20, 30], "counts": "abc"}, 20, 30) == "RLE counts invalid (not COCO run-length code)"
    assert rle_problem({"size": [30, 20], "counts": counts}, 20, 30) == "RLE size does not match the image size"
    assert rle_problem({"size": [20, 30], "counts": [0, 600]}, 20, 30) is None
    assert rle_problem({"size": [20, 30], "counts": [700, -100]}, 20, 30).startswith("RLE counts invalid")
    assert rle_problem({"size": [20, 30], "counts": [0, 601]}, 20, 30) == "RLE counts do not add up to the image size"


def test_polygon_outside_by_more_than_one_image_side():
    assert not polygons_outside([[-5, -5, 35, 0, 35, 25]], 20, 30)  # a little outside: fine (clipped)
    assert not polygons_outside([[-30, -20, 60, 0, 60, 40]], 20, 30)  # exactly one side out
    assert polygons_outside([[1e9, 1, 10, 1, 10, 10]], 20, 30)
    assert polygons_outside([[1, 1, 10, 1, 10, -21]], 20, 30)
    assert not box_outside([-30, -20, 90, 60], 20, 30) and box_outside([-31, 0, 5, 5], 20, 30)
    assert box_outside([0, 0, 5, 41], 20, 30)


# -- the dataset and the evaluation ground truth --------------------------------------


def _rewrite(json_path, edit):
    data = json.loads(json_path.read_text())
    edit(data)
    json_path.write_text(json.dumps(data))  # NaN is written as NaN: Python's json reads it back


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d["annotations"][0]["segmentation"][0].__setitem__(2, NAN), r"annotation id 1: 'segmentation' holds NaN"),
        (lambda d: d["annotations"][0].update(bbox=[NAN, 10, 20, 20]), r"annotation id 1: 'bbox' holds NaN or infinity"),
        (lambda d: d["annotations"][1].update(bbox=[0, 0, float("inf"), 4]), r"annotation id 2: 'bbox' holds NaN"),
        (lambda d: d["annotations"][2].update(area=NAN), r"annotation id 3: 'area' holds NaN"),
        (lambda d: d["annotations"][2].update(area="big"), r"annotation id 3: 'area' must be a number"),
    ],
)
def test_non_finite_numbers_stop_loading_naming_the_annotation(make_coco, edit, message):
    json_path, images_dir = make_coco()
    _rewrite(json_path, edit)
    with pytest.raises(DatasetError, match=message):
        CocoDataset(json_path, images_dir)
    with pytest.raises(DatasetError, match=message):  # the same file as evaluation ground truth
        load_coco_gt(json_path)


@pytest.mark.parametrize(
    "edit, reason",
    [
        (lambda d: d["annotations"][1]["segmentation"].update(counts=d["annotations"][1]["segmentation"]["counts"][:-1]),
         "RLE counts do not add up to the image size"),
        (lambda d: d["annotations"][1]["segmentation"].update(counts="abc"), "RLE counts invalid (not COCO run-length code)"),
        (lambda d: d["annotations"][0].update(segmentation=[[1e9, 1, 10, 1, 10, 10]]), "polygon far outside the image"),
        (lambda d: d["annotations"][0].update(bbox=[2, 4, 1e9, 8]), "box far outside the image"),
        (lambda d: d["annotations"][0].update(bbox=[-1e9, 4, 1e9 + 10, 8]), "box far outside the image"),
    ],
)
def test_bad_rle_and_far_polygon_or_box_are_skipped_and_counted(make_coco, edit, reason):
    json_path, images_dir = make_coco()
    _rewrite(json_path, edit)
    dataset = CocoDataset(json_path, images_dir)
    assert dataset.warnings[reason] == 1
    _, targets, _ = dataset[0]
    assert len(targets) == 1  # the other annotation of image 1 is still there
    assert len(dataset.coco.getAnnIds(imgIds=[1])) == 1  # and out of the evaluation ground truth too
    coco, warnings = load_coco_gt(json_path)
    assert warnings[reason] == 1 and len(coco.getAnnIds(imgIds=[1])) == 1


LOAD_UNDER_LIMIT = textwrap.dedent(
    """
    import json, resource, sys
    from maskrcnn.data.coco import CocoDataset, DatasetError
    # 3 GiB above what the imports mapped (a CUDA build of torch maps several GiB of address
    # space at import): a regression fails, not the machine.
    mapped = next(int(line.split()[1]) << 10 for line in open("/proc/self/status") if line.startswith("VmSize:"))
    resource.setrlimit(resource.RLIMIT_AS, (mapped + (3 << 30), mapped + (3 << 30)))
    for json_path in sys.argv[2:]:
        try:
            dataset = CocoDataset(json_path, sys.argv[1])
            sizes = [int(dataset[i][1].masks.sum()) for i in range(len(dataset))]
            print(json.dumps({"warnings": dict(dataset.warnings), "mask_pixels": sizes}), flush=True)
        except DatasetError as exc:
            print(json.dumps({"error": str(exc)}), flush=True)
    """
)


def test_training_load_of_crashing_annotations_under_a_memory_limit(make_coco):
    """One subprocess (under a limit of 3 GiB more address space) loads every item of each file, as training does."""
    json_path, images_dir = make_coco()
    cases = {
        "nan.json": ([[2, 4, NAN, 4, 10, 12, 2, 12]], {"error": "annotation id 1: 'segmentation' holds NaN"}),
        "far.json": ([[2, 4, 1e9, 4, 10, 12, 2, 12]], {"warning": "polygon far outside the image"}),
        "far_negative.json": ([[2, 4, -1e9, 4, 10, -1e9, 2, 12]], {"warning": "polygon far outside the image"}),
        "abc.json": ({"size": [20, 30], "counts": "abc"}, {"warning": "RLE counts invalid (not COCO run-length code)"}),
    }
    base = json.loads(json_path.read_text())
    for name, (segmentation, _) in cases.items():
        data = json.loads(json.dumps(base))
        data["annotations"][0]["segmentation"] = segmentation
        (json_path.parent / name).write_text(json.dumps(data))
    run = subprocess.run(
        [sys.executable, "-c", LOAD_UNDER_LIMIT, str(images_dir), *(str(json_path.parent / n) for n in cases)],
        capture_output=True, text=True, timeout=180, check=False,
    )
    assert run.returncode == 0, f"exit {run.returncode} (a negative one is a signal): {run.stderr[-2000:]}"
    results = [json.loads(line) for line in run.stdout.strip().splitlines()]
    assert len(results) == len(cases)
    for (name, (_, expected)), result in zip(cases.items(), results):
        if "error" in expected:
            assert expected["error"] in result["error"], name
        else:
            assert result["warnings"][expected["warning"]] == 1, name
            assert result["mask_pixels"][0] == 40, name  # image 1 keeps only its RLE rectangle (4 x 10)
