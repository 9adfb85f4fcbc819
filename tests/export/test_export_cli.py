"""`maskrcnn export` end to end on a tiny random model: the file runs in ONNX Runtime on
other image sizes, gives our model's detections, carries the class names; user errors
end in one line."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import torch

from maskrcnn.cli import main
from maskrcnn.export.compare import DetectionSet, compare_detections


def run_file(path, image: np.ndarray):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"image": image})


def seeded_image(height: int, width: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = np.full((height, width, 3), 40, dtype=np.uint8)
    image[height // 4 : height // 2, width // 5 : width // 2] = (220, 60, 60)  # a red block
    return np.clip(image + rng.integers(0, 30, image.shape), 0, 255).astype(np.uint8)


def test_export_command_writes_a_file_that_matches_the_model(tiny_checkpoint_factory, tmp_path, capsys):
    checkpoint, model = tiny_checkpoint_factory(["model.roi_heads.score_thresh=0.0", "model.roi_heads.mask_threshold=0.625"])
    output = tmp_path / "tiny.onnx"
    assert main(["export", "--weights", str(checkpoint), "--output", str(output), "--threads", "1"]) == 0
    assert "wrote" in capsys.readouterr().out
    metadata = {p.key: p.value for p in onnx.load(str(output)).metadata_props}
    assert json.loads(metadata["maskrcnn.class_names"]) == ["background", "circle", "square", "triangle"]
    assert json.loads(metadata["maskrcnn.label_to_category_id"]) == {"1": 10, "2": 20, "3": 30}
    assert float(metadata["maskrcnn.mask_threshold"]) == 0.625  # the graph's masks stay probabilities
    for height, width, seed in ((50, 70, 0), (90, 41, 1)):  # neither is the traced size
        image = seeded_image(height, width, seed)
        boxes, labels, scores, masks = run_file(output, image)
        assert masks.shape == (len(boxes), height, width)
        with torch.inference_mode():
            (ours,) = model([torch.from_numpy(image).permute(2, 0, 1).float() / 255.0])
        assert len(ours.boxes) == 5  # detections_per_img: a real comparison
        reference = DetectionSet(ours.boxes.numpy(), ours.labels.numpy(), ours.scores.numpy(), ours.masks.numpy() > 0.5)
        report = compare_detections(reference, DetectionSet(boxes, labels, scores, masks > 0.5))
        assert report.matched == 5 and report.passes, report.summary()
    # Exporting again over our own file is allowed.
    assert main(["export", "--weights", str(checkpoint), "--output", str(output), "--no-paste"]) == 0
    boxes, labels, scores, masks = run_file(output, seeded_image(50, 70, 0))
    assert masks.shape == (len(boxes), 28, 28)


def test_no_detections_give_empty_outputs(tiny_checkpoint_factory, tmp_path):
    checkpoint, _ = tiny_checkpoint_factory(["model.roi_heads.score_thresh=0.999"])
    output = tmp_path / "empty.onnx"
    assert main(["export", "--weights", str(checkpoint), "--output", str(output)]) == 0
    boxes, labels, scores, masks = run_file(output, seeded_image(60, 80, 2))
    assert boxes.shape == (0, 4) and labels.shape == (0,) and scores.shape == (0,) and masks.shape == (0, 60, 80)


def test_user_errors_are_one_line(tiny_checkpoint_factory, tmp_path, capsys):
    checkpoint, _ = tiny_checkpoint_factory()
    foreign = tmp_path / "notes.onnx"
    foreign.write_text("not ours")
    assert main(["export", "--weights", str(checkpoint), "--output", str(foreign)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"maskrcnn: error: --output {foreign}: the file exists and was not written by maskrcnn export")
    assert "\n" not in err
    assert foreign.read_text() == "not ours"
    assert main(["export", "--weights", str(checkpoint), "--format", "tflite"]) == 1
    assert "--format 'tflite': expected onnx" in capsys.readouterr().err
    assert main(["export", "--weights", str(tmp_path / "missing.pt"), "--output", str(tmp_path / "m.onnx")]) == 1
    assert "missing.pt" in capsys.readouterr().err
    assert main(["export", "--weights", str(checkpoint), "--output", str(tmp_path / "m.onnx"), "--opset", "13"]) == 1
    assert "--opset 13: expected 16 or later" in capsys.readouterr().err


def test_roi_pool_models_are_refused(tiny_checkpoint_factory, tmp_path, capsys):
    checkpoint, _ = tiny_checkpoint_factory(["model.roi_heads.pooler=roi_pool"])
    assert main(["export", "--weights", str(checkpoint), "--output", str(tmp_path / "m.onnx")]) == 1
    assert "RoIPool" in capsys.readouterr().err
    assert not (tmp_path / "m.onnx").exists()
