"""analyze params: the U-Net's exact per-layer counts, frozen counting, repeated calls, stages."""

from __future__ import annotations

import torch
from torch import nn

from maskrcnn.analysis.params import (
    mask_rcnn_stage,
    overall_total,
    param_table,
    stage_totals,
)
from maskrcnn.analysis.unet import get_unet, unet_example_input
from maskrcnn.model.norm import FrozenBatchNorm2d

UNET_COUNTS = {
    "c1.conv1": 448, "c1.conv2": 2320, "c2.conv1": 4640, "c2.conv2": 9248,
    "c3.conv1": 18496, "c3.conv2": 36928, "c4.conv1": 73856, "c4.conv2": 147584,
    "c5.conv1": 295168, "c5.conv2": 590080, "u6": 295040, "c6.conv1": 295040, "c6.conv2": 147584,
    "u7": 73792, "c7.conv1": 73792, "c7.conv2": 36928, "u8": 18464, "c8.conv1": 18464, "c8.conv2": 9248,
    "u9": 4624, "c9.conv1": 4624, "c9.conv2": 2320, "output": 170,
}  # fmt: skip


def test_unet_table_reads_the_issue_numbers() -> None:
    shape = (256, 256, 3)
    model = get_unet(shape, n_filters=16)
    rows = param_table(model, unet_example_input(shape))
    weighted = {r.name: r.trainable for r in rows if r.trainable}
    assert weighted == UNET_COUNTS
    by_name = {r.name: r for r in rows}
    assert by_name["c1.conv1"].output_shape == "1x16x256x256"
    assert by_name["p4"].output_shape == "1x128x16x16" and by_name["p4"].kind == "MaxPool2d"
    assert by_name["u6"].output_shape == "1x128x32x32" and by_name["u6"].kind == "ConvTranspose2d"
    assert by_name["output"].output_shape == "1x10x256x256"
    assert overall_total(rows).total == sum(UNET_COUNTS.values()) == 2_158_858
    totals = {s.stage: s.trainable for s in stage_totals(rows)}
    assert totals["c1"] == 448 + 2320 and totals["u6"] == 295040 and totals["p1"] == 0
    with torch.no_grad():
        out = model(unet_example_input((32, 32, 3)))
    assert out.shape == (1, 10, 32, 32) and float(out.min()) >= 0 and float(out.max()) <= 1


class Shared(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 1)  # 2*2 + 2 = 6 parameters
        self.norm = FrozenBatchNorm2d(2)  # weight + bias = 4 frozen
        self.head = nn.Linear(8, 3)  # 27 parameters, frozen below
        self.head.weight.requires_grad_(False)  # 24 frozen, bias 3 trainable

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        a = self.norm(self.conv(x))
        b = self.conv(y)  # second call, other size
        return self.head(torch.cat([a.flatten(1), b.flatten(1)[:, :0]], dim=1))


def test_frozen_counts_calls_and_tuple_inputs() -> None:
    model = Shared().train()
    rows = {r.name: r for r in param_table(model, (torch.zeros(1, 2, 2, 2), torch.zeros(1, 2, 3, 3)))}
    assert (rows["conv"].trainable, rows["conv"].frozen, rows["conv"].calls) == (6, 0, 2)
    assert rows["conv"].output_shape == "1x2x2x2 (first of several)"
    assert (rows["norm"].trainable, rows["norm"].frozen) == (0, 4)
    assert (rows["head"].trainable, rows["head"].frozen, rows["head"].output_shape) == (3, 24, "1x3")
    assert model.training and model.conv.training  # eval only during the pass


def test_mask_rcnn_stage_names() -> None:
    assert mask_rcnn_stage("backbone.body.conv1") == "backbone.body.stem"
    assert mask_rcnn_stage("backbone.body.layer3.4.conv2") == "backbone.body.layer3"
    assert mask_rcnn_stage("backbone.fpn.inner_blocks.0.0") == "backbone.fpn"
    assert mask_rcnn_stage("rpn.head.conv.0.0") == "rpn"
    assert mask_rcnn_stage("roi_heads.mask_head.0.0") == "roi_heads.mask_head"
