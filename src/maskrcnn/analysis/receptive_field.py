"""Receptive fields and effective strides, layer by layer (`maskrcnn analyze receptive-field`).

For layer t with kernel K_t, stride S_t and dilation D_t, starting from R_0 = 1, ES_0 = 1:

    R_t  = R_{t-1} + (K_t - 1) * ES_{t-1} * D_t
    ES_t = ES_{t-1} * S_t

Padding does not enter (it moves the field, it does not widen it). For the built-in
backbones the walk follows the main path of the actual modules: every Conv2d and
MaxPool2d of the trunk in forward order, the residual branch (conv1 -> conv2 -> conv3) of
each block, not the 1x1 shortcut. An FPN level P_l is reported twice: through its own
stage only (C_l -> 1x1 lateral -> 3x3 output conv) and through the top-down path, where the
coarsest stage C5 reaches P_l by 1x1 convs and nearest upsampling (neither widens the
field) before the 3x3 output conv. P6 = max-pool(kernel 1, stride 2) of P5 keeps P5's field.
These are theoretical fields; the effective field (where the gradient is large) is smaller.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from torch import nn

from maskrcnn.config import ModelConfig
from maskrcnn.errors import UserError
from maskrcnn.model.backbone import build_backbone

LAYER_TOKEN = re.compile(r"^(conv|pool)(\d+)(?:s(\d+))?(?:d(\d+))?$")


class LayerSpecError(UserError):
    """A `--layers` token that is not convK / poolK [sS] [dD]."""


@dataclass
class LayerSpec:
    name: str
    kind: str  # conv | pool | upsample
    kernel: int
    stride: float  # 0.5 for a 2x upsampling
    dilation: int = 1


@dataclass
class RFRow:
    name: str
    kind: str
    kernel: int
    stride: float
    dilation: int
    effective_stride: float
    receptive_field: int
    stage: str = ""


def parse_layers(text: str) -> list[LayerSpec]:
    """'conv5,pool2,conv3s2d2' -> layers; a pool's stride defaults to its size, a conv's to 1."""
    tokens = [t.strip() for t in text.split(",")]
    layers = []
    for i, token in enumerate(tokens):
        match = LAYER_TOKEN.match(token.lower())
        if match is None:
            raise LayerSpecError(
                f"--layers: cannot read token {i + 1} {token!r}; expected convK or poolK with an optional "
                "sS stride and dD dilation, e.g. conv3, pool2, conv3s2d2"
            )
        kind, kernel = match.group(1), int(match.group(2))
        stride = int(match.group(3)) if match.group(3) else (kernel if kind == "pool" else 1)
        dilation = int(match.group(4)) if match.group(4) else 1
        if kernel < 1 or stride < 1 or dilation < 1:
            raise LayerSpecError(f"--layers: token {i + 1} {token!r}: kernel, stride and dilation must be >= 1")
        layers.append(LayerSpec(f"{kind}{i + 1}", kind, kernel, stride, dilation))
    return layers


def receptive_fields(
    layers: list[LayerSpec], start_field: int = 1, start_stride: float = 1, stages: list[str] | None = None
) -> list[RFRow]:
    """Apply the recurrence layer by layer from (R_0, ES_0) = (start_field, start_stride)."""
    field, stride = start_field, start_stride
    rows = []
    for i, layer in enumerate(layers):
        field = int(round(field + (layer.kernel - 1) * stride * layer.dilation))
        stride = stride * layer.stride
        rows.append(
            RFRow(
                layer.name,
                layer.kind,
                layer.kernel,
                layer.stride,
                layer.dilation,
                int(stride) if float(stride).is_integer() else stride,
                field,
                stages[i] if stages else "",
            )
        )
    return rows


def _pair(value: Any) -> int:
    return int(value[0] if isinstance(value, (tuple, list)) else value)


def module_layer(name: str, module: nn.Module) -> LayerSpec | None:
    """The (kernel, stride, dilation) of a Conv2d or MaxPool2d along the height axis; None otherwise."""
    if isinstance(module, nn.Conv2d):
        return LayerSpec(name, "conv", _pair(module.kernel_size), _pair(module.stride), _pair(module.dilation))
    if isinstance(module, nn.MaxPool2d):
        stride = module.stride if module.stride is not None else module.kernel_size
        return LayerSpec(name, "pool", _pair(module.kernel_size), _pair(stride), _pair(module.dilation))
    return None


TRUNK_STAGES = {
    "conv1": "stem", "bn1": "stem", "maxpool": "stem", "stage1": "stem",
    "layer1": "c2", "layer2": "c3", "layer3": "c4", "layer4": "c5",
    "stage2": "c2", "stage3": "c3", "stage4": "c4", "stage5": "c5",
}  # fmt: skip


def trunk_layers(trunk: nn.Module) -> tuple[list[LayerSpec], list[str]]:
    """Main-path conv/pool layers of a ResNet or plain trunk in forward order, with their stage."""
    layers, stages = [], []
    for name, module in trunk.named_modules():
        if "downsample" in name.split("."):
            continue  # the residual shortcut, not the main path
        layer = module_layer(name, module)
        if layer is not None:
            layers.append(layer)
            stages.append(TRUNK_STAGES.get(name.split(".")[0], name.split(".")[0]))
    return layers, stages


def stage_ends(rows: list[RFRow]) -> dict[str, RFRow]:
    """The last row of each stage: its output's field and stride."""
    ends: dict[str, RFRow] = {}
    for row in rows:
        ends[row.stage] = row
    return ends


def backbone_receptive_fields(model_cfg: ModelConfig) -> dict[str, Any]:
    """Layer rows of the trunk, per-stage and per-output-level fields, and the anchor-size check."""
    backbone = build_backbone(model_cfg.backbone)  # only its layers' settings are read
    layers, stages = trunk_layers(backbone.body)
    rows = receptive_fields(layers, stages=stages)
    ends = stage_ends(rows)
    levels = []
    if backbone.fpn is not None:
        output_kernel = _pair(backbone.fpn.layer_blocks[0][0].kernel_size)
        in_stages = list(backbone.body.return_stages)
        coarsest = ends[in_stages[-1]].receptive_field
        for stage, name in zip(in_stages, backbone.feature_names):
            end = ends[stage]
            grow = (output_kernel - 1) * end.effective_stride
            levels.append(
                dict(level=name, stride=end.effective_stride, own_stage=int(end.receptive_field + grow),
                     with_top_down=int(coarsest + grow))
            )  # fmt: skip
        for name in backbone.feature_names[len(in_stages):]:  # P6: max-pool kernel 1, stride 2
            last = levels[-1]
            levels.append(dict(level=name, stride=last["stride"] * 2, own_stage=last["own_stage"],
                               with_top_down=last["with_top_down"]))  # fmt: skip
    else:
        for name in backbone.feature_names:
            end = ends[name]
            levels.append(dict(level=name, stride=end.effective_stride, own_stage=end.receptive_field,
                               with_top_down=end.receptive_field))  # fmt: skip
    return {
        "backbone": model_cfg.backbone.name,
        "layout": model_cfg.backbone.layout,
        "layers": [asdict(r) for r in rows],
        "stages": [dict(stage=s, effective_stride=r.effective_stride, receptive_field=r.receptive_field)
                   for s, r in ends.items()],  # fmt: skip
        "levels": levels,
        "anchors": anchor_fit(levels, model_cfg.anchors.sizes),
    }


def anchor_fit(levels: list[dict[str, Any]], sizes: list[list[float]]) -> list[dict[str, Any]]:
    """For each anchor size of each level: does it fit inside that level's receptive field?"""
    if len(sizes) != len(levels):
        return [dict(level="-", size=None, note=f"{len(sizes)} anchor levels for {len(levels)} feature levels")]
    out = []
    for level, level_sizes in zip(levels, sizes):
        for size in level_sizes:
            out.append(
                dict(level=level["level"], size=size, own_stage=level["own_stage"],
                     fits_own_stage=size <= level["own_stage"], with_top_down=level["with_top_down"],
                     fits_with_top_down=size <= level["with_top_down"])
            )  # fmt: skip
    return out
