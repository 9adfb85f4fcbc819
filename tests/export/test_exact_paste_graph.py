"""export/exact_paste.py (matrix products, whole image) gives the model's exact paste
(ops/exact_paste.py: grid_sample, windows, scatter_add) up to float rounding, and
export/agreement.py gives test-time augmentation's rescoring exactly."""

from __future__ import annotations

import torch

from maskrcnn.export import exact_paste
from maskrcnn.export.agreement import rescore_by_agreement
from maskrcnn.model.test_augment import (
    rescore_by_agreement as model_rescore_by_agreement,
)
from maskrcnn.ops import exact_paste as model_exact_paste
from maskrcnn.structures import RoIDetections


def random_boxes(generator: torch.Generator, num: int) -> torch.Tensor:
    corners = torch.rand((num, 2), generator=generator) * 100 - 10  # some start outside the image
    sizes = torch.rand((num, 2), generator=generator) * 40 + 0.3
    return torch.cat([corners, corners + sizes], dim=1)  # (N, 4)


def test_align_and_paste_match_the_models():
    generator = torch.Generator().manual_seed(0)
    grids = torch.rand((25, 28, 28), generator=generator)
    boxes = random_boxes(generator, 25)
    boxes[0] = torch.tensor([3.0, 3.0, 3.0002, 3.5])  # narrower than MIN_BOX_SIDE
    boxes[1] = torch.tensor([75.0, 5.0, 130.0, 66.0])  # past the right and bottom edges
    aligned = model_exact_paste.align_mask_grids(grids, boxes)
    torch.testing.assert_close(exact_paste.align_mask_grids(grids, boxes), aligned, atol=1e-5, rtol=0)
    expected = model_exact_paste.paste_masks_exact(aligned, boxes, (70, 90))  # (N, 70, 90)
    pasted = exact_paste.paste_masks_exact(aligned, boxes, torch.tensor([70, 90]))
    assert pasted.shape == expected.shape
    torch.testing.assert_close(pasted, expected, atol=1e-6, rtol=0)
    assert expected[1].sum() > 0 and expected[5].sum() > 0  # not a comparison of zeros


def test_rescoring_matches_the_models_with_an_empty_pass():
    generator = torch.Generator().manual_seed(1)

    def detections(num: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return random_boxes(generator, num), torch.rand(num, generator=generator), torch.randint(1, 3, (num,), generator=generator)

    first = detections(12)
    near = (first[0] + 0.4, first[1] * 0.9, first[2])  # agrees with the first pass
    per_pass = [first, detections(0), near, detections(9)]
    kept = RoIDetections(boxes=first[0], scores=first[1], labels=first[2])
    expected = model_rescore_by_agreement(kept, [RoIDetections(boxes=b, scores=s, labels=lab) for b, s, lab in per_pass])
    boxes, scores, labels = rescore_by_agreement(first[0], first[2], per_pass)
    assert torch.equal(boxes, expected.boxes) and torch.equal(scores, expected.scores) and torch.equal(labels, expected.labels)
    assert bool((scores > 0).all()) and not torch.equal(scores, first[1].sort(descending=True).values)
    none_kept = rescore_by_agreement(first[0][:0], first[2][:0], per_pass)
    assert [tuple(t.shape) for t in none_kept] == [(0, 4), (0,), (0,)]
