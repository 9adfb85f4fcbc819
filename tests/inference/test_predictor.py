"""Predictor: input checks, thresholds, NumPy outputs, batching; with a stand-in model."""

import numpy as np
import pytest
import torch
from torch import nn

from maskrcnn.inference.predictor import ImageFormatError, Predictor, check_image
from maskrcnn.structures import Detections


class FixedModel(nn.Module):
    """Returns two detections per image (scores 0.9 and 0.3) and records what it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))
        self.calls: list[list[torch.Tensor]] = []

    def forward(self, images: list[torch.Tensor]) -> list[Detections]:
        self.calls.append(images)
        out = []
        for image in images:
            _, h, w = image.shape
            masks = torch.zeros((2, h, w))
            masks[0, : h // 2, : w // 2] = 0.9
            masks[1, h // 2 :, w // 2 :] = 0.4  # below the mask threshold
            out.append(
                Detections(
                    boxes=torch.tensor([[0.0, 0.0, w / 2, h / 2], [w / 2, h / 2, w, h]]),
                    scores=torch.tensor([0.9, 0.3]),
                    labels=torch.tensor([2, 1]),
                    masks=masks,
                )
            )
        return out


def test_predictor_returns_numpy_and_applies_thresholds() -> None:
    model = FixedModel()
    predictor = Predictor(model, class_names=["bg", "a", "b"], score_threshold=0.5, device="cpu")
    image = np.full((6, 8, 3), 255, dtype=np.uint8)
    out = predictor(image)
    assert set(out) == {"boxes", "labels", "scores", "masks"}
    assert out["boxes"].shape == (1, 4) and out["boxes"].dtype == np.float32
    assert out["labels"].tolist() == [2] and out["scores"].tolist() == pytest.approx([0.9])
    assert out["masks"].shape == (1, 6, 8) and out["masks"].dtype == bool
    assert out["masks"][0].sum() == 3 * 4  # top-left quarter
    # the model saw a float image in [0, 1], channels first
    seen = model.calls[0][0]
    assert seen.shape == (3, 6, 8) and seen.dtype == torch.float32 and float(seen.max()) == 1.0
    assert not model.training
    predictor.score_threshold = 0.2
    assert predictor(image)["labels"].tolist() == [2, 1]
    assert predictor(image)["masks"][1].sum() == 0  # probability 0.4 < mask threshold 0.5
    assert predictor.class_name(2) == "b" and predictor.class_name(7) == "7"


def test_predict_batch_on_the_cpu_runs_one_image_per_call_in_order() -> None:
    model = FixedModel()
    predictor = Predictor(model, device="cpu")
    images = [np.zeros((4, 4, 3), np.uint8), np.zeros((10, 6, 3), np.uint8)]
    results = predictor.predict_batch(images)
    # a padded batch was slower than one image at a time on the CPU (benchmarks/inference.py --batch)
    assert [len(call) for call in model.calls] == [1, 1] and len(results) == 2
    assert [tuple(call[0].shape[1:]) for call in model.calls] == [(4, 4), (10, 6)]
    assert results[0]["masks"].shape == (1, 4, 4) and results[1]["masks"].shape == (1, 10, 6)
    assert predictor.predict_batch([]) == []


def test_category_id_mapping() -> None:
    predictor = Predictor(FixedModel(), label_to_category_id={1: 7, 2: 11}, device="cpu")
    assert predictor.category_id(2) == 11
    assert Predictor(FixedModel(), device="cpu").category_id(2) == 2


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros((4, 4), np.uint8), "grayscale"),
        (np.zeros((4, 4, 4), np.uint8), "RGBA"),
        (np.zeros((4, 4, 3), np.float32), "uint8"),
        (torch.zeros((4, 4, 3), dtype=torch.uint8), "torch tensor"),
        ([[0, 0, 0]], "NumPy array"),
        (np.zeros((0, 4, 3), np.uint8), "empty"),
    ],
)
def test_bad_images_give_clear_errors(bad, message) -> None:
    predictor = Predictor(FixedModel(), device="cpu")
    with pytest.raises(ImageFormatError, match=message):
        predictor(bad)


def test_check_image_names_the_batch_position() -> None:
    predictor = Predictor(FixedModel(), device="cpu")
    with pytest.raises(ImageFormatError, match="image 1"):
        predictor.predict_batch([np.zeros((2, 2, 3), np.uint8), np.zeros((2, 2), np.uint8)])
    assert check_image(np.zeros((2, 3, 3), np.uint8)).shape == (2, 3, 3)



def test_masks_hold_pixels_above_the_threshold_as_the_evaluation_does():
    # A probability exactly at the threshold is outside the mask in the Predictor's output,
    # as in the COCO evaluation and torchvision (`> 0.5`); it used to be inside.
    from maskrcnn.inference.predictor import detections_to_numpy

    probabilities = torch.tensor([[0.2, 0.5], [0.5000001, 0.9]])
    det = Detections(
        boxes=torch.tensor([[0.0, 0.0, 2.0, 2.0]]), scores=torch.tensor([0.9]), labels=torch.tensor([1]),
        masks=probabilities[None],
    )
    masks = detections_to_numpy(det, 0.5, 0.5, 2, 2)["masks"]
    assert masks[0].tolist() == [[False, False], [True, True]]
