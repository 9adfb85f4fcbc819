"""A small plain CNN trunk for fast CPU work (demo, tests): C2..C5 at strides 4..32.

Shape glossary: N images; H, W padded input size; K_i the channels of stage i
(`BackboneConfig.plain_channels`, default [32, 64, 128, 128, 128]).

    stage1: conv3x3 stride 2 (3 -> K_1) + norm + ReLU                     stride 2
    stage2..stage5: max-pool 2x2, then 2 x (conv3x3 + norm + ReLU)       strides 4..32

stage2..stage5 come out as "c2".."c5", so the FPN builds P2..P6 on top as for a ResNet.
It is trained from scratch: frozen BatchNorm (fixed statistics) makes no sense for it.
"""

from __future__ import annotations

from torch import Tensor, nn

from maskrcnn.config import ConfigError
from maskrcnn.model.norm import check_norm_kind, make_norm
from maskrcnn.model.resnet import STAGE_NAMES, freeze

PLAIN_NUM_STAGES = 5


def conv_norm_relu(in_channels: int, out_channels: int, stride: int, norm: str) -> list[nn.Module]:
    return [
        nn.Conv2d(in_channels, out_channels, 3, stride, padding=1, bias=norm == "none"),
        make_norm(norm, out_channels),
        nn.ReLU(inplace=True),
    ]


class PlainCNN(nn.Module):
    """forward(x (N, 3, H, W)) -> {"c2": (N, K_2, H/4, W/4), .., "c5": (N, K_5, H/32, W/32)}."""

    def __init__(
        self,
        *,
        channels: list[int],
        norm: str = "bn",
        freeze_at: int = 0,
        return_stages: tuple[str, ...] | list[str] = STAGE_NAMES,
    ) -> None:
        super().__init__()
        check_norm_kind(norm, "backbone.norm")
        if norm == "frozen_bn":
            raise ConfigError(
                "backbone.norm: the plain backbone is trained from scratch, so 'frozen_bn' "
                "(fixed statistics) cannot work; expected bn, gn or none"
            )
        if len(channels) != PLAIN_NUM_STAGES or any(int(c) <= 0 for c in channels):
            raise ConfigError(
                f"backbone.plain_channels: expected {PLAIN_NUM_STAGES} positive channel counts "
                f"(strides 2, 4, 8, 16, 32), got {channels}"
            )
        if not 0 <= freeze_at <= PLAIN_NUM_STAGES:
            raise ConfigError(f"backbone.freeze_at: expected 0..5, got {freeze_at}")
        bad = [s for s in return_stages if s not in STAGE_NAMES]
        if bad or not return_stages:
            raise ConfigError(f"return_stages: expected a non-empty subset of {STAGE_NAMES}, got {list(return_stages)}")
        self.return_stages = [s for s in STAGE_NAMES if s in return_stages]
        self.stage1 = nn.Sequential(*conv_norm_relu(3, channels[0], 2, norm))
        for i in range(1, PLAIN_NUM_STAGES):
            layers: list[nn.Module] = [nn.MaxPool2d(kernel_size=2, stride=2)]
            layers += conv_norm_relu(channels[i - 1], channels[i], 1, norm)
            layers += conv_norm_relu(channels[i], channels[i], 1, norm)
            self.add_module(f"stage{i + 1}", nn.Sequential(*layers))
        self.stage_channels = {name: int(channels[i + 1]) for i, name in enumerate(STAGE_NAMES)}
        self.stage_strides = {name: 2 ** (i + 2) for i, name in enumerate(STAGE_NAMES)}
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.constant_(m.bias, 0)
        for i in range(freeze_at):
            freeze(getattr(self, f"stage{i + 1}"))

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        x = self.stage1(x)  # (N, 3, H, W) -> (N, K_1, H/2, W/2)
        out: dict[str, Tensor] = {}
        for i, name in enumerate(STAGE_NAMES):
            x = getattr(self, f"stage{i + 2}")(x)  # (N, K_{i+2}, H/2^(i+2), W/2^(i+2))
            if name in self.return_stages:
                out[name] = x
        return out
