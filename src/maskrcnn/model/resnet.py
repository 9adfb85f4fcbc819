"""ResNet and ResNeXt trunks (He et al. 2016; Xie et al. 2017) that return C2..C5.

Shape glossary: N images; H, W padded input height and width; C2..C5 the outputs of
the four residual stages, at strides 4, 8, 16, 32 (C5 at stride 16 when dilated).

Module and parameter names are torchvision's (`conv1`, `bn1`, `layer1`..`layer4`, and
per block `conv1 bn1 conv2 bn2 [conv3 bn3] downsample.0 downsample.1`), so the
`backbone.body.*` part of a torchvision checkpoint loads unchanged. As in torchvision
("ResNet v1.5") a Bottleneck's stride sits on its 3x3 conv. There is no avgpool/fc.

Stage names: "stem" = conv1 + bn1 (+ max pool), "res2".."res5" = layer1..layer4.
`freeze_at` = 0 freezes nothing, 1 the stem, k >= 2 the stem and res2..res(k)
(torchvision's `trainable_layers=3` is `freeze_at=2`).

Dilated C5 (`dilate_c5=True`) follows torchvision's `replace_stride_with_dilation`:
layer4 keeps stride 1; its first block's 3x3 conv keeps dilation 1 (the previous
stage's), the later blocks use dilation 2 (padding 2). Detectron2 instead dilates every
block of res5; the two give the same shapes and differ only in the first block.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from maskrcnn.config import ConfigError
from maskrcnn.model.norm import check_norm_kind, make_norm

STAGE_NAMES = ("c2", "c3", "c4", "c5")
STAGE_STRIDES = {"c2": 4, "c3": 8, "c4": 16, "c5": 32}


class BasicBlock(nn.Module):
    """Two 3x3 convs with a residual connection (ResNet-18/34)."""

    expansion = 1

    def __init__(
        self,
        *,
        in_channels: int,
        planes: int,
        stride: int,
        dilation: int,
        norm: str,
        downsample: nn.Module | None,
        groups: int = 1,
        width_per_group: int = 64,
    ) -> None:
        super().__init__()
        if groups != 1 or width_per_group != 64:
            raise ConfigError("BasicBlock supports only groups=1 and width_per_group=64")
        self.conv1 = nn.Conv2d(in_channels, planes, 3, stride, padding=dilation, dilation=dilation, bias=False)
        self.bn1 = make_norm(norm, planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = make_norm(norm, planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:  # (N, Cin, H, W) -> (N, planes, H/s, W/s)
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (strided, grouped, dilated), 1x1 expand x4, residual connection."""

    expansion = 4

    def __init__(
        self,
        *,
        in_channels: int,
        planes: int,
        stride: int,
        dilation: int,
        norm: str,
        downsample: nn.Module | None,
        groups: int = 1,
        width_per_group: int = 64,
    ) -> None:
        super().__init__()
        width = int(planes * (width_per_group / 64.0)) * groups
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = make_norm(norm, width)
        self.conv2 = nn.Conv2d(
            width, width, 3, stride, padding=dilation, dilation=dilation, groups=groups, bias=False
        )
        self.bn2 = make_norm(norm, width)
        self.conv3 = nn.Conv2d(width, planes * self.expansion, 1, bias=False)
        self.bn3 = make_norm(norm, planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:  # (N, Cin, H, W) -> (N, 4*planes, H/s, W/s)
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


@dataclass(frozen=True)
class ResNetSpec:
    block: type[BasicBlock] | type[Bottleneck]
    blocks_per_stage: tuple[int, int, int, int]
    groups: int = 1
    width_per_group: int = 64


RESNET_SPECS: dict[str, ResNetSpec] = {
    "resnet18": ResNetSpec(BasicBlock, (2, 2, 2, 2)),
    "resnet34": ResNetSpec(BasicBlock, (3, 4, 6, 3)),
    "resnet50": ResNetSpec(Bottleneck, (3, 4, 6, 3)),
    "resnet101": ResNetSpec(Bottleneck, (3, 4, 23, 3)),
    "resnet152": ResNetSpec(Bottleneck, (3, 8, 36, 3)),
    "resnext50_32x4d": ResNetSpec(Bottleneck, (3, 4, 6, 3), groups=32, width_per_group=4),
    "resnext101_32x4d": ResNetSpec(Bottleneck, (3, 4, 23, 3), groups=32, width_per_group=4),
}
STAGE_PLANES = (64, 128, 256, 512)


def resnet_spec(name: str) -> ResNetSpec:
    if name not in RESNET_SPECS:
        raise ConfigError(f"backbone.name: unknown ResNet {name!r}; expected one of {', '.join(RESNET_SPECS)}")
    return RESNET_SPECS[name]


def resnet_stage_channels(name: str) -> list[int]:
    """Output channels of C2, C3, C4, C5 for a ResNet/ResNeXt name."""
    spec = resnet_spec(name)
    return [planes * spec.block.expansion for planes in STAGE_PLANES]


def make_stage(
    *,
    spec: ResNetSpec,
    in_channels: int,
    planes: int,
    num_blocks: int,
    stride: int,
    first_dilation: int,
    dilation: int,
    norm: str,
) -> nn.Sequential:
    """One residual stage: the first block changes stride/channels, the rest keep them."""
    out_channels = planes * spec.block.expansion
    downsample = None
    if stride != 1 or in_channels != out_channels:
        downsample = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
            make_norm(norm, out_channels),
        )
    common = dict(planes=planes, norm=norm, groups=spec.groups, width_per_group=spec.width_per_group)
    blocks = [
        spec.block(in_channels=in_channels, stride=stride, dilation=first_dilation, downsample=downsample, **common)
    ]
    for _ in range(1, num_blocks):
        blocks.append(spec.block(in_channels=out_channels, stride=1, dilation=dilation, downsample=None, **common))
    return nn.Sequential(*blocks)


def init_resnet_weights(module: nn.Module) -> None:
    """He-normal convs (fan out), unit-scale zero-shift norms, as torchvision initializes."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.constant_(m.weight, 1)
            nn.init.constant_(m.bias, 0)


def freeze(module: nn.Module) -> None:
    for p in module.parameters():
        p.requires_grad_(False)


class ResNet(nn.Module):
    """A ResNet trunk: forward returns an ordered dict of the requested stages (finest first)."""

    def __init__(
        self,
        *,
        name: str = "resnet50",
        norm: str = "frozen_bn",
        freeze_at: int = 0,
        dilate_c5: bool = False,
        return_stages: tuple[str, ...] | list[str] = STAGE_NAMES,
    ) -> None:
        super().__init__()
        spec = resnet_spec(name)
        check_norm_kind(norm, "backbone.norm")
        if not 0 <= freeze_at <= 5:
            raise ConfigError(f"backbone.freeze_at: expected 0..5 (0: train all, 5: freeze all), got {freeze_at}")
        bad = [s for s in return_stages if s not in STAGE_NAMES]
        if bad or not return_stages:
            raise ConfigError(f"return_stages: expected a non-empty subset of {STAGE_NAMES}, got {list(return_stages)}")
        self.name = name
        self.return_stages = [s for s in STAGE_NAMES if s in return_stages]
        self.dilate_c5 = dilate_c5
        last_stage = STAGE_NAMES.index(self.return_stages[-1])  # 0..3

        self.conv1 = nn.Conv2d(3, 64, 7, 2, padding=3, bias=False)
        self.bn1 = make_norm(norm, 64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        channels = resnet_stage_channels(name)
        in_channels = 64
        for i in range(last_stage + 1):
            dilated = dilate_c5 and i == 3
            stage = make_stage(
                spec=spec,
                in_channels=in_channels,
                planes=STAGE_PLANES[i],
                num_blocks=spec.blocks_per_stage[i],
                stride=1 if i == 0 or dilated else 2,
                first_dilation=1,
                dilation=2 if dilated else 1,
                norm=norm,
            )
            self.add_module(f"layer{i + 1}", stage)
            in_channels = channels[i]
        self.stage_channels = {s: channels[i] for i, s in enumerate(STAGE_NAMES)}
        self.stage_strides = dict(STAGE_STRIDES)
        if dilate_c5:
            self.stage_strides["c5"] = 16
        init_resnet_weights(self)
        self._freeze(freeze_at, last_stage)

    def _freeze(self, freeze_at: int, last_stage: int) -> None:
        if freeze_at >= 1:
            freeze(self.conv1)
            freeze(self.bn1)
        for i in range(min(freeze_at - 1, last_stage + 1)):
            freeze(getattr(self, f"layer{i + 1}"))

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        # (N, 3, H, W) -> stem (N, 64, H/4, W/4)
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        out: dict[str, Tensor] = {}
        for i, stage_name in enumerate(STAGE_NAMES):
            layer = getattr(self, f"layer{i + 1}", None)
            if layer is None:
                break
            x = layer(x)  # (N, C_i, H/stride_i, W/stride_i)
            if stage_name in self.return_stages:
                out[stage_name] = x
        return out


class Res5Head(nn.Module):
    """res5 (layer4) applied to pooled RoI features, for the C4 layout's RoI heads.

    (R, C4 channels, 14, 14) -> (R, C5 channels, 7, 7): the first block has stride 2.
    The box head averages the result to (R, C5 channels).
    """

    def __init__(self, *, name: str = "resnet50", norm: str = "frozen_bn", frozen: bool = False) -> None:
        super().__init__()
        spec = resnet_spec(name)
        check_norm_kind(norm, "backbone.norm")
        channels = resnet_stage_channels(name)
        self.out_channels = channels[3]
        self.layer4 = make_stage(
            spec=spec,
            in_channels=channels[2],
            planes=STAGE_PLANES[3],
            num_blocks=spec.blocks_per_stage[3],
            stride=2,
            first_dilation=1,
            dilation=1,
            norm=norm,
        )
        init_resnet_weights(self)
        if frozen:
            freeze(self)

    def forward(self, x: Tensor) -> Tensor:  # (R, C4, 14, 14) -> (R, C5, 7, 7)
        return self.layer4(x)
