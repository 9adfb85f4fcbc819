"""The exported R50-FPN in ONNX Runtime against our PyTorch model (the reference), with the
criterion of ../shared/parity/README.md, on parity images of two different sizes through
one file. The weights are those of the parity fixtures (make_weights.py); the images are
resized to 400 px (not 800) to keep the suite short: benchmarks/runtimes.py checks all
three images at full size."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from maskrcnn.checkpoints import load_state_dict_into
from maskrcnn.config import load_config
from maskrcnn.export.compare import DetectionSet, compare_detections
from maskrcnn.export.onnx_export import export_onnx
from maskrcnn.model.build import build_model

ort = pytest.importorskip("onnxruntime")
PARITY = Path(__file__).resolve().parents[2].parent / "shared" / "parity"
MODEL = "maskrcnn_resnet50_fpn"
SMALL = ["model.transform.min_size=[400]", "model.transform.max_size=667"]

pytestmark = pytest.mark.skipif(not PARITY.is_dir(), reason=f"parity fixtures not found at {PARITY}")


def parity_model(overrides: list[str]):
    spec_module = importlib.util.spec_from_file_location("parity_make_weights", PARITY / "make_weights.py")
    make_weights = importlib.util.module_from_spec(spec_module)
    spec_module.loader.exec_module(make_weights)
    spec = json.loads((PARITY / MODEL / "spec.json").read_text())
    state_dict = make_weights.make_weights(make_weights.load_spec(PARITY / MODEL / "spec.json"), seed=spec["seed"])
    model = build_model(load_config(MODEL, overrides).model)
    load_state_dict_into(model, state_dict)
    return model.eval()


def read_image(name: str) -> np.ndarray:
    return np.asarray(Image.open(PARITY / "images" / name).convert("RGB"))  # (H, W, 3) uint8


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    model = parity_model(SMALL)
    path = export_onnx(model, tmp_path_factory.mktemp("onnx") / "r50.onnx", config_name=MODEL)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    return model, ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"]), path


@pytest.mark.parametrize("name, crop", [("chelsea.png", None), ("astronaut.png", (37, 301, 9, 410))])
def test_onnxruntime_matches_pytorch(exported, name, crop):
    model, session, _ = exported
    image = read_image(name)
    if crop is not None:  # another size (and aspect ratio) through the same file
        top, bottom, left, right = crop
        image = np.ascontiguousarray(image[top:bottom, left:right])
    with torch.inference_mode():
        (ours,) = model([torch.from_numpy(image.copy()).permute(2, 0, 1).float() / 255.0])
    boxes, labels, scores, masks = session.run(None, {"image": image})
    assert masks.shape == (len(boxes), *image.shape[:2]) and masks.dtype == np.float32
    reference = DetectionSet(ours.boxes.numpy(), ours.labels.numpy(), ours.scores.numpy(), ours.masks.numpy() > 0.5)
    report = compare_detections(reference, DetectionSet(boxes, labels, scores, masks > 0.5))
    print(f"{name} {image.shape[:2]}: {report.summary()}")
    assert report.reference >= 50  # a real test: the model finds plenty on these images
    assert report.passes, report.summary()


def docs_snippet() -> str:
    """docs/export.md's ONNX Runtime example (the python block of "Running it without this package")."""
    page = (Path(__file__).resolve().parents[2] / "docs" / "export.md").read_text()
    section = page[page.index("### Running it without this package"):]
    return section[section.index("```python\n") + len("```python\n"): section.index("```\n", section.index("```python"))]


def test_docs_snippet_runs_the_exported_file(exported, tmp_path):
    model, _, onnx_path = exported
    snippet = docs_snippet()
    assert len(snippet.strip().splitlines()) <= 10  # short, and runs without this package:
    assert "import maskrcnn" not in snippet and "from maskrcnn" not in snippet
    assert snippet.count('"model.onnx"') == 1 and snippet.count('"image.jpg"') == 1
    # The synthetic parity weights score below 0.5 almost everywhere: keep from 0.2 instead.
    assert snippet.count("scores >= 0.5") == 1
    code = (
        snippet.replace('"model.onnx"', repr(str(onnx_path)))
        .replace('"image.jpg"', repr(str(PARITY / "images" / "astronaut.png")))
        .replace("scores >= 0.5", "scores >= 0.2")
    )
    namespace: dict = {}
    exec(compile(code, "docs/export.md", "exec"), namespace)  # noqa: S102 - our own docs
    image = read_image("astronaut.png")
    with torch.inference_mode():
        (ours,) = model([torch.from_numpy(image.copy()).permute(2, 0, 1).float() / 255.0])
    keep = (ours.scores >= 0.2).numpy()
    assert keep.sum() >= 3
    reference = DetectionSet(ours.boxes.numpy()[keep], ours.labels.numpy()[keep], ours.scores.numpy()[keep],
                             ours.masks.numpy()[keep] > 0.5)
    found = DetectionSet(namespace["boxes"], namespace["labels"], namespace["scores"][namespace["keep"]], namespace["masks"])
    assert namespace["masks"].dtype == bool and namespace["masks"].shape[1:] == image.shape[:2]
    report = compare_detections(reference, found)
    assert report.passes, report.summary()
