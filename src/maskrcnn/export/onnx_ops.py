"""The few steps of Mask R-CNN that need their own ONNX operator, as traceable functions.

Shape glossary: C channels; H, W a map's size; N boxes; K kept boxes or RoIs; S pooled side.

Each is a PyTorch custom operator (`torch.ops.maskrcnn_export.*`) that runs the project's
own PyTorch code when called, so a traced forward pass computes what the model computes;
the TorchScript-based ONNX exporter (`torch.onnx.export(..., dynamo=False)`) records it
as one node, and `register_onnx_symbolics()` tells it which standard ONNX operator that
node becomes (torchvision exports its compiled ops the same way):

    topk_at_most      -> TopK with k = min(k, length) computed in the graph
    nms               -> NonMaxSuppression (+ Gather of the kept box indices)
    roi_align         -> RoiAlign (opset 16: half_pixel for aligned=True,
                         output_half_pixel for torchvision's aligned=False)
    argsort_descending -> TopK over the whole length (ONNX breaks ties by the lower
                         index, which is PyTorch's stable sort)

The image-dependent sizes around them (how many boxes a level has, how many survive) are
computed in the graph, so the file works for every image size.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.onnx import symbolic_helper

from maskrcnn.ops.nms import nms as project_nms
from maskrcnn.ops.roi_align import roi_align as project_roi_align

MIN_OPSET = 16  # RoiAlign's coordinate_transformation_mode arrived in opset 16
NAMESPACE = "maskrcnn_export"


# ---- the operators, as PyTorch runs them ----------------------------------------------


@torch.library.custom_op(f"{NAMESPACE}::topk_at_most", mutates_args=())
def topk_at_most(values: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """The min(k, N) largest of (N,) values, largest first: (values, indices int64)."""
    top_values, top_indices = values.topk(min(k, values.shape[0]))
    return top_values, top_indices


@torch.library.custom_op(f"{NAMESPACE}::nms", mutates_args=())
def nms(boxes: Tensor, scores: Tensor, iou_threshold: float, max_kept: int) -> Tensor:
    """Greedy NMS: indices (K,) int64 of at most `max_kept` kept boxes, by decreasing score."""
    return project_nms(boxes, scores, iou_threshold)[:max_kept].clone()


@torch.library.custom_op(f"{NAMESPACE}::roi_align", mutates_args=())
def roi_align(
    feature: Tensor,
    boxes: Tensor,
    batch_index: Tensor,
    output_size: int,
    spatial_scale: float,
    sampling_ratio: int,
    aligned: bool,
) -> Tensor:
    """RoIAlign of (K, 4) boxes from images batch_index (K,) int64 of (B, C, H, W) -> (K, C, S, S)."""
    rois = torch.cat([batch_index.to(boxes.dtype)[:, None], boxes], dim=1)  # (K, 5)
    return project_roi_align(feature, rois, output_size, spatial_scale, sampling_ratio, aligned).contiguous()


@torch.library.custom_op(f"{NAMESPACE}::argsort_descending", mutates_args=())
def argsort_descending(values: Tensor) -> Tensor:
    """Indices (N,) int64 that order (N,) values from the largest; equal values keep their order."""
    return values.argsort(descending=True, stable=True)


# ---- the same operators, as ONNX nodes ---------------------------------------------------


def _const(g: Any, value: Tensor) -> Any:
    return g.op("Constant", value_t=value)


def _ints(g: Any, values: list[int]) -> Any:
    return _const(g, torch.tensor(values, dtype=torch.int64))


@symbolic_helper.parse_args("v", "i")
def _topk_at_most_onnx(g: Any, values: Any, k: int) -> tuple[Any, Any]:
    k_value = g.op("Min", g.op("Shape", values), _ints(g, [k]))  # (1,)
    return g.op("TopK", values, k_value, axis_i=0, largest_i=1, sorted_i=1, outputs=2)


@symbolic_helper.parse_args("v", "v", "f", "i")
def _nms_onnx(g: Any, boxes: Any, scores: Any, iou_threshold: float, max_kept: int) -> Any:
    selected = g.op(
        "NonMaxSuppression",
        g.op("Unsqueeze", boxes, _ints(g, [0])),  # (1, N, 4)
        g.op("Unsqueeze", scores, _ints(g, [0, 1])),  # (1, 1, N)
        _ints(g, [max_kept]),
        _const(g, torch.tensor([iou_threshold], dtype=torch.float32)),
    )  # (K, 3): batch, class, box index; by decreasing score
    return g.op("Squeeze", g.op("Gather", selected, _ints(g, [2]), axis_i=1), _ints(g, [1]))


@symbolic_helper.parse_args("v", "v", "v", "i", "f", "i", "b")
def _roi_align_onnx(
    g: Any, feature: Any, boxes: Any, batch_index: Any, output_size: int, spatial_scale: float,
    sampling_ratio: int, aligned: bool,
) -> Any:
    return g.op(
        "RoiAlign",
        feature,
        boxes,
        batch_index,
        coordinate_transformation_mode_s="half_pixel" if aligned else "output_half_pixel",
        mode_s="avg",
        output_height_i=output_size,
        output_width_i=output_size,
        sampling_ratio_i=max(sampling_ratio, 0),  # ONNX: 0 = adaptive, as torchvision's <= 0
        spatial_scale_f=spatial_scale,
    )


@symbolic_helper.parse_args("v")
def _argsort_descending_onnx(g: Any, values: Any) -> Any:
    _, indices = g.op("TopK", values, g.op("Shape", values), axis_i=0, largest_i=1, sorted_i=1, outputs=2)
    return indices


_SYMBOLICS = {
    "topk_at_most": _topk_at_most_onnx,
    "nms": _nms_onnx,
    "roi_align": _roi_align_onnx,
    "argsort_descending": _argsort_descending_onnx,
}


def register_onnx_symbolics(opset: int) -> None:
    """Tell the TorchScript-based exporter which ONNX operator each custom op becomes."""
    for name, function in _SYMBOLICS.items():
        torch.onnx.register_custom_op_symbolic(f"{NAMESPACE}::{name}", function, opset)
