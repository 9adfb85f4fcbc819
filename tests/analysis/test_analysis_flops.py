"""analyze flops: MACs of single layers by hand, a tiny model stage by stage, and R50-FPN's size."""

from __future__ import annotations

import torch
from torch import nn

from maskrcnn.analysis.flops import count_macs, module_macs
from maskrcnn.analysis.stages import parse_image_size
from maskrcnn.config import load_config

TINY = [
    "model.num_classes=3", "model.backbone.name=plain", "model.backbone.norm=bn", "model.backbone.freeze_at=0",
    "model.backbone.fpn_channels=16", "model.backbone.plain_channels=[8,16,16,16,16]",
    "model.transform.min_size=[64]", "model.transform.max_size=64",
    "model.roi_heads.box_head_dim=32", "model.roi_heads.mask_head_channels=16",
]  # fmt: skip


def test_layer_macs_by_hand() -> None:
    x = torch.zeros(1, 3, 10, 10)
    assert module_macs(nn.Conv2d(3, 8, 3, padding=1), x) == 8 * 10 * 10 * 3 * 9  # 21600
    assert module_macs(nn.Conv2d(3, 8, 3, stride=2, padding=1), x) == 8 * 5 * 5 * 3 * 9
    assert module_macs(nn.Conv2d(4, 8, 1, groups=2), torch.zeros(2, 4, 3, 3)) == 2 * 8 * 9 * 2
    # transposed: every input element meets C_out * k * k weights: 4*5*5 inputs * 2 * 2*2
    assert module_macs(nn.ConvTranspose2d(4, 2, 2, stride=2), torch.zeros(1, 4, 5, 5)) == 100 * 2 * 4
    assert module_macs(nn.Linear(10, 5), torch.zeros(7, 10)) == 7 * 10 * 5
    assert module_macs(nn.Sequential(nn.Linear(10, 5), nn.ReLU(), nn.Linear(5, 2)), torch.zeros(3, 10)) == 150 + 30


def test_tiny_model_stages_by_hand() -> None:
    cfg = load_config(None, TINY)
    macs = count_macs(cfg.model, (64, 64), num_proposals=10, num_detections=5)
    c, k, d = 16, 3, 32  # FPN channels, classes, box head dim
    positions = 16 * 16 + 8 * 8 + 4 * 4 + 2 * 2 + 1 * 1  # P2..P6 of a 64x64 input
    assert macs["rpn"] == positions * (c * c * 9 + 3 * c + 12 * c)  # 3x3 conv + 3 logits + 12 deltas
    assert macs["box_head"] == 10 * (c * 7 * 7 * d + d * d + d * k + d * 4 * k)
    mask = 4 * 14 * 14 * c * c * 9 + 14 * 14 * c * c * 4 + 28 * 28 * c * k  # 4 convs, deconv, logits
    assert macs["mask_head"] == 5 * mask
    # plain trunk: stage1 conv 3->8 stride 2 at 32x32; stage2 at 16x16: 8->16, 16->16; stages 3-5 16->16 x2
    trunk = 32 * 32 * 8 * 27 + 16 * 16 * 16 * (8 * 9 + 16 * 9) + sum(s * s * 16 * 16 * 9 * 2 for s in (8, 4, 2))
    assert macs["backbone"] == trunk
    lateral = sum(s * s * c * 16 for s in (16, 8, 4, 2))
    assert macs["fpn"] == lateral + sum(s * s * c * c * 9 for s in (16, 8, 4, 2))
    assert macs["total"] == sum(v for key, v in macs.items() if key != "total")
    assert count_macs(cfg.model, (60, 50), 0, 0)["box_head"] == 0  # padded to 64x64, no RoIs


def test_resnet50_fpn_matches_the_known_budget() -> None:
    macs = count_macs(load_config("maskrcnn_resnet50_fpn").model, "800x1216", 1000, 100)
    giga = {k: v / 1e9 for k, v in macs.items()}
    assert 75 < giga["backbone"] < 85  # ResNet-50: 4.1 GMACs at 224x224, x 19.4 the pixels
    assert 50 < giga["fpn"] < 60
    assert 45 < giga["rpn"] < 55
    assert 12 < giga["box_head"] < 16
    assert 45 < giga["mask_head"] < 58


def test_parse_image_size() -> None:
    assert parse_image_size("800x1216") == (800, 1216)
    assert parse_image_size(512) == (512, 512)
    try:
        parse_image_size("800by1216")
    except ValueError as exc:
        assert "800by1216" in str(exc)
    else:
        raise AssertionError("expected an error")
