"""The exported R50-FPN in ONNX Runtime against our PyTorch model (the reference), with the
criterion of ../shared/parity/README.md, on parity images of two different sizes through
one file; and the ONNX Runtime snippet of docs/export.md, run as written. The weights are
those of the parity fixtures (make_weights.py); the images are resized to 400 px (not 800)
to keep the suite short: benchmarks/runtimes.py checks all three images at full size."""

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


SNIPPET_SECTION = "### Running it without this package"


def docs_snippet() -> str:
    """The ONNX Runtime example of docs/export.md (the python block of that section), as written."""
    guide = (Path(__file__).resolve().parents[2] / "docs" / "export.md").read_text()
    section = guide[guide.index(SNIPPET_SECTION):]
    begin = section.index("```python\n") + len("```python\n")
    return section[begin: section.index("```\n", begin)]


def test_docs_snippet_runs_the_exported_file(exported, tmp_path, monkeypatch):
    model, _, onnx_path = exported
    snippet = docs_snippet()
    assert len(snippet.strip().splitlines()) <= 12  # short, and runs without this package:
    assert "import maskrcnn" not in snippet and "from maskrcnn" not in snippet
    # Run exactly as written, in a folder holding the two files it names.
    (tmp_path / "model.onnx").symlink_to(onnx_path)
    Image.fromarray(read_image("astronaut.png")).save(tmp_path / "image.jpg", quality=95)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(snippet, "docs/export.md", "exec"), namespace)  # noqa: S102 - our own guide
    image = np.asarray(Image.open(tmp_path / "image.jpg").convert("RGB"))
    with torch.inference_mode():
        (ours,) = model([torch.from_numpy(image.copy()).permute(2, 0, 1).float() / 255.0])
    keep = (ours.scores >= 0.5).numpy()
    assert keep.sum() >= 10  # the parity weights' astronaut: plenty above 0.5
    reference = DetectionSet(ours.boxes.numpy()[keep], ours.labels.numpy()[keep], ours.scores.numpy()[keep],
                             ours.masks.numpy()[keep] > model.mask_threshold)
    found = DetectionSet(namespace["boxes"], namespace["labels"], namespace["scores"], namespace["masks"])
    assert namespace["masks"].dtype == bool and namespace["masks"].shape[1:] == image.shape[:2]
    assert namespace["metadata"]["maskrcnn.test_augment"] == "none"
    report = compare_detections(reference, found)
    assert report.passes, report.summary()
