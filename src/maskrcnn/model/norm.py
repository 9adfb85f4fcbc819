"""Normalization layers for the backbones and heads.

Shape glossary: N batch, C channels, H, W feature height and width.

`FrozenBatchNorm2d` is BatchNorm with fixed statistics and affine parameters (buffers,
not parameters), as the ImageNet-pretrained trunks are used in detection. It keeps
torchvision's state-dict keys (`weight`, `bias`, `running_mean`, `running_var`; no
`num_batches_tracked`, which is dropped when a BatchNorm state dict is loaded into it).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from maskrcnn.config import ConfigError

NORM_KINDS = ("frozen_bn", "bn", "gn", "none")
GROUP_NORM_GROUPS = 32


class FrozenBatchNorm2d(nn.Module):
    """y = (x - running_mean) / sqrt(running_var + eps) * weight + bias, nothing trainable."""

    weight: Tensor
    bias: Tensor
    running_mean: Tensor
    running_var: Tensor

    def __init__(self, num_features: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def _load_from_state_dict(
        self,
        state_dict: dict[str, Any],
        prefix: str,
        local_metadata: dict[str, Any],
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        # A BatchNorm2d state dict carries a step counter this layer has no use for.
        state_dict.pop(prefix + "num_batches_tracked", None)
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    def forward(self, x: Tensor) -> Tensor:  # (N, C, H, W) -> (N, C, H, W)
        weight = self.weight.reshape(1, -1, 1, 1)
        bias = self.bias.reshape(1, -1, 1, 1)
        running_var = self.running_var.reshape(1, -1, 1, 1)
        running_mean = self.running_mean.reshape(1, -1, 1, 1)
        # Same order of operations as torchvision, so loaded checkpoints give the same floats.
        scale = weight * (running_var + self.eps).rsqrt()
        shift = bias - running_mean * scale
        return x * scale + shift

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}"


def check_norm_kind(kind: str, where: str = "norm") -> None:
    if kind not in NORM_KINDS:
        raise ConfigError(f"{where}: unknown normalization {kind!r}; expected one of {', '.join(NORM_KINDS)}")


def make_norm(kind: str, channels: int) -> nn.Module:
    """A normalization layer over `channels` feature maps: frozen_bn | bn | gn | none."""
    check_norm_kind(kind)
    if kind == "frozen_bn":
        return FrozenBatchNorm2d(channels)
    if kind == "bn":
        return nn.BatchNorm2d(channels)
    if kind == "gn":
        if channels % GROUP_NORM_GROUPS != 0:
            raise ConfigError(
                f"norm 'gn': {channels} channels cannot be split into {GROUP_NORM_GROUPS} groups; "
                f"use channel counts that are multiples of {GROUP_NORM_GROUPS}"
            )
        return nn.GroupNorm(GROUP_NORM_GROUPS, channels)
    return nn.Identity()
