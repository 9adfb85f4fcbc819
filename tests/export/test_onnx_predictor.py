"""The exported file gives the Predictor's answer: for each mask paste (torchvision's in one
pass; exact with test-time augmentation "flips", the shapes recipe's setting) ONNX Runtime's
detections on a tiny seeded model are the Predictor's with the same settings (same
detections, median mask IoU >= 0.99), on a tall and a wide image (neither the traced size);
the file's metadata and the command's output say which paste and which test-time mode the
graph holds. (The exact paste in one pass is the same graph minus the merge; its pieces are
checked against the model's in test_exact_paste_graph.py.) The graph with the 8 "dihedral"
orientations is checked in PyTorch against the model's test-time augmentation."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from maskrcnn.cli import main
from maskrcnn.export.compare import DetectionSet, compare_detections
from maskrcnn.inference.predictor import Predictor

# (height, width): tall, and wide enough that the resized image (43 x 96) is padded to 64
# rows, where the model's poolers infer P5's scale as 1/16 (not its stride's 1/32)
IMAGE_SIZES = ((90, 52, 0), (41, 90, 1))


def seeded_image(height: int, width: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = np.full((height, width, 3), 40, dtype=np.uint8)
    image[height // 4 : height // 2, width // 5 : width // 2] = (220, 60, 60)  # a red block
    image[height // 2 :, width // 2 :] = (60, 200, 90)  # a green corner (not mirror-symmetric)
    return np.clip(image + rng.integers(0, 30, image.shape), 0, 255).astype(np.uint8)


@pytest.mark.parametrize(
    "export_options, paste, augment",
    [
        (["--mask-paste", "torchvision"], "torchvision", "none"),  # test_augment: the checkpoint's
        (["--test-augment", "flips"], "exact", "flips"),  # mask_paste: the checkpoint's
    ],
    ids=["torchvision", "exact-flips"],
)
def test_onnx_runtime_gives_the_predictors_detections(tiny_checkpoint_factory, tmp_path, capsys, export_options, paste, augment):
    torch.set_num_threads(1)  # restored by conftest; quicker on a shared CPU
    checkpoint, _ = tiny_checkpoint_factory(["model.roi_heads.mask_paste=exact", "model.roi_heads.score_thresh=0.0"])
    output = tmp_path / "tiny.onnx"
    assert main(["export", "--weights", str(checkpoint), "--output", str(output), "--threads", "1", *export_options]) == 0
    passes = "4 passes" if augment == "flips" else "1 pass"
    assert f"mask paste: {paste}; test-time augmentation: {augment} ({passes})" in capsys.readouterr().out
    metadata = {p.key: p.value for p in onnx.load(str(output)).metadata_props}
    assert (metadata["maskrcnn.mask_paste"], metadata["maskrcnn.test_augment"]) == (paste, augment)

    predictor = Predictor.from_checkpoint(checkpoint, device="cpu", score_threshold=0.0, mask_paste=paste, test_augment=augment)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(output), options, providers=["CPUExecutionProvider"])
    for height, width, seed in IMAGE_SIZES:
        image = seeded_image(height, width, seed)
        expected = predictor(image)
        boxes, labels, scores, masks = session.run(None, {"image": image})
        assert masks.shape == (len(boxes), height, width)
        reference = DetectionSet(expected["boxes"], expected["labels"], expected["scores"], expected["masks"])
        report = compare_detections(reference, DetectionSet(boxes, labels, scores, masks > predictor.mask_threshold))
        assert report.reference == 5, report.summary()  # detections_per_img: a real comparison
        assert report.matched == report.reference == report.candidate, report.summary()
        assert report.median_mask_iou >= 0.99, report.summary()


def test_the_graph_runs_dihedral_test_time_augmentation_as_the_model(tiny_checkpoint_factory):
    """The 8 orientations in PyTorch (the exported file runs the same graph): transposed
    passes of a wide image are tall, and their pooling scales follow the model's."""
    from maskrcnn.export.graph import ExportableMaskRCNN
    from maskrcnn.model.build import with_test_augment

    torch.set_num_threads(1)
    _, model = tiny_checkpoint_factory(["model.roi_heads.mask_paste=exact", "model.roi_heads.score_thresh=0.0"])
    graph = ExportableMaskRCNN(model, test_augment="dihedral").eval()
    augmented = with_test_augment(model, "dihedral")
    for height, width, seed in IMAGE_SIZES:
        image = seeded_image(height, width, seed)
        with torch.no_grad():
            (expected,) = augmented([torch.from_numpy(image).permute(2, 0, 1).float() / 255.0])
            boxes, labels, scores, masks = graph(torch.from_numpy(image))
        assert len(boxes) == 5
        torch.testing.assert_close(boxes, expected.boxes, atol=1e-4, rtol=0)
        torch.testing.assert_close(scores, expected.scores, atol=1e-5, rtol=0)
        assert torch.equal(labels, expected.labels)
        torch.testing.assert_close(masks, expected.masks, atol=1e-4, rtol=0)
