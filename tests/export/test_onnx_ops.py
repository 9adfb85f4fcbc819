"""Each custom op of export.onnx_ops: the ONNX operator it becomes gives, in ONNX Runtime,
what the project's PyTorch op gives (hand-checkable small inputs and seeded random ones)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from maskrcnn.export import onnx_ops
from maskrcnn.ops.nms import nms as project_nms
from maskrcnn.ops.roi_align import roi_align as project_roi_align


def random_boxes(generator: torch.Generator, num: int, side: float) -> torch.Tensor:
    corners = torch.rand((num, 2), generator=generator) * side * 0.8
    sizes = torch.rand((num, 2), generator=generator) * side * 0.3 + 0.5
    return torch.cat([corners, corners + sizes], dim=1)  # (N, 4) x1 y1 x2 y2


@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio", [2, 0])
def test_roi_align_matches_onnx_roialign(aligned, sampling_ratio, run_in_onnxruntime):
    class Pool(torch.nn.Module):
        def forward(self, feature, boxes):
            index = torch.zeros_like(boxes[:, 0], dtype=torch.int64)
            return onnx_ops.roi_align(feature, boxes, index, 7, 0.25, sampling_ratio, aligned)

    generator = torch.Generator().manual_seed(0)
    feature = torch.randn((1, 8, 24, 32), generator=generator)
    boxes = random_boxes(generator, 40, 110.0)
    boxes[0] = torch.tensor([3.0, 3.0, 3.4, 3.2])  # smaller than a pixel: aligned=False makes it 1 x 1
    other = random_boxes(generator, 9, 120.0)
    (first,), (second,) = run_in_onnxruntime(Pool(), (feature, boxes), [(feature, boxes), (feature, other)], ["feature", "boxes"])
    for got, rois in ((first, boxes), (second, other)):
        full_rois = torch.cat([torch.zeros((rois.shape[0], 1)), rois], dim=1)
        expected = project_roi_align(feature, full_rois, 7, 0.25, sampling_ratio, aligned)
        np.testing.assert_allclose(got, expected.numpy(), atol=1e-5, rtol=1e-5)


def test_nms_matches_onnx_nonmaxsuppression(run_in_onnxruntime):
    class Suppress(torch.nn.Module):
        def forward(self, boxes, scores):
            return onnx_ops.nms(boxes, scores, 0.5, 50)

    generator = torch.Generator().manual_seed(1)
    boxes = random_boxes(generator, 300, 200.0)
    scores = torch.rand(300, generator=generator)
    few = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 11.0, 11.0], [20.0, 20.0, 30.0, 30.0]])
    few_scores = torch.tensor([0.9, 0.8, 0.7])  # box 1 overlaps box 0 at IoU 0.68: suppressed
    results = run_in_onnxruntime(Suppress(), (boxes, scores), [(boxes, scores), (few, few_scores)], ["boxes", "scores"])
    assert results[1][0].tolist() == [0, 2]
    expected = project_nms(boxes, scores, 0.5)[:50]
    assert results[0][0].tolist() == expected.tolist()
    assert len(expected) == 50  # the cap applies


def test_topk_at_most_follows_the_input_length(run_in_onnxruntime):
    class Top(torch.nn.Module):
        def forward(self, values):
            return onnx_ops.topk_at_most(values, 5)

    generator = torch.Generator().manual_seed(2)
    example, short = torch.rand(12, generator=generator), torch.rand(3, generator=generator)
    for (top_values, top_index), values in zip(run_in_onnxruntime(Top(), (example,), [(example,), (short,)], ["values"]), [example, short]):
        expected_values, expected_index = values.topk(min(5, values.shape[0]))
        np.testing.assert_allclose(top_values, expected_values.numpy())
        assert top_index.tolist() == expected_index.tolist()


def test_argsort_descending_keeps_the_order_of_ties(run_in_onnxruntime):
    class Sort(torch.nn.Module):
        def forward(self, values):
            return onnx_ops.argsort_descending(values)

    example = torch.tensor([0.5, 0.9, 0.5, 0.1, 0.9, 0.5])  # ties: equal values keep their order
    other = torch.rand(40, generator=torch.Generator().manual_seed(3))
    empty = torch.zeros(0)
    results = run_in_onnxruntime(Sort(), (example,), [(example,), (other,), (empty,)], ["values"])
    assert results[0][0].tolist() == [1, 4, 0, 2, 5, 3] == onnx_ops.argsort_descending(example).tolist()
    assert results[1][0].tolist() == other.argsort(descending=True).tolist()
    assert results[2][0].shape == (0,)
