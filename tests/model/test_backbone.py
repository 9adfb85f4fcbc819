"""Backbones: shapes and strides per layout, torchvision key names, freezing, norms, FPN maths."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from torch import nn

from maskrcnn.config import BackboneConfig, ConfigError
from maskrcnn.model.backbone import build_backbone, build_res5_head
from maskrcnn.model.fpn import FPN
from maskrcnn.model.norm import FrozenBatchNorm2d, make_norm
from maskrcnn.model.plain import PlainCNN
from maskrcnn.model.resnet import ResNet, resnet_stage_channels

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared"
PARITY = SHARED / "parity"


def shapes(features: dict[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in features.items()}


@pytest.fixture(scope="module")
def image() -> torch.Tensor:
    return torch.randn(1, 3, 64, 96, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("name,c4,c5", [("resnet18", 256, 512), ("resnet50", 1024, 2048)])
def test_layout_shapes_and_strides(image: torch.Tensor, name: str, c4: int, c5: int) -> None:
    with torch.no_grad():
        fpn = build_backbone(BackboneConfig(name=name, layout="fpn", fpn_channels=64)).eval()
        out = fpn(image)
        assert fpn.feature_names == ["p2", "p3", "p4", "p5", "p6"]
        assert fpn.strides == [4, 8, 16, 32, 64]
        assert fpn.out_channels == 64
        assert shapes(out) == {
            "p2": (1, 64, 16, 24),
            "p3": (1, 64, 8, 12),
            "p4": (1, 64, 4, 6),
            "p5": (1, 64, 2, 3),
            "p6": (1, 64, 1, 2),
        }
        c4_backbone = build_backbone(BackboneConfig(name=name, layout="c4")).eval()
        assert shapes(c4_backbone(image)) == {"c4": (1, c4, 4, 6)}
        assert (c4_backbone.strides, c4_backbone.out_channels) == ([16], c4)
        assert not hasattr(c4_backbone.body, "layer4")
        dc5 = build_backbone(BackboneConfig(name=name, layout="dc5")).eval()
        assert shapes(dc5(image)) == {"c5": (1, c5, 4, 6)}
        assert (dc5.feature_names, dc5.strides, dc5.out_channels) == (["c5"], [16], c5)


def test_odd_input_size_follows_conv_arithmetic() -> None:
    backbone = build_backbone(BackboneConfig(name="resnet18", fpn_channels=32)).eval()
    with torch.no_grad():
        out = backbone(torch.zeros(1, 3, 65, 33))
    # 65 -> 33 (conv1) -> 17 (maxpool) -> 9 -> 5 -> 3, P6 -> 2;  33 -> 17 -> 9 -> 5 -> 3 -> 2, P6 -> 1
    assert [tuple(v.shape[-2:]) for v in out.values()] == [(17, 9), (9, 5), (5, 3), (3, 2), (2, 1)]


def test_dilated_c5_follows_torchvision() -> None:
    trunk = ResNet(name="resnet50", dilate_c5=True)
    layer4 = trunk.layer4
    assert layer4[0].conv2.stride == (1, 1) and layer4[0].conv2.dilation == (1, 1)
    assert layer4[0].downsample[0].stride == (1, 1)
    for block in layer4[1:]:
        assert block.conv2.dilation == (2, 2) and block.conv2.padding == (2, 2)
    assert trunk.layer3[0].conv2.stride == (2, 2)


def test_res5_head_halves_roi_features() -> None:
    head = build_res5_head(BackboneConfig(name="resnet18"))
    assert head.out_channels == 512
    with torch.no_grad():
        assert head.eval()(torch.zeros(3, 256, 14, 14)).shape == (3, 512, 7, 7)
    assert build_res5_head(BackboneConfig(name="resnet18", freeze_at=5)).layer4[0].conv1.weight.requires_grad is False


def test_plain_backbone_shapes() -> None:
    backbone = build_backbone(BackboneConfig(name="plain", norm="bn", freeze_at=0, fpn_channels=32))
    out = backbone(torch.zeros(2, 3, 64, 128))
    assert shapes(out)["p2"] == (2, 32, 16, 32) and shapes(out)["p6"] == (2, 32, 1, 2)
    assert backbone.body.stage_channels == {"c2": 64, "c3": 128, "c4": 128, "c5": 128}
    trunk = PlainCNN(channels=[8, 16, 16, 16, 16], norm="none")
    assert shapes(trunk(torch.zeros(1, 3, 32, 32))) == {
        "c2": (1, 16, 8, 8),
        "c3": (1, 16, 4, 4),
        "c4": (1, 16, 2, 2),
        "c5": (1, 16, 1, 1),
    }


def count(params: list[nn.Parameter]) -> int:
    return sum(p.numel() for p in params)


def test_resnet_parameter_counts_match_torchvision() -> None:
    # torchvision resnet50: 25,557,032 parameters, of which fc has 2048*1000 + 1000.
    assert count(list(ResNet(name="resnet50", norm="bn").parameters())) == 25_557_032 - 2_049_000
    # resnext50_32x4d: 25,028,904 with fc; resnet18: 11,689,512 with fc (512*1000 + 1000).
    assert count(list(ResNet(name="resnext50_32x4d", norm="bn").parameters())) == 25_028_904 - 2_049_000
    assert count(list(ResNet(name="resnet18", norm="bn").parameters())) == 11_689_512 - 513_000
    assert resnet_stage_channels("resnet34") == [64, 128, 256, 512]
    assert resnet_stage_channels("resnext101_32x4d") == [256, 512, 1024, 2048]


@pytest.mark.parametrize("freeze_at,frozen_prefixes", [
    (0, []),
    (1, ["conv1", "bn1"]),
    (2, ["conv1", "bn1", "layer1"]),
    (4, ["conv1", "bn1", "layer1", "layer2", "layer3"]),
])
def test_freeze_at(freeze_at: int, frozen_prefixes: list[str]) -> None:
    trunk = ResNet(name="resnet18", norm="bn", freeze_at=freeze_at)
    for name, p in trunk.named_parameters():
        expect_frozen = name.split(".")[0] in frozen_prefixes
        assert p.requires_grad is not expect_frozen, name


def test_frozen_batchnorm_equals_eval_batchnorm() -> None:
    g = torch.Generator().manual_seed(1)
    bn = nn.BatchNorm2d(5, eps=1e-5)
    with torch.no_grad():
        bn.weight.copy_(torch.rand(5, generator=g) + 0.5)
        bn.bias.copy_(torch.randn(5, generator=g))
        bn.running_mean.copy_(torch.randn(5, generator=g))
        bn.running_var.copy_(torch.rand(5, generator=g) + 0.5)
    frozen = FrozenBatchNorm2d(5)
    frozen.load_state_dict(bn.state_dict())  # num_batches_tracked is dropped, not an error
    assert "num_batches_tracked" not in frozen.state_dict()
    assert list(frozen.parameters()) == []
    x = torch.randn(2, 5, 3, 4, generator=g)
    torch.testing.assert_close(frozen(x), bn.eval()(x), rtol=1e-5, atol=1e-6)
    # hand-computed: weight 2, bias 1, mean 3, var 4 - eps -> (x - 3) / 2 * 2 + 1 = x - 2
    one = FrozenBatchNorm2d(1, eps=0.5)
    one.weight.fill_(2.0), one.bias.fill_(1.0), one.running_mean.fill_(3.0), one.running_var.fill_(3.5)
    torch.testing.assert_close(one(torch.tensor([[[[5.0, 7.0]]]])), torch.tensor([[[[3.0, 5.0]]]]))


def test_make_norm_kinds_and_errors() -> None:
    assert isinstance(make_norm("frozen_bn", 8), FrozenBatchNorm2d)
    assert isinstance(make_norm("bn", 8), nn.BatchNorm2d)
    gn = make_norm("gn", 64)
    assert isinstance(gn, nn.GroupNorm) and gn.num_groups == 32
    assert isinstance(make_norm("none", 8), nn.Identity)
    with pytest.raises(ValueError, match="frozen_bn, bn, gn, none"):
        make_norm("layer", 8)
    with pytest.raises(ValueError, match="32 groups"):
        make_norm("gn", 48)


def test_builder_errors_name_the_field() -> None:
    with pytest.raises(ConfigError, match=r"backbone.name.*resnet50.*plain"):
        build_backbone(BackboneConfig(name="vgg16"))
    with pytest.raises(ConfigError, match=r"backbone.layout.*fpn, c4, dc5"):
        build_backbone(BackboneConfig(layout="c5"))
    with pytest.raises(ConfigError, match="backbone.freeze_at"):
        build_backbone(BackboneConfig(name="resnet18", freeze_at=7))
    with pytest.raises(ConfigError, match=r"plain.*frozen_bn.*freeze_at"):
        build_backbone(BackboneConfig(name="plain"))
    with pytest.raises(ConfigError, match="backbone.norm"):
        build_backbone(BackboneConfig(name="resnet18", norm="batch"))


def test_fpn_top_down_by_hand() -> None:
    fpn = FPN(in_channels=[1, 1], out_channels=1)
    with torch.no_grad():
        for block in fpn.inner_blocks:
            block[0].weight.fill_(1.0)
            block[0].bias.fill_(0.0)
        for block in fpn.layer_blocks:
            block[0].weight.zero_()
            block[0].weight[0, 0, 1, 1] = 1.0  # identity 3x3 conv
            block[0].bias.fill_(0.5)
        fine = torch.arange(16.0).reshape(1, 1, 4, 4)
        coarse = torch.tensor([[[[100.0, 200.0], [300.0, 400.0]]]])
        out = fpn({"c2": fine, "c3": coarse})
    assert list(out) == ["p2", "p3", "p4"]
    upsampled = coarse.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
    torch.testing.assert_close(out["p2"], fine + upsampled + 0.5)
    torch.testing.assert_close(out["p3"], coarse + 0.5)
    torch.testing.assert_close(out["p4"], torch.tensor([[[[100.5]]]]))


def spec_backbone_keys(model: str) -> list[tuple[str, list[int]]]:
    spec = json.loads((PARITY / model / "spec.json").read_text())
    return [(k[len("backbone."):], shape) for k, shape in spec["keys"] if k.startswith("backbone.")]


@pytest.mark.parametrize("model,fpn_norm", [("maskrcnn_resnet50_fpn", "none"), ("maskrcnn_resnet50_fpn_v2", "bn")])
def test_state_dict_keys_match_torchvision(model: str, fpn_norm: str, require_shared) -> None:
    require_shared(PARITY / model / "spec.json")
    expected = spec_backbone_keys(model)
    backbone = build_backbone(BackboneConfig(name="resnet50", fpn_norm=fpn_norm))
    ours = [(k, list(v.shape)) for k, v in backbone.state_dict().items()]
    # The trunk's frozen BatchNorm keeps no step counter (torchvision's FrozenBatchNorm2d
    # neither); the fixtures were made with plain BatchNorm in the trunk.
    trunk_counters = [(k, s) for k, s in expected if k.startswith("body.") and k.endswith("num_batches_tracked")]
    assert len(trunk_counters) == 53
    assert ours == [item for item in expected if item not in trunk_counters]
    # Loading the fixture weights (with counters) into our modules works and changes the output.
    spec_path = PARITY / "make_weights.py"
    module_spec = importlib.util.spec_from_file_location("parity_make_weights", spec_path)
    make_weights_module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(make_weights_module)
    weights = make_weights_module.make_weights(expected)
    backbone.load_state_dict(weights, strict=True)
    torch.testing.assert_close(backbone.body.layer2[0].conv1.weight, weights["body.layer2.0.conv1.weight"])
