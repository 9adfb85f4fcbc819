"""Multiply-accumulates per stage, counted from the layers (`maskrcnn analyze flops`).

Forward hooks on every Conv2d, ConvTranspose2d and Linear count MACs from the actual
input and output shapes of one pass (see `stages.py`), with the box head run on exactly
`num_proposals` RoIs and the mask head on exactly `num_detections`:

    Conv2d           out.numel() * (C_in / groups) * kh * kw
    ConvTranspose2d  in.numel() * (C_out / groups) * kh * kw
    Linear           out.numel() * in_features

Biases, norms, activations, pooling, RoIAlign, NMS and mask pasting are not counted.
FLOPs are about 2 x MACs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor, nn

from maskrcnn.analysis.errors import AnalysisError
from maskrcnn.analysis.stages import (
    STAGE_ORDER,
    parse_image_size,
    run_mask_rcnn_stages,
    shape_copy,
)
from maskrcnn.config import Config, ModelConfig
from maskrcnn.model.build import build_model

MACS_LAYERS = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)


def layer_macs(module: nn.Module, inputs: tuple[Any, ...], output: Tensor) -> int:
    """MACs of one call of a Conv2d / ConvTranspose2d / Linear; 0 for anything else."""
    if isinstance(module, nn.ConvTranspose2d):
        kh, kw = module.kernel_size
        return inputs[0].numel() * (module.out_channels // module.groups) * kh * kw
    if isinstance(module, nn.Conv2d):
        kh, kw = module.kernel_size
        return output.numel() * (module.in_channels // module.groups) * kh * kw
    if isinstance(module, nn.Linear):
        return output.numel() * module.in_features
    return 0


class MacCounter:
    """Hooks on a module's conv/linear layers; adds each call's MACs to a named bucket."""

    def __init__(self, module: nn.Module, bucket_of: Callable[[str], str]) -> None:
        self.totals: dict[str, int] = {}
        self.per_layer: dict[str, int] = {}
        self._handles = [
            m.register_forward_hook(self._hook(name, bucket_of))
            for name, m in module.named_modules()
            if isinstance(m, MACS_LAYERS)
        ]

    def _hook(self, name: str, bucket_of: Callable[[str], str]) -> Callable[..., None]:
        def hook(module: nn.Module, inputs: tuple[Any, ...], output: Tensor) -> None:
            macs = layer_macs(module, inputs, output)
            bucket = bucket_of(name)
            self.totals[bucket] = self.totals.get(bucket, 0) + macs
            self.per_layer[name] = self.per_layer.get(name, 0) + macs

        return hook

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()


def module_macs(module: nn.Module, *args: Any) -> int:
    """Total MACs of one call module(*args)."""
    counter = MacCounter(module, lambda name: "total")
    try:
        module(*args)
    finally:
        counter.remove()
    return counter.totals.get("total", 0)


def _as_model(model_cfg_or_model: ModelConfig | Config | nn.Module) -> nn.Module:
    if isinstance(model_cfg_or_model, nn.Module):
        return model_cfg_or_model

    cfg = model_cfg_or_model.model if isinstance(model_cfg_or_model, Config) else model_cfg_or_model
    return build_model(cfg)


def count_macs(
    model_cfg_or_model: ModelConfig | Config | nn.Module,
    image_size: tuple[int, int] | str | int,
    num_proposals: int = 1000,
    num_detections: int = 100,
) -> dict[str, int]:
    """MACs of backbone, fpn, rpn (head), box_head (incl. predictor), mask_head (incl. predictor), total.

    `image_size` is the network input (H, W) after resize, padded up to the model's
    size_divisible. The count runs on a meta-device copy, so it is fast and leaves the
    model as it was.
    """
    height, width = parse_image_size(image_size)
    if num_proposals < 0 or num_detections < 0:
        raise AnalysisError(f"proposals and detections must be >= 0, got {num_proposals} and {num_detections}")
    model = shape_copy(_as_model(model_cfg_or_model))
    current = {"stage": "backbone"}

    def bucket_of(name: str) -> str:
        if current["stage"] == "backbone" and name.startswith("backbone.fpn."):
            return "fpn"
        return current["stage"]

    counter = MacCounter(model, bucket_of)
    try:
        run_mask_rcnn_stages(
            model, (height, width), num_proposals, num_detections, lambda stage: current.update(stage=stage)
        )
    finally:
        counter.remove()
    result = {stage: counter.totals.get(stage, 0) for stage in STAGE_ORDER}
    result["total"] = sum(result.values())
    return result
