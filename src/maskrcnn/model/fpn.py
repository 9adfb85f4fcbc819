"""Feature Pyramid Network (Lin et al. 2017): C2..C5 -> P2..P6 with one channel count.

Shape glossary: N images; C_i channels of input level i; D the FPN channels (256);
H_i, W_i the size of level i (stride 4, 8, 16, 32; P6 at stride 64).

Names and order follow torchvision's `FeaturePyramidNetwork`: `inner_blocks.i.0` is the
1x1 lateral conv and `layer_blocks.i.0` the 3x3 output conv of input level i (finest
first), each followed by `.1` when a norm is used (the conv then has no bias). The
top-down path upsamples with nearest-neighbour interpolation to the lateral's size; P6
is `max_pool2d(P5, kernel_size=1, stride=2)` (torchvision's LastLevelMaxPool).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from maskrcnn.config import ConfigError
from maskrcnn.model.norm import check_norm_kind, make_norm


def conv_norm(in_channels: int, out_channels: int, kernel_size: int, norm: str) -> nn.Sequential:
    """conv [+ norm], no activation; the conv has a bias only without a norm."""
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=norm == "none")
    ]
    if norm != "none":
        layers.append(make_norm(norm, out_channels))
    return nn.Sequential(*layers)


class FPN(nn.Module):
    """forward({"c2": .., "c5": ..}) -> {"p2": .., .., "p5": .., "p6": ..}, finest first."""

    def __init__(
        self,
        *,
        in_channels: list[int],
        out_channels: int = 256,
        norm: str = "none",
        out_names: list[str] | None = None,
        extra_max_pool: bool = True,
    ) -> None:
        super().__init__()
        check_norm_kind(norm, "backbone.fpn_norm")
        if norm == "frozen_bn":
            raise ConfigError("backbone.fpn_norm: 'frozen_bn' is not used in an FPN; expected none, bn or gn")
        num_levels = len(in_channels) + int(extra_max_pool)
        self.out_names = out_names or [f"p{i + 2}" for i in range(num_levels)]
        if len(self.out_names) != num_levels:
            raise ConfigError(f"FPN: {len(self.out_names)} output names for {num_levels} levels")
        self.out_channels = out_channels
        self.extra_max_pool = extra_max_pool
        self.inner_blocks = nn.ModuleList(conv_norm(c, out_channels, 1, norm) for c in in_channels)
        self.layer_blocks = nn.ModuleList(conv_norm(out_channels, out_channels, 3, norm) for _ in in_channels)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_uniform_(m.weight, a=1)
                if m.bias is not None:
                    nn.init.constant_(m.bias, 0)

    def forward(self, features: dict[str, Tensor]) -> dict[str, Tensor]:
        inputs = list(features.values())  # [(N, C_i, H_i, W_i)], finest first
        if len(inputs) != len(self.inner_blocks):
            raise ValueError(f"FPN expects {len(self.inner_blocks)} feature maps, got {len(inputs)}")
        last_inner = self.inner_blocks[-1](inputs[-1])  # (N, D, H_top, W_top)
        results = [self.layer_blocks[-1](last_inner)]
        for i in range(len(inputs) - 2, -1, -1):
            lateral = self.inner_blocks[i](inputs[i])  # (N, D, H_i, W_i)
            top_down = F.interpolate(last_inner, size=lateral.shape[-2:], mode="nearest")
            last_inner = lateral + top_down
            results.insert(0, self.layer_blocks[i](last_inner))  # (N, D, H_i, W_i)
        if self.extra_max_pool:
            results.append(F.max_pool2d(results[-1], kernel_size=1, stride=2, padding=0))  # (N, D, H/2, W/2)
        return dict(zip(self.out_names, results))
