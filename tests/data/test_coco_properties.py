"""Property: the COCO loaders, given any mutation of a valid file (a value replaced, a key
dropped or added, the text cut or a byte changed), either load it or stop with one clear
line (a `UserError`, which the command line prints as `maskrcnn: error: ...`): never a
traceback, never a hang (each case runs under a time limit). Profiles in tests/conftest.py."""

from __future__ import annotations

import contextlib
import copy
import json
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from maskrcnn.data.coco import CocoDataset, load_coco_gt
from maskrcnn.errors import error_message, is_user_error
from maskrcnn.ops.masks import mask_to_rle

CASE_TIME_LIMIT_S = 20  # a bound for a loaded machine; a case takes milliseconds
HEIGHT, WIDTH = 24, 32


def valid_coco() -> dict[str, Any]:
    square = np.zeros((HEIGHT, WIDTH), dtype=np.uint8)
    square[4:12, 6:20] = 1
    return {
        "images": [{"id": 1, "file_name": "a.png", "height": HEIGHT, "width": WIDTH},
                   {"id": 2, "file_name": "b.png", "height": HEIGHT, "width": WIDTH}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [2.0, 3.0, 10.0, 8.0], "area": 80.0, "iscrowd": 0,
             "segmentation": [[2.0, 3.0, 12.0, 3.0, 12.0, 11.0, 2.0, 11.0]]},
            {"id": 2, "image_id": 1, "category_id": 2, "iscrowd": 0, "segmentation": mask_to_rle(square)},
            {"id": 3, "image_id": 2, "category_id": 1, "segmentation": {"size": [HEIGHT, WIDTH], "counts": [100, 20, 648]}},
        ],
        "categories": [{"id": 1, "name": "circle"}, {"id": 2, "name": "square"}],
    }


# values that break a field's type or range, then any JSON value
EDGE_VALUES = [None, True, "", "x", -1, 0, 1.5, 10**9, 2**31, -(2**63), float("nan"), float("inf"), [], {}, [1, 2], {"a": 1}]
JSON_VALUES = st.sampled_from(EDGE_VALUES) | st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=6),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=8,
)


def locations(value: Any, path: tuple = ()) -> Iterator[tuple]:
    """Every path (keys and indices) into a JSON value, the root included."""
    yield path
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else []
    for key, child in items:
        yield from locations(child, (*path, key))


@st.composite
def mutated_files(draw) -> bytes:
    data = valid_coco()
    text_edit = draw(st.sampled_from(["none"] * 8 + ["cut", "byte"]))
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.sampled_from(list(locations(data))))
        edit = draw(st.sampled_from(["replace", "drop", "add"]))
        if not path:
            data = draw(JSON_VALUES) if edit == "replace" else data
            continue
        parent = data
        for key in path[:-1]:
            parent = parent[key]
        key = path[-1]
        if edit == "replace":
            parent[key] = draw(JSON_VALUES)
        elif edit == "drop":
            del parent[key]
        elif isinstance(parent, dict):
            parent[draw(st.text(max_size=8))] = draw(JSON_VALUES)
        else:
            parent.insert(key, copy.deepcopy(draw(st.sampled_from(parent))) if draw(st.booleans()) else draw(JSON_VALUES))
    raw = json.dumps(data).encode()  # NaN and Infinity as Python's json writes them
    if text_edit == "cut":
        raw = raw[: draw(st.integers(0, len(raw)))]
    elif text_edit == "byte" and raw:
        at = draw(st.integers(0, len(raw) - 1))
        raw = raw[:at] + bytes([draw(st.integers(0, 255))]) + raw[at + 1 :]
    return raw


@contextlib.contextmanager
def time_limit(seconds: int) -> Iterator[None]:
    def stop(signum, frame):
        raise TimeoutError(f"a case took more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, stop)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("images")
    for name in ("a.png", "b.png"):
        Image.fromarray(np.full((HEIGHT, WIDTH, 3), 90, np.uint8)).save(folder / name)
    return folder


def load_everything(path: Path, images: Path) -> None:
    """What training and evaluation do with an annotation file, without a model."""
    load_coco_gt(path)
    dataset = CocoDataset(path, images)
    for index in range(len(dataset)):
        dataset[index]
    dataset.coco  # noqa: B018 - the evaluation index, built on first use


def check_loads_or_one_line(raw: bytes, images: Path) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "annotations.json"
        path.write_bytes(raw)
        try:
            with time_limit(CASE_TIME_LIMIT_S):
                load_everything(path, images)
        except Exception as exc:  # a user error passes, anything else fails the property
            if not is_user_error(exc):
                raise
            assert "\n" not in error_message(exc), error_message(exc)


def test_the_valid_file_loads(image_folder):
    check_loads_or_one_line(json.dumps(valid_coco()).encode(), image_folder)
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "a.json").write_text(json.dumps(valid_coco()))
        assert len(CocoDataset(Path(folder) / "a.json", image_folder)) == 2


@settings(max_examples=4 * settings().max_examples)  # milliseconds a case: 4 times the profile's
@given(raw=mutated_files())
def test_any_mutation_loads_or_stops_with_one_line(image_folder, raw):
    check_loads_or_one_line(raw, image_folder)


@pytest.mark.parametrize("height, width", [(60_000, 60_000), (100_000, 100_000), (10**9, 32)])
def test_a_huge_stated_image_size_is_never_allocated(image_folder, height, width):
    # Found while writing these properties: an image record stating 60000 x 60000 pixels and a
    # polygon without a bbox made the loader rasterise a 3.6 GB mask to compute the box (and
    # over 2^32 pixels pycocotools wrapped its counts, or crashed when memory ran out). Box and
    # area now come from the mask's runs; over 2^32 - 1 pixels the annotation is skipped.
    data = valid_coco()
    data["images"][0].update(height=height, width=width)
    del data["annotations"][0]["bbox"]
    check_loads_or_one_line(json.dumps(data).encode(), image_folder)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "annotations.json"
        path.write_text(json.dumps(data))
        with time_limit(CASE_TIME_LIMIT_S):
            coco, warnings = load_coco_gt(path)
    if height * width < 2**32:
        assert coco.anns[1]["bbox"] == [2.0, 3.0, 10.0, 8.0] and coco.anns[1]["area"] == 80.0
    else:
        assert warnings["image over 2^32 - 1 pixels (too large for a COCO mask)"] == 2
