"""Box heads (RoI features -> one vector per RoI) and the box predictor.

Shape glossary: R RoIs in the batch; C channels of the pooled features; S the pooled
side (7 for FPN heads, 14 -> 7 in the C4 res5 head); D the head's output width;
K classes including background.

Parameter names are torchvision's (`fc6`/`fc7`; the v2 4conv1fc head as a Sequential
`0..3` conv blocks, `4` flatten, `5` Linear, `6` ReLU; `cls_score`/`bbox_pred`).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from maskrcnn.model.norm import make_norm


class TwoMLPHead(nn.Module):
    """Flatten, fc6 + ReLU, fc7 + ReLU: (R, C, S, S) -> (R, D)."""

    def __init__(self, *, in_channels: int, pool_size: int, dim: int = 1024) -> None:
        super().__init__()
        self.fc6 = nn.Linear(in_channels * pool_size * pool_size, dim)
        self.fc7 = nn.Linear(dim, dim)
        self.out_features = dim

    def forward(self, x: Tensor) -> Tensor:
        x = x.flatten(start_dim=1)  # (R, C, S, S) -> (R, C*S*S)
        return F.relu(self.fc7(F.relu(self.fc6(x))))


def conv_norm_relu(in_channels: int, out_channels: int, norm: str) -> nn.Sequential:
    """3x3 conv (bias only without norm) [+ norm] + ReLU, keys `0` conv, `1` norm."""
    layers: list[nn.Module] = [nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=norm == "none")]
    if norm != "none":
        layers.append(make_norm(norm, out_channels))
    layers.append(nn.ReLU(inplace=True))
    block = nn.Sequential(*layers)
    nn.init.kaiming_normal_(block[0].weight, mode="fan_out", nonlinearity="relu")
    if block[0].bias is not None:
        nn.init.zeros_(block[0].bias)
    return block


class ConvFCHead(nn.Sequential):
    """`num_convs` 3x3 conv blocks, flatten, one fc + ReLU (torchvision's v2 `4conv1fc`)."""

    def __init__(
        self,
        *,
        in_channels: int,
        pool_size: int,
        conv_dim: int = 256,
        num_convs: int = 4,
        fc_dim: int = 1024,
        norm: str = "none",
    ) -> None:
        blocks: list[nn.Module] = []
        channels = in_channels
        for _ in range(num_convs):
            blocks.append(conv_norm_relu(channels, conv_dim, norm))
            channels = conv_dim
        blocks += [nn.Flatten(), nn.Linear(channels * pool_size * pool_size, fc_dim), nn.ReLU(inplace=True)]
        super().__init__(*blocks)
        self.out_features = fc_dim


class Res5BoxHead(nn.Module):
    """The C4 design: the ResNet's res5 stage on 14x14 RoI features, then global average pooling.

    forward: (R, 1024, 14, 14) -> res5 (R, 2048, 7, 7) -> (R, 2048). The res5 stage itself
    runs in the RoI heads' `shared_head` so the mask branch can use it too; this module
    only pools.
    """

    def __init__(self, *, channels: int) -> None:
        super().__init__()
        self.out_features = channels

    def forward(self, x: Tensor) -> Tensor:
        return x.mean(dim=(2, 3))  # (R, C, S, S) -> (R, C)


class BoxPredictor(nn.Module):
    """Class logits (R, K) and class-specific box deltas (R, K*4) from (R, D)."""

    def __init__(self, *, in_features: int, num_classes: int) -> None:
        super().__init__()
        self.cls_score = nn.Linear(in_features, num_classes)
        self.bbox_pred = nn.Linear(in_features, num_classes * 4)
        nn.init.normal_(self.cls_score.weight, std=0.01)
        nn.init.normal_(self.bbox_pred.weight, std=0.001)
        nn.init.zeros_(self.cls_score.bias)
        nn.init.zeros_(self.bbox_pred.bias)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = x.flatten(start_dim=1)
        return self.cls_score(x), self.bbox_pred(x)


def no_shared_head() -> nn.Module:
    """The FPN / DC5 designs have no stage between the pooler and the heads."""
    return nn.Identity()

