"""The few steps of Mask R-CNN that need their own ONNX operator, as traceable functions.

Shape glossary: C channels; H, W a map's size; N boxes; K kept boxes or RoIs; S pooled side.

Each is a PyTorch custom operator (`torch.ops.maskrcnn_export.*`) that runs the project's
own PyTorch code when called, so a traced forward pass computes what the model computes;
the TorchScript-based ONNX exporter (`torch.onnx.export(..., dynamo=False)`) records it
as one node, and `register_onnx_symbolics()` tells it which standard ONNX operator that
node becomes (torchvision exports its compiled ops the same way):

    resize_bilinear   -> Resize (mode linear, half_pixel, output size as a graph input)
    pad_bottom_right  -> Pad (amounts as a graph input)
    topk_at_most      -> TopK with k = min(k, length) computed in the graph
    nms               -> NonMaxSuppression (+ Gather of the kept box indices)
    roi_align         -> RoiAlign (opset 16: half_pixel for aligned=True,
                         output_half_pixel for torchvision's aligned=False)

Sizes that depend on the image (the resized size, padding, how many boxes a level has)
are passed as int64 tensors, so the exported graph computes them for every new image
instead of freezing the example image's numbers.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.onnx import symbolic_helper

from maskrcnn.ops.nms import nms as project_nms
from maskrcnn.ops.roi_align import roi_align as project_roi_align

MIN_OPSET = 16  # RoiAlign's coordinate_transformation_mode arrived in opset 16
NAMESPACE = "maskrcnn_export"


# ---- the operators, as PyTorch runs them ----------------------------------------------


@torch.library.custom_op(f"{NAMESPACE}::resize_bilinear", mutates_args=())
def resize_bilinear(image: Tensor, size: Tensor) -> Tensor:
    """Bilinear resize (align_corners=False, no antialias) of (1, C, H, W) to size (2,) int64 [h, w].

    Same sampling as `F.interpolate(scale_factor=s, recompute_scale_factor=True)` when
    size = floor((H, W) * s): the ratio used is input size / output size in both.
    """
    height, width = (int(v) for v in size.tolist())
    return F.interpolate(image, size=(height, width), mode="bilinear", align_corners=False)


@torch.library.custom_op(f"{NAMESPACE}::pad_bottom_right", mutates_args=())
def pad_bottom_right(image: Tensor, amounts: Tensor) -> Tensor:
    """Zero-pad (1, C, h, w) by amounts (2,) int64 [rows at the bottom, columns at the right]."""
    pad_h, pad_w = (int(v) for v in amounts.tolist())
    return F.pad(image, (0, pad_w, 0, pad_h))


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


# ---- the same operators, as ONNX nodes ---------------------------------------------------


def _const(g: Any, value: Tensor) -> Any:
    return g.op("Constant", value_t=value)


def _ints(g: Any, values: list[int]) -> Any:
    return _const(g, torch.tensor(values, dtype=torch.int64))


@symbolic_helper.parse_args("v", "v")
def _resize_bilinear_onnx(g: Any, image: Any, size: Any) -> Any:
    leading = g.op("Slice", g.op("Shape", image), _ints(g, [0]), _ints(g, [2]))  # (N, C)
    sizes = g.op("Concat", leading, size, axis_i=0)
    empty = _const(g, torch.tensor([], dtype=torch.float32))
    return g.op(
        "Resize", image, empty, empty, sizes, mode_s="linear", coordinate_transformation_mode_s="half_pixel"
    )


@symbolic_helper.parse_args("v", "v")
def _pad_bottom_right_onnx(g: Any, image: Any, amounts: Any) -> Any:
    pads = g.op("Concat", _ints(g, [0, 0, 0, 0, 0, 0]), amounts, axis_i=0)  # begins, then ends of (N, C, H, W)
    return g.op("Pad", image, pads, _const(g, torch.tensor(0.0)), mode_s="constant")


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


_SYMBOLICS = {
    "resize_bilinear": _resize_bilinear_onnx,
    "pad_bottom_right": _pad_bottom_right_onnx,
    "topk_at_most": _topk_at_most_onnx,
    "nms": _nms_onnx,
    "roi_align": _roi_align_onnx,
}


def register_onnx_symbolics(opset: int) -> None:
    """Tell the TorchScript-based exporter which ONNX operator each custom op becomes."""
    for name, function in _SYMBOLICS.items():
        torch.onnx.register_custom_op_symbolic(f"{NAMESPACE}::{name}", function, opset)
